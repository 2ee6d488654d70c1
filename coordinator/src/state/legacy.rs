//! The format-2 layout of the fleet state, read so a replica upgraded to format 3 restarts from
//! its old snapshot (and a backup of format 2 restores). Only the plan changed: format 2 held
//! the last `CommitPlan`'s bytes, format 3 holds the plan per node.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::NodeRecord;
use super::plan::CommittedPlan;

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
        // Written back, it is format 3.
        assert_eq!(s.to_snapshot_bytes().unwrap()[0], 3);
    }
}
