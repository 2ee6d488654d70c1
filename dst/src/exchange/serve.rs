//! The coordinator side: a server per running replica. Node connections go to the real node
//! session ([`super::session`]); the real result sink proposes their batches. Operator writers'
//! messages are answered each from its own task, as the operator API does: a follower
//! redirects, the leader proposes through Raft and acknowledges only after the entry is
//! committed and applied; an outcome it cannot know (timeout, stopped) gets no answer, so the
//! writer retries.
//!
//! It also checks, while it runs, that a replica on the minority side of a partition never
//! acknowledges a write submitted during that partition.

use mcdnn_coordinator::fleet::registrar::Registrar;
use mcdnn_coordinator::fleet::result_sink;
use mcdnn_coordinator::raft::{ProposeError, ReplicaHandle, Role};
use mcdnn_coordinator::state::{Command, PolicyValue};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::conn::Switchboard;
use super::session::{self, Hub, Sessions};
use super::{ToClient, ToCoord};
use crate::net::{Addr, Payload, SimNet};

/// The policy key every simulated write sets (a key the schema knows, any value in range).
pub const WRITE_KEY: &str = "fleet.cost_budget_usd";

/// An operator writer's identity.
pub fn writer_name(writer: usize) -> String {
    format!("ops/writer-{writer}")
}

/// Serves `handle`'s nodes and writers until aborted (when the replica is stopped); returns
/// the tasks and the sessions plan pushes go to.
pub fn spawn(
    handle: ReplicaHandle,
    net: SimNet,
    board: &Switchboard,
    voters: usize,
) -> (Vec<JoinHandle<()>>, Sessions) {
    let (sink, queue) = result_sink::channel();
    let sinking = tokio::spawn(result_sink::run(
        queue,
        handle.clone(),
        CancellationToken::new(),
    ));
    let hub = Hub {
        raft: handle.clone(),
        sink,
        registrar: Registrar::new(handle.clone()),
        sessions: Sessions::default(),
        net: net.clone(),
        voters,
    };
    let sessions = hub.sessions.clone();
    let mut conns = board.listen(handle.id());
    let nodes = tokio::spawn(async move {
        let mut live = tokio::task::JoinSet::new();
        while let Some(end) = conns.recv().await {
            live.spawn(session::serve(hub.clone(), end));
            // Reap finished sessions so the set stays small.
            while live.try_join_next().is_some() {}
        }
    });
    let mut inbox = net.inbox(Addr::Replica(handle.id()));
    let writers = tokio::spawn(async move {
        while let Some(env) = inbox.recv().await {
            if let Payload::ToCoord(msg) = env.payload {
                let (h, net) = (handle.clone(), net.clone());
                tokio::spawn(answer(h, net, voters, env.from, msg));
            }
        }
    });
    (vec![sinking, nodes, writers], sessions)
}

async fn answer(h: ReplicaHandle, net: SimNet, voters: usize, from: Addr, msg: ToCoord) {
    let id = h.id();
    let view = *h.raft_view().borrow();
    let reply = |m: ToClient| net.send(Addr::Replica(id), from, Payload::ToClient(m));
    if view.role != Role::Leader {
        reply(ToClient::Redirect {
            leader: view.leader_id,
        });
        return;
    }
    let minority_at_submit = net.minority_partition(id, voters);
    let ToCoord::Write { writer, write_id } = msg;
    let cmd = Command::SetPolicy {
        key: WRITE_KEY.into(),
        value: PolicyValue::Number((write_id % 1000) as f64),
        writer: writer_name(writer),
        write_id,
    };
    let what = format!("write {write_id} of writer {writer}");
    let outcome = h.propose(cmd).await;
    if outcome.is_ok() {
        net.check_minority_ack(id, minority_at_submit, &what);
    }
    match outcome {
        Ok(index) => reply(ToClient::WriteOk { write_id, index }),
        Err(ProposeError::Rejected { reason, .. }) => {
            reply(ToClient::WriteRejected { write_id, reason })
        }
        Err(ProposeError::NotLeader { leader_hint }) => reply(ToClient::Redirect {
            leader: leader_hint,
        }),
        // Timeout, dropped, stopped: the outcome is unknown; the writer retries.
        Err(_) => {}
    }
}
