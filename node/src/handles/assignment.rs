//! The newest assignment: the link installs it, the serving thread takes it into use, the
//! fetcher and the offload client read it.

use std::sync::{Arc, Mutex};

use wire::msg::Assignment;

use super::lock;

#[derive(Debug, Default)]
struct Held {
    assignment: Option<Assignment>,
    /// Installed since the serving thread last took it.
    fresh: bool,
}

/// Cheap to clone; every holder sees the same assignment.
#[derive(Debug, Clone, Default)]
pub struct AssignmentCell(Arc<Mutex<Held>>);

impl AssignmentCell {
    /// Installs an assignment unless it is not newer than the one held (epochs never go back).
    pub fn offer(&self, assignment: Assignment) -> bool {
        let mut held = lock(&self.0);
        if !newer(held.assignment.as_ref(), assignment.epoch) {
            return false;
        }
        held.assignment = Some(assignment);
        held.fresh = true;
        true
    }

    /// Whether an assignment of `epoch` would be installed.
    pub fn would_take(&self, epoch: u64) -> bool {
        newer(lock(&self.0).assignment.as_ref(), epoch)
    }

    /// The assignment if it changed since the last call.
    pub fn take_fresh(&self) -> Option<Assignment> {
        let mut held = lock(&self.0);
        if !held.fresh {
            return None;
        }
        held.fresh = false;
        held.assignment.clone()
    }

    /// Reads the current assignment without copying it.
    pub fn read<R>(&self, f: impl FnOnce(Option<&Assignment>) -> R) -> R {
        f(lock(&self.0).assignment.as_ref())
    }
}

fn newer(held: Option<&Assignment>, epoch: u64) -> bool {
    held.is_none_or(|a| epoch > a.epoch)
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
        let s = AssignmentCell::default();
        assert!(s.would_take(1));
        assert!(s.offer(assignment(2)));
        assert!(!s.would_take(2));
        assert!(!s.offer(assignment(1)));
        assert!(!s.offer(assignment(2)));
        assert_eq!(s.take_fresh().map(|a| a.epoch), Some(2));
        assert!(s.take_fresh().is_none());
        assert_eq!(s.read(|a| a.map(|a| a.epoch)), Some(2));
        assert!(s.offer(assignment(3)));
    }
}
