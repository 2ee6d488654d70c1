//! Collecting the chaos verdicts' evidence from real processes: node summaries, the
//! coordinator's `/status` (ledger and telemetry), replica audit logs. Every read that fails or
//! lacks a field is an error, never a 0 that would read as "nothing lost".

use anyhow::Context;
use mcdnn_coordinator::fleet::status::FleetStatus;
use serde_json::Value;
use wire::summary::Summary;

use crate::verdict::{NodeEvidence, TelemetryCounters};

/// Results the coordinator's replicated ledger recorded for `node` (over all its runs) and the
/// sequence gaps it saw.
pub fn recorded(status: &FleetStatus, node: &str) -> (u64, u64) {
    status
        .results
        .get(node)
        .map_or((0, 0), |r| (r.received, r.gaps))
}

/// One node run's evidence: its own summary against the ledger.
pub fn node(name: &str, summary: &Summary, status: &FleetStatus) -> anyhow::Result<NodeEvidence> {
    node_runs(name, &[summary], status)
}

/// Every run of one node (oldest first) against the ledger, which counts over all of them:
/// counters summed over the runs, pending from the last (each run drains its predecessors').
pub fn node_runs(
    name: &str,
    summaries: &[&Summary],
    status: &FleetStatus,
) -> anyhow::Result<NodeEvidence> {
    let (recorded, gaps) = recorded(status, name);
    let sum = |field: fn(&Summary) -> u64| summaries.iter().map(|s| field(s)).sum();
    let last = summaries.last().context("no run of the node to judge")?;
    Ok(NodeEvidence {
        node: name.to_string(),
        requests: sum(|s| s.requests),
        dropped: sum(|s| s.dropped),
        accepted: sum(|s| s.results_accepted),
        spool_failures: sum(|s| s.spool_failures),
        pending: last.results_pending,
        recorded,
        gaps,
    })
}

/// The node's last telemetry as the coordinator holds it, if it ever reported.
pub fn telemetry(status: &FleetStatus, node: &str) -> Option<TelemetryCounters> {
    status
        .nodes
        .iter()
        .find(|n| n.id == node)
        .map(|n| TelemetryCounters {
            requests: n.requests,
            dropped: n.dropped,
            accepted: n.results_accepted,
            spool_failures: n.spool_failures,
        })
}

/// Problems in the nodes' last telemetry (conservation, spool failures); a node that never
/// reported is a problem too.
pub fn telemetry_problems(status: &FleetStatus, nodes: &[&str]) -> Vec<String> {
    nodes
        .iter()
        .flat_map(|n| match telemetry(status, n) {
            Some(t) => crate::verdict::telemetry(n, &t),
            None => vec![format!("{n} never sent telemetry")],
        })
        .collect()
}

/// A replica's policy audit log (`GET /policy` -> `log`), every entry with writer, write id
/// and index; an entry lacking one is an error. Writers are recorded as `<operator>/<label>`:
/// the harness operator's prefix is taken off so entries compare with the labels chosen.
pub fn policy_log(
    client: &mcdnn_coordinator::ctl::http::Client,
    admin: &str,
) -> anyhow::Result<Vec<crate::verdict::LogEntry>> {
    let body = client.get(admin, "/policy", std::time::Duration::from_secs(3))?;
    let v: Value = serde_json::from_str(&body)?;
    let log = v["log"]
        .as_array()
        .with_context(|| format!("{admin}/policy has no log: {body}"))?;
    log.iter()
        .map(|w| {
            let entry = || {
                let writer = w["writer"].as_str()?;
                let prefix = format!("{}/", crate::OPERATOR);
                Some(crate::verdict::LogEntry {
                    writer: writer.strip_prefix(&prefix).unwrap_or(writer).to_string(),
                    write_id: w["write_id"].as_u64()?,
                    index: w["index"].as_u64()?,
                })
            };
            entry().with_context(|| format!("{admin}: malformed audit entry {w}"))
        })
        .collect()
}
