//! Leader-only plan commits, as the solve loop does them: every second or so the leader proposes
//! `CommitPlan { epoch: applied epoch + 1 }` and, once it is committed and applied, pushes the
//! epoch to every node session it holds. The plan bytes name the replica and term that made it, so
//! [`PlanBook`] can tell two different plans committed under one epoch.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mcdnn_coordinator::raft::{ProposeError, ReplicaHandle, Role};
use mcdnn_coordinator::state::Command;
use tokio::task::JoinHandle;

use crate::exchange::session::Sessions;
use crate::net::SimNet;
use crate::rng::SimRng;
use crate::trace::Trace;

/// Every (epoch -> plan) seen committed anywhere (acknowledged to a planner, or applied by a
/// replica); one epoch must always mean one plan.
#[derive(Clone, Default)]
pub struct PlanBook {
    inner: Arc<Mutex<BTreeMap<u64, Vec<u8>>>>,
}

impl PlanBook {
    /// Records that `plan` was seen at `epoch` (by `who`); a different plan under a known epoch
    /// is a violation.
    pub fn saw(&self, epoch: u64, plan: &[u8], who: &str, trace: &Trace) {
        let mut book = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        match book.get(&epoch) {
            Some(known) if known != plan => trace.violation(format!(
                "{who} holds plan {:?} at epoch {epoch}, but {:?} was committed at that epoch",
                String::from_utf8_lossy(plan),
                String::from_utf8_lossy(known)
            )),
            Some(_) => {}
            None => {
                book.insert(epoch, plan.to_vec());
            }
        }
    }

    /// Epochs seen committed.
    pub fn len(&self) -> usize {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The planner of one running replica: commits and pushes plans while `planning` and leading.
pub struct Planner {
    pub net: SimNet,
    pub trace: Trace,
    pub rng: SimRng,
    /// The replica's live node sessions, where committed epochs are pushed.
    pub sessions: Sessions,
    pub book: PlanBook,
    pub planning: Arc<AtomicBool>,
}

impl Planner {
    pub fn spawn(self, h: ReplicaHandle) -> JoinHandle<()> {
        tokio::spawn(async move {
            let mut previous = None;
            loop {
                tokio::time::sleep(Duration::from_millis(self.rng.between(700, 1500))).await;
                let leading = h.raft_view().borrow().role == Role::Leader;
                if self.planning.load(Ordering::Relaxed) && leading {
                    previous = Some(self.plan_once(&h, previous).await);
                }
            }
        })
    }

    /// One round; returns the epoch it read, which the next round may reuse.
    async fn plan_once(&self, h: &ReplicaHandle, previous: Option<u64>) -> u64 {
        let id = h.id();
        // As the solve loop: read the epoch, solve (which takes a while: leadership can move
        // away and back meanwhile, so the epoch may be stale by the time it is proposed). One
        // round in five reuses the previous round's read, as a solve that outlived a round
        // would, so the state machine's refusal of stale epochs is exercised every seed.
        let fresh = h.with_state(|s| s.plan_epoch()) + 1;
        let epoch = match previous {
            Some(old) if self.rng.chance(0.2) => old,
            _ => fresh,
        };
        tokio::time::sleep(Duration::from_millis(self.rng.between(0, 1500))).await;
        let view = *h.raft_view().borrow();
        if view.role != Role::Leader {
            return fresh;
        }
        let plan = format!("r{id}-t{}-e{epoch}", view.term).into_bytes();
        let cmd = Command::CommitPlan {
            epoch,
            plan: plan.clone(),
        };
        let minority_at_submit = self.net.minority_partition(id, crate::REPLICAS.len());
        match h.propose(cmd).await {
            Ok(_) => {
                let what = format!("plan epoch {epoch}");
                self.net.check_minority_ack(id, minority_at_submit, &what);
                self.trace
                    .event(format!("r{id} committed plan epoch {epoch}"));
                self.book
                    .saw(epoch, &plan, &format!("planner r{id}"), &self.trace);
                self.sessions.push_plan(epoch);
            }
            Err(ProposeError::Rejected { .. }) => {
                self.trace
                    .event(format!("r{id} plan epoch {epoch} rejected as stale"));
            }
            Err(_) => {}
        }
        fresh
    }
}
