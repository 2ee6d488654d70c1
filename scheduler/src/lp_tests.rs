//! Unit and property tests of the LP solver, including a comparison with an independent LP
//! solver (`microlp`) and a worker panic that must surface as an error.

use super::*;

fn opt(value: f64, energy: f64, cost: f64) -> Opt {
    Opt {
        value,
        energy,
        cost,
        server: if cost > 0.0 { 1.0 } else { 0.0 },
    }
}

#[test]
fn energy_only_greedy_fills_best_ratio_first() {
    // Two groups of 10 requests; budget 10 J.
    let a = Table::new(vec![opt(66.0, 0.36, 0.0), opt(78.0, 3.3, 0.0)]);
    let b = Table::new(vec![opt(42.0, 1.24, 0.0)]);
    let groups = vec![
        Group {
            table: 0,
            weight: 10.0,
            server_weight: 0.0,
        },
        Group {
            table: 1,
            weight: 10.0,
            server_weight: 0.0,
        },
    ];
    let p = Problem::single(vec![a, b], groups, 10.0, f64::INFINITY);
    let sol = p.solve(1e-9).expect("solve");
    // 3.6 J for all of A at 66 (183/J), then B at 34/J vs A upgrade at 12/J/1 -> B.
    let expected = 10.0 * 66.0 + (10.0 - 3.6) / 1.24 * 42.0;
    assert!(
        (sol.value - expected).abs() < 1e-6,
        "{} vs {expected}",
        sol.value
    );
    assert!(sol.energy_used <= 10.0 + 1e-9);
    assert!(sol.gap() < 1e-9);
}

/// 1000 requests on table 0.
fn one_group(server_weight: f64) -> Vec<Group> {
    vec![Group {
        table: 0,
        weight: 1000.0,
        server_weight,
    }]
}

#[test]
fn cost_budget_binds_and_gap_is_small() {
    let t = Table::new(vec![
        opt(60.0, 1.0, 0.0),
        opt(80.0, 0.01, 1e-6),
        opt(70.0, 0.01, 4e-7),
    ]);
    let p = Problem::single(vec![t], one_group(0.0), 100.0, 5e-4);
    let sol = p.solve(1e-9).expect("solve");
    assert!(sol.cost_used <= 5e-4 * (1.0 + 1e-9));
    assert!(sol.energy_used <= 100.0 + 1e-9);
    assert!(sol.gap() < 1e-6, "gap {}", sol.gap());
    let total: f64 = sol.mixes[0].iter().map(|m| m.1).sum();
    assert!(total <= 1.0 + 1e-9);
}

#[test]
fn both_coupling_constraints_bind() {
    let t = Table::new(vec![
        opt(50.0, 1.0, 0.0),
        opt(90.0, 0.0, 1e-6),
        opt(80.0, 0.0, 1e-7),
    ]);
    let mut p = Problem::single(vec![t], one_group(1.0), 300.0, 2e-4);
    p.server_budget = 0.5;
    let sol = p.solve(1e-6).expect("solve");
    assert!(sol.cost_used <= 2e-4 * (1.0 + 1e-9));
    assert!(sol.server_used <= 0.5 + 1e-9);
    assert!(sol.gap() < 1e-3, "gap {}", sol.gap());
}

/// A panic in a worker of the parallel sweep must fail the solve. Before, the join error became
/// zero totals for that chunk: half the fleet silently planned as "drop everything".
#[test]
fn a_worker_panic_is_an_error_not_zeros() {
    let table = Table::new(vec![opt(70.0, 1.0, 0.0)]);
    let mut p = Problem {
        tables: vec![table],
        cost_budget: f64::INFINITY,
        server_budget: f64::INFINITY,
        ..Problem::default()
    };
    for i in 0..PARALLEL_MIN_NODES as u32 {
        p.groups.push(Group {
            table: 0,
            weight: 1.0,
            server_weight: 0.0,
        });
        p.nodes.push(Node {
            energy_budget: 1.0,
            first: i,
            len: 1,
        });
    }
    // The last node names groups past the end: the worker sweeping it panics on the slice.
    if let Some(last) = p.nodes.last_mut() {
        last.first = PARALLEL_MIN_NODES as u32 + 5;
    }
    // The worker's own message (a `Box<dyn Any>` is unboxed before it is read, else every
    // panic read as "no message").
    let e = p.solve(1e-6);
    assert!(
        matches!(&e, Err(SolveError::WorkerPanicked(m)) if m.contains("out of range")),
        "{e:?}"
    );
}

#[test]
fn the_gap_is_not_clamped() {
    assert_eq!(relative_gap(0.0, 0.0), 0.0);
    assert!((relative_gap(90.0, 100.0) - 0.1).abs() < 1e-12);
    // A dual below the primal is a broken bound: it must show as a negative gap, not 0.
    assert!(relative_gap(100.0, 90.0) < 0.0);
    assert!(relative_gap(1.0, 0.0) < 0.0);
}

mod props {
    use super::*;
    use proptest::prelude::*;

    fn arb_opt() -> impl Strategy<Value = Opt> {
        (0.0f64..100.0, 0.0f64..5.0, 0usize..3, 1e-7f64..1e-5).prop_map(
            |(v, e, kind, c)| match kind {
                0 => opt(v, e, 0.0),
                1 => opt(v, 0.004, c),
                _ => Opt {
                    value: v,
                    energy: e,
                    cost: c,
                    server: 0.0,
                },
            },
        )
    }

    fn arb_problem() -> impl Strategy<Value = Problem> {
        (
            prop::collection::vec(prop::collection::vec(arb_opt(), 1..6), 1..4),
            prop::collection::vec(
                (
                    0.0f64..500.0,
                    prop::collection::vec((0usize..4, 1.0f64..2000.0, 0.01f64..2.0), 1..4),
                ),
                1..8,
            ),
            1e-6f64..5e-3,
            0.1f64..5.0,
            any::<bool>(),
        )
            .prop_map(|(tables, nodes, cost, server, capped)| {
                let nt = tables.len();
                let mut p = Problem {
                    tables: tables.into_iter().map(Table::new).collect(),
                    cost_budget: cost,
                    server_budget: if capped { server } else { f64::INFINITY },
                    ..Problem::default()
                };
                for (energy, groups) in nodes {
                    let first = p.groups.len() as u32;
                    for (t, w, rate) in groups {
                        p.groups.push(Group {
                            table: (t % nt) as u32,
                            weight: w,
                            server_weight: rate,
                        });
                    }
                    p.nodes.push(Node {
                        energy_budget: energy,
                        first,
                        len: p.groups.len() as u32 - first,
                    });
                }
                p
            })
    }

    /// The LP optimum of `p` from an independent solver: one variable per (group, option),
    /// each group's fractions at most 1, every node's energy and both coupling budgets.
    fn reference_optimum(p: &Problem) -> Result<f64, microlp::Error> {
        use microlp::{ComparisonOp, OptimizationDirection, Problem as Lp};
        // Cost coefficients are ~1e-7..1e-5 USD: scaled to micro-USD so they sit well above
        // the simplex tolerances.
        const USD_SCALE: f64 = 1e6;
        let mut lp = Lp::new(OptimizationDirection::Maximize);
        let mut cost = Vec::new();
        let mut server = Vec::new();
        for node in &p.nodes {
            let mut energy = Vec::new();
            for gi in node.first..node.first + node.len {
                let g = &p.groups[gi as usize];
                let mut share = Vec::new();
                for o in p.tables[g.table as usize].opts() {
                    let x = lp.add_var(g.weight * o.value, (0.0, 1.0));
                    share.push((x, 1.0));
                    energy.push((x, g.weight * o.energy));
                    cost.push((x, g.weight * o.cost * USD_SCALE));
                    server.push((x, g.server_weight * o.server));
                }
                lp.add_constraint(share.as_slice(), ComparisonOp::Le, 1.0);
            }
            lp.add_constraint(energy.as_slice(), ComparisonOp::Le, node.energy_budget);
        }
        lp.add_constraint(cost.as_slice(), ComparisonOp::Le, p.cost_budget * USD_SCALE);
        if p.server_budget.is_finite() {
            lp.add_constraint(server.as_slice(), ComparisonOp::Le, p.server_budget);
        }
        let outcome = lp.solve()?;
        let solution = outcome
            .into_solution()
            .map_err(|_| microlp::Error::InternalError("interrupted".into()))?;
        Ok(solution.objective())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// On random small fleets: the mixes meet every node's energy and both coupling
        /// budgets, add up to the reported primal, never beat the dual, and the gap closes.
        #[test]
        fn dual_bounds_a_feasible_primal(p in arb_problem()) {
            let sol = p.solve(1e-4).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert!(sol.value <= sol.dual * (1.0 + 1e-9) + 1e-9);
            prop_assert!(sol.gap() <= 1e-4 + 1e-9, "gap {} after {} evaluations", sol.gap(), sol.evaluations);
            let (mut value, mut cost, mut server) = (0.0, 0.0, 0.0);
            for node in &p.nodes {
                let mut energy = 0.0;
                for gi in node.first..node.first + node.len {
                    let g = &p.groups[gi as usize];
                    let opts = p.tables[g.table as usize].opts();
                    let mix = &sol.mixes[gi as usize];
                    let served: f64 = mix.iter().map(|m| m.1).sum();
                    prop_assert!(served <= 1.0 + 1e-9);
                    for &(o, f) in mix {
                        prop_assert!(f >= 0.0);
                        let o = &opts[o as usize];
                        value += g.weight * f * o.value;
                        energy += g.weight * f * o.energy;
                        cost += g.weight * f * o.cost;
                        server += g.server_weight * f * o.server;
                    }
                }
                prop_assert!(energy <= node.energy_budget * (1.0 + 1e-9) + 1e-9, "energy {energy} > {}", node.energy_budget);
            }
            prop_assert!(cost <= p.cost_budget * (1.0 + 1e-9), "cost {cost} > {}", p.cost_budget);
            prop_assert!(server <= p.server_budget * (1.0 + 1e-9), "server {server} > {}", p.server_budget);
            prop_assert!((value - sol.value).abs() <= 1e-6 * value.abs().max(1.0), "{value} vs {}", sol.value);
        }

        /// Against an independent LP solver: the certified dual is never below the LP optimum
        /// and the primal never above it (a dual raised to the primal, or clamped, could not
        /// fail the first check; this one can).
        #[test]
        fn dual_and_primal_bracket_an_independent_optimum(p in arb_problem()) {
            let sol = p.solve(1e-4).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let opt = reference_optimum(&p).map_err(|e| TestCaseError::fail(format!("microlp: {e}")))?;
            let slack = 1e-6 * opt.abs().max(1.0);
            prop_assert!(sol.dual >= opt - slack, "dual {} below the LP optimum {opt}", sol.dual);
            prop_assert!(sol.value <= opt + slack, "primal {} above the LP optimum {opt}", sol.value);
        }
    }
}
