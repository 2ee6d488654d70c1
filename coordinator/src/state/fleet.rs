//! [`FleetState`]: the deterministic state machine every replica applies committed commands to.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::codec::{self, StateError};
use super::command::{Command, MAX_REGISTRATIONS, PolicyValue, SpecialisedVariant};
use super::outcome::ApplyOutcome;
use super::plan::{self, CommittedPlan, Delta};
use super::policy::{PolicyState, PolicyWrite};
use super::size_guard::{self, SizeBound};

/// A registered node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// Device class.
    pub device_class: String,
    /// Raft index at which it was (last) registered.
    pub registered_at: u64,
}

/// Replicated fleet state. Applying the same commands at the same indexes always produces the
/// same state (ordered maps, no clocks, no randomness), which is what keeps replicas identical.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FleetState {
    pub(super) applied_index: u64,
    pub(super) nodes: BTreeMap<String, NodeRecord>,
    /// Operator policy: latest value per key and a bounded audit log.
    pub(super) policy: PolicyState,
    pub(super) plan: Option<CommittedPlan>,
    pub(super) catalog_digests: Vec<String>,
    /// app -> variant -> metadata.
    pub(super) specialised: super::specialised::Specialised,
    /// node -> what its result spool was recorded up to.
    pub(super) results: BTreeMap<String, super::results::NodeResults>,
    /// Enrollment tokens and revoked node names.
    pub(super) identity: super::identity::IdentityState,
    /// Nodes approved for the offload-server role.
    pub(super) servers: super::servers::ServerApprovals,
    /// Named face descriptors nodes match against (format 4).
    pub(super) watchlist: super::watchlist::Watchlist,
    /// Cached bound on the encoded size; see [`size_guard`].
    #[serde(skip)]
    pub(super) size: SizeBound,
}

impl FleetState {
    /// Applies `cmd`, committed at Raft `index`.
    pub fn apply(&mut self, index: u64, cmd: &Command) -> ApplyOutcome {
        if index <= self.applied_index {
            return ApplyOutcome::Duplicate;
        }
        self.applied_index = index;
        if let Command::SetPolicy {
            writer, write_id, ..
        } = cmd
            && self.policy.already_applied(writer, *write_id)
        {
            return ApplyOutcome::Duplicate;
        }
        let growth = size_guard::growth_bound(cmd);
        let mut size = std::mem::take(&mut self.size);
        let admitted = size.admit(&*self, growth);
        self.size = size;
        if let Err(reason) = admitted {
            return ApplyOutcome::Rejected(reason);
        }
        self.apply_admitted(index, cmd)
    }

    /// Records (or re-records with a new class) one node, registered at `index`.
    fn register(&mut self, node_id: &str, device_class: &str, index: u64) {
        self.nodes.insert(
            node_id.to_owned(),
            NodeRecord {
                device_class: device_class.to_owned(),
                registered_at: index,
            },
        );
    }

    /// Applies a command the size guard admitted.
    fn apply_admitted(&mut self, index: u64, cmd: &Command) -> ApplyOutcome {
        match cmd {
            Command::RegisterNode {
                node_id,
                device_class,
            } => {
                self.register(node_id, device_class, index);
                ApplyOutcome::Applied
            }
            Command::RegisterNodes { nodes } => {
                if nodes.is_empty() || nodes.len() > MAX_REGISTRATIONS {
                    return ApplyOutcome::Rejected(format!(
                        "a registration batch holds 1 to {MAX_REGISTRATIONS} nodes, not {}",
                        nodes.len()
                    ));
                }
                for n in nodes {
                    self.register(&n.node_id, &n.device_class, index);
                }
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
            } => self.policy.apply(index, key, value, writer, *write_id),
            Command::CommitPlan { epoch, plan } => {
                let current = self.plan_epoch();
                if *epoch <= current {
                    return ApplyOutcome::Rejected(format!(
                        "plan epoch {epoch} is not newer than the committed epoch {current}"
                    ));
                }
                match CommittedPlan::full(*epoch, plan, index) {
                    Ok(p) => {
                        self.plan = Some(p);
                        ApplyOutcome::Applied
                    }
                    Err(why) => ApplyOutcome::Rejected(why),
                }
            }
            Command::CommitPlanDelta {
                epoch,
                base_epoch,
                changed,
                removed,
            } => {
                let delta = Delta {
                    epoch: *epoch,
                    base_epoch: *base_epoch,
                    changed,
                    removed,
                };
                plan::apply_delta(&mut self.plan, &delta, index)
            }
            Command::RecordResults {
                node_id,
                incarnation,
                records,
            } => {
                self.results
                    .entry(node_id.clone())
                    .or_default()
                    .record(*incarnation, records);
                ApplyOutcome::Applied
            }
            Command::SetServerApproval {
                node_id,
                approved,
                by,
            } => self.servers.apply(index, node_id, *approved, by),
            Command::SetCatalogIndex { digests } => {
                self.catalog_digests = digests.clone();
                ApplyOutcome::Applied
            }
            Command::AddSpecialisedVariant(v) => self.specialised.add(v),
            Command::IssueToken {
                name,
                sha256,
                expires_unix_ms,
                now_unix_ms,
                by,
            } => {
                let token = super::identity::TokenRecord {
                    sha256: *sha256,
                    expires_unix_ms: *expires_unix_ms,
                    issued_by: by.clone(),
                    index,
                };
                self.identity.issue(index, name, token, *now_unix_ms)
            }
            Command::RedeemToken {
                name,
                sha256,
                now_unix_ms,
            } => self.identity.redeem(name, sha256, *now_unix_ms),
            Command::Revoke { name, by } => self.identity.revoke(index, name, by),
            Command::RemoveSpecialisedVariant { app, variant } => {
                self.specialised.remove(app, variant)
            }
            Command::AddWatchlistEntry { entry, by } => self.watchlist.add(index, entry, by),
            Command::RemoveWatchlistEntry { name, by: _ } => self.watchlist.remove(name),
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
        self.policy.values()
    }

    /// The most recent policy writes (at most [`super::POLICY_LOG_CAPACITY`]), in apply order.
    pub fn policy_log(&self) -> &std::collections::VecDeque<PolicyWrite> {
        self.policy.log()
    }

    /// The committed plan, if any.
    pub fn plan(&self) -> Option<&CommittedPlan> {
        self.plan.as_ref()
    }

    /// Epoch of the committed plan (0 if none).
    pub fn plan_epoch(&self) -> u64 {
        self.plan.as_ref().map_or(0, |p| p.epoch)
    }

    /// Nodes approved for the offload-server role.
    pub fn servers(&self) -> &super::servers::ServerApprovals {
        &self.servers
    }

    /// The result ledger, per node.
    pub fn results(&self) -> &BTreeMap<String, super::results::NodeResults> {
        &self.results
    }

    /// Catalog content digests.
    pub fn catalog_digests(&self) -> &[String] {
        &self.catalog_digests
    }

    /// Specialised variants: app -> variant -> metadata.
    pub fn specialised(&self) -> &BTreeMap<String, BTreeMap<String, SpecialisedVariant>> {
        self.specialised.all()
    }

    /// A specialised head's bytes by digest (served to nodes as a shard).
    pub fn specialised_head(&self, digest: &str) -> Option<&[u8]> {
        self.specialised.head(digest)
    }

    /// Enrollment tokens and revoked node names.
    pub fn identity(&self) -> &super::identity::IdentityState {
        &self.identity
    }

    /// The watchlist.
    pub fn watchlist(&self) -> &super::watchlist::Watchlist {
        &self.watchlist
    }

    /// Serialises the state for a Raft snapshot.
    pub fn to_snapshot_bytes(&self) -> Result<Vec<u8>, StateError> {
        codec::encode(self, "fleet state snapshot")
    }

    /// Restores a state from Raft snapshot bytes (format 2 and 3 snapshots are converted, format 4
    /// ones read as they are).
    pub fn from_snapshot_bytes(bytes: &[u8]) -> Result<Self, StateError> {
        const WHAT: &str = "fleet state snapshot";
        match bytes.first() {
            Some(&codec::FORMAT_V2) => {
                let old: super::legacy::FleetStateV2 =
                    codec::decode_version(bytes, WHAT, codec::FORMAT_V2)?;
                Ok(old.convert())
            }
            Some(&codec::FORMAT_V3) => {
                let old: super::legacy::FleetStateV3 =
                    codec::decode_version(bytes, WHAT, codec::FORMAT_V3)?;
                Ok(old.convert())
            }
            // Format 5 only added a command: a format-4 state has the same layout.
            Some(&codec::FORMAT_V4) => codec::decode_version(bytes, WHAT, codec::FORMAT_V4),
            _ => codec::decode(bytes, WHAT),
        }
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

    const KEY: &str = "fleet.cost_budget_usd";

    #[test]
    fn policy_writes_are_logged_in_order_and_deduplicated() {
        let mut s = FleetState::default();
        assert_eq!(
            s.apply(1, &policy(KEY, 1.0, "op", 1)),
            ApplyOutcome::Applied
        );
        assert_eq!(
            s.apply(2, &policy(KEY, 2.0, "op", 2)),
            ApplyOutcome::Applied
        );
        assert_eq!(
            s.apply(3, &policy(KEY, 9.0, "op", 1)),
            ApplyOutcome::Duplicate
        );
        assert_eq!(
            s.apply(4, &policy(KEY, 3.0, "other", 1)),
            ApplyOutcome::Applied
        );
        let ids: Vec<_> = s
            .policy_log()
            .iter()
            .map(|w| (w.writer.as_str(), w.write_id, w.index))
            .collect();
        assert_eq!(ids, [("op", 1, 1), ("op", 2, 2), ("other", 1, 4)]);
        assert_eq!(s.policies()[KEY], PolicyValue::Number(3.0));
        let unset = Command::SetPolicy {
            key: KEY.into(),
            value: PolicyValue::Unset,
            writer: "op".into(),
            write_id: 3,
        };
        assert_eq!(s.apply(5, &unset), ApplyOutcome::Applied);
        assert!(!s.policies().contains_key(KEY));
    }

    /// A bad write already in a log (the admin API refuses it, but a log written by an older
    /// build or a buggy leader may hold one) changes nothing but the applied index.
    #[test]
    fn invalid_policy_entries_are_rejected_and_change_nothing() {
        let mut s = FleetState::default();
        s.apply(1, &policy(KEY, 0.5, "op", 1));
        let before = s.clone();
        for (i, cmd) in [
            policy("fleet.cost_budgt_usd", 1.0, "op", 2),
            policy(KEY, 1e300, "op", 3),
            policy(KEY, f64::NAN, "op", 4),
            Command::SetPolicy {
                key: KEY.into(),
                value: PolicyValue::Text("x".repeat(1_900_000)),
                writer: "op".into(),
                write_id: 5,
            },
        ]
        .iter()
        .enumerate()
        {
            assert!(matches!(
                s.apply(2 + i as u64, cmd),
                ApplyOutcome::Rejected(_)
            ));
        }
        let mut expected = before;
        expected.note_applied(5);
        assert_eq!(s, expected);
    }

    /// A batch registers every node at its entry's index (the last class of a node named
    /// twice wins); an empty or oversized batch is refused whole and changes nothing.
    #[test]
    fn a_registration_batch_is_applied_whole_or_refused_whole() {
        use super::super::command::NodeRegistration;
        let reg = |id: &str, class: &str| NodeRegistration {
            node_id: id.into(),
            device_class: class.into(),
        };
        let mut s = FleetState::default();
        let batch = Command::RegisterNodes {
            nodes: vec![reg("a", "phone"), reg("b", "phone"), reg("a", "tablet")],
        };
        assert_eq!(s.apply(1, &batch), ApplyOutcome::Applied);
        assert_eq!(s.nodes().len(), 2);
        assert_eq!(s.nodes()["a"].device_class, "tablet");
        assert_eq!(s.nodes()["b"].registered_at, 1);

        let before = s.clone();
        let too_many = Command::RegisterNodes {
            nodes: (0..=MAX_REGISTRATIONS)
                .map(|i| reg(&format!("x{i}"), "phone"))
                .collect(),
        };
        for (index, bad) in [(2, too_many), (3, Command::RegisterNodes { nodes: vec![] })] {
            assert!(
                matches!(s.apply(index, &bad), ApplyOutcome::Rejected(ref why) if why.contains("registration batch")),
                "refused"
            );
        }
        let mut expected = before;
        expected.note_applied(3);
        assert_eq!(s, expected, "only the applied index moved");
        let exactly = Command::RegisterNodes {
            nodes: (0..MAX_REGISTRATIONS)
                .map(|i| reg(&format!("x{i}"), "phone"))
                .collect(),
        };
        assert_eq!(s.apply(4, &exactly), ApplyOutcome::Applied);
        assert_eq!(s.nodes().len(), 2 + MAX_REGISTRATIONS);
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
        let v = super::super::specialised::tests::variant("face", "face-top5");
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
        s.apply(1, &policy(KEY, 0.0667, "op", 1));
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
