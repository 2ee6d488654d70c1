//! `mcdnnctl nodes list|show NAME` and `mcdnnctl top`: the fleet as the leader sees it, from the
//! operator API's `/status`.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde::Serialize;

use super::cluster::Target;
use super::output;
use crate::fleet::status::{FleetStatus, NodeStatus};

#[derive(Debug, Subcommand)]
pub enum NodesCommand {
    /// Every node the leader knows: class, battery, rate, accuracy, last seen.
    List(Target),
    /// One node in full: its telemetry figures, plan and recorded results.
    Show {
        /// The node's name.
        name: String,
        #[command(flatten)]
        target: Target,
    },
    /// Make a one-time enrollment token for NAME (printed once; only its hash is stored).
    /// The device then runs `mcdnn-node enroll --name NAME --token TOKEN --admin HOST:PORT`.
    Token {
        /// The node name the certificate will carry.
        name: String,
        /// How long the token works: a number with s, m, h or d (e.g. 30m, 1h, 7d).
        #[arg(long, default_value = "1h", value_parser = super::node_identity::parse_ttl)]
        ttl: Duration,
        #[command(flatten)]
        target: Target,
    },
    /// Approve NAME for the offload-server role (other devices will send it their frames).
    ApproveServer {
        /// The node's certificate name.
        name: String,
        /// Withdraw the approval instead.
        #[arg(long)]
        revoke: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Revoke NAME: refused at every handshake on every replica, its live session closed,
    /// offload servers told; it can never renew or enroll again.
    Revoke {
        /// The node's certificate name.
        name: String,
        #[command(flatten)]
        target: Target,
    },
}

/// Arguments of `mcdnnctl top`.
#[derive(Debug, Clone, Args)]
pub struct TopArgs {
    #[command(flatten)]
    pub target: Target,
    /// Refresh interval.
    #[arg(long, value_parser = humantime_secs, default_value = "1")]
    pub interval: Duration,
    /// Stop after this many refreshes (0: until interrupted).
    #[arg(long, default_value_t = 0)]
    pub iterations: u64,
}

fn humantime_secs(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .trim_end_matches('s')
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !(0.1..=3600.0).contains(&secs) {
        return Err("choose 0.1 to 3600 seconds".into());
    }
    Ok(Duration::from_secs_f64(secs))
}

/// `/status` from the first replica that leads (a follower knows no nodes: only the leader
/// serves them).
pub fn fleet_status(t: &Target) -> anyhow::Result<FleetStatus> {
    let client = t.identity.client()?;
    let mut errors = Vec::new();
    let mut follower_view = None;
    for admin in &t.admins {
        match super::demo::fetch_status(&client, admin) {
            Ok(s) if !s.nodes.is_empty() || s.plan.epoch > 0 => return Ok(s),
            Ok(s) => follower_view = Some(s),
            Err(e) => errors.push(format!("{admin}: {e:#}")),
        }
    }
    follower_view.with_context(|| format!("no replica answered:\n  {}", errors.join("\n  ")))
}

/// A node as `nodes list` prints it.
#[derive(Debug, Serialize)]
pub struct NodeRow {
    pub name: String,
    pub class: String,
    pub battery_pct: f64,
    pub energy_left_j: f64,
    pub requests_per_s: f64,
    pub accuracy: f64,
    pub variants: Vec<String>,
    pub last_seen_s: f64,
    pub connected: bool,
    pub results_recorded: u64,
}

fn row(s: &FleetStatus, n: &NodeStatus) -> NodeRow {
    NodeRow {
        name: n.id.clone(),
        class: n.device_class.clone(),
        battery_pct: if n.energy_budget_j > 0.0 {
            100.0 * n.energy_left_j / n.energy_budget_j
        } else {
            0.0
        },
        energy_left_j: n.energy_left_j,
        requests_per_s: n.requests_per_s,
        accuracy: n.accuracy,
        variants: n.loaded_variants.clone(),
        last_seen_s: n.last_seen_s,
        connected: n.connected,
        results_recorded: s.results.get(&n.id).map_or(0, |r| r.received),
    }
}

/// Nodes sorted by battery left, lowest first: the ones an operator watches.
pub fn rows(s: &FleetStatus) -> Vec<NodeRow> {
    let mut rows: Vec<NodeRow> = s.nodes.iter().map(|n| row(s, n)).collect();
    rows.sort_by(|a, b| a.battery_pct.total_cmp(&b.battery_pct));
    rows
}

pub fn rows_table(rows: &Vec<NodeRow>, out: &mut dyn Write) -> anyhow::Result<()> {
    writeln!(
        out,
        "{:<16} {:<13} {:>8} {:>10} {:>7} {:>6} {:>9} {:>8}  VARIANTS",
        "NAME", "CLASS", "BATTERY", "ENERGY J", "REQ/S", "ACC %", "SEEN", "RESULTS"
    )?;
    for r in rows {
        writeln!(
            out,
            "{:<16} {:<13} {:>7.0}% {:>10.2} {:>7.1} {:>6.1} {:>8.1}s {:>8}  {}{}",
            r.name,
            r.class,
            r.battery_pct,
            r.energy_left_j,
            r.requests_per_s,
            r.accuracy,
            r.last_seen_s,
            r.results_recorded,
            r.variants.join(","),
            if r.connected { "" } else { "  (disconnected)" }
        )?;
    }
    Ok(())
}

pub fn run(cmd: &NodesCommand, out: &mut dyn Write) -> anyhow::Result<()> {
    match cmd {
        NodesCommand::Token { name, ttl, target } => {
            super::node_identity::token(name, *ttl, target, out)
        }
        NodesCommand::ApproveServer {
            name,
            revoke,
            target,
        } => super::server_approval::approve(name, *revoke, target, out),
        NodesCommand::Revoke { name, target } => super::node_identity::revoke(name, target, out),
        NodesCommand::List(t) => {
            let s = fleet_status(t)?;
            output::emit(t.output, &rows(&s), out, rows_table)
        }
        NodesCommand::Show { name, target } => {
            let s = fleet_status(target)?;
            let Some(n) = s.nodes.iter().find(|n| &n.id == name) else {
                bail!("the leader knows no node {name:?} (is it connected?)");
            };
            let detail = serde_json::json!({
                "node": n,
                "plan": s.plan.mixes.get(name),
                "results": s.results.get(name),
            });
            output::emit(target.output, &detail, out, |d, out| {
                let r = row(&s, n);
                rows_table(&vec![r], out)?;
                writeln!(out, "plan: {}", d["plan"])?;
                writeln!(out, "results: {}", d["results"])?;
                Ok(())
            })
        }
    }
}

/// `mcdnnctl top`: the live fleet view, redrawn in place on a terminal, appended as plain text
/// otherwise (logs, pipes).
pub fn top(args: &TopArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let terminal = std::io::stdout().is_terminal();
    let started = Instant::now();
    let mut n = 0u64;
    loop {
        let s = fleet_status(&args.target)?;
        if terminal {
            write!(out, "\x1b[2J\x1b[H")?;
        }
        writeln!(
            out,
            "MCDNN fleet  leader {}  plan epoch {}  gap {:.3}%  nodes {}  ({:.0} s)",
            s.coordinator,
            s.plan.epoch,
            s.plan.gap * 100.0,
            s.nodes.len(),
            started.elapsed().as_secs_f64()
        )?;
        rows_table(&rows(&s), out)?;
        out.flush()?;
        n += 1;
        if args.iterations > 0 && n >= args.iterations {
            return Ok(());
        }
        std::thread::sleep(args.interval);
    }
}
