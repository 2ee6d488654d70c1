//! The coordinator side of the exchange: a server per running replica takes clients' messages
//! and answers each from its own task, as the real sessions and operator API do: a follower
//! redirects, the leader proposes through Raft and acknowledges only after the entry is
//! committed and applied; an outcome it cannot know (timeout, stopped) gets no answer, so the
//! client retries.
//!
//! It also checks, while it runs, that a replica on the minority side of a partition never
//! acknowledges a proposal submitted during that partition.

use mcdnn_coordinator::raft::{ProposeError, ReplicaHandle, Role};
use mcdnn_coordinator::state::{Command, PolicyValue, ResultRecord};
use tokio::task::JoinHandle;
use wire::msg::{PlaceTag, ResultBatch};

use super::{ToClient, ToCoord};
use crate::net::{Addr, Payload, SimNet};

/// The policy key every simulated write sets (a key the schema knows, any value in range).
pub const WRITE_KEY: &str = "fleet.cost_budget_usd";

/// A node's identity as the coordinator knows it.
pub fn node_name(node: usize) -> String {
    format!("node-{node:02}")
}

/// An operator writer's identity.
pub fn writer_name(writer: usize) -> String {
    format!("ops/writer-{writer}")
}

/// The ledger's view of a batch, as the coordinator's session records it.
fn records(batch: &ResultBatch) -> Vec<ResultRecord> {
    batch
        .results
        .iter()
        .map(|r| ResultRecord {
            seq: r.seq,
            correct: r.truth.map(|t| t == r.label),
            offloaded: r.place == PlaceTag::Server,
            cost_usd: r.cost_usd,
        })
        .collect()
}

/// Serves `handle`'s clients until aborted (when the replica is stopped).
pub fn spawn(handle: ReplicaHandle, net: SimNet, voters: usize) -> JoinHandle<()> {
    let mut inbox = net.inbox(Addr::Replica(handle.id()));
    tokio::spawn(async move {
        while let Some(env) = inbox.recv().await {
            if let Payload::ToCoord(msg) = env.payload {
                let (h, net) = (handle.clone(), net.clone());
                tokio::spawn(answer(h, net, voters, env.from, msg));
            }
        }
    })
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
    let (cmd, what) = match &msg {
        ToCoord::Results { node, batch } => (
            Command::RecordResults {
                node_id: node_name(*node),
                incarnation: batch.incarnation,
                records: records(batch),
            },
            format!("results of node {node}"),
        ),
        ToCoord::Write { writer, write_id } => (
            Command::SetPolicy {
                key: WRITE_KEY.into(),
                value: PolicyValue::Number((write_id % 1000) as f64),
                writer: writer_name(*writer),
                write_id: *write_id,
            },
            format!("write {write_id} of writer {writer}"),
        ),
    };
    let outcome = h.propose(cmd).await;
    if outcome.is_ok() {
        net.check_minority_ack(id, minority_at_submit, &what);
    }
    match (msg, outcome) {
        (ToCoord::Results { node, batch }, Ok(_)) => {
            let last = batch.results.last().map_or(0, |r| r.seq);
            let up_to_seq = h
                .with_state(|s| {
                    s.results()
                        .get(&node_name(node))
                        .map_or(0, |r| r.up_to_seq(batch.incarnation))
                })
                // Never past what this batch carried (as the real session does).
                .min(last);
            reply(ToClient::ResultsAck {
                incarnation: batch.incarnation,
                up_to_seq,
            });
        }
        (ToCoord::Write { write_id, .. }, Ok(index)) => {
            reply(ToClient::WriteOk { write_id, index })
        }
        (ToCoord::Write { write_id, .. }, Err(ProposeError::Rejected { reason, .. })) => {
            reply(ToClient::WriteRejected { write_id, reason })
        }
        (_, Err(ProposeError::NotLeader { leader_hint })) => reply(ToClient::Redirect {
            leader: leader_hint,
        }),
        // Timeout, dropped, stopped: the outcome is unknown; the client retries.
        (_, Err(_)) => {}
    }
}
