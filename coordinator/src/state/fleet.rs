//! [`FleetState`]: the deterministic state machine every replica applies committed commands to.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::codec::{self, StateError};
use super::command::{Command, PolicyValue, SpecialisedVariant};

/// A registered node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// Device class.
    pub device_class: String,
    /// Raft index at which it was (last) registered.
    pub registered_at: u64,
}

/// One applied policy write, in apply order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyWrite {
    /// Raft index it was applied at.
    pub index: u64,
    /// Policy key.
    pub key: String,
    /// Value written.
    pub value: PolicyValue,
    /// Writer identity.
    pub writer: String,
    /// Writer-chosen id.
    pub write_id: u64,
}

/// The current committed plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommittedPlan {
    /// Plan epoch.
    pub epoch: u64,
    /// Encoded plan bytes.
    pub plan: Vec<u8>,
    /// Raft index it was applied at.
    pub index: u64,
}

/// What applying a command did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplyOutcome {
    /// The state changed.
    Applied,
    /// Already applied earlier (same `(writer, write_id)`, or an index at or below the state's
    /// applied index); nothing changed. Reported as success: the write is in the state.
    Duplicate,
    /// The command was valid but the state machine refused it; nothing changed.
    Rejected(String),
}

/// Replicated fleet state. Applying the same commands at the same indexes always produces the
/// same state (ordered maps, no clocks, no randomness), which is what keeps replicas identical.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FleetState {
    applied_index: u64,
    nodes: BTreeMap<String, NodeRecord>,
    policies: BTreeMap<String, PolicyValue>,
    /// Every applied policy write, in order: the audit trail operators (and tests) check.
    /// It grows with the number of operator writes, which are rare.
    policy_log: Vec<PolicyWrite>,
    plan: Option<CommittedPlan>,
    catalog_digests: Vec<String>,
    /// app -> variant -> metadata.
    specialised: BTreeMap<String, BTreeMap<String, SpecialisedVariant>>,
    /// node -> what its result spool was recorded up to.
    results: BTreeMap<String, super::results::NodeResults>,
}

impl FleetState {
    /// Applies `cmd`, committed at Raft `index`.
    pub fn apply(&mut self, index: u64, cmd: &Command) -> ApplyOutcome {
        if index <= self.applied_index {
            return ApplyOutcome::Duplicate;
        }
        self.applied_index = index;
        match cmd {
            Command::RegisterNode {
                node_id,
                device_class,
            } => {
                self.nodes.insert(
                    node_id.clone(),
                    NodeRecord {
                        device_class: device_class.clone(),
                        registered_at: index,
                    },
                );
                ApplyOutcome::Applied
            }
            Command::RemoveNode { node_id } => match self.nodes.remove(node_id) {
                Some(_) => ApplyOutcome::Applied,
                None => ApplyOutcome::Rejected(format!("node {node_id} is not registered")),
            },
            Command::SetPolicy {
                key,
                value,
                writer,
                write_id,
            } => {
                // Linear scan: policy writes are operator actions, a handful a day.
                if self
                    .policy_log
                    .iter()
                    .any(|w| w.writer == *writer && w.write_id == *write_id)
                {
                    return ApplyOutcome::Duplicate;
                }
                match value {
                    PolicyValue::Unset => self.policies.remove(key),
                    v => self.policies.insert(key.clone(), v.clone()),
                };
                self.policy_log.push(PolicyWrite {
                    index,
                    key: key.clone(),
                    value: value.clone(),
                    writer: writer.clone(),
                    write_id: *write_id,
                });
                ApplyOutcome::Applied
            }
            Command::CommitPlan { epoch, plan } => {
                let current = self.plan_epoch();
                if *epoch <= current {
                    return ApplyOutcome::Rejected(format!(
                        "plan epoch {epoch} is not newer than the committed epoch {current}"
                    ));
                }
                self.plan = Some(CommittedPlan {
                    epoch: *epoch,
                    plan: plan.clone(),
                    index,
                });
                ApplyOutcome::Applied
            }
            Command::RecordResults { node_id, records } => {
                self.results
                    .entry(node_id.clone())
                    .or_default()
                    .record(records);
                ApplyOutcome::Applied
            }
            Command::SetCatalogIndex { digests } => {
                self.catalog_digests = digests.clone();
                ApplyOutcome::Applied
            }
            Command::AddSpecialisedVariant(v) => {
                self.specialised
                    .entry(v.app.clone())
                    .or_default()
                    .insert(v.variant.clone(), v.clone());
                ApplyOutcome::Applied
            }
            Command::RemoveSpecialisedVariant { app, variant } => {
                let removed = self
                    .specialised
                    .get_mut(app)
                    .and_then(|vs| vs.remove(variant))
                    .is_some();
                if self.specialised.get(app).is_some_and(BTreeMap::is_empty) {
                    self.specialised.remove(app);
                }
                if removed {
                    ApplyOutcome::Applied
                } else {
                    ApplyOutcome::Rejected(format!("no specialised variant {app}/{variant}"))
                }
            }
        }
    }

    /// Records that `index` was applied without a command (leader no-op, membership change),
    /// so the state's applied index matches Raft's.
    pub fn note_applied(&mut self, index: u64) {
        self.applied_index = self.applied_index.max(index);
    }

    /// The same state as if it had been applied up to `index` (restoring a backup into a new
    /// cluster, whose log starts over: entries after `index` must apply, not count as replays).
    pub fn rebased_at(mut self, index: u64) -> Self {
        self.applied_index = index;
        self
    }

    /// Raft index of the last entry applied to this state.
    pub fn applied_index(&self) -> u64 {
        self.applied_index
    }

    /// Registered nodes by id.
    pub fn nodes(&self) -> &BTreeMap<String, NodeRecord> {
        &self.nodes
    }

    /// Current policy values by key.
    pub fn policies(&self) -> &BTreeMap<String, PolicyValue> {
        &self.policies
    }

    /// Every applied policy write, in apply order.
    pub fn policy_log(&self) -> &[PolicyWrite] {
        &self.policy_log
    }

    /// The committed plan, if any.
    pub fn plan(&self) -> Option<&CommittedPlan> {
        self.plan.as_ref()
    }

    /// Epoch of the committed plan (0 if none).
    pub fn plan_epoch(&self) -> u64 {
        self.plan.as_ref().map_or(0, |p| p.epoch)
    }

    /// Catalog content digests.
    /// The result ledger, per node.
    pub fn results(&self) -> &BTreeMap<String, super::results::NodeResults> {
        &self.results
    }

    pub fn catalog_digests(&self) -> &[String] {
        &self.catalog_digests
    }

    /// Specialised variants: app -> variant -> metadata.
    pub fn specialised(&self) -> &BTreeMap<String, BTreeMap<String, SpecialisedVariant>> {
        &self.specialised
    }

    /// Serialises the state for a Raft snapshot.
    pub fn to_snapshot_bytes(&self) -> Result<Vec<u8>, StateError> {
        codec::encode(self, "fleet state snapshot")
    }

    /// Restores a state from Raft snapshot bytes.
    pub fn from_snapshot_bytes(bytes: &[u8]) -> Result<Self, StateError> {
        codec::decode(bytes, "fleet state snapshot")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn policy(key: &str, v: f64, writer: &str, id: u64) -> Command {
        Command::SetPolicy {
            key: key.into(),
            value: PolicyValue::Number(v),
            writer: writer.into(),
            write_id: id,
        }
    }

    #[test]
    fn plan_epochs_never_go_back() {
        let mut s = FleetState::default();
        let plan = |epoch| Command::CommitPlan {
            epoch,
            plan: vec![epoch as u8],
        };
        assert_eq!(s.apply(1, &plan(3)), ApplyOutcome::Applied);
        assert!(matches!(s.apply(2, &plan(3)), ApplyOutcome::Rejected(_)));
        assert!(matches!(s.apply(3, &plan(2)), ApplyOutcome::Rejected(_)));
        assert_eq!(s.plan_epoch(), 3);
        assert_eq!(s.apply(4, &plan(4)), ApplyOutcome::Applied);
        assert_eq!(s.plan().unwrap().index, 4);
        assert_eq!(s.applied_index(), 4);
    }

    #[test]
    fn policy_writes_are_logged_in_order_and_deduplicated() {
        let mut s = FleetState::default();
        assert_eq!(
            s.apply(1, &policy("a", 1.0, "op", 1)),
            ApplyOutcome::Applied
        );
        assert_eq!(
            s.apply(2, &policy("b", 2.0, "op", 2)),
            ApplyOutcome::Applied
        );
        assert_eq!(
            s.apply(3, &policy("a", 9.0, "op", 1)),
            ApplyOutcome::Duplicate
        );
        assert_eq!(
            s.apply(4, &policy("a", 3.0, "other", 1)),
            ApplyOutcome::Applied
        );
        let ids: Vec<_> = s
            .policy_log()
            .iter()
            .map(|w| (w.writer.as_str(), w.write_id, w.index))
            .collect();
        assert_eq!(ids, [("op", 1, 1), ("op", 2, 2), ("other", 1, 4)]);
        assert_eq!(s.policies()["a"], PolicyValue::Number(3.0));
        let unset = Command::SetPolicy {
            key: "a".into(),
            value: PolicyValue::Unset,
            writer: "op".into(),
            write_id: 3,
        };
        assert_eq!(s.apply(5, &unset), ApplyOutcome::Applied);
        assert!(!s.policies().contains_key("a"));
    }

    #[test]
    fn replays_at_or_below_applied_index_are_ignored() {
        let mut s = FleetState::default();
        s.note_applied(5);
        let reg = Command::RegisterNode {
            node_id: "n1".into(),
            device_class: "phone".into(),
        };
        assert_eq!(s.apply(5, &reg), ApplyOutcome::Duplicate);
        assert!(s.nodes().is_empty());
        assert_eq!(s.apply(6, &reg), ApplyOutcome::Applied);
        assert_eq!(s.nodes()["n1"].registered_at, 6);
    }

    #[test]
    fn registry_catalog_and_specialised_variants() {
        let mut s = FleetState::default();
        let mut i = 0;
        let mut apply = |s: &mut FleetState, c: Command| {
            i += 1;
            s.apply(i, &c)
        };
        apply(
            &mut s,
            Command::RegisterNode {
                node_id: "n1".into(),
                device_class: "phone".into(),
            },
        );
        assert!(matches!(
            apply(
                &mut s,
                Command::RemoveNode {
                    node_id: "nope".into()
                }
            ),
            ApplyOutcome::Rejected(_)
        ));
        apply(
            &mut s,
            Command::SetCatalogIndex {
                digests: vec!["ab".into(), "cd".into()],
            },
        );
        let v = SpecialisedVariant {
            app: "face".into(),
            variant: "face-top5".into(),
            base_variant: "face-full".into(),
            classes: vec![1, 4, 7],
            digest: "ef".into(),
            accuracy: 0.93,
        };
        apply(&mut s, Command::AddSpecialisedVariant(v.clone()));
        assert_eq!(s.specialised()["face"]["face-top5"], v);
        assert_eq!(s.catalog_digests(), ["ab", "cd"]);
        assert_eq!(
            apply(
                &mut s,
                Command::RemoveSpecialisedVariant {
                    app: "face".into(),
                    variant: "face-top5".into()
                }
            ),
            ApplyOutcome::Applied
        );
        assert!(s.specialised().is_empty());
        assert_eq!(
            apply(
                &mut s,
                Command::RemoveNode {
                    node_id: "n1".into()
                }
            ),
            ApplyOutcome::Applied
        );
    }

    #[test]
    fn snapshot_round_trip_and_corruption() {
        let mut s = FleetState::default();
        s.apply(1, &policy("fleet.cloud_budget", 0.0667, "op", 1));
        s.apply(
            2,
            &Command::CommitPlan {
                epoch: 1,
                plan: vec![1, 2, 3],
            },
        );
        let bytes = s.to_snapshot_bytes().unwrap();
        assert_eq!(FleetState::from_snapshot_bytes(&bytes).unwrap(), s);
        assert!(FleetState::from_snapshot_bytes(&[]).is_err());
        assert!(matches!(
            FleetState::from_snapshot_bytes(&[9, 0, 0]),
            Err(StateError::Version { found: 9, .. })
        ));
        assert!(FleetState::from_snapshot_bytes(&bytes[..bytes.len() - 1]).is_err());
        let mut extra = bytes.clone();
        extra.push(0);
        assert!(FleetState::from_snapshot_bytes(&extra).is_err());
    }

    #[test]
    fn command_round_trip() {
        let c = policy("k", 1.5, "w", 7);
        assert_eq!(Command::decode(&c.encode().unwrap()).unwrap(), c);
        assert!(Command::decode(b"\x01\xff\xff\xff").is_err());
    }
}
