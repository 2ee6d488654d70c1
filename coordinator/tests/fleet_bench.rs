//! `mcdnnctl bench fleet`, shortened: 50 virtual nodes over real QUIC with mutual TLS against a
//! one-replica cluster (a real `mcdnn-coordinator` process). Every node changes its telemetry
//! once, and every one of them must receive a new assignment afterwards.

use mcdnn_coordinator::ctl::fleet_bench::{FleetBenchArgs, fleet_bench};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_gets_a_new_assignment_after_its_telemetry_changes() {
    let args = FleetBenchArgs {
        nodes: 50,
        replicas: 1,
        seconds: 1.0,
        change_share: 1.0,
        solve_interval_ms: 500,
        endpoints: 2,
        joins_at_once: 16,
        cluster_cpus: None,
        nodes_cpus: None,
        nodes_nice: None,
        port: 17600 + (std::process::id() % 400) as u16 * 4,
        catalog: Some(concat!(env!("CARGO_MANIFEST_DIR"), "/../models/catalog.json").into()),
        coordinator_bin: Some(env!("CARGO_BIN_EXE_mcdnn-coordinator").into()),
        keep: false,
        json: false,
    };
    let f = fleet_bench(&args).await.expect("bench ran");
    assert_eq!(f.nodes_planned, 50, "{f:?}");
    assert_eq!(f.changes, 50, "{f:?}");
    assert_eq!(f.changes_answered, 50, "{f:?}");
    assert!(f.unanswered.is_empty(), "{f:?}");
    assert_eq!(f.nodes_failed, 0, "{f:?}");
    assert!(f.p99_ms.is_finite(), "{f:?}");
    assert!(f.raft_terms[0] >= 1, "the replica's term was read: {f:?}");
    assert_eq!(f.leader_changes, 0, "one replica, one election: {f:?}");
}
