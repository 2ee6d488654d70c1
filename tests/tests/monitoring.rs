//! The shipped Grafana dashboard and Prometheus alert rules name only metrics a real
//! coordinator serves: fleet-wide ones on its health port, per-node ones on the operator API.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use mcdnn_coordinator::ctl::http;
use mcdnn_tests::Fleet;

fn monitoring(file: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/monitoring")
        .join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every `mcdnn_...` identifier in a text.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("mcdnn_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.insert(tail[..end].to_string());
        rest = &tail[end..];
    }
    names
}

#[test]
fn every_metric_the_dashboard_and_alerts_name_is_served() {
    let fleet = Fleet::new().expect("fleet");
    let _coord = fleet.coordinator(&[]).expect("coordinator");
    let _node = fleet.node("cam-a", "laptop", 10.0, &[]).expect("node");
    fleet
        .wait_for("a plan acknowledged", Duration::from_secs(20), |s| {
            s.nodes.iter().any(|n| n.acked_epoch >= 1 && n.requests > 0)
        })
        .expect("node planned");
    let health = http::health_get(&fleet.health(), "/metrics", Duration::from_secs(3))
        .expect("health metrics");
    let nodes = fleet
        .ops
        .get(&fleet.admin(), "/v1/metrics/nodes", Duration::from_secs(3))
        .expect("node metrics");
    assert!(
        !health.contains("cam-a"),
        "the health port must not name nodes"
    );
    assert!(nodes.contains("node=\"cam-a\""), "{nodes}");
    let served = metric_names(&format!("{health}\n{nodes}"));
    let wanted: BTreeSet<String> = metric_names(&monitoring("alerts.yaml"))
        .into_iter()
        .chain(metric_names(&monitoring("grafana-dashboard.json")))
        .collect();
    assert!(wanted.len() >= 10, "{wanted:?}");
    let missing: Vec<&String> = wanted.iter().filter(|n| !served.contains(*n)).collect();
    assert!(missing.is_empty(), "named but not served: {missing:?}");
    // And the unauthenticated cannot read per-node metrics.
    let anonymous = http::Client::anonymous(&std::fs::read(fleet.ca.join("ca.pem")).expect("ca"))
        .expect("client");
    let r = anonymous
        .request(
            "GET",
            &fleet.admin(),
            "/v1/metrics/nodes",
            None,
            Duration::from_secs(3),
        )
        .expect("request");
    assert_eq!(r.status, 401);
}
