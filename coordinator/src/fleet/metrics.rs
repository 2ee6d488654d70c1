//! Counters and gauges the coordinator exports at `/metrics` (Prometheus text, `mcdnn_` prefix,
//! base units).

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct Metrics {
    pub handshakes_refused_total: AtomicU64,
    pub sessions_total: AtomicU64,
    pub sessions_rejected_total: AtomicU64,
    pub frames_rejected_total: AtomicU64,
    pub telemetry_messages_total: AtomicU64,
    pub plans_total: AtomicU64,
    pub plan_failures_total: AtomicU64,
    pub assignments_sent_total: AtomicU64,
    /// Bytes of plan commands (full or delta) committed through Raft.
    pub plan_raft_bytes_total: AtomicU64,
    pub nodes_expired_total: AtomicU64,
    /// Node messages dropped or refused for exceeding their identity's rate.
    pub rate_limited_total: AtomicU64,
    /// Older node connections closed because the same identity connected again.
    pub sessions_replaced_total: AtomicU64,
    /// Hellos refused because the node's catalog digest is not the fleet's.
    pub catalog_mismatch_total: AtomicU64,
    /// f64 bits.
    pub plan_solve_seconds: AtomicU64,
    pub plan_gap: AtomicU64,
    pub plan_epoch: AtomicU64,
    pub nodes_connected: AtomicU64,
    /// Connected nodes the last solve left out (invalid hello/telemetry, unapproved server).
    pub nodes_excluded: AtomicU64,
    pub proposals_committed_total: AtomicU64,
    pub proposals_failed_total: AtomicU64,
}

impl Metrics {
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn set_f64(gauge: &AtomicU64, v: f64) {
        gauge.store(v.to_bits(), Ordering::Relaxed);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let counters = [
            (
                "mcdnn_handshakes_refused_total",
                "QUIC/TLS handshakes refused (bad, foreign or expired certificates)",
                &self.handshakes_refused_total,
            ),
            (
                "mcdnn_sessions_total",
                "Node sessions accepted",
                &self.sessions_total,
            ),
            (
                "mcdnn_sessions_rejected_total",
                "Sessions closed for a bad hello (identity, version, kind)",
                &self.sessions_rejected_total,
            ),
            (
                "mcdnn_frames_rejected_total",
                "Malformed or oversized frames; each closed its connection",
                &self.frames_rejected_total,
            ),
            (
                "mcdnn_telemetry_messages_total",
                "Telemetry reports ingested",
                &self.telemetry_messages_total,
            ),
            (
                "mcdnn_plans_total",
                "Fleet plans solved and pushed",
                &self.plans_total,
            ),
            (
                "mcdnn_plan_failures_total",
                "Fleet solves that failed",
                &self.plan_failures_total,
            ),
            (
                "mcdnn_assignments_sent_total",
                "Assignments queued to nodes",
                &self.assignments_sent_total,
            ),
            (
                "mcdnn_plan_raft_bytes_total",
                "Bytes of plan commands (only the changed assignments) committed through Raft",
                &self.plan_raft_bytes_total,
            ),
            (
                "mcdnn_nodes_expired_total",
                "Nodes forgotten after the node timeout",
                &self.nodes_expired_total,
            ),
            (
                "mcdnn_rate_limited_total",
                "Node messages dropped or refused over their identity's rate",
                &self.rate_limited_total,
            ),
            (
                "mcdnn_sessions_replaced_total",
                "Node connections closed because the same identity connected again",
                &self.sessions_replaced_total,
            ),
            (
                "mcdnn_catalog_mismatch_total",
                "Hellos refused for a catalog digest that is not the fleet's",
                &self.catalog_mismatch_total,
            ),
        ];
        for (name, help, c) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                c.load(Ordering::Relaxed)
            );
        }
        let gauges = [
            (
                "mcdnn_plan_solve_seconds",
                "Time the last fleet solve took",
                f64::from_bits(self.plan_solve_seconds.load(Ordering::Relaxed)),
            ),
            (
                "mcdnn_plan_gap",
                "Certified relative optimality gap of the last plan",
                f64::from_bits(self.plan_gap.load(Ordering::Relaxed)),
            ),
            (
                "mcdnn_plan_epoch",
                "Epoch of the last plan",
                self.plan_epoch.load(Ordering::Relaxed) as f64,
            ),
            (
                "mcdnn_nodes_connected",
                "Nodes with a live session",
                self.nodes_connected.load(Ordering::Relaxed) as f64,
            ),
            (
                "mcdnn_nodes_excluded",
                "Connected nodes left out of the last plan (invalid reports, unapproved server)",
                self.nodes_excluded.load(Ordering::Relaxed) as f64,
            ),
        ];
        for (name, help, v) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        }
        out
    }
}
