//! Which membership changes a leader accepts. raft-rs applies whatever it is given, including
//! changes that leave a group unable to commit (the finding: two unauthenticated removals left
//! a 3-replica cluster with one voter); these checks refuse them with a reason first.

use std::collections::BTreeSet;

use raft::prelude::ConfChangeType;

use crate::raft::error::ProposeError;

/// The group as the leader sees it when a change is asked for.
pub(super) struct Group<'a> {
    pub leader: u64,
    pub voters: &'a [u64],
    pub learners: &'a [u64],
    /// Voters the leader heard from within the last election timeout (itself included).
    pub active: &'a BTreeSet<u64>,
    /// Another change is proposed but not applied yet.
    pub pending: bool,
}

/// Smallest voter count that survives losing one voter.
const SAFE_VOTERS: usize = 3;

/// Refuses a change that is unknown, redundant, or would leave the group unable to commit.
/// `force` allows shrinking below [`SAFE_VOTERS`] (an operator retiring replicas on purpose);
/// nothing allows removing the last voter, the leader itself, or a change whose remaining
/// voters cannot form a majority among those currently reachable.
pub(super) fn check(
    g: &Group<'_>,
    change: ConfChangeType,
    node: u64,
    force: bool,
) -> Result<(), ProposeError> {
    let refuse = |reason: String| Err(ProposeError::MembershipRefused(reason));
    // raft-rs silently turns a second concurrent conf change into an empty entry; refuse it
    // up front with a clear error instead.
    if g.pending {
        return Err(ProposeError::ConfChangeInProgress);
    }
    if node == 0 {
        return refuse("replica id 0 is reserved; ids are ordinal + 1".into());
    }
    match change {
        ConfChangeType::AddNode if g.voters.contains(&node) => {
            refuse(format!("replica {node} is already a voter"))
        }
        ConfChangeType::AddNode | ConfChangeType::AddLearnerNode => Ok(()),
        ConfChangeType::RemoveNode => {
            // A leader that removes itself keeps leading a group it is not in; hand
            // leadership over first.
            if node == g.leader {
                return Err(ProposeError::CannotRemoveLeader);
            }
            if g.learners.contains(&node) {
                return Ok(());
            }
            if !g.voters.contains(&node) {
                return refuse(format!(
                    "replica {node} is not a member; voters are {:?}, learners {:?}",
                    g.voters, g.learners
                ));
            }
            let remaining: Vec<u64> = g.voters.iter().copied().filter(|&v| v != node).collect();
            if remaining.is_empty() {
                return refuse("it would remove the last voter".into());
            }
            if g.voters.len() < SAFE_VOTERS && !force {
                return refuse(format!(
                    "the group has {} voters; removing one leaves {}, which cannot survive a \
                     failure; add a replica first, or pass force to shrink on purpose",
                    g.voters.len(),
                    remaining.len()
                ));
            }
            let reachable = remaining.iter().filter(|v| g.active.contains(v)).count();
            let majority = remaining.len() / 2 + 1;
            if reachable < majority {
                return Err(ProposeError::VotersUnreachable(format!(
                    "only {reachable} of the {} remaining voters {remaining:?} are reachable, \
                     fewer than the {majority} needed to commit afterwards",
                    remaining.len()
                )));
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group<'a>(voters: &'a [u64], active: &'a BTreeSet<u64>) -> Group<'a> {
        Group {
            leader: 1,
            voters,
            learners: &[],
            active,
            pending: false,
        }
    }

    fn reason(r: Result<(), ProposeError>) -> String {
        match r {
            Err(
                ProposeError::MembershipRefused(reason) | ProposeError::VotersUnreachable(reason),
            ) => reason,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn a_healthy_three_voter_group_may_lose_one_follower() {
        let active = BTreeSet::from([1, 2, 3]);
        let g = group(&[1, 2, 3], &active);
        assert_eq!(check(&g, ConfChangeType::RemoveNode, 2, false), Ok(()));
        assert_eq!(check(&g, ConfChangeType::AddNode, 4, false), Ok(()));
    }

    #[test]
    fn unknown_ids_redundant_adds_and_the_leader_are_refused() {
        let active = BTreeSet::from([1, 2, 3]);
        let g = group(&[1, 2, 3], &active);
        assert!(reason(check(&g, ConfChangeType::RemoveNode, 9, false)).contains("not a member"));
        assert!(reason(check(&g, ConfChangeType::AddNode, 2, false)).contains("already a voter"));
        assert!(reason(check(&g, ConfChangeType::AddNode, 0, false)).contains("reserved"));
        assert_eq!(
            check(&g, ConfChangeType::RemoveNode, 1, true),
            Err(ProposeError::CannotRemoveLeader)
        );
        let pending = Group { pending: true, ..g };
        assert_eq!(
            check(&pending, ConfChangeType::RemoveNode, 2, false),
            Err(ProposeError::ConfChangeInProgress)
        );
    }

    #[test]
    fn shrinking_below_three_voters_needs_force() {
        let active = BTreeSet::from([1, 2]);
        let g = group(&[1, 2], &active);
        assert!(reason(check(&g, ConfChangeType::RemoveNode, 2, false)).contains("force"));
        assert_eq!(check(&g, ConfChangeType::RemoveNode, 2, true), Ok(()));
    }

    #[test]
    fn a_removal_that_leaves_no_reachable_majority_is_refused_even_forced() {
        // 5 voters, 3 and 4 are down: removing 2 leaves {1,3,4,5} with 2 reachable of 3 needed.
        let active = BTreeSet::from([1, 2, 5]);
        let g = group(&[1, 2, 3, 4, 5], &active);
        let r = reason(check(&g, ConfChangeType::RemoveNode, 2, true));
        assert!(r.contains("reachable"), "{r}");
        // Removing a down replica instead keeps a reachable majority ({1,2,4,5}: 1,2,5).
        assert_eq!(check(&g, ConfChangeType::RemoveNode, 3, false), Ok(()));
    }
}
