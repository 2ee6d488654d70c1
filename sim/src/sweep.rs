//! Budget sweeps: mean accuracy of each policy and of the bound over a grid of energy and cost
//! budgets, run in parallel (results do not depend on the thread count).

use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, Result};
use scheduler::{Budgets, Catalog};
use serde::Serialize;

use crate::engine;
use crate::trace::{Connectivity, Request};

/// `mcdnn` must reach this share of the bound (where the bound is not negligible).
pub const MIN_RATIO: f64 = 0.97;

/// The grid.
pub const ENERGIES: [f64; 5] = [500.0, 1000.0, 2000.0, 4000.0, 7200.0];
pub const COSTS: [f64; 4] = [0.0, 0.005, 0.02, 0.0667];

#[derive(clap::Args)]
pub struct SweepArgs {
    /// Generator (one-app, two-apps, specialisation, outages, poisson:...) or trace CSV.
    #[arg(long, default_value = "two-apps")]
    pub scenario: String,
    /// `paper` or a path to a models manifest (models/catalog.json).
    #[arg(long, default_value = "paper")]
    pub catalog: String,
    /// Device class to take from a manifest catalog.
    #[arg(long, default_value = "phone")]
    pub device_class: String,
    /// Evaluation model: `authors` (their scheduler's: specialised variants alone at their
    /// profiled accuracy; the paper catalog's default) or `cascade` (specialised heads answer
    /// only their classes; manifest catalogs' default).
    #[arg(long)]
    pub model: Option<scheduler::catalog::EvalModel>,
    /// Energy budgets (J), comma separated.
    #[arg(long, value_delimiter = ',', default_values_t = ENERGIES.to_vec())]
    pub energies: Vec<f64>,
    /// Cost budgets (USD), comma separated.
    #[arg(long, value_delimiter = ',', default_values_t = COSTS.to_vec())]
    pub costs: Vec<f64>,
    /// Policies to run besides the bound.
    #[arg(long, value_delimiter = ',', default_value = "paper,mcdnn")]
    pub policies: Vec<String>,
    /// Length of the simulated shift, seconds.
    #[arg(long, default_value_t = 36_000.0)]
    pub horizon_s: f64,
    /// Worker threads.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Also write the results as CSV here.
    #[arg(long)]
    pub csv: Option<PathBuf>,
}

/// One grid cell.
#[derive(Debug, Clone, Serialize)]
pub struct Cell {
    pub energy_j: f64,
    pub cost_usd: f64,
    /// (policy, mean accuracy, violations), in the order asked.
    pub policies: Vec<(String, f64, usize)>,
    pub bound: f64,
}

impl Cell {
    pub fn accuracy(&self, policy: &str) -> Option<f64> {
        self.policies.iter().find(|p| p.0 == policy).map(|p| p.1)
    }
}

/// A loaded scenario.
pub struct Scenario {
    pub catalog: Catalog,
    pub requests: Vec<Request>,
    pub conn: Connectivity,
    pub horizon_s: f64,
}

/// Runs every policy and the bound on every (energy, cost) pair.
pub fn sweep(
    sc: &Scenario,
    energies: &[f64],
    costs: &[f64],
    policies: &[String],
    threads: usize,
) -> Result<Vec<Cell>> {
    let cells: Vec<(f64, f64)> = energies
        .iter()
        .flat_map(|&e| costs.iter().map(move |&c| (e, c)))
        .collect();
    let bound_reqs = engine::bound_requests(&sc.catalog, &sc.requests, &sc.conn);
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Result<Cell>>>> =
        Mutex::new(std::iter::repeat_with(|| None).take(cells.len()).collect());
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&(e, c)) = cells.get(i) else { break };
                    let cell = run_cell(sc, &bound_reqs, e, c, policies);
                    if let Ok(mut r) = results.lock() {
                        r[i] = Some(cell);
                    }
                }
            });
        }
    });
    let results = results
        .into_inner()
        .map_err(|_| anyhow::anyhow!("a sweep worker panicked"))?;
    results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(anyhow::anyhow!("a sweep cell did not run"))))
        .collect()
}

fn run_cell(
    sc: &Scenario,
    bound_reqs: &[Vec<scheduler::bound::BoundRequest>],
    energy: f64,
    cost: f64,
    policies: &[String],
) -> Result<Cell> {
    let mut budgets = Budgets::from_catalog(&sc.catalog);
    budgets.energy_j = energy;
    budgets.cost_usd = cost;
    budgets.horizon_s = sc.horizon_s;
    let mut out = Vec::new();
    for p in policies {
        let r = engine::run(&sc.catalog, &sc.requests, &sc.conn, p, &budgets)?;
        out.push((p.clone(), r.mean_accuracy, r.violations));
    }
    let bound = engine::trace_bound(&sc.catalog, bound_reqs, &budgets)?.mean_accuracy;
    Ok(Cell {
        energy_j: energy,
        cost_usd: cost,
        policies: out,
        bound,
    })
}

/// Loads the scenario a spec names.
pub fn load(
    catalog: &str,
    device_class: &str,
    model: Option<scheduler::catalog::EvalModel>,
    spec: &str,
    horizon_s: f64,
) -> Result<Scenario> {
    let mut catalog = crate::load_catalog(catalog, device_class)?;
    if let Some(m) = model {
        catalog.constants.model = m;
    }
    let (mut requests, conn) = crate::load_trace(spec, horizon_s)?;
    requests.retain(|r| r.time_s < horizon_s);
    Ok(Scenario {
        catalog,
        requests,
        conn,
        horizon_s,
    })
}

/// The table the issue asks for: one row per cell, policies, bound, mcdnn / bound.
pub fn table(cells: &[Cell], policies: &[String]) -> String {
    let mut s = format!("{:>8} {:>8}", "E (J)", "C ($)");
    for p in policies {
        s += &format!(" {p:>12}");
    }
    s += &format!(" {:>8} {:>13} {:>6}\n", "bound", "mcdnn/bound", "check");
    for c in cells {
        s += &format!("{:>8} {:>8}", c.energy_j, c.cost_usd);
        for p in &c.policies {
            s += &format!(" {:>12.2}", p.1);
        }
        s += &format!(" {:>8.2}", c.bound);
        match (c.accuracy("mcdnn"), c.accuracy("paper")) {
            (Some(m), paper) => {
                let ratio = if c.bound > 0.0 { m / c.bound } else { 1.0 };
                let ok =
                    (c.bound < 5.0 || ratio >= MIN_RATIO) && paper.is_none_or(|p| m >= p - 1e-9);
                s += &format!(
                    " {:>12.1}% {:>6}\n",
                    100.0 * ratio,
                    if ok { "ok" } else { "MISS" }
                );
            }
            _ => s += "\n",
        }
    }
    s
}

/// CSV: energy_j,cost_usd,policy,mean_accuracy (the bound as policy `bound`).
pub fn write_csv(path: &std::path::Path, cells: &[Cell]) -> Result<()> {
    let mut f =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    writeln!(f, "energy_j,cost_usd,policy,mean_accuracy,violations")?;
    for c in cells {
        for p in &c.policies {
            writeln!(
                f,
                "{},{},{},{:.4},{}",
                c.energy_j, c.cost_usd, p.0, p.1, p.2
            )?;
        }
        writeln!(f, "{},{},bound,{:.4},0", c.energy_j, c.cost_usd, c.bound)?;
    }
    Ok(())
}

pub fn cmd_sweep(a: SweepArgs) -> Result<()> {
    for p in &a.policies {
        scheduler::policy::by_name(
            p,
            &Catalog::paper(),
            &Budgets::from_catalog(&Catalog::paper()),
        )
        .with_context(|| format!("policy {p}"))?;
    }
    let sc = load(
        &a.catalog,
        &a.device_class,
        a.model,
        &a.scenario,
        a.horizon_s,
    )?;
    let cells = sweep(&sc, &a.energies, &a.costs, &a.policies, a.threads)?;
    println!(
        "scenario {} ({} requests, {} h, {:?} model)",
        a.scenario,
        sc.requests.len(),
        a.horizon_s / 3600.0,
        sc.catalog.constants.model
    );
    print!("{}", table(&cells, &a.policies));
    if let Some(path) = &a.csv {
        write_csv(path, &cells)?;
    }
    Ok(())
}
