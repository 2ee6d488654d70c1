//! Replicated operator policy: the latest value per key, a bounded audit log of recent writes,
//! and what makes a write's retry idempotent, all bounded in size whatever operators send.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::{Deserialize, Serialize};

use super::command::PolicyValue;
use super::outcome::ApplyOutcome;
use super::policy_schema;

/// How many of the most recent writes the audit log keeps (older ones are dropped first).
/// 10 000 writes of the largest allowed size claim about 2.5 MB of the snapshot.
pub const POLICY_LOG_CAPACITY: usize = 10_000;
/// Write ids remembered per writer (see [`WriterIds`]).
pub const WRITE_ID_WINDOW: usize = 64;
/// Distinct writers remembered. A writer beyond this is refused rather than forgotten, because
/// forgetting a writer would let a retry of its last write apply twice. Writers are operator
/// certificate names, so this is far more than a fleet ever enrols.
pub const MAX_WRITERS: usize = 1024;

/// One applied policy write, in apply order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyWrite {
    /// Raft index it was applied at.
    pub index: u64,
    /// Policy key.
    pub key: String,
    /// Value written.
    pub value: PolicyValue,
    /// Writer identity (the operator certificate's name).
    pub writer: String,
    /// Writer-chosen id.
    pub write_id: u64,
}

/// The write ids of one writer that decide whether a write is a retry, in bounded space.
///
/// `recent` holds the [`WRITE_ID_WINDOW`] largest ids applied; when it overflows, its smallest
/// id is dropped and `floor` rises to it. Every applied id above `floor` is therefore still in
/// `recent`, so for an id above `floor` "in `recent`" is exact: present means applied (a retry,
/// answered `Duplicate`), absent means new. An id at or below `floor` that is not in `recent`
/// cannot be told apart, so it is refused (never applied twice) and the writer is told to use a
/// new id. Writers that pick increasing ids (the CLI uses the clock, tests count up) only hit
/// that after 64 newer writes overtook a slow one.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WriterIds {
    recent: BTreeSet<u64>,
    floor: Option<u64>,
}

impl WriterIds {
    fn applied(&self, id: u64) -> bool {
        self.recent.contains(&id)
    }

    fn too_old(&self, id: u64) -> bool {
        self.floor.is_some_and(|f| id <= f)
    }

    fn insert(&mut self, id: u64) {
        self.recent.insert(id);
        if self.recent.len() > WRITE_ID_WINDOW
            && let Some(lowest) = self.recent.pop_first()
        {
            self.floor = Some(self.floor.map_or(lowest, |f| f.max(lowest)));
        }
    }
}

/// The policy part of the fleet state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PolicyState {
    /// Latest value per key (keys come from the schema, so this stays small).
    values: BTreeMap<String, PolicyValue>,
    /// The most recent [`POLICY_LOG_CAPACITY`] writes, oldest first.
    log: VecDeque<PolicyWrite>,
    writers: BTreeMap<String, WriterIds>,
}

impl PolicyState {
    /// Whether `(writer, write_id)` was applied already (its retry changes nothing).
    pub fn already_applied(&self, writer: &str, write_id: u64) -> bool {
        self.writers
            .get(writer)
            .is_some_and(|w| w.applied(write_id))
    }

    /// Applies one write committed at `index`: validated against the schema, deduplicated by
    /// `(writer, write_id)`, then the value and the log change.
    pub fn apply(
        &mut self,
        index: u64,
        key: &str,
        value: &PolicyValue,
        writer: &str,
        write_id: u64,
    ) -> ApplyOutcome {
        if let Err(reason) = policy_schema::validate(key, value, writer) {
            return ApplyOutcome::Rejected(reason);
        }
        if self.already_applied(writer, write_id) {
            return ApplyOutcome::Duplicate;
        }
        match self.writers.get(writer) {
            Some(ids) if ids.too_old(write_id) => {
                return ApplyOutcome::Rejected(format!(
                    "write_id {write_id} of {writer} is older than the last {WRITE_ID_WINDOW} \
                     writes remembered; it may have been applied already, so it is refused: \
                     write again with a new id"
                ));
            }
            None if self.writers.len() >= MAX_WRITERS => {
                return ApplyOutcome::Rejected(format!(
                    "{MAX_WRITERS} distinct writers are already recorded; refusing a new one"
                ));
            }
            _ => {}
        }
        self.writers
            .entry(writer.to_string())
            .or_default()
            .insert(write_id);
        match value {
            PolicyValue::Unset => self.values.remove(key),
            v => self.values.insert(key.to_string(), v.clone()),
        };
        if self.log.len() >= POLICY_LOG_CAPACITY {
            self.log.pop_front();
        }
        self.log.push_back(PolicyWrite {
            index,
            key: key.to_string(),
            value: value.clone(),
            writer: writer.to_string(),
            write_id,
        });
        ApplyOutcome::Applied
    }

    /// Current value per key.
    pub fn values(&self) -> &BTreeMap<String, PolicyValue> {
        &self.values
    }

    /// The most recent writes, oldest first.
    pub fn log(&self) -> &VecDeque<PolicyWrite> {
        &self.log
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "fleet.cost_budget_usd";

    fn write(p: &mut PolicyState, index: u64, writer: &str, id: u64) -> ApplyOutcome {
        p.apply(index, KEY, &PolicyValue::Number(id as f64), writer, id)
    }

    #[test]
    fn keeps_the_latest_value_and_a_bounded_log() {
        let mut p = PolicyState::default();
        let n = POLICY_LOG_CAPACITY as u64 + 5;
        for id in 1..=n {
            assert_eq!(write(&mut p, id, "ops", id), ApplyOutcome::Applied);
        }
        assert_eq!(p.log().len(), POLICY_LOG_CAPACITY);
        assert_eq!(p.log().front().map(|w| w.write_id), Some(6));
        assert_eq!(p.log().back().map(|w| w.write_id), Some(n));
        assert_eq!(p.values()[KEY], PolicyValue::Number(n as f64));
        assert_eq!(p.writers["ops"].recent.len(), WRITE_ID_WINDOW);
    }

    #[test]
    fn retries_are_exact_inside_the_window_and_refused_below_it() {
        let mut p = PolicyState::default();
        // Out of order inside the window: both new.
        assert_eq!(write(&mut p, 1, "ops", 10), ApplyOutcome::Applied);
        assert_eq!(write(&mut p, 2, "ops", 7), ApplyOutcome::Applied);
        assert_eq!(write(&mut p, 3, "ops", 7), ApplyOutcome::Duplicate);
        assert_eq!(write(&mut p, 4, "ops", 10), ApplyOutcome::Duplicate);
        for id in 100..100 + WRITE_ID_WINDOW as u64 {
            assert_eq!(write(&mut p, id, "ops", id), ApplyOutcome::Applied);
        }
        // 7 and 10 fell out of the window: a retry of either must not apply again.
        assert!(matches!(
            write(&mut p, 500, "ops", 10),
            ApplyOutcome::Rejected(r) if r.contains("new id")
        ));
        // An id between the floor and the window that was never written is refused too
        // (it cannot be told apart), one above the floor but absent is new.
        assert!(matches!(
            write(&mut p, 501, "ops", 8),
            ApplyOutcome::Rejected(_)
        ));
        assert_eq!(write(&mut p, 502, "ops", 99), ApplyOutcome::Applied);
        assert_eq!(write(&mut p, 503, "ops", 100), ApplyOutcome::Duplicate);
        // Another writer's ids are its own.
        assert_eq!(write(&mut p, 504, "other", 10), ApplyOutcome::Applied);
    }

    #[test]
    fn invalid_writes_and_extra_writers_change_nothing() {
        let mut p = PolicyState::default();
        let before = p.clone();
        let bad = p.apply(
            1,
            "fleet.cost_budgt_usd",
            &PolicyValue::Number(1.0),
            "ops",
            1,
        );
        assert!(matches!(bad, ApplyOutcome::Rejected(r) if r.contains("known keys")));
        let huge = p.apply(2, KEY, &PolicyValue::Number(1e300), "ops", 2);
        assert!(matches!(huge, ApplyOutcome::Rejected(_)));
        assert_eq!(p, before);
        for w in 0..MAX_WRITERS {
            assert_eq!(
                write(&mut p, 3 + w as u64, &format!("w{w}"), 1),
                ApplyOutcome::Applied
            );
        }
        let full = p.clone();
        assert!(matches!(
            write(&mut p, 9_000, "late", 1),
            ApplyOutcome::Rejected(_)
        ));
        assert_eq!(p, full);
        assert_eq!(write(&mut p, 9_001, "w0", 2), ApplyOutcome::Applied);
    }
}
