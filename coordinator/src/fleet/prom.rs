//! Metrics kept with the `prometheus-client` crate: build info, latency histograms (fleet solve,
//! plan push to a node's acknowledgement, Raft commit of this replica's proposals), and per-node
//! gauges. The health port serves the fleet-wide families; the per-node ones name nodes, so they
//! are served only on the operator API (`/v1/metrics/nodes`, any operator certificate; Prometheus
//! scrapes it with a read-only operator certificate).

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode_registry;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use super::status::FleetStatus;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeLabels {
    node: String,
    device_class: String,
}

/// The histograms other tasks observe into, and the registry that serves them.
pub struct Histograms {
    registry: Registry,
    solve: Histogram,
    plan_push: Histogram,
    commit: Histogram,
}

impl std::fmt::Debug for Histograms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Histograms").finish_non_exhaustive()
    }
}

impl Default for Histograms {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("mcdnn");
        let build = Family::<BuildLabels, Gauge>::default();
        build
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION").to_string(),
            })
            .set(1);
        registry.register("build_info", "Build of this coordinator (always 1)", build);
        // 0.1 ms .. ~3 s: a fleet solve of 10 nodes to 100k.
        let solve = Histogram::new(exponential_buckets(0.000_1, 2.0, 16));
        registry.register_with_unit(
            "solve",
            "Time to solve one fleet plan",
            Unit::Seconds,
            solve.clone(),
        );
        // 1 ms .. ~30 s: a plan commit to the node's acknowledgement, across reconnects.
        let plan_push = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        registry.register_with_unit(
            "plan_push",
            "From a plan's commit to a node acknowledging its assignment",
            Unit::Seconds,
            plan_push.clone(),
        );
        // 0.1 ms .. ~3 s: a proposal to its commit and apply on this replica.
        let commit = Histogram::new(exponential_buckets(0.000_1, 2.0, 16));
        registry.register_with_unit(
            "commit",
            "From proposing a command to its commit and apply on this replica",
            Unit::Seconds,
            commit.clone(),
        );
        Self {
            registry,
            solve,
            plan_push,
            commit,
        }
    }
}

impl Histograms {
    pub fn observe_solve(&self, d: Duration) {
        self.solve.observe(d.as_secs_f64());
    }

    pub fn observe_plan_push(&self, d: Duration) {
        self.plan_push.observe(d.as_secs_f64());
    }

    pub fn observe_commit(&self, d: Duration) {
        self.commit.observe(d.as_secs_f64());
    }

    /// The families in text exposition format (no EOF marker: it is appended to other text).
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode_registry(&mut out, &self.registry);
        out
    }
}

/// Per-node gauges from a fleet status, labelled by node and device class.
pub fn render_nodes(status: &FleetStatus) -> String {
    let mut registry = Registry::with_prefix("mcdnn_node");
    let gauge = |registry: &mut Registry, name: &str, help: &str, unit: Option<Unit>| {
        let family = Family::<NodeLabels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        match unit {
            Some(u) => registry.register_with_unit(name, help, u, family.clone()),
            None => registry.register(name, help, family.clone()),
        }
        family
    };
    let battery = gauge(
        &mut registry,
        "battery_ratio",
        "Energy budget left, 0..1",
        None,
    );
    let energy = gauge(
        &mut registry,
        "energy_left",
        "Energy budget left",
        Some(Unit::Joules),
    );
    let requests = gauge(&mut registry, "requests", "Requests answered", None);
    let accuracy = gauge(
        &mut registry,
        "accuracy_ratio",
        "Answers matching the label, 0..1",
        None,
    );
    let rate = gauge(&mut registry, "request_rate", "Requests per second", None);
    let recorded = gauge(
        &mut registry,
        "results_recorded",
        "Results the fleet recorded from this node's spool",
        None,
    );
    let seen = gauge(
        &mut registry,
        "last_seen_age",
        "Time since the node was last heard from",
        Some(Unit::Seconds),
    );
    for n in &status.nodes {
        let labels = NodeLabels {
            node: n.id.clone(),
            device_class: n.device_class.clone(),
        };
        let ratio = if n.energy_budget_j > 0.0 {
            n.energy_left_j / n.energy_budget_j
        } else {
            0.0
        };
        battery.get_or_create(&labels).set(ratio);
        energy.get_or_create(&labels).set(n.energy_left_j);
        requests.get_or_create(&labels).set(n.requests as f64);
        accuracy.get_or_create(&labels).set(n.accuracy / 100.0);
        rate.get_or_create(&labels).set(n.requests_per_s);
        let results = status.results.get(&n.id).map_or(0, |r| r.received);
        recorded.get_or_create(&labels).set(results as f64);
        seen.get_or_create(&labels).set(n.last_seen_s);
    }
    let mut out = String::new();
    let _ = encode_registry(&mut out, &registry);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_and_build_info_render_with_their_names() {
        let h = Histograms::default();
        h.observe_solve(Duration::from_millis(3));
        h.observe_commit(Duration::from_micros(800));
        let text = h.render();
        for name in [
            "mcdnn_build_info{version=",
            "mcdnn_solve_seconds_bucket",
            "mcdnn_solve_seconds_count 1",
            "mcdnn_plan_push_seconds_count 0",
            "mcdnn_commit_seconds_sum",
        ] {
            assert!(text.contains(name), "{name} missing:\n{text}");
        }
    }
}
