//! `mcdnnctl bench plan`: what incremental plans save, measured on the solve loop's own code
//! (the fleet solver, `plan::assignments`, `plan_delta::plan_change`, the replicated state's
//! apply). Per fleet size: the Raft bytes of a full plan against a delta after one solve
//! interval in which a share of the nodes changed (and every battery drained a little), and
//! the re-solve time warm-started from the previous prices against a cold solve of the same
//! problem, in the same run. The built-in `paper` catalog, two apps per node, cloud and server
//! budgets that bind (so the prices matter).

use std::time::Instant;

use anyhow::{Context, bail};
use clap::Args;
use scheduler::catalog::Catalog;
use scheduler::fleet::{FleetPlan, FleetProblem, NodeState};
use serde::Serialize;

use crate::fleet::{plan, plan_delta};
use crate::state::{ApplyOutcome, Command, FleetState};

#[derive(Debug, Clone, Args)]
pub struct PlanBenchArgs {
    /// Fleet sizes, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
    pub nodes: Vec<usize>,
    /// Share of the nodes whose telemetry changes between the two solves.
    #[arg(long, default_value_t = 0.01)]
    pub changed: f64,
    /// Solve interval the bytes per second are computed for, seconds.
    #[arg(long, default_value_t = 2.0)]
    pub interval_s: f64,
    /// Fleet cloud budget per node, USD over the shift (binding: serving everything remotely
    /// would cost more).
    #[arg(long, default_value_t = 0.002)]
    pub cost_per_node_usd: f64,
    /// Offload server capacity per node, requests/s (binding: the nodes make 1.2-1.4 each).
    #[arg(long, default_value_t = 0.1)]
    pub capacity_per_node_rps: f64,
    /// Timed repetitions of each re-solve (the median is printed).
    #[arg(long, default_value_t = 3)]
    pub reps: usize,
    /// Print the figures as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlanFigure {
    pub nodes: usize,
    /// Nodes whose telemetry changed between the solves.
    pub telemetry_changed: usize,
    /// Assignments the delta carries (changed beyond the tolerances).
    pub assignments_changed: usize,
    pub full_bytes_per_solve: usize,
    pub delta_bytes_per_solve: usize,
    pub full_bytes_per_s: f64,
    pub delta_bytes_per_s: f64,
    pub cold_solve_ms: f64,
    pub warm_solve_ms: f64,
    pub cold_evaluations: usize,
    pub warm_evaluations: usize,
    pub cold_gap: f64,
    pub warm_gap: f64,
}

const APPS: [&str; 2] = ["deepface", "object_alexnet"];

fn problem(catalog: &Catalog, n: usize, args: &PlanBenchArgs) -> FleetProblem {
    FleetProblem {
        catalogs: vec![catalog.clone()],
        nodes: (0..n)
            .map(|i| NodeState {
                id: format!("node-{i:05}"),
                device_class: catalog.device_class.clone(),
                energy_left_j: 400.0 + 150.0 * (i % 11) as f64,
                remaining_s: 36_000.0,
                rates: vec![
                    (APPS[0].into(), 0.2 + 0.1 * (i % 3) as f64),
                    (APPS[1].into(), 1.0),
                ],
                connected: true,
            })
            .collect(),
        // Budgets that bind: a fraction of what serving everything remotely would take.
        cost_budget_usd: args.cost_per_node_usd * n as f64,
        server_capacity_rps: args.capacity_per_node_rps * n as f64,
        tolerance: 1e-3,
    }
}

/// One solve interval later: every battery drained and the shift shortened by `dt`, and every
/// `1/share`-th node's load and battery moved materially.
fn one_interval_later(p: &FleetProblem, share: f64, dt: f64) -> (FleetProblem, usize) {
    let mut next = p.clone();
    let every = (1.0 / share.clamp(1e-6, 1.0)).round().max(1.0) as usize;
    let mut changed = 0;
    for (i, n) in next.nodes.iter_mut().enumerate() {
        n.energy_left_j = (n.energy_left_j - 0.2 * dt).max(0.0);
        n.remaining_s -= dt;
        if i % every == every / 2 {
            n.rates[1].1 *= 3.0;
            n.energy_left_j *= 0.5;
            changed += 1;
        }
    }
    (next, changed)
}

fn timed(
    reps: usize,
    f: impl Fn() -> anyhow::Result<FleetPlan>,
) -> anyhow::Result<(f64, FleetPlan)> {
    let mut times = Vec::with_capacity(reps);
    let mut last = None;
    for _ in 0..reps.max(1) {
        let t = Instant::now();
        let plan = f()?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
        last = Some(plan);
    }
    times.sort_by(f64::total_cmp);
    let plan = last.context("no repetition ran")?;
    Ok((times[times.len() / 2], plan))
}

fn bytes(cmd: &Command) -> anyhow::Result<usize> {
    Ok(cmd.encode().context("encode the plan command")?.len())
}

/// Measures one fleet size.
pub fn measure(n: usize, args: &PlanBenchArgs) -> anyhow::Result<PlanFigure> {
    let catalog = Catalog::paper();
    let catalogs = vec![catalog.clone()];
    let first = problem(&catalog, n, args);
    let solve = |p: &FleetProblem, warm: &[(f64, f64)]| {
        scheduler::fleet::solve_warm(p, warm).context("fleet solve")
    };
    let before = solve(&first, &[])?;
    let mut state = FleetState::default();
    let initial = plan_delta::plan_change(
        None,
        plan::assignments(&before, &catalogs, &first, 1, None, 0),
        1,
    )?;
    if state.apply(1, &initial.command) != ApplyOutcome::Applied {
        bail!("the first plan was not applied");
    }
    let (next, telemetry_changed) = one_interval_later(&first, args.changed, args.interval_s);
    let (cold_ms, cold) = timed(args.reps, || solve(&next, &[]))?;
    let (warm_ms, warm) = timed(args.reps, || solve(&next, &before.prices))?;
    let fresh = plan::assignments(&warm, &catalogs, &next, 2, None, 0);
    let change = plan_delta::plan_change(state.plan(), fresh.clone(), 2)?;
    let delta_bytes = bytes(&change.command)?;
    if state.apply(2, &change.command) != ApplyOutcome::Applied {
        bail!("the delta was not applied");
    }
    // The whole plan as the solve loop committed it before: every node, every solve.
    let full = Command::CommitPlan {
        epoch: 2,
        plan: wire::codec::encode_with_limit(&fresh, crate::state::MAX_PLAN_BYTES)?,
    };
    let full_bytes = bytes(&full)?;
    let per_s = |b: usize| b as f64 / args.interval_s;
    Ok(PlanFigure {
        nodes: n,
        telemetry_changed,
        assignments_changed: change.changed,
        full_bytes_per_solve: full_bytes,
        delta_bytes_per_solve: delta_bytes,
        full_bytes_per_s: per_s(full_bytes),
        delta_bytes_per_s: per_s(delta_bytes),
        cold_solve_ms: cold_ms,
        warm_solve_ms: warm_ms,
        cold_evaluations: cold.evaluations,
        warm_evaluations: warm.evaluations,
        cold_gap: cold.gap,
        warm_gap: warm.gap,
    })
}

/// Every fleet size of `args`.
pub fn plan_bench(args: &PlanBenchArgs) -> anyhow::Result<Vec<PlanFigure>> {
    let valid = args.changed > 0.0 && args.changed <= 1.0 && args.interval_s > 0.0;
    if !valid {
        bail!("--changed must be in (0, 1] and --interval-s positive");
    }
    args.nodes.iter().map(|&n| measure(n, args)).collect()
}

/// One line per fleet size.
pub fn render(f: &PlanFigure) -> String {
    format!(
        "{:>6} nodes, {} changed telemetry -> {} assignments changed | Raft per solve: full {} B, delta {} B ({:.0} vs {:.0} B/s at one solve per interval, {:.1}x less) | re-solve: cold {:.1} ms ({} sweeps, gap {:.1e}), warm {:.1} ms ({} sweeps, gap {:.1e}), {:.2}x",
        f.nodes,
        f.telemetry_changed,
        f.assignments_changed,
        f.full_bytes_per_solve,
        f.delta_bytes_per_solve,
        f.full_bytes_per_s,
        f.delta_bytes_per_s,
        f.full_bytes_per_solve as f64 / f.delta_bytes_per_solve.max(1) as f64,
        f.cold_solve_ms,
        f.cold_evaluations,
        f.cold_gap,
        f.warm_solve_ms,
        f.warm_evaluations,
        f.warm_gap,
        f.cold_solve_ms / f.warm_solve_ms.max(1e-9),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// At a small size, 1 % changed: the delta carries about the changed nodes, far fewer
    /// bytes than the full plan, and both solves are certified within the tolerance. (With
    /// 5 % changed the coupling prices move and every node's mix with them.)
    #[test]
    fn delta_is_smaller_and_both_solves_are_certified() -> anyhow::Result<()> {
        let args = PlanBenchArgs {
            nodes: vec![1000],
            changed: 0.01,
            interval_s: 2.0,
            cost_per_node_usd: 0.002,
            capacity_per_node_rps: 0.1,
            reps: 1,
            json: false,
        };
        let f = measure(1000, &args)?;
        assert_eq!(f.telemetry_changed, 10);
        assert!(
            f.assignments_changed >= 1 && f.assignments_changed < 100,
            "{f:?}"
        );
        assert!(
            f.delta_bytes_per_solve < f.full_bytes_per_solve / 2,
            "{f:?}"
        );
        for gap in [f.cold_gap, f.warm_gap] {
            assert!((-1e-9..=1e-3).contains(&gap), "{f:?}");
        }
        Ok(())
    }
}
