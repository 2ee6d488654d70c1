//! `bench`: per-request decision time of every policy, and fleet solve time and gap for 1k, 10k
//! and 100k nodes (3 apps x 15 variants). Prints figures; nothing here asserts on speed.

use std::time::Instant;

use anyhow::Result;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use scheduler::catalog::{App, Catalog, Constants, Variant};
use scheduler::fleet::{FleetProblem, NodeState, solve};
use scheduler::policy::POLICY_NAMES;
use scheduler::{Budgets, Place};

use crate::{engine, generators};

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Fleet sizes to solve.
    #[arg(long, value_delimiter = ',', default_values_t = vec![1_000usize, 10_000, 100_000])]
    pub nodes: Vec<usize>,
    /// Skip the per-request decision benchmark.
    #[arg(long)]
    pub fleet_only: bool,
}

/// A synthetic catalog: 3 apps x 15 variants with accuracy rising, with diminishing returns, in
/// energy, and server time rising with size.
pub fn synthetic_catalog(class: &str, speed: f64) -> Catalog {
    let mut rng = StdRng::seed_from_u64(7);
    let apps = (0..3)
        .map(|a| App {
            name: format!("app{a}"),
            variants: (0..15)
                .map(|i| {
                    let size = 0.2 + 0.25 * i as f64;
                    Variant {
                        name: format!("v{i}"),
                        accuracy: 40.0
                            + 10.0 * a as f64
                            + 30.0 * (1.0 - (-size).exp())
                            + rng.gen_range(-1.5..1.5),
                        memory_mb: 20.0 + 25.0 * i as f64,
                        device_energy_j: size * speed * rng.gen_range(0.9..1.1),
                        device_latency_ms: 20.0 + 40.0 * size,
                        load_energy_j: 2.0 + size,
                        load_latency_ms: 100.0 + 200.0 * size,
                        server_ms: 2.0 + 6.0 * size * rng.gen_range(0.9..1.1),
                        server_load_ms: 200.0,
                        trunk: None,
                        specialised: Vec::new(),
                        recent_set: false,
                    }
                })
                .collect(),
            device_only: false,
        })
        .collect();
    Catalog {
        name: "synthetic".into(),
        device_class: class.into(),
        apps,
        trunks: Vec::new(),
        constants: Constants::default(),
    }
}

/// A fleet of `n` nodes over two device classes with varied energy, rates and connectivity.
pub fn fleet(n: usize) -> FleetProblem {
    let mut rng = StdRng::seed_from_u64(n as u64);
    let catalogs = vec![
        synthetic_catalog("phone", 1.0),
        synthetic_catalog("camera", 1.6),
    ];
    let nodes: Vec<NodeState> = (0..n)
        .map(|i| NodeState {
            id: format!("node{i}"),
            device_class: if i % 3 == 0 {
                "camera".into()
            } else {
                "phone".into()
            },
            energy_left_j: rng.gen_range(500.0..7200.0),
            remaining_s: rng.gen_range(3_600.0..36_000.0),
            rates: (0..3)
                .map(|a| (format!("app{a}"), rng.gen_range(0.05..1.0)))
                .collect(),
            connected: rng.r#gen::<f64>() < 0.9,
        })
        .collect();
    let rps: f64 = nodes.iter().flat_map(|n| n.rates.iter().map(|r| r.1)).sum();
    FleetProblem {
        catalogs,
        // About $0.01 per node over the shift and server room for a fifth of the requests:
        // both coupling constraints bind.
        cost_budget_usd: 0.01 * n as f64,
        server_capacity_rps: 0.2 * rps,
        nodes,
        tolerance: 5e-3,
    }
}

pub fn cmd_bench(a: BenchArgs) -> Result<()> {
    if !a.fleet_only {
        let catalog = Catalog::paper();
        let horizon = 36_000.0;
        let g = generators::generate("two-apps", horizon)?;
        let mut budgets = Budgets::from_catalog(&catalog);
        budgets.energy_j = 2000.0;
        budgets.cost_usd = 0.02;
        println!(
            "per-request decision time (two-apps trace, {} requests, E = 2000 J, C = $0.02):",
            g.requests.len()
        );
        for p in POLICY_NAMES {
            let r = engine::run(&catalog, &g.requests, &g.connectivity, p, &budgets)?;
            println!(
                "  {p:>12}: {:>8.0} ns/decision",
                r.decide_ns as f64 / r.requests.max(1) as f64
            );
        }
    }
    println!("fleet solve (3 apps x 15 variants, 2 device classes, cost and capacity coupled):");
    for &n in &a.nodes {
        let problem = fleet(n);
        let t0 = Instant::now();
        let plan = solve(&problem)?;
        let ms = t0.elapsed().as_secs_f64() * 1e3;
        let offloaded: f64 = plan
            .nodes
            .iter()
            .flat_map(|n| n.apps.iter().flat_map(|a| a.mix.iter()))
            .filter(|m| m.place == Place::Server)
            .count() as f64;
        println!(
            "  {n:>7} nodes: {ms:>8.1} ms, gap {:.4} %, primal {:.3} %, dual {:.3} %, cost ${:.2} of {:.2}, server {:.0} of {:.0} req/s, {} sweeps, {offloaded} offload entries",
            100.0 * plan.gap,
            plan.primal,
            plan.dual,
            plan.cost_usd,
            problem.cost_budget_usd,
            plan.server_rps,
            problem.server_capacity_rps,
            plan.evaluations
        );
    }
    Ok(())
}
