//! Each replicated-coordinator chaos scenario once, shortened (the CLI defaults are longer:
//! `mcdnn-chaos leader-kill` kills 20 times with 5 nodes).

use mcdnn_tests::raft_chaos;

fn check(report: serde_json::Value) {
    assert_eq!(report["problems"], serde_json::json!([]), "{report:#}");
    assert_eq!(report["ok"], true, "{report:#}");
    assert_eq!(report["lost"], 0, "{report:#}");
    assert_eq!(report["duplicated"], 0, "{report:#}");
    assert!(
        report["acknowledged"].as_u64().unwrap_or(0) > 0,
        "{report:#}"
    );
}

#[test]
fn leader_kill_loses_no_acknowledged_write() {
    let r = raft_chaos::leader_kill(3, 3).expect("scenario ran");
    assert!(
        r["failover_ms"]["max"].as_f64().unwrap_or(f64::MAX) < 20_000.0,
        "{r:#}"
    );
    assert!(r["writes_in_flight_at_kill"].as_u64() > Some(0), "{r:#}");
    assert_eq!(r["results_pending_after_drain"], 0, "{r:#}");
    assert_eq!(r["replicas_agree"], true, "{r:#}");
    check(r);
}

#[test]
fn minority_partition_cannot_commit_or_serve_stale_plans() {
    let r = raft_chaos::minority_partition(5.0, 3).expect("scenario ran");
    assert_eq!(r["stale_plans_pushed"], 0, "{r:#}");
    assert_eq!(r["isolated_commit_advanced"], false, "{r:#}");
    check(r);
}

#[test]
fn rolling_restart_keeps_serving_and_loses_nothing() {
    let r = raft_chaos::rolling_restart(3).expect("scenario ran");
    assert!(r["results_accepted"].as_u64() > Some(0), "{r:#}");
    assert_eq!(r["results_pending_after_drain"], 0, "{r:#}");
    check(r);
}

#[test]
fn bench_writes_audits_what_it_measured() {
    let r = raft_chaos::write_bench(20, 2).expect("scenario ran");
    assert_eq!(r["writes_applied"], 60, "{r:#}");
    check(r);
}
