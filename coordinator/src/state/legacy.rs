//! The format-2 and format-3 layouts of the fleet state, read so an upgraded replica restarts
//! from its old snapshot (and an old backup restores). Format 2 held the last `CommitPlan`'s
//! bytes where format 3 holds the plan per node; format 4 added the watchlist (empty when
//! converted).

use std::collections::BTreeMap;

use serde::Deserialize;

use super::plan::CommittedPlan;
use super::{FleetState, NodeRecord};

/// The plan as format 2 stored it.
#[derive(Deserialize)]
pub(super) struct PlanV2 {
    epoch: u64,
    plan: Vec<u8>,
    index: u64,
}

impl PlanV2 {
    /// The same plan in format 3: split per node if its bytes are a plan this build reads.
    /// A plan that was committed once is never refused now: if it contradicts itself it is kept
    /// opaque, as format 2 kept it.
    pub(super) fn convert(self) -> CommittedPlan {
        CommittedPlan::full(self.epoch, &self.plan, self.index).unwrap_or(CommittedPlan {
            epoch: self.epoch,
            index: self.index,
            assignments: BTreeMap::new(),
            opaque: self.plan,
        })
    }
}

/// `FleetState` in format 2, field for field.
#[derive(Deserialize)]
pub(super) struct FleetStateV2 {
    pub(super) applied_index: u64,
    pub(super) nodes: BTreeMap<String, NodeRecord>,
    pub(super) policy: super::policy::PolicyState,
    pub(super) plan: Option<PlanV2>,
    pub(super) catalog_digests: Vec<String>,
    pub(super) specialised: super::specialised::Specialised,
    pub(super) results: BTreeMap<String, super::results::NodeResults>,
    pub(super) identity: super::identity::IdentityState,
    pub(super) servers: super::servers::ServerApprovals,
}

impl FleetStateV2 {
    /// The same state in the current format.
    pub(super) fn convert(self) -> FleetState {
        FleetStateV3 {
            applied_index: self.applied_index,
            nodes: self.nodes,
            policy: self.policy,
            plan: self.plan.map(PlanV2::convert),
            catalog_digests: self.catalog_digests,
            specialised: self.specialised,
            results: self.results,
            identity: self.identity,
            servers: self.servers,
        }
        .convert()
    }
}

/// `FleetState` in format 3, field for field (no watchlist).
#[derive(Deserialize)]
pub(super) struct FleetStateV3 {
    applied_index: u64,
    nodes: BTreeMap<String, NodeRecord>,
    policy: super::policy::PolicyState,
    plan: Option<CommittedPlan>,
    catalog_digests: Vec<String>,
    specialised: super::specialised::Specialised,
    results: BTreeMap<String, super::results::NodeResults>,
    identity: super::identity::IdentityState,
    servers: super::servers::ServerApprovals,
}

impl FleetStateV3 {
    /// The same state in the current format, with an empty watchlist.
    pub(super) fn convert(self) -> FleetState {
        FleetState {
            applied_index: self.applied_index,
            nodes: self.nodes,
            policy: self.policy,
            plan: self.plan,
            catalog_digests: self.catalog_digests,
            specialised: self.specialised,
            results: self.results,
            identity: self.identity,
            servers: self.servers,
            watchlist: Default::default(),
            size: Default::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::state::{Command, FleetState, codec};
    use wire::msg::Assignment;

    #[derive(serde::Serialize)]
    struct PlanV2Out {
        epoch: u64,
        plan: Vec<u8>,
        index: u64,
    }

    /// A format-2 snapshot written by the previous build, field for field.
    #[derive(serde::Serialize)]
    struct FleetStateV2Out {
        applied_index: u64,
        nodes: BTreeMap<String, NodeRecord>,
        policy: super::super::policy::PolicyState,
        plan: Option<PlanV2Out>,
        catalog_digests: Vec<String>,
        specialised: super::super::specialised::Specialised,
        results: BTreeMap<String, super::super::results::NodeResults>,
        identity: super::super::identity::IdentityState,
        servers: super::super::servers::ServerApprovals,
    }

    fn v2_bytes<T: serde::Serialize>(value: &T) -> Vec<u8> {
        let mut out = vec![codec::FORMAT_V2];
        out.extend(bincode::serde::encode_to_vec(value, bincode::config::standard()).unwrap());
        out
    }

    /// A replica upgraded to format 3 restarts from its format-2 snapshot and replays its
    /// format-2 log: the plan it held is split per node, and old `CommitPlan` entries apply.
    #[test]
    fn format_2_snapshots_and_commands_are_read() {
        let a = Assignment {
            epoch: 7,
            node_id: "cam-1".into(),
            issued_unix_ms: 1,
            apps: Vec::new(),
            energy_price: 0.0,
            cost_price: 0.0,
            plan_gap: 0.0,
        };
        let plan = wire::codec::encode(&vec![a.clone()]).unwrap();
        let old = FleetStateV2Out {
            applied_index: 12,
            nodes: BTreeMap::new(),
            policy: Default::default(),
            plan: Some(PlanV2Out {
                epoch: 7,
                plan: plan.clone(),
                index: 11,
            }),
            catalog_digests: vec!["ab".into()],
            specialised: Default::default(),
            results: BTreeMap::new(),
            identity: Default::default(),
            servers: Default::default(),
        };
        let mut s = FleetState::from_snapshot_bytes(&v2_bytes(&old)).unwrap();
        assert_eq!(s.applied_index(), 12);
        assert_eq!(s.catalog_digests(), ["ab"]);
        let p = s.plan().unwrap();
        assert_eq!((p.epoch, p.index), (7, 11));
        assert_eq!(p.assignments["cam-1"], a);
        // A format-2 log entry (the enum only grew at its end).
        let cmd = Command::CommitPlan { epoch: 8, plan };
        let entry = v2_bytes(&cmd);
        assert_eq!(Command::decode(&entry).unwrap(), cmd);
        s.apply(13, &cmd);
        assert_eq!(s.plan_epoch(), 8);
        // Written back, it is the current format.
        assert_eq!(s.to_snapshot_bytes().unwrap()[0], 5);
    }

    /// A format-3 snapshot (everything but the watchlist) and format-3 log entries are read;
    /// the watchlist starts empty.
    #[test]
    fn format_3_snapshots_and_commands_are_read() {
        #[derive(serde::Serialize)]
        struct FleetStateV3Out {
            applied_index: u64,
            nodes: BTreeMap<String, NodeRecord>,
            policy: super::super::policy::PolicyState,
            plan: Option<CommittedPlan>,
            catalog_digests: Vec<String>,
            specialised: super::super::specialised::Specialised,
            results: BTreeMap<String, super::super::results::NodeResults>,
            identity: super::super::identity::IdentityState,
            servers: super::super::servers::ServerApprovals,
        }
        let old = FleetStateV3Out {
            applied_index: 5,
            nodes: BTreeMap::new(),
            policy: Default::default(),
            plan: None,
            catalog_digests: vec!["cd".into()],
            specialised: Default::default(),
            results: BTreeMap::new(),
            identity: Default::default(),
            servers: Default::default(),
        };
        let mut bytes = vec![codec::FORMAT_V3];
        bytes.extend(bincode::serde::encode_to_vec(&old, bincode::config::standard()).unwrap());
        let mut s = FleetState::from_snapshot_bytes(&bytes).unwrap();
        assert_eq!(s.applied_index(), 5);
        assert_eq!(s.catalog_digests(), ["cd"]);
        assert_eq!(s.watchlist().version(), 0);
        let cmd = Command::SetCatalogIndex {
            digests: vec!["ef".into()],
        };
        let mut entry = vec![codec::FORMAT_V3];
        entry.extend(bincode::serde::encode_to_vec(&cmd, bincode::config::standard()).unwrap());
        assert_eq!(Command::decode(&entry).unwrap(), cmd);
        s.apply(6, &cmd);
        assert_eq!(s.catalog_digests(), ["ef"]);
    }

    /// Format 5 only added `RegisterNodes`: a format-4 snapshot (the same layout, version byte
    /// 4) and format-4 entries read as they are, and a newer format is refused by name.
    #[test]
    fn format_4_snapshots_and_commands_are_read() {
        let mut state = FleetState::default();
        let reg = Command::RegisterNode {
            node_id: "n1".into(),
            device_class: "phone".into(),
        };
        state.apply(3, &reg);
        let mut bytes = state.to_snapshot_bytes().unwrap();
        bytes[0] = codec::FORMAT_V4;
        let restored = FleetState::from_snapshot_bytes(&bytes).unwrap();
        assert_eq!(restored, state);
        let mut entry = reg.encode().unwrap();
        entry[0] = codec::FORMAT_V4;
        assert_eq!(Command::decode(&entry).unwrap(), reg);
        entry[0] = codec::FORMAT_V4 + 2;
        let err = Command::decode(&entry).unwrap_err().to_string();
        assert!(err.contains("format version 6"), "{err}");
    }
}
