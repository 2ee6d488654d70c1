//! State shared between the serving thread (inference) and the link task (QUIC to the
//! coordinator): the latest assignment one way, a telemetry snapshot the other.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard};

use wire::msg::{AppTelemetry, Assignment, Battery};

/// What the serving thread last published for telemetry.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub battery: Option<Battery>,
    pub apps: Vec<AppTelemetry>,
    pub loaded_variants: Vec<String>,
    pub model_memory_budget_bytes: u64,
    /// Smoothed measured load cost per variant loaded so far.
    pub load_profiles: Vec<wire::msg::LoadProfile>,
    /// Spool intake as of the same frame as `apps`, so `requests == dropped + accepted` holds
    /// within one snapshot.
    pub spool: wire::msg::SpoolCounters,
}

#[derive(Debug, Default)]
pub struct Inner {
    /// Newest assignment and whether the serving thread has taken it into use.
    pub assignment: Option<Assignment>,
    pub assignment_fresh: bool,
    pub snapshot: Snapshot,
    pub coordinator_connected: bool,
    /// Where accepted results go until the coordinator acknowledges them.
    pub spool: Option<crate::spool::Spool>,
    /// Variants whose verified bytes are on this node; `None` when models come from a local
    /// folder (every variant is present). The policy may only choose present variants.
    pub available: Option<BTreeSet<String>>,
    /// Variants that failed verification or loading: the fetcher must get them again.
    pub broken: BTreeSet<String>,
    /// Offload requests queued on this node and served since start (server role).
    pub offload_queue: u32,
    pub served_offload: u64,
    /// The link's live QUIC connection to the coordinator (blob streams ride on it).
    pub connection: Option<quinn::Connection>,
}

/// Cheap to clone; every holder sees the same state.
#[derive(Debug, Clone, Default)]
pub struct Shared(Arc<Mutex<Inner>>);

impl Shared {
    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain data behind: keep serving with it.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Installs an assignment unless it is older than the one held (epochs never go back).
    pub fn offer_assignment(&self, assignment: Assignment) -> bool {
        let mut inner = self.lock();
        if inner
            .assignment
            .as_ref()
            .is_some_and(|a| a.epoch >= assignment.epoch)
        {
            return false;
        }
        inner.assignment = Some(assignment);
        inner.assignment_fresh = true;
        true
    }

    /// The assignment if it changed since the last call.
    pub fn take_fresh_assignment(&self) -> Option<Assignment> {
        let mut inner = self.lock();
        if !inner.assignment_fresh {
            return None;
        }
        inner.assignment_fresh = false;
        inner.assignment.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assignment(epoch: u64) -> Assignment {
        Assignment {
            epoch,
            node_id: "n".into(),
            issued_unix_ms: 0,
            apps: vec![],
            energy_price: 0.0,
            cost_price: 0.0,
            plan_gap: 0.0,
        }
    }

    #[test]
    fn epochs_never_go_back() {
        let s = Shared::default();
        assert!(s.offer_assignment(assignment(2)));
        assert!(!s.offer_assignment(assignment(1)));
        assert!(!s.offer_assignment(assignment(2)));
        assert_eq!(s.take_fresh_assignment().map(|a| a.epoch), Some(2));
        assert!(s.take_fresh_assignment().is_none());
        assert!(s.offer_assignment(assignment(3)));
    }
}
