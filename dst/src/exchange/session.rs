//! The coordinator's node session over a simulated connection: the shell `fleet::sessions` is
//! for QUIC, done here for [`ConnEnd`], around the real [`NodeSession`] core and the real result
//! sink (`fleet::result_sink`, which proposes `Command::RecordResults` and reads the ledger's
//! mark). Step for step as the real shell: one connection per node (a newer one closes the
//! older), a hello within 5 s checked by `check_hello`, a follower redirects (or says no leader
//! yet) and closes, the leader registers the node, welcomes it with the committed epoch and
//! drives the core until the node leaves, a frame is bad, or a batch fails to commit.
//!
//! Not carried over: rate limits (every frame is `Rate::Within`), telemetry's registry, blob
//! streams, revocations and renewals.
//!
//! It also checks that a replica in the minority of a partition never acknowledges a batch
//! submitted during that partition.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use mcdnn_coordinator::fleet::registrar::Registrar;
use mcdnn_coordinator::fleet::result_sink::{Job, ResultSink};
use mcdnn_coordinator::fleet::session_core::{self, Action, Event, NodeSession, Rate};
use mcdnn_coordinator::raft::{ReplicaHandle, Role};
use tokio::sync::mpsc;
use wire::codec;
use wire::msg::{CoordMsg, ErrorCode, NodeMsg};

use super::conn::{ConnEnd, ConnTx, Inbound};
use crate::net::SimNet;

/// How long a node may take to say hello (as the real shell).
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);
/// The catalog every simulated node and replica holds.
pub const CATALOG_DIGEST: &str = "dst-catalog";
/// The device class every simulated node announces.
pub const DEVICE_CLASS: &str = "phone";

/// A node's identity as the coordinator knows it (its certificate's name).
pub fn node_name(node: usize) -> String {
    format!("node-{node:02}")
}

/// The address of replica `id`'s node endpoint, as nodes dial it and redirects name it.
pub fn replica_addr(id: u64) -> String {
    format!("replica-{id}")
}

/// The replica an address names.
pub fn addr_replica(addr: &str) -> Option<u64> {
    addr.strip_prefix("replica-")?.parse().ok()
}

/// Encodes a message as it would cross a socket.
pub fn encode<T: serde::Serialize>(msg: &T) -> Vec<u8> {
    // Every message here is far under the frame limit; an empty frame would fail to decode.
    codec::encode(msg).unwrap_or_default()
}

/// One replica run's live node sessions: one per node (a newer connection closes the older),
/// and where plan pushes go.
#[derive(Clone, Default)]
pub struct Sessions {
    inner: Arc<Mutex<BTreeMap<usize, Slot>>>,
}

struct Slot {
    conn: u64,
    tx: ConnTx,
    welcomed: bool,
}

impl Sessions {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<usize, Slot>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Node `node`'s connection `tx` is its only one now; an older one is closed.
    fn admit(&self, node: usize, tx: ConnTx) {
        let slot = Slot {
            conn: tx.id(),
            tx,
            welcomed: false,
        };
        if let Some(old) = self.lock().insert(node, slot) {
            old.tx.close("replaced by a newer connection");
        }
    }

    fn welcomed(&self, node: usize, conn: u64) {
        if let Some(s) = self.lock().get_mut(&node).filter(|s| s.conn == conn) {
            s.welcomed = true;
        }
    }

    fn release(&self, node: usize, conn: u64) {
        let mut map = self.lock();
        if map.get(&node).is_some_and(|s| s.conn == conn) {
            map.remove(&node);
        }
    }

    /// Pushes plan `epoch` to every welcomed session, as the solve loop pushes assignments.
    pub fn push_plan(&self, epoch: u64) {
        for (node, s) in self.lock().iter().filter(|(_, s)| s.welcomed) {
            let a = wire::msg::Assignment {
                epoch,
                node_id: node_name(*node),
                issued_unix_ms: 0,
                apps: Vec::new(),
                energy_price: 0.0,
                cost_price: 0.0,
                plan_gap: 0.0,
            };
            s.tx.send(&format!("plan {epoch}"), encode(&CoordMsg::Assignment(a)));
        }
    }
}

/// What a replica's sessions share.
#[derive(Clone)]
pub struct Hub {
    pub raft: ReplicaHandle,
    pub sink: ResultSink,
    pub registrar: Registrar,
    pub sessions: Sessions,
    pub net: SimNet,
    pub voters: usize,
}

/// Serves one connection to its end.
pub async fn serve(hub: Hub, mut end: ConnEnd) {
    let node = end.node();
    let conn = end.id();
    hub.sessions.admit(node, end.tx());
    let outcome = session(&hub, &mut end).await;
    hub.sessions.release(node, conn);
    match outcome {
        Ok(()) => end.close("bye"),
        Err(reason) => end.close(&reason),
    }
}

fn redirect_message(raft: &ReplicaHandle) -> CoordMsg {
    match raft.raft_view().borrow().leader_id {
        Some(l) if l != raft.id() => CoordMsg::Redirect {
            leader_addr: replica_addr(l),
        },
        _ => CoordMsg::Error {
            code: ErrorCode::Unavailable,
            message: "not the leader and no leader known yet; retry shortly".into(),
        },
    }
}

fn describe(msg: &CoordMsg) -> String {
    match msg {
        // Incarnations are random: kept out of the digest.
        CoordMsg::ResultsAck { up_to_seq, .. } => format!("results ack {up_to_seq}"),
        CoordMsg::Welcome { epoch, .. } => format!("welcome at epoch {epoch}"),
        m => format!("{m:?}"),
    }
}

fn send(end: &ConnEnd, msg: &CoordMsg) {
    end.send(&describe(msg), encode(msg));
}

async fn session(hub: &Hub, end: &mut ConnEnd) -> Result<(), String> {
    let peer = node_name(end.node());
    let first = match tokio::time::timeout(HELLO_TIMEOUT, end.recv()).await {
        Ok(Inbound::Frame(bytes)) => codec::decode::<NodeMsg>(&bytes)
            .map_err(|e| format!("bad hello frame from {peer}: {e}"))?,
        Ok(Inbound::Closed(_)) => return Err("the node closed its stream before hello".into()),
        Ok(Inbound::Accepted) => return Err("a handshake answer on the server side".into()),
        Err(_) => return Err(format!("{peer} sent no hello within {HELLO_TIMEOUT:?}")),
    };
    let hello = match session_core::check_hello(&peer, first, CATALOG_DIGEST) {
        Ok(h) => h,
        Err(refusal) => {
            let msg = CoordMsg::Error {
                code: refusal.code,
                message: refusal.message.clone(),
            };
            send(end, &msg);
            return Err(refusal.message);
        }
    };
    if hub.raft.raft_view().borrow().role != Role::Leader {
        send(end, &redirect_message(&hub.raft));
        return Ok(());
    }
    // As the real shell: the first join (or a class change) is registered in a batch with
    // the joins around it, without holding up the session.
    hub.registrar.register(&peer, &hello.device_class);
    let epoch = hub.raft.with_state(|s| s.plan_epoch());
    send(
        end,
        &CoordMsg::Welcome {
            node_id: peer.clone(),
            leader: replica_addr(hub.raft.id()),
            epoch,
        },
    );
    hub.sessions.welcomed(end.node(), end.id());
    drive(hub, &peer, end).await
}

async fn drive(hub: &Hub, id: &str, end: &mut ConnEnd) -> Result<(), String> {
    let mut core = NodeSession::new(id);
    let (outcomes_tx, mut outcomes) = mpsc::channel::<Event>(4);
    let replica = hub.raft.id();
    // The partition the replica was in the minority of when the batch in flight was submitted.
    let mut minority_at_submit = None;
    loop {
        let event = tokio::select! {
            // Not random: the same seed must take the same branch.
            biased;
            inbound = end.recv() => match inbound {
                Inbound::Frame(bytes) => match codec::decode::<NodeMsg>(&bytes) {
                    Ok(msg) => Event::Frame(msg, Rate::Within),
                    Err(e) => Event::BadFrame(e.to_string()),
                },
                Inbound::Accepted => Event::BadFrame("a handshake answer from the node".into()),
                Inbound::Closed(_) => return Ok(()),
            },
            Some(outcome) = outcomes.recv() => outcome,
        };
        if let Event::ResultsCommitted { .. } = event {
            let what = format!("results of {id}");
            hub.net
                .check_minority_ack(replica, minority_at_submit.take(), &what);
        }
        let now = tokio::time::Instant::now().into_std();
        for action in core.handle(event, now) {
            match action {
                Action::Send(msg) => send(end, &msg),
                Action::Propose(proposal) => {
                    minority_at_submit = hub.net.minority_partition(replica, hub.voters);
                    hub.sink.submit(Job {
                        node: id.to_owned(),
                        proposal,
                        reply: outcomes_tx.clone(),
                    });
                }
                Action::End => return Ok(()),
                Action::Close(reason) => return Err(reason),
                // Soft state and counters: nothing here reads them.
                Action::Telemetry(_) | Action::PlanAcked(_) | Action::Count(_) => {}
                Action::Renew(_) => {
                    let reason = "renewals are not simulated".to_string();
                    send(end, &CoordMsg::RenewRefused { reason });
                }
            }
        }
    }
}
