//! `mcdnnctl demo`: the main job on one machine. Makes the fleet's certificates on first run,
//! starts a coordinator and N node agents of different device classes and battery levels as real
//! processes talking QUIC with mutual TLS, shows a live view of the fleet from the coordinator's
//! admin API, and ends with a summary built from the nodes' own end-of-run reports.
//!
//! The shift is compressed to the demo's duration and each node's energy budget is sized so the
//! full model cannot serve every request: the scheduler has to trade accuracy for energy, as a
//! body camera does over a 10-hour shift.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use net::identity::{Ca, Kind, OperatorRole};
use serde::Serialize;

use super::http;
use crate::fleet::status::FleetStatus;

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
    /// Catalog manifest passed to every process.
    #[arg(long)]
    pub catalog: Option<PathBuf>,
    /// Base port: coordinator QUIC on it, operator API on it + 1, health port on it + 2.
    #[arg(long, default_value_t = 7400)]
    pub port: u16,
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

/// A node of the demo fleet: device class, energy budget per second of shift, app rates.
struct NodeSpec {
    name: String,
    class: &'static str,
    joules_per_s: f64,
    apps: &'static str,
}

fn fleet(n: usize) -> Vec<NodeSpec> {
    // Budgets per class chosen so the full model does not fit everywhere: a body camera with a
    // low battery, a phone at half, a laptop that can afford the best variant.
    const CLASSES: [(&str, f64, &str); 3] = [
        ("bodycam-lite", 0.06, "garment=4,category=2"),
        ("phone-2016", 0.08, "garment=4,category=4"),
        ("laptop", 0.5, "garment=6,category=3"),
    ];
    (0..n)
        .map(|i| {
            let (class, jps, apps) = CLASSES[i % CLASSES.len()];
            // Later nodes of a class start with less battery.
            let level = 1.0 - 0.25 * (i / CLASSES.len()) as f64;
            NodeSpec {
                name: format!("cam-{}", i + 1),
                class,
                joules_per_s: jps * level.max(0.25),
                apps,
            }
        })
        .collect()
}

#[derive(Debug, Clone, Serialize)]
pub struct NodeResult {
    pub id: String,
    pub device_class: String,
    pub requests: u64,
    pub accuracy: f64,
    pub energy_used_j: f64,
    pub energy_budget_j: f64,
    pub model_loads: u64,
    pub last_epoch: u64,
    pub variants: BTreeMap<String, BTreeMap<String, u64>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DemoSummary {
    pub fleet_accuracy: f64,
    pub requests: u64,
    pub duration_s: f64,
    pub plan_epoch: u64,
    pub plan_gap: f64,
    pub nodes: Vec<NodeResult>,
}

/// Children are killed if the demo fails half-way.
struct Procs(Vec<(String, Child)>);

impl Drop for Procs {
    fn drop(&mut self) {
        for (_, c) in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn sibling(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating mcdnnctl")?;
    let path = exe.with_file_name(name);
    if !path.is_file() {
        bail!(
            "{} not found beside mcdnnctl; build the workspace (cargo build --release)",
            path.display()
        );
    }
    Ok(path)
}

/// The read-only operator identity the demo's live view reads `/status` with.
pub const DEMO_OPERATOR: &str = "demo-viewer";

/// Creates the CA and the certificates the demo needs, keeping any that exist.
fn certificates(dir: &Path, nodes: &[NodeSpec]) -> anyhow::Result<()> {
    let ca = if dir.join(net::identity::CA_CERT_FILE).exists() {
        Ca::load(dir)?
    } else {
        Ca::init(dir)?
    };
    let mut want = vec![(Kind::Coordinator, "coord-0".to_string())];
    want.extend(nodes.iter().map(|n| (Kind::Node, n.name.clone())));
    for (kind, name) in want {
        if !dir.join(format!("{name}.pem")).exists() {
            ca.enroll(kind, &name, dir, &[], 30)?;
        }
    }
    if !dir.join(format!("{DEMO_OPERATOR}.pem")).exists() {
        ca.enroll_operator(DEMO_OPERATOR, dir, OperatorRole::ReadOnly, 30)?;
    }
    Ok(())
}

pub fn run(args: &DemoArgs, out: &mut dyn Write) -> anyhow::Result<DemoSummary> {
    if args.nodes == 0 {
        bail!("--nodes must be at least 1");
    }
    let specs = fleet(args.nodes);
    let dir = &args.dir;
    let ca_dir = dir.join("ca");
    std::fs::create_dir_all(&ca_dir).with_context(|| format!("creating {}", ca_dir.display()))?;
    certificates(&ca_dir, &specs)?;
    // Each run starts fresh: stores and coordinator state from an earlier demo would resume
    // old assignments.
    let run_dir = dir.join("run");
    let _ = std::fs::remove_dir_all(&run_dir);
    std::fs::create_dir_all(&run_dir)?;
    let quic = format!("127.0.0.1:{}", args.port);
    let admin = format!("127.0.0.1:{}", args.port + 1);
    let health = format!("127.0.0.1:{}", args.port + 2);
    let viewer = http::Client::load(&ca_dir, DEMO_OPERATOR)?;
    let secs = args.duration.as_secs_f64();
    let mut procs = Procs(Vec::new());
    let log = |name: &str| -> anyhow::Result<Stdio> {
        Ok(std::fs::File::create(run_dir.join(format!("{name}.log")))?.into())
    };
    let mut coord = Command::new(sibling("mcdnn-coordinator")?);
    coord
        .args([
            "run",
            "--name",
            "coord-0",
            "--listen",
            &quic,
            "--admin",
            &admin,
            "--health-listen",
            &health,
            "--solve-interval-ms",
            "1000",
        ])
        .arg("--identity-dir")
        .arg(&ca_dir)
        .arg("--data-dir")
        .arg(run_dir.join("coordinator"));
    if let Some(c) = &args.catalog {
        coord.arg("--catalog").arg(c);
    }
    let child = coord
        .stdout(Stdio::null())
        .stderr(log("coordinator")?)
        .spawn()
        .context("starting the coordinator")?;
    procs.0.push(("coordinator".into(), child));
    wait_ready(&health)?;
    for (i, spec) in specs.iter().enumerate() {
        let mut node = Command::new(sibling("mcdnn-node")?);
        node.args([
            "run",
            "--name",
            &spec.name,
            "--coordinator",
            &quic,
            "--device-class",
            spec.class,
            "--apps",
            spec.apps,
        ])
        .args([
            "--battery-model",
            "--telemetry-ms",
            "500",
            "--seed",
            &(i + 1).to_string(),
        ])
        .arg("--energy-budget-j")
        .arg(format!("{:.3}", spec.joules_per_s * secs))
        .arg("--shift-s")
        .arg(format!("{secs}"))
        .arg("--duration-s")
        .arg(format!("{secs}"))
        .arg("--identity-dir")
        .arg(&ca_dir)
        .arg("--store")
        .arg(run_dir.join(format!("{}.store", spec.name)))
        .arg("--summary")
        .arg(run_dir.join(format!("{}.summary.json", spec.name)));
        if let Some(c) = &args.catalog {
            node.arg("--catalog").arg(c);
        }
        let child = node
            .stdout(Stdio::null())
            .stderr(log(&spec.name)?)
            .spawn()
            .context("starting a node")?;
        procs.0.push((spec.name.clone(), child));
    }
    let live = !args.json;
    let tty = std::io::stdout().is_terminal();
    let started = Instant::now();
    let mut last_line = Instant::now() - Duration::from_secs(60);
    // Nodes stop themselves after the duration; wait for them (and a little for start-up).
    loop {
        let nodes_done = procs
            .0
            .iter_mut()
            .skip(1)
            .all(|(_, c)| matches!(c.try_wait(), Ok(Some(_))));
        if nodes_done {
            break;
        }
        if started.elapsed() > args.duration + Duration::from_secs(60) {
            bail!(
                "nodes did not finish within the duration + 60 s; see {}",
                run_dir.display()
            );
        }
        if live
            && (tty || last_line.elapsed() >= Duration::from_secs(5))
            && let Ok(status) = fetch_status(&viewer, &admin)
        {
            let view = render(&status, started.elapsed().as_secs_f64(), secs);
            if tty {
                write!(out, "\x1b[2J\x1b[H{view}")?;
            } else {
                writeln!(out, "{view}")?;
            }
            out.flush()?;
            last_line = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(1000));
    }
    let final_status = fetch_status(&viewer, &admin).ok();
    for (name, child) in &mut procs.0 {
        if name == "coordinator" {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
        }
    }
    let mut nodes = Vec::new();
    for (spec, (_, child)) in specs.iter().zip(procs.0.iter_mut().skip(1)) {
        let status = child.wait()?;
        if !status.success() {
            bail!(
                "node {} failed ({status}); see {}",
                spec.name,
                run_dir.join(format!("{}.log", spec.name)).display()
            );
        }
        let path = run_dir.join(format!("{}.summary.json", spec.name));
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        // Typed: a summary missing a field is an error, not a node that served nothing.
        let v = wire::summary::Summary::from_json(&text)
            .with_context(|| format!("parsing {}", path.display()))?;
        let variants: BTreeMap<String, BTreeMap<String, u64>> = v
            .apps
            .into_iter()
            .map(|(app, a)| (app, a.by_variant))
            .collect();
        nodes.push(NodeResult {
            id: spec.name.clone(),
            device_class: spec.class.to_string(),
            requests: v.requests,
            accuracy: v.accuracy,
            energy_used_j: v.energy_used_j,
            energy_budget_j: v.energy_budget_j,
            model_loads: v.model_loads,
            last_epoch: v.last_epoch,
            variants,
        });
    }
    let requests: u64 = nodes.iter().map(|n| n.requests).sum();
    let correct: f64 = nodes
        .iter()
        .map(|n| n.accuracy * n.requests as f64 / 100.0)
        .sum();
    let summary = DemoSummary {
        fleet_accuracy: if requests == 0 {
            0.0
        } else {
            100.0 * correct / requests as f64
        },
        requests,
        duration_s: started.elapsed().as_secs_f64(),
        plan_epoch: final_status.as_ref().map_or(0, |s| s.plan.epoch),
        plan_gap: final_status.as_ref().map_or(0.0, |s| s.plan.gap),
        nodes,
    };
    if let Some((_, c)) = procs.0.first_mut() {
        let _ = c.wait();
    }
    procs.0.clear();
    Ok(summary)
}

fn wait_ready(health: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if http::health_get(health, "/livez", Duration::from_millis(500)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("the coordinator's health port at {health} did not come up within 20 s")
}

/// The fleet as the operator API's `/status` shows it.
pub fn fetch_status(client: &http::Client, admin: &str) -> anyhow::Result<FleetStatus> {
    let body = client.get(admin, "/status", Duration::from_secs(2))?;
    serde_json::from_str(&body).context("parsing /status")
}

/// The live view: one line per node.
pub fn render(status: &FleetStatus, elapsed_s: f64, total_s: f64) -> String {
    let mut s = format!(
        "MCDNN fleet  t={elapsed_s:>5.1}/{total_s:.0}s  coordinator {}  plan epoch {}  gap {:.3}%  solve {:.2} ms\n",
        status.coordinator,
        status.plan.epoch,
        status.plan.gap * 100.0,
        status.plan.solve_ms
    );
    s += &format!(
        "{:<8} {:<13} {:>14} {:>9} {:>8} {:>7} {:>6}  {}\n",
        "node", "class", "budget left J", "left %", "req/s", "reqs", "acc %", "variants (plan)"
    );
    for n in &status.nodes {
        let plan = status
            .plan
            .mixes
            .get(&n.id)
            .map(|apps| {
                apps.iter()
                    .map(|(app, mix)| format!("{app}: {}", mix.join(" ")))
                    .collect::<Vec<_>>()
                    .join("; ")
            })
            .unwrap_or_default();
        let pct = if n.energy_budget_j > 0.0 {
            100.0 * n.energy_left_j / n.energy_budget_j
        } else {
            0.0
        };
        s += &format!(
            "{:<8} {:<13} {:>14.2} {:>8.0}% {:>8.1} {:>7} {:>6.1}  {}{}\n",
            n.id,
            n.device_class,
            n.energy_left_j,
            pct,
            n.requests_per_s,
            n.requests,
            n.accuracy,
            plan,
            if n.connected { "" } else { "  (disconnected)" }
        );
    }
    s
}

/// The human summary.
pub fn summary_table(s: &DemoSummary) -> String {
    let mut out = format!(
        "\nfleet accuracy {:.2}% over {} requests in {:.0} s; last plan epoch {} (gap {:.3}%)\n",
        s.fleet_accuracy,
        s.requests,
        s.duration_s,
        s.plan_epoch,
        s.plan_gap * 100.0
    );
    out += &format!(
        "{:<8} {:<13} {:>7} {:>7} {:>16} {:>6}  variants used\n",
        "node", "class", "reqs", "acc %", "energy J / budget", "loads"
    );
    for n in &s.nodes {
        let used = n
            .variants
            .iter()
            .map(|(app, by)| {
                format!(
                    "{app}: {}",
                    by.iter()
                        .map(|(v, c)| format!("{v}x{c}"))
                        .collect::<Vec<_>>()
                        .join(" ")
                )
            })
            .collect::<Vec<_>>()
            .join("; ");
        out += &format!(
            "{:<8} {:<13} {:>7} {:>7.2} {:>8.2} / {:<7.2} {:>6}  {}\n",
            n.id,
            n.device_class,
            n.requests,
            n.accuracy,
            n.energy_used_j,
            n.energy_budget_j,
            n.model_loads,
            used
        );
    }
    out
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

    #[test]
    fn fleet_mixes_classes_and_battery_levels() {
        let f = fleet(6);
        assert_eq!(f.len(), 6);
        assert_ne!(f[0].class, f[1].class);
        assert_eq!(f[0].class, f[3].class);
        assert!(
            f[3].joules_per_s < f[0].joules_per_s,
            "later nodes start with less battery"
        );
    }
}
