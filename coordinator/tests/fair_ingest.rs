//! Fair ingest under a flood: 64 virtual nodes send telemetry and result batches unpaced over
//! real QUIC with mutual TLS to one coordinator (`mcdnnctl bench telemetry`, shortened). Every
//! connection must get telemetry and results through, and the per-connection shares must be
//! even (Jain's index above a floor). This asserts who got a share, not how fast anything was.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use mcdnn_coordinator::ctl::bench::{TelemetryBenchArgs, telemetry_bench};

const CONNECTIONS: usize = 64;
/// Jain's index floor: 1 is an exactly equal share, 1/64 one connection taking everything.
const FAIRNESS_FLOOR: f64 = 0.8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_flooding_connection_gets_a_fair_share_of_telemetry_and_results() {
    let args = TelemetryBenchArgs {
        nodes: vec![CONNECTIONS],
        seconds: 3.0,
        catalog: Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/catalog.json")),
        rate_per_node: 0.0,
        results_per_batch: 16,
        json: false,
    };
    let figures = telemetry_bench(&args).await.expect("bench ran");
    let f = &figures[0];
    println!("{f:#?}");
    assert_eq!(f.nodes_joined, CONNECTIONS, "every node joined");
    assert_eq!(
        f.telemetry.got_through, CONNECTIONS,
        "every connection's telemetry got through"
    );
    assert_eq!(
        f.results_share.got_through, CONNECTIONS,
        "every connection's results were committed"
    );
    assert!(
        f.telemetry.jain >= FAIRNESS_FLOOR,
        "telemetry fairness {} under {FAIRNESS_FLOOR}",
        f.telemetry.jain
    );
    assert!(
        f.results_share.jain >= FAIRNESS_FLOOR,
        "results fairness {} under {FAIRNESS_FLOOR}",
        f.results_share.jain
    );
    assert_eq!(f.sessions_lost, 0, "no session ended under the flood");
}
