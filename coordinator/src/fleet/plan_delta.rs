//! What the solve loop commits: only the assignments that changed since the committed plan.
//!
//! Every solve moves every node's figures a little (batteries drain, shifts shorten), so
//! "changed" means changed in a way the node would act on: another variant, place or offload
//! server, a share of requests moved by more than [`FRACTION_TOLERANCE`], or a per-request
//! budget moved by more than [`BUDGET_TOLERANCE`] of itself. A node whose assignment did not
//! change keeps the committed one (with its older epoch) and is not pushed; the drift it may
//! carry is bounded by those tolerances, since the committed assignment is compared with every
//! new solve, not with the previous one.

use std::collections::BTreeSet;

use wire::msg::{AppAssignment, Assignment};

use crate::state::{Command, CommittedPlan, MAX_PLAN_BYTES};

/// Largest move of one mix share (absolute, of the app's requests) that is not a change.
pub const FRACTION_TOLERANCE: f64 = 0.02;
/// Largest relative move of a per-request energy or cost budget that is not a change.
pub const BUDGET_TOLERANCE: f64 = 0.02;

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * a.abs().max(b.abs()) || (a - b).abs() <= 1e-12
}

fn same_app(old: &AppAssignment, new: &AppAssignment) -> bool {
    old.app == new.app
        && old.allowed_variants == new.allowed_variants
        && old.offload_target == new.offload_target
        && old.offload_server == new.offload_server
        && old.specialised == new.specialised
        && old.mix.len() == new.mix.len()
        && old.mix.iter().zip(&new.mix).all(|(a, b)| {
            a.variant == b.variant
                && a.place == b.place
                && (a.fraction - b.fraction).abs() <= FRACTION_TOLERANCE
        })
        && close(
            old.energy_budget_j_per_request,
            new.energy_budget_j_per_request,
            BUDGET_TOLERANCE,
        )
        && close(
            old.cost_budget_usd_per_request,
            new.cost_budget_usd_per_request,
            BUDGET_TOLERANCE,
        )
}

/// Whether a node would act on `new` differently from `old` (epochs, issue times and the
/// fleet-wide figures copied into every assignment do not count).
pub fn changed(old: &Assignment, new: &Assignment) -> bool {
    old.node_id != new.node_id
        || old.apps.len() != new.apps.len()
        || !old.apps.iter().zip(&new.apps).all(|(a, b)| same_app(a, b))
}

/// The command that commits `fresh` (stamped with `epoch`) on top of `committed`, and the
/// assignments every planned node holds once it is applied.
pub struct PlanChange {
    pub command: Command,
    /// Per planned node, in `fresh`'s order, the assignment it holds after the commit: the new
    /// one if it changed (epoch = the new epoch), else the committed one (its older epoch).
    pub holds: Vec<Assignment>,
    /// How many assignments the command carries as new or changed.
    pub changed: usize,
    /// Nodes dropped from the plan.
    pub removed: usize,
    /// Whether the command is a full plan.
    pub full: bool,
}

/// Compares `fresh` with the committed plan and builds the command: a full `CommitPlan` when
/// there is no plan this build reads (first plan, an opaque plan from an older protocol), a
/// `CommitPlanDelta` against the committed epoch otherwise. Unchanged nodes keep their
/// committed assignment either way, so both commands lead to the same state.
pub fn plan_change(
    committed: Option<&CommittedPlan>,
    fresh: Vec<Assignment>,
    epoch: u64,
) -> Result<PlanChange, wire::codec::CodecError> {
    let readable = committed.filter(|p| p.opaque.is_empty());
    let mut holds = Vec::with_capacity(fresh.len());
    let mut new = Vec::new();
    for a in fresh {
        match readable.and_then(|p| p.assignments.get(&a.node_id)) {
            Some(old) if !changed(old, &a) => holds.push(old.clone()),
            _ => {
                new.push(a.clone());
                holds.push(a);
            }
        }
    }
    let changed = new.len();
    let Some(base) = readable else {
        let plan = wire::codec::encode_with_limit(&holds, MAX_PLAN_BYTES)?;
        return Ok(PlanChange {
            command: Command::CommitPlan { epoch, plan },
            holds,
            changed,
            removed: 0,
            full: true,
        });
    };
    let planned: BTreeSet<&str> = holds.iter().map(|a| a.node_id.as_str()).collect();
    let removed: Vec<String> = base
        .assignments
        .keys()
        .filter(|id| !planned.contains(id.as_str()))
        .cloned()
        .collect();
    Ok(PlanChange {
        removed: removed.len(),
        command: Command::CommitPlanDelta {
            epoch,
            base_epoch: base.epoch,
            changed: new,
            removed,
        },
        holds,
        changed,
        full: false,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::state::{ApplyOutcome, FleetState};
    use proptest::prelude::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use wire::msg::{MixEntry, PlaceTag};

    /// A random assignment: the mix, budgets and offload target drawn from small sets so that
    /// consecutive plans share some assignments exactly, some within tolerance, some not.
    fn random_assignment(rng: &mut StdRng, node: &str, epoch: u64) -> Assignment {
        let apps = (0..rng.gen_range(1..3))
            .map(|i| {
                let split = f64::from(rng.gen_range(0..5u32)) * 0.25;
                let nudge = if rng.gen_bool(0.5) { 0.01 } else { 0.0 };
                let variant = ["a", "b", "c"][rng.gen_range(0..3)];
                AppAssignment {
                    app: format!("app{i}"),
                    mix: vec![
                        MixEntry {
                            variant: variant.into(),
                            place: PlaceTag::Device,
                            fraction: split,
                        },
                        MixEntry {
                            variant: "c".into(),
                            place: PlaceTag::Server,
                            fraction: (1.0 - split - nudge).max(0.0),
                        },
                    ],
                    allowed_variants: vec![variant.into(), "c".into()],
                    offload_target: rng.gen_bool(0.5).then(|| "srv:7401".into()),
                    offload_server: None,
                    energy_budget_j_per_request: f64::from(rng.gen_range(1..4u32)),
                    cost_budget_usd_per_request: 0.0,
                    specialised: None,
                }
            })
            .collect();
        Assignment {
            epoch,
            node_id: node.into(),
            issued_unix_ms: rng.r#gen(),
            apps,
            energy_price: 0.0,
            cost_price: rng.r#gen(),
            plan_gap: 0.0,
        }
    }

    fn random_plan(rng: &mut StdRng, epoch: u64) -> Vec<Assignment> {
        let mut plan = Vec::new();
        for i in 0..40 {
            if rng.gen_bool(0.8) {
                plan.push(random_assignment(rng, &format!("n{i:02}"), epoch));
            }
        }
        plan
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Over a run of random plans, applying each solve's delta gives exactly the state that
        /// applying the same plan in full gives, and each node holds its new assignment if it
        /// changed, else its committed one.
        #[test]
        fn delta_apply_equals_full_apply(seed in any::<u64>()) {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut by_delta = FleetState::default();
            let mut by_full = FleetState::default();
            for round in 0..6u64 {
                let epoch = round + 1;
                let index = 10 * epoch;
                let fresh = random_plan(&mut rng, epoch);
                let change = plan_change(by_delta.plan(), fresh.clone(), epoch).unwrap();
                prop_assert_eq!(change.full, round == 0, "full only for the first plan");
                for (held, new) in change.holds.iter().zip(&fresh) {
                    let old = by_delta.plan().and_then(|p| p.assignments.get(&new.node_id));
                    match old {
                        Some(old) if !changed(old, new) => prop_assert_eq!(held, old),
                        _ => prop_assert_eq!(held, new),
                    }
                }
                prop_assert_eq!(by_delta.apply(index, &change.command), ApplyOutcome::Applied);
                let full = Command::CommitPlan {
                    epoch,
                    plan: wire::codec::encode(&change.holds).unwrap(),
                };
                prop_assert_eq!(by_full.apply(index, &full), ApplyOutcome::Applied);
                prop_assert_eq!(&by_delta, &by_full);
                let held: Vec<&Assignment> =
                    by_delta.plan().unwrap().assignments.values().collect();
                let mut expected: Vec<&Assignment> = change.holds.iter().collect();
                expected.sort_by(|a, b| a.node_id.cmp(&b.node_id));
                prop_assert_eq!(held, expected);
            }
        }
    }

    #[test]
    fn small_moves_are_not_changes_and_real_ones_are() {
        let mut rng = StdRng::seed_from_u64(7);
        let a = random_assignment(&mut rng, "n", 1);
        let mut b = a.clone();
        b.epoch = 9;
        b.issued_unix_ms += 5;
        b.cost_price += 1.0;
        b.apps[0].mix[0].fraction += FRACTION_TOLERANCE / 2.0;
        b.apps[0].energy_budget_j_per_request *= 1.0 + BUDGET_TOLERANCE / 2.0;
        assert!(!changed(&a, &b));
        let mut c = b.clone();
        c.apps[0].mix[0].fraction += FRACTION_TOLERANCE;
        assert!(changed(&a, &c));
        let mut d = b.clone();
        d.apps[0].energy_budget_j_per_request *= 1.0 + 2.0 * BUDGET_TOLERANCE;
        assert!(changed(&a, &d));
        let mut e = b.clone();
        e.apps[0].offload_server = Some("other".into());
        assert!(changed(&a, &e));
        // A specialised head attached or detached changes what the node runs.
        let mut f = b;
        f.apps[0].specialised = Some(wire::msg::SpecialisedRun {
            variant: "spec-1".into(),
            trunk_variant: "quarter".into(),
            head_sha256: "00".into(),
            classes: vec![1, 3, 7],
            accuracy: 95.0,
        });
        assert!(changed(&a, &f));
    }
}
