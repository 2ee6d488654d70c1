//! The demo's live view and its closing table.

use std::time::Duration;

use anyhow::Context;

use super::summary::{DemoSummary, NodeResult};
use crate::ctl::http;
use crate::fleet::status::FleetStatus;

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
    if let Some(pct) = s.face_agreement {
        out += &format!("face apps agree with the reference on {pct:.1}% of audited frames\n");
    }
    for n in &s.nodes {
        out += &face_lines(n);
    }
    out
}

/// A node's face apps: requests and late ones, who was seen, the audit, time per face.
fn face_lines(n: &NodeResult) -> String {
    let mut out = String::new();
    for (app, f) in &n.face {
        let seen = if f.seen.is_empty() {
            "nobody".to_string()
        } else {
            f.seen
                .iter()
                .map(|(name, frames)| format!("{name} in {frames} frames"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let timing = f
            .timing
            .iter()
            .map(|(v, t)| match t.ms_per_face() {
                Some(ms) => format!("{v} {ms:.1} ms/face"),
                None => format!("{v} no face"),
            })
            .collect::<Vec<_>>()
            .join(", ");
        let r = f.recent;
        let recent = if r.hits + r.misses == 0 {
            String::new()
        } else {
            format!("; recent gallery {} hits, {} misses", r.hits, r.misses)
        };
        out += &format!(
            "{} {app}: node {} reqs ({} late, {} dropped), {} faces; seen: {seen}; audit {}/{} agreed ({:.1}%); {timing}{recent}\n",
            n.id, n.requests, n.late, n.dropped, f.faces, f.agreed, f.audited, f.agreement
        );
    }
    out
}
