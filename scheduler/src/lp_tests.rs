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
    // The second worker panics, as a bug in the sweep would.
    super::solve::PANIC_IN_WORKER.with(|w| w.set(Some(1)));
    // The worker's own message (a `Box<dyn Any>` is unboxed before it is read, else every
    // panic read as "no message").
    let e = p.solve(1e-6);
    assert!(
        matches!(&e, Err(SolveError::WorkerPanicked(m)) if m.contains("injected in worker 1")),
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

/// A problem of `nodes` nodes with one to three groups each over two tables that mix free,
/// cost-priced and server-priced options: big enough for the parallel sweep.
fn varied_fleet(nodes: usize) -> Problem {
    let tables = vec![
        Table::new(vec![
            opt(60.0, 1.0, 0.0),
            opt(70.0, 2.5, 0.0),
            opt(80.0, 0.01, 1e-6),
            opt(75.0, 0.01, 4e-7),
        ]),
        Table::new(vec![opt(40.0, 0.5, 0.0), opt(55.0, 0.3, 2e-7)]),
    ];
    let mut p = Problem {
        tables,
        cost_budget: 1e-3 * nodes as f64,
        server_budget: 0.2 * nodes as f64,
        ..Problem::default()
    };
    for i in 0..nodes {
        let first = p.groups.len() as u32;
        for k in 0..1 + i % 3 {
            p.groups.push(Group {
                table: ((i + k) % 2) as u32,
                weight: 100.0 + (i * 37 % 500) as f64,
                server_weight: 0.1 + (i % 7) as f64 * 0.1,
            });
        }
        p.nodes.push(Node {
            energy_budget: (i * 13 % 400) as f64,
            first,
            len: p.groups.len() as u32 - first,
        });
    }
    p
}

/// The sweep split over threads records exactly the choices one thread makes over all nodes,
/// each group's in its own place, and sums to the same totals; also with groups no node uses
/// (first, and between two nodes) and a node without groups where the second thread starts.
#[test]
fn parallel_sweep_records_what_one_thread_does() {
    use super::mixes::Pick;
    use super::solve::Scratch;
    let mut p = varied_fleet(PARALLEL_MIN_NODES + 1000);
    let unused = Group {
        table: 0,
        weight: 50.0,
        server_weight: 0.5,
    };
    let middle = p.nodes.len() / 3;
    let at = p.nodes[middle].first as usize;
    p.groups.insert(at, unused);
    p.groups.insert(0, unused);
    for (i, n) in p.nodes.iter_mut().enumerate() {
        n.first += 1 + u32::from(i >= middle);
    }
    let empty = Node {
        energy_budget: 10.0,
        first: 0,
        len: 0,
    };
    // The second thread's first node, once inserted (`eval_split` cuts at the chunk size).
    p.nodes.insert((p.nodes.len() + 1).div_ceil(CHUNKS), empty);
    p.solve(1e-3).expect("the layout is accepted");
    let (mu, nu) = (2e6, 30.0);
    let mut split = vec![Pick::default(); p.groups.len()];
    let t_split = p
        .eval(mu, nu, &mut Scratch::default(), Some(&mut split))
        .expect("sweep");
    let priced: Vec<_> = p
        .tables
        .iter()
        .map(|t| {
            let mut out = Vec::new();
            t.priced(mu, &mut out);
            out
        })
        .collect();
    let mut one = vec![Pick::default(); p.groups.len()];
    let t_one = p.eval_nodes(
        &p.nodes,
        &priced,
        nu,
        &mut Scratch::default(),
        // `eval_nodes` records from the first node's first group on.
        Some(&mut one[1..]),
    );
    assert!(one.iter().any(|k| k.frac > 0.0), "some node stops part way");
    assert!(
        one[1..].iter().any(|k| k.here == DROP),
        "some group is dropped"
    );
    assert_eq!(
        one[0],
        Pick::default(),
        "a group no node has is not chosen for"
    );
    assert_eq!(one[at + 1], Pick::default());
    assert_eq!(split, one);
    for (a, b) in [
        (t_split.adj, t_one.adj),
        (t_split.value, t_one.value),
        (t_split.energy, t_one.energy),
        (t_split.cost, t_one.cost),
        (t_split.server, t_one.server),
    ] {
        assert!((a - b).abs() <= 1e-9 * b.abs().max(1.0), "{a} vs {b}");
    }
}

/// Nodes whose groups overlap, or run past the problem's, are refused before any sweep.
#[test]
fn a_malformed_layout_is_an_error() {
    let base = varied_fleet(3);
    let mut overlap = base.clone();
    overlap.nodes[2].first = overlap.nodes[1].first;
    let mut past = base.clone();
    past.nodes[2].len += 1;
    for p in [overlap, past] {
        assert!(
            matches!(p.solve(1e-3), Err(SolveError::Layout(_))),
            "{:?}",
            p.nodes
        );
    }
    let mut empty_anywhere = base;
    empty_anywhere.nodes.push(Node {
        energy_budget: 1.0,
        first: 0,
        len: 0,
    });
    empty_anywhere
        .solve(1e-3)
        .expect("a node without groups is fine");
}

mod props {
    use super::*;
    use proptest::prelude::*;

    /// Options on a coarse grid (zero included), so energies and values tie, within the
    /// static options, within the priced ones and across them.
    fn grid_opt() -> impl Strategy<Value = Opt> {
        (0u32..8, 0u32..6, 0u32..3, 0u32..2).prop_map(|(v, e, c, server)| Opt {
            value: f64::from(v) * 10.0,
            energy: f64::from(e) * 0.5,
            cost: f64::from(c) * 1e-6,
            server: f64::from(server),
        })
    }

    /// The hull as first written: static and priced points (the best of each energy bucket)
    /// merged by energy, static first, each pushed with the full test.
    fn reference_hull(t: &Table, priced: &[table::PPt], nu: f64) -> Vec<(f64, f64, u32)> {
        let mut pts: Vec<(table::Pt, bool)> = t.static_hull.iter().map(|&p| (p, true)).collect();
        let mut i = 0;
        while i < priced.len() {
            let e = priced[i].e;
            let mut best: Option<table::Pt> = None;
            while i < priced.len() && priced[i].e == e {
                let v = priced[i].v - nu * priced[i].server;
                if v > best.map_or(0.0, |b| b.v) {
                    best = Some(table::Pt {
                        e,
                        v,
                        opt: priced[i].opt,
                    });
                }
                i += 1;
            }
            pts.extend(best.map(|b| (b, false)));
        }
        pts.sort_by(|a, b| a.0.e.total_cmp(&b.0.e).then(b.1.cmp(&a.1)));
        let mut h = Vec::new();
        for (p, _) in pts {
            table::push_hull(&mut h, p);
        }
        h.iter().map(|p| (p.e, p.v, p.opt)).collect()
    }

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

        /// The hull appended after another group's (with its shortcut over settled static
        /// points) is the hull built point by point.
        #[test]
        fn hull_into_is_the_hull(
            opts in prop::collection::vec(prop_oneof![arb_opt(), grid_opt()], 1..24),
            mu in prop_oneof![Just(0.0), 0.0f64..1e7],
            nu in prop_oneof![Just(0.0), Just(10.0), 0.0f64..80.0],
        ) {
            let t = Table::new(opts);
            let mut priced = Vec::new();
            t.priced(mu, &mut priced);
            let before = [table::ORIGIN, table::Pt { e: 1.0, v: 2.0, opt: 7 }];
            let mut out = before.to_vec();
            t.hull_into(&priced, nu, &mut out);
            let got: Vec<_> = out.iter().map(|p| (p.e, p.v, p.opt)).collect();
            prop_assert_eq!(&got[..2], &[(0.0, 0.0, DROP), (1.0, 2.0, 7)][..], "the previous hull changed");
            prop_assert_eq!(got[2..].to_vec(), reference_hull(&t, &priced, nu));
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
