//! Watches every running replica every few simulated milliseconds and checks what must hold at
//! every moment, not only at the end:
//! - within one run of a replica, term, commit index and applied plan epoch never go back;
//! - at most one leader per term (election safety);
//! - while a partition lasts, a replica on a side without a majority never sees a commit index
//!   above the highest log index any replica held when the partition was made;
//! - every replica's applied plan is the one committed at its epoch ([`PlanBook`]).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mcdnn_coordinator::raft::Role;
use tokio::task::JoinHandle;

use crate::net::SimNet;
use crate::plans::PlanBook;
use crate::trace::Trace;

/// How often replicas are looked at.
const EVERY: Duration = Duration::from_millis(10);

#[derive(Debug, Clone, Copy, Default)]
struct Seen {
    term: u64,
    commit: u64,
    epoch: u64,
    leading: bool,
}

#[derive(Default)]
struct Inner {
    /// Per replica, what this run of it showed last (forgotten when it restarts).
    seen: BTreeMap<u64, Seen>,
    /// Leader of each term.
    leaders: BTreeMap<u64, u64>,
}

/// Cheap to clone.
#[derive(Clone, Default)]
pub struct Monitor {
    inner: Arc<Mutex<Inner>>,
}

impl Monitor {
    /// A replica (re)started: its in-memory view begins again from its disk.
    pub fn forget(&self, id: u64) {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .seen
            .remove(&id);
    }

    /// Terms with a known leader.
    pub fn terms_led(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .leaders
            .len()
    }

    pub fn spawn(
        &self,
        net: SimNet,
        trace: Trace,
        book: PlanBook,
        voters: usize,
    ) -> JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                me.look(&net, &trace, &book, voters);
                tokio::time::sleep(EVERY).await;
            }
        })
    }

    fn look(&self, net: &SimNet, trace: &Trace, book: &PlanBook, voters: usize) {
        let partition = net.partition();
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        for (id, h) in net.replicas() {
            let view = *h.raft_view().borrow();
            let plan = h.with_state(|s| s.plan().map(|p| (p.epoch, p.bytes())));
            if let Some((epoch, bytes)) = &plan {
                book.saw(*epoch, bytes, &format!("replica {id}"), trace);
            }
            let now = Seen {
                term: view.term,
                commit: view.commit,
                epoch: plan.map_or(0, |(e, _)| e),
                leading: view.role == Role::Leader,
            };
            let before = inner.seen.insert(id, now).unwrap_or_default();
            for (what, was, is) in [
                ("term", before.term, now.term),
                ("commit index", before.commit, now.commit),
                ("applied plan epoch", before.epoch, now.epoch),
            ] {
                if is < was {
                    trace.violation(format!("replica {id}: {what} went back from {was} to {is}"));
                }
            }
            if now.leading && !before.leading {
                trace.event(format!("r{id} leads term {}", now.term));
            }
            if now.leading {
                match inner.leaders.insert(now.term, id) {
                    Some(other) if other != id => trace.violation(format!(
                        "two leaders in term {}: replicas {other} and {id}",
                        now.term
                    )),
                    _ => {}
                }
            }
            if let Some(p) = &partition
                && p.in_minority(id, voters)
                && let Some(bound) = p.commit_bound
                && now.commit > bound
            {
                trace.violation(format!(
                    "replica {id}, in the minority of partition {}, reached commit index {} above {bound}, the highest log index when the partition began",
                    p.id, now.commit
                ));
            }
        }
    }
}
