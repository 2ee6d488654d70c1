//! `mcdnnctl demo`: the main job on one machine. Makes the fleet's certificates on first run,
//! starts a coordinator and N node agents of different device classes and battery levels as real
//! processes talking QUIC with mutual TLS, shows a live view of the fleet from the coordinator's
//! admin API, and ends with a summary built from the nodes' own end-of-run reports.
//!
//! The shift is compressed to the demo's duration and each node's energy budget is sized so the
//! full model cannot serve every request: the scheduler has to trade accuracy for energy, as a
//! body camera does over a 10-hour shift.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;

use super::http;

mod compare;
pub mod face;
mod fleet;
mod procs;
mod summary;
mod view;

pub use compare::{COMPARED, Comparison, PolicyRun, compare, comparison_table};
pub use fleet::{DEMO_OPERATOR, Workload};
pub use summary::{DemoSummary, NodeResult};
pub use view::{fetch_status, render, summary_table};

use fleet::NodePlaces;
use procs::Procs;

#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// Number of node agents.
    #[arg(long, default_value_t = 3)]
    pub nodes: usize,
    /// How long the fleet runs, e.g. 30s, 2m.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Print the summary as one JSON object (no live view).
    #[arg(long)]
    pub json: bool,
    /// Working folder: certificates, stores, logs, summaries.
    #[arg(long, default_value = "fleet-demo")]
    pub dir: PathBuf,
    /// What the fleet serves: `fashion` (the Fashion-MNIST apps on the replayed test split) or
    /// `face` (the face app on Megamind.avi, looping, against a watchlist enrolled at start).
    #[arg(long, value_enum, default_value = "fashion")]
    pub workload: Workload,
    /// Catalog manifest passed to every process (face workload: `models/fleet.json`, both
    /// catalogs planned together, else `models/face/catalog.json`).
    #[arg(long)]
    pub catalog: Option<PathBuf>,
    /// Base port: coordinator QUIC on it, operator API on it + 1, health port on it + 2, Raft
    /// (QUIC) on it + 3.
    #[arg(long, default_value_t = 7400)]
    pub port: u16,
    /// Per-request policy every node runs: `mcdnn` follows the fleet plan; the baselines
    /// (`paper`, `best-device`, `cheapest`, `cloud`) decide on each device alone.
    #[arg(long, default_value = "mcdnn")]
    pub policy: String,
    /// Run the same fleet (seeds, streams, budgets) once per policy (mcdnn, paper, best-device,
    /// cheapest) and print one comparison table.
    #[arg(long, conflicts_with = "policy")]
    pub compare: bool,
}

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s.split_at(
        s.find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(s.len()),
    );
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 30s or 2m"))?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("unknown unit {unit:?} in {s:?}; use ms, s, m or h")),
    };
    if !(secs.is_finite() && secs > 0.0) {
        return Err(format!("{s:?} must be positive"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Runs the demo fleet for `args.duration`, drawing the live view on `out`, and returns the
/// summary built from the nodes' own reports.
pub fn run(args: &DemoArgs, out: &mut dyn Write) -> anyhow::Result<DemoSummary> {
    if args.nodes == 0 {
        bail!("--nodes must be at least 1");
    }
    let face = args.workload == Workload::Face;
    let specs = fleet::fleet(args.nodes, args.workload);
    let catalog = match (&args.catalog, face) {
        (Some(c), _) => Some(c.clone()),
        (None, true) => Some(face::default_catalog()),
        (None, false) => None,
    };
    let dir = &args.dir;
    let ca_dir = dir.join("ca");
    std::fs::create_dir_all(&ca_dir).with_context(|| format!("creating {}", ca_dir.display()))?;
    fleet::certificates(&ca_dir, &specs, face.then_some(face::DEMO_ADMIN))?;
    // Each run starts fresh: stores and coordinator state from an earlier demo would resume
    // old assignments.
    let run_dir = dir.join("run");
    let _ = std::fs::remove_dir_all(&run_dir);
    std::fs::create_dir_all(&run_dir)?;
    let quic = format!("127.0.0.1:{}", args.port);
    let admin = format!("127.0.0.1:{}", args.port + 1);
    let health = format!("127.0.0.1:{}", args.port + 2);
    // Every port from --port: two demos (or a demo and a test) on other base ports never meet.
    let raft = format!("127.0.0.1:{}", args.port + 3);
    let viewer = http::Client::load(&ca_dir, DEMO_OPERATOR)?;
    let secs = args.duration.as_secs_f64();
    let mut procs = Procs::new(&run_dir);
    let mut coordinator: Vec<std::ffi::OsString> = [
        "run",
        "--name",
        "coord-0",
        "--listen",
        &quic,
        "--admin",
        &admin,
        "--health-listen",
        &health,
        "--raft-listen",
        &raft,
        "--solve-interval-ms",
        "1000",
    ]
    .map(Into::into)
    .to_vec();
    coordinator.extend(["--identity-dir".into(), ca_dir.clone().into()]);
    coordinator.extend(["--data-dir".into(), run_dir.join("coordinator").into()]);
    if let Some(c) = &catalog {
        coordinator.extend(["--catalog".into(), c.into()]);
        if face {
            coordinator.extend(["--face-models".into(), face::models_dir(c).into()]);
        }
    }
    procs.start("coordinator", "mcdnn-coordinator", coordinator)?;
    procs::wait_ready(&health).with_context(|| {
        format!(
            "the coordinator did not start; its log is {}",
            run_dir.join("coordinator.log").display()
        )
    })?;
    if face {
        // Before the nodes start, so each is pushed the list with its welcome.
        let admin_client = http::Client::load(&ca_dir, face::DEMO_ADMIN)?;
        face::enrol(&admin_client, &admin, Duration::from_secs(30))?;
    }
    let places = NodePlaces {
        coordinator: &quic,
        ca_dir: &ca_dir,
        run_dir: &run_dir,
        catalog: catalog.as_deref(),
    };
    for (i, spec) in specs.iter().enumerate() {
        let mut line = spec.command_line(&places, secs, i as u64 + 1);
        line.policy = Some(args.policy.clone());
        if face {
            line.source = Some(format!("file:{}", face::VIDEO));
            line.source_loop = true;
            line.model_memory_mb = Some(face::MODEL_MEMORY_MB);
        }
        procs.start(&spec.name, "mcdnn-node", line.args())?;
    }
    let started = Instant::now();
    // Nodes stop themselves after the duration; wait for them (and a little for start-up).
    let mut view = LiveView::new(!args.json);
    while !procs.all_but_first_exited() {
        if started.elapsed() > args.duration + Duration::from_secs(60) {
            bail!(
                "nodes did not finish within the duration + 60 s; see {}",
                run_dir.display()
            );
        }
        view.draw(out, || fetch_status(&viewer, &admin), started, secs)?;
        std::thread::sleep(Duration::from_millis(1000));
    }
    let final_status = fetch_status(&viewer, &admin).ok();
    procs.terminate_first();
    let mut nodes = Vec::new();
    for spec in &specs {
        procs.wait_success(&spec.name)?;
        let path = run_dir.join(format!("{}.summary.json", spec.name));
        nodes.push(summary::read_node_result(spec, &path)?);
    }
    procs.wait_all();
    Ok(DemoSummary::new(
        nodes,
        started.elapsed().as_secs_f64(),
        final_status.as_ref(),
    ))
}

/// The live view: redrawn every second on a terminal, a line every 5 s otherwise, none with
/// `--json`.
struct LiveView {
    on: bool,
    tty: bool,
    last: Option<Instant>,
}

impl LiveView {
    fn new(on: bool) -> LiveView {
        LiveView {
            on,
            tty: std::io::stdout().is_terminal(),
            last: None,
        }
    }

    fn draw(
        &mut self,
        out: &mut dyn Write,
        status: impl FnOnce() -> anyhow::Result<crate::fleet::status::FleetStatus>,
        started: Instant,
        total_s: f64,
    ) -> anyhow::Result<()> {
        let due = self.tty
            || self
                .last
                .is_none_or(|t| t.elapsed() >= Duration::from_secs(5));
        if !self.on || !due {
            return Ok(());
        }
        let Ok(status) = status() else {
            return Ok(());
        };
        let view = render(&status, started.elapsed().as_secs_f64(), total_s);
        if self.tty {
            write!(out, "\x1b[2J\x1b[H{view}")?;
        } else {
            writeln!(out, "{view}")?;
        }
        out.flush()?;
        self.last = Some(Instant::now());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("15"), Ok(Duration::from_secs(15)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("3 parsecs").is_err());
    }
}
