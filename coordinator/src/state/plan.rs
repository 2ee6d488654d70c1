//! The committed plan: per node its assignment, changed by full plans (`CommitPlan`) and by
//! deltas that carry only the assignments that changed (`CommitPlanDelta`). Applying a delta to
//! the plan it was computed against gives exactly the state the equivalent full plan gives, so
//! the Raft log carries what changed instead of the whole fleet's plan every solve.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use wire::msg::Assignment;

use super::outcome::ApplyOutcome;

/// Largest encoded full plan `CommitPlan` is read as (the solve loop's encode limit).
pub const MAX_PLAN_BYTES: usize = 64 << 20;

/// The current committed plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommittedPlan {
    /// Plan epoch.
    pub epoch: u64,
    /// Raft index of the command that made this epoch.
    pub index: u64,
    /// Node id -> its assignment. `Assignment::epoch` is the epoch at which that node's
    /// assignment last changed (at most `epoch`): a node is pushed only when it changes.
    pub assignments: BTreeMap<String, Assignment>,
    /// A `CommitPlan` whose bytes are not a plan this build reads (written under another
    /// protocol version, or the simulation's tokens) is kept as it came, with no assignments;
    /// empty otherwise.
    pub opaque: Vec<u8>,
}

impl CommittedPlan {
    /// The plan as bytes: the opaque bytes if any, else the wire encoding of the assignments.
    /// Equal plans give equal bytes (what the simulation compares across replicas).
    pub fn bytes(&self) -> Vec<u8> {
        if !self.opaque.is_empty() {
            return self.opaque.clone();
        }
        let all: Vec<&Assignment> = self.assignments.values().collect();
        wire::codec::encode_with_limit(&all, usize::MAX).unwrap_or_default()
    }

    /// The plan a full `CommitPlan { epoch, plan }` commits at `index`: its assignments if the
    /// bytes decode as a plan, else the bytes kept opaque. A plan that decodes but contradicts
    /// itself (a node twice, an assignment newer than the plan) is refused.
    pub(super) fn full(epoch: u64, plan: &[u8], index: u64) -> Result<Self, String> {
        let Ok(list) = wire::codec::decode_with_limit::<Vec<Assignment>>(plan, MAX_PLAN_BYTES)
        else {
            return Ok(CommittedPlan {
                epoch,
                index,
                assignments: BTreeMap::new(),
                opaque: plan.to_vec(),
            });
        };
        let mut assignments = BTreeMap::new();
        for a in list {
            if a.epoch > epoch {
                return Err(format!(
                    "plan epoch {epoch} holds an assignment of epoch {} for {}",
                    a.epoch, a.node_id
                ));
            }
            let id = a.node_id.clone();
            if assignments.insert(id.clone(), a).is_some() {
                return Err(format!("plan epoch {epoch} assigns node {id} twice"));
            }
        }
        Ok(CommittedPlan {
            epoch,
            index,
            assignments,
            opaque: Vec::new(),
        })
    }
}

/// What a `CommitPlanDelta` carries.
pub struct Delta<'a> {
    pub epoch: u64,
    pub base_epoch: u64,
    pub changed: &'a [Assignment],
    pub removed: &'a [String],
}

/// Applies a delta to `plan` (None: no plan yet, epoch 0), or refuses it and changes nothing.
/// Refused: an epoch not above the committed one, a base that is not the committed epoch (the
/// delta was computed against another plan), a changed assignment not stamped with the delta's
/// epoch, a node changed twice or both changed and removed, removing a node the plan lacks.
pub(super) fn apply_delta(
    plan: &mut Option<CommittedPlan>,
    d: &Delta<'_>,
    index: u64,
) -> ApplyOutcome {
    let current = plan.as_ref().map_or(0, |p| p.epoch);
    if d.epoch <= current {
        return ApplyOutcome::Rejected(format!(
            "plan epoch {} is not newer than the committed epoch {current}",
            d.epoch
        ));
    }
    if d.base_epoch != current {
        return ApplyOutcome::Rejected(format!(
            "plan delta to epoch {} was computed against epoch {}, but epoch {current} is committed",
            d.epoch, d.base_epoch
        ));
    }
    let empty = BTreeMap::new();
    let held = plan.as_ref().map_or(&empty, |p| &p.assignments);
    let mut seen = BTreeSet::new();
    for a in d.changed {
        if a.epoch != d.epoch {
            return ApplyOutcome::Rejected(format!(
                "plan delta to epoch {} carries an assignment of epoch {} for {}",
                d.epoch, a.epoch, a.node_id
            ));
        }
        if !seen.insert(a.node_id.as_str()) {
            return ApplyOutcome::Rejected(format!(
                "plan delta to epoch {} changes node {} twice",
                d.epoch, a.node_id
            ));
        }
    }
    for id in d.removed {
        if !held.contains_key(id) || !seen.insert(id.as_str()) {
            return ApplyOutcome::Rejected(format!(
                "plan delta to epoch {} removes node {id}, which the plan does not hold or the delta also changes",
                d.epoch
            ));
        }
    }
    let mut next = plan.take().unwrap_or(CommittedPlan {
        epoch: 0,
        index: 0,
        assignments: BTreeMap::new(),
        opaque: Vec::new(),
    });
    next.epoch = d.epoch;
    next.index = index;
    next.opaque.clear();
    for id in d.removed {
        next.assignments.remove(id);
    }
    for a in d.changed {
        next.assignments.insert(a.node_id.clone(), a.clone());
    }
    *plan = Some(next);
    ApplyOutcome::Applied
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::fleet::fixtures::assignment;
    use crate::state::{Command, FleetState};

    fn delta(epoch: u64, base_epoch: u64, changed: &[(&str, u64)], removed: &[&str]) -> Command {
        Command::CommitPlanDelta {
            epoch,
            base_epoch,
            changed: changed.iter().map(|(n, e)| assignment(n, *e)).collect(),
            removed: removed.iter().map(|n| n.to_string()).collect(),
        }
    }

    fn full(epoch: u64, nodes: &[(&str, u64)]) -> Command {
        let list: Vec<Assignment> = nodes.iter().map(|(n, e)| assignment(n, *e)).collect();
        Command::CommitPlan {
            epoch,
            plan: wire::codec::encode(&list).unwrap(),
        }
    }

    /// Every malformed or misplaced delta is refused and changes nothing but the applied index.
    #[test]
    fn bad_deltas_change_nothing() {
        let mut s = FleetState::default();
        assert_eq!(
            s.apply(1, &full(1, &[("a", 1), ("b", 1)])),
            ApplyOutcome::Applied
        );
        for (i, cmd) in [
            delta(1, 1, &[("a", 1)], &[]),           // epoch not newer
            delta(3, 2, &[("a", 3)], &[]),           // base is not the committed epoch
            delta(2, 1, &[("a", 1)], &[]),           // assignment not of the delta's epoch
            delta(2, 1, &[("a", 2), ("a", 2)], &[]), // node changed twice
            delta(2, 1, &[("a", 2)], &["a"]),        // changed and removed
            delta(2, 1, &[], &["zz"]),               // removing a node the plan lacks
            full(2, &[("a", 2), ("a", 2)]),          // full plan naming a node twice
            full(2, &[("a", 3)]),                    // assignment newer than its plan
        ]
        .iter()
        .enumerate()
        {
            let before = s.clone();
            let index = 2 + i as u64;
            assert!(
                matches!(s.apply(index, cmd), ApplyOutcome::Rejected(_)),
                "{cmd:?}"
            );
            let mut expected = before;
            expected.note_applied(index);
            assert_eq!(s, expected);
        }
        assert_eq!(
            s.apply(20, &delta(2, 1, &[("c", 2)], &["a"])),
            ApplyOutcome::Applied
        );
        let p = s.plan().unwrap();
        assert_eq!((p.epoch, p.index), (2, 20));
        let held: Vec<(&str, u64)> = p
            .assignments
            .values()
            .map(|a| (a.node_id.as_str(), a.epoch))
            .collect();
        assert_eq!(held, [("b", 1), ("c", 2)]);
    }

    /// Plans that are not a wire plan (older protocol, the simulation's tokens) still commit
    /// their epoch, kept as they came; a delta on top replaces them.
    #[test]
    fn opaque_plans_are_kept_as_bytes() {
        let mut s = FleetState::default();
        let token = Command::CommitPlan {
            epoch: 4,
            plan: b"r1-t2-e4".to_vec(),
        };
        assert_eq!(s.apply(1, &token), ApplyOutcome::Applied);
        assert_eq!(s.plan().unwrap().bytes(), b"r1-t2-e4");
        assert!(s.plan().unwrap().assignments.is_empty());
        assert_eq!(
            s.apply(2, &delta(5, 4, &[("a", 5)], &[])),
            ApplyOutcome::Applied
        );
        assert!(s.plan().unwrap().opaque.is_empty());
        assert_eq!(s.plan().unwrap().assignments.len(), 1);
    }
}
