//! The result sink: node sessions hand it result batches (a bounded queue), it proposes each
//! through Raft and answers the session with [`Event::ResultsCommitted`] (with the ledger's mark
//! for that incarnation) or [`Event::ResultsFailed`]. Sessions keep reading their node while a
//! batch commits; the node's ack is sent only once it did.

use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use super::session_core::{Event, Proposal};
use crate::raft::ReplicaHandle;
use crate::state::Command;

/// Batches waiting for the sink, all sessions together. A full queue fails the batch (the node
/// resends it on its next session) instead of stalling every session behind Raft.
pub const QUEUE: usize = 1024;
/// Proposals in flight at once (one per session at most).
const IN_FLIGHT: usize = 256;

/// One batch to commit, and where to say how it went.
#[derive(Debug)]
pub struct Job {
    pub node: String,
    pub proposal: Proposal,
    pub reply: mpsc::Sender<Event>,
}

/// The sessions' side of the sink.
#[derive(Debug, Clone)]
pub struct ResultSink {
    tx: mpsc::Sender<Job>,
}

/// The sink's side: its queue, drained by [`run`].
#[derive(Debug)]
pub struct ResultQueue(mpsc::Receiver<Job>);

pub fn channel() -> (ResultSink, ResultQueue) {
    let (tx, rx) = mpsc::channel(QUEUE);
    (ResultSink { tx }, ResultQueue(rx))
}

impl ResultSink {
    /// Queues `job`; if the sink is full or gone, the session is told the batch failed.
    pub fn submit(&self, job: Job) {
        if let Err(e) = self.tx.try_send(job) {
            let (why, job) = match e {
                mpsc::error::TrySendError::Full(j) => ("the result sink is full", j),
                mpsc::error::TrySendError::Closed(j) => ("the result sink stopped", j),
            };
            let _ = job.reply.try_send(Event::ResultsFailed {
                reason: why.to_owned(),
            });
        }
    }
}

/// Proposes queued batches until `cancel` (or every sender is gone).
pub async fn run(queue: ResultQueue, raft: ReplicaHandle, cancel: CancellationToken) {
    let ResultQueue(mut rx) = queue;
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    loop {
        let job = tokio::select! {
            _ = cancel.cancelled() => return,
            job = rx.recv() => match job { Some(j) => j, None => return },
        };
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let raft = raft.clone();
        tokio::spawn(async move {
            let outcome = commit(&raft, &job).await;
            // The session may have ended meanwhile: then the node resends on its next one and
            // the ledger drops what is already recorded.
            let _ = job.reply.send(outcome).await;
            drop(slot);
        });
    }
}

/// Proposes one batch; on commit, reads the ledger's mark for its incarnation.
async fn commit(raft: &ReplicaHandle, job: &Job) -> Event {
    // `results-before-commit=return(REASON)`: the batch fails without reaching Raft.
    #[cfg(feature = "failpoints")]
    if let Some(reason) = injected("results-before-commit") {
        return Event::ResultsFailed { reason };
    }
    let incarnation = job.proposal.incarnation;
    let cmd = Command::RecordResults {
        node_id: job.node.clone(),
        incarnation,
        records: job.proposal.records.clone(),
    };
    if let Err(e) = raft.propose(cmd).await {
        tracing::warn!(node = %job.node, error = %e, "results not committed; the node keeps them spooled");
        return Event::ResultsFailed {
            reason: e.to_string(),
        };
    }
    // `results-after-commit=return(REASON)`: committed, but the session hears it failed (as
    // when the leader is deposed between commit and ack); the node resends, the ledger dedups.
    #[cfg(feature = "failpoints")]
    if let Some(reason) = injected("results-after-commit") {
        return Event::ResultsFailed { reason };
    }
    let recorded_up_to = raft.with_state(|s| {
        s.results()
            .get(&job.node)
            .map_or(0, |r| r.up_to_seq(incarnation))
    });
    Event::ResultsCommitted {
        incarnation,
        recorded_up_to,
    }
}

#[cfg(feature = "failpoints")]
fn injected(name: &str) -> Option<String> {
    fail::eval(name, |arg| {
        arg.unwrap_or_else(|| format!("failpoint {name}"))
    })
}
