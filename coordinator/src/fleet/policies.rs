//! The fleet policy the planner uses: configuration defaults overridden by replicated operator
//! writes.

use super::plan::{COST_BUDGET_KEY, FleetPolicy};
use crate::raft::ReplicaHandle;
use crate::state::PolicyValue;

#[derive(Clone)]
pub struct Policies {
    defaults: FleetPolicy,
    raft: ReplicaHandle,
}

impl Policies {
    pub fn new(defaults: FleetPolicy, raft: ReplicaHandle) -> Self {
        Policies { defaults, raft }
    }

    /// The defaults with every valid replicated override applied.
    pub fn effective(&self) -> FleetPolicy {
        let mut policy = self.defaults.clone();
        self.raft.with_state(|s| {
            if let Some(PolicyValue::Number(v)) = s.policies().get(COST_BUDGET_KEY)
                && v.is_finite()
                && *v >= 0.0
            {
                policy.cost_budget_usd = *v;
            }
        });
        policy
    }
}
