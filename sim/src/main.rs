//! mcdnn-sim: trace-driven evaluation of the scheduler's policies, sweeps, reports and
//! benchmarks.

#[cfg(test)]
mod authors_ref;
mod bench;
mod engine;
mod generators;
mod plot;
mod report;
mod sweep;
mod trace;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use scheduler::{Budgets, Catalog};

use crate::trace::{Connectivity, Request};

#[derive(Parser)]
#[command(
    name = "mcdnn-sim",
    version,
    about = "Evaluate MCDNN scheduling policies on traces"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run one policy (or `bound`) over a trace.
    Run(RunArgs),
    /// Sweep energy and cost budgets for every policy and the bound; print a table, write CSV.
    Sweep(sweep::SweepArgs),
    /// Sweep every scenario and write CSV, SVG plots and a markdown report.
    Report(report::ReportArgs),
    /// Decision time per policy and fleet solve time and gap.
    Bench(bench::BenchArgs),
}

#[derive(clap::Args)]
struct RunArgs {
    /// `paper` or a path to a models manifest (models/catalog.json).
    #[arg(long, default_value = "paper")]
    catalog: String,
    /// Device class to take from a manifest catalog.
    #[arg(long, default_value = "phone")]
    device_class: String,
    /// Evaluation model: `authors` or `cascade` (default: the catalog's; see `sweep --help`).
    #[arg(long)]
    model: Option<scheduler::catalog::EvalModel>,
    /// A trace CSV or a generator (one-app, two-apps, specialisation, outages,
    /// poisson:APP=RATE,...), optionally with @SEED.
    #[arg(long)]
    trace: String,
    /// Energy budget over the horizon, joules (default: the catalog's).
    #[arg(long)]
    energy_budget_j: Option<f64>,
    /// Cloud budget over the horizon, USD (default: the catalog's).
    #[arg(long)]
    cost_budget_usd: Option<f64>,
    /// Length of the simulated shift, seconds (default: the catalog's).
    #[arg(long)]
    horizon_s: Option<f64>,
    /// Model memory on the device, MB (default: the catalog's).
    #[arg(long)]
    memory_mb: Option<f64>,
    /// paper, mcdnn, best-device, cloud, cheapest, or bound.
    #[arg(long, default_value = "mcdnn")]
    policy: String,
    /// Connectivity CSV (time_s,connected); overrides a generator's.
    #[arg(long)]
    connectivity: Option<PathBuf>,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

/// Loads `paper` or a manifest file.
pub fn load_catalog(spec: &str, device_class: &str) -> Result<Catalog> {
    if spec == "paper" {
        return Ok(Catalog::paper());
    }
    let text = std::fs::read_to_string(spec).with_context(|| format!("reading catalog {spec}"))?;
    let manifest = wire::manifest::Manifest::from_json(&text)
        .with_context(|| format!("parsing catalog manifest {spec}"))?;
    Catalog::from_manifest(&manifest, device_class)
        .with_context(|| format!("building the {device_class} catalog from {spec}"))
}

/// Loads a trace file or generates one; returns requests and connectivity.
pub fn load_trace(spec: &str, horizon_s: f64) -> Result<(Vec<Request>, Connectivity)> {
    if Path::new(spec).is_file() {
        return Ok((trace::read_trace(Path::new(spec))?, Connectivity::default()));
    }
    let g = generators::generate(spec, horizon_s)?;
    Ok((g.requests, g.connectivity))
}

/// Budgets from flags over the catalog's defaults.
pub fn budgets(
    catalog: &Catalog,
    energy: Option<f64>,
    cost: Option<f64>,
    horizon: Option<f64>,
    memory: Option<f64>,
) -> Result<Budgets> {
    let mut b = Budgets::from_catalog(catalog);
    if let Some(e) = energy {
        b.energy_j = e;
    }
    if let Some(c) = cost {
        b.cost_usd = c;
    }
    if let Some(h) = horizon {
        b.horizon_s = h;
    }
    if let Some(m) = memory {
        b.memory_mb = m;
    }
    for (name, x) in [
        ("energy budget", b.energy_j),
        ("cost budget", b.cost_usd),
        ("horizon", b.horizon_s),
        ("memory", b.memory_mb),
    ] {
        anyhow::ensure!(
            x.is_finite() && x >= 0.0,
            "{name} must be a non-negative number"
        );
    }
    Ok(b)
}

fn cmd_run(a: RunArgs) -> Result<()> {
    let mut catalog = load_catalog(&a.catalog, &a.device_class)?;
    if let Some(m) = a.model {
        catalog.constants.model = m;
    }
    let b = budgets(
        &catalog,
        a.energy_budget_j,
        a.cost_budget_usd,
        a.horizon_s,
        a.memory_mb,
    )?;
    let (mut requests, mut conn) = load_trace(&a.trace, b.horizon_s)?;
    requests.retain(|r| r.time_s < b.horizon_s);
    if let Some(path) = &a.connectivity {
        conn = trace::read_connectivity(path)?;
    }
    let report = if a.policy == "bound" {
        let reqs = engine::bound_requests(&catalog, &requests, &conn);
        let bound = engine::trace_bound(&catalog, &reqs, &b)?;
        engine::RunReport {
            policy: "bound".into(),
            mean_accuracy: bound.mean_accuracy,
            requests: bound.requests,
            energy_used_j: bound.energy_used_j,
            cost_used_usd: bound.cost_used_usd,
            ..engine::RunReport::default()
        }
    } else {
        engine::run(&catalog, &requests, &conn, &a.policy, &b)?
    };
    if a.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "{}: mean accuracy {:.2} % over {} requests ({} dropped, {} loads); energy {:.1} J of {}, cost ${:.5} of {}",
            report.policy,
            report.mean_accuracy,
            report.requests,
            report.dropped,
            report.swaps,
            report.energy_used_j,
            b.energy_j,
            report.cost_used_usd,
            b.cost_usd
        );
        for (app, r) in &report.per_app {
            println!(
                "  {app}: {:.2} % over {} ({} dropped, {} device, {} server, {} specialised)",
                r.mean_accuracy, r.requests, r.dropped, r.on_device, r.offloaded, r.specialised
            );
        }
    }
    Ok(())
}

fn main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::Run(a) => cmd_run(a),
        Cmd::Sweep(a) => sweep::cmd_sweep(a),
        Cmd::Report(a) => report::cmd_report(a),
        Cmd::Bench(a) => bench::cmd_bench(a),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn every_flag_has_help_and_the_command_line_is_consistent() {
        config_file::check_command(&super::Cli::command()).unwrap();
    }
}
