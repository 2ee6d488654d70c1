//! Keeps the fleet state small enough that its snapshot always decodes.
//!
//! The finding this closes: writes kept growing the state until its snapshot was larger than
//! the decoder accepts, and then no replica could restart. Every command is admitted only if
//! the state's [`codec::claimed_len`] plus what the command can add stays within
//! [`codec::STATE_BUDGET`]. The decision depends only on the state and the command, so every
//! replica takes the same one (a refused command is `Rejected` everywhere).
//!
//! Measuring the whole state on every command would cost O(state) per entry, so a cached upper
//! bound is kept: it grows by each admitted command's bound, and only when it would cross the
//! budget is the state measured exactly. The outcome is the same as always measuring, because
//! the cache never under-estimates.

use serde::Serialize;

use super::codec::{self, STATE_BUDGET};
use super::command::Command;

/// Bytes a command can add beyond twice its own size: the Raft index and other fixed fields a
/// record stores next to the command's data, a new map entry's length prefix, counters of a
/// node seen for the first time.
const GROWTH_SLACK: usize = 4096;

/// Upper bound on how much applying `cmd` can grow the state's claimed length. Twice the
/// command's own size because a policy write is stored twice (the key's current value and the
/// log entry); every other command stores its data at most once.
pub(crate) fn growth_bound(cmd: &Command) -> usize {
    codec::claimed_len(cmd)
        .saturating_mul(2)
        .saturating_add(GROWTH_SLACK)
}

/// A cached upper bound on the state's claimed length. Local to each replica and rebuilt by
/// measuring when unknown, so it is not part of the state's identity: two states are equal
/// whatever their caches hold, and it is not serialised.
#[derive(Debug, Clone, Default)]
pub(crate) struct SizeBound(Option<usize>);

impl PartialEq for SizeBound {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl SizeBound {
    /// Admits a command that can grow `state` by `growth` bytes, or says why not. On
    /// admission the bound grows by `growth`; the caller then applies the command.
    pub(crate) fn admit<S: Serialize>(&mut self, state: &S, growth: usize) -> Result<(), String> {
        if let Some(bound) = self.0
            && bound.saturating_add(growth) <= STATE_BUDGET
        {
            self.0 = Some(bound + growth);
            return Ok(());
        }
        let exact = codec::claimed_len(state);
        if exact.saturating_add(growth) <= STATE_BUDGET {
            self.0 = Some(exact + growth);
            Ok(())
        } else {
            self.0 = Some(exact);
            Err(format!(
                "the fleet state holds {exact} bytes and this write could add {growth}, over the \
                 {STATE_BUDGET}-byte budget that keeps snapshots readable; refused"
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::PolicyValue;

    #[test]
    fn growth_covers_a_policy_write_stored_twice() {
        let cmd = Command::SetPolicy {
            key: "fleet.cost_budget_usd".into(),
            value: PolicyValue::Text("x".repeat(1000)),
            writer: "ops".into(),
            write_id: 1,
        };
        assert!(growth_bound(&cmd) >= 2 * 1000 + GROWTH_SLACK);
    }

    #[test]
    fn a_cached_bound_is_used_until_it_nears_the_budget() {
        let small = vec![0u8; 10];
        let mut b = SizeBound::default();
        assert!(b.admit(&small, 100).is_ok());
        assert_eq!(b.0, Some(codec::claimed_len(&small) + 100));
        // A stale, high cache is corrected by measuring instead of refusing.
        b.0 = Some(STATE_BUDGET);
        assert!(b.admit(&small, 100).is_ok());
        assert_eq!(b.0, Some(codec::claimed_len(&small) + 100));
        // Growth that cannot fit is refused whatever the state.
        let e = b.admit(&small, STATE_BUDGET).unwrap_err();
        assert!(e.contains("budget"), "{e}");
        assert_eq!(b.0, Some(codec::claimed_len(&small)));
    }
}
