//! Every `mcdnn-chaos` scenario once, against real processes: each must report `ok` with nothing
//! lost and nothing duplicated. The partition is shortened from the CLI's 30 s to keep the suite
//! quick; it still outlasts QUIC's 10 s idle timeout, so the link really drops and reconnects.

use std::time::Duration;

use mcdnn_tests::chaos::{self, Options};

fn check(scenario: &str, opts: &Options) -> serde_json::Value {
    let result = chaos::run(scenario, opts).unwrap_or_else(|e| panic!("{scenario}: {e:#}"));
    assert_eq!(result["scenario"], scenario);
    assert_eq!(result["problems"], serde_json::json!([]), "{result}");
    assert_eq!(result["lost"], 0, "{result}");
    assert_eq!(result["duplicated"], 0, "{result}");
    assert_eq!(result["ok"], true, "{result}");
    result
}

#[test]
fn node_crash_during_download_resumes_and_verifies() {
    let r = check("node-crash-during-download", &Options::default());
    assert!(r["shards_resumed"].as_u64() > Some(0), "{r}");
    assert!(
        r["shards_on_disk_after_kill"].as_u64() < r["shards_total"].as_u64(),
        "the kill hit the download: {r}"
    );
    assert_eq!(r["variants_complete"], 6, "{r}");
}

#[test]
fn corrupt_shard_is_detected_refetched_and_never_loaded() {
    let r = check("corrupt-shard", &Options::default());
    assert!(r["shards_flipped"].as_u64() > Some(0), "{r}");
    assert_eq!(
        r["corrupt_on_disk_before_restart"], r["shards_flipped"],
        "{r}"
    );
    assert!(
        r["corrupt_detected_and_dropped"].as_u64() >= r["shards_flipped"].as_u64(),
        "{r}"
    );
    assert_eq!(r["corrupt_shards_left"], 0, "{r}");
    assert_eq!(r["loaded_corrupt"], 0, "{r}");
}

#[test]
fn offload_server_kill_falls_back_without_loss() {
    let r = check("offload-server-kill", &Options::default());
    assert!(
        r["offloaded"].as_u64() > Some(0) && r["fell_back_locally"].as_u64() > Some(0),
        "{r}"
    );
}

#[test]
fn partition_spool_delivers_exactly_once() {
    let r = check(
        "partition-spool",
        &Options {
            partition: Duration::from_secs(12),
        },
    );
    assert_eq!(r["results_accepted"], r["results_recorded"], "{r}");
    assert_eq!(r["results_pending_after_drain"], 0, "{r}");
    assert!(r["datagrams_dropped"].as_u64() > Some(0), "{r}");
    assert_eq!(r["recorded_while_partitioned"], 0, "{r}");
    assert!(
        r["first_backlog_batch"].as_u64() > Some(0),
        "the spool flowed after the cut: {r}"
    );
}

#[test]
fn a_node_without_a_model_folder_fetches_its_assigned_variants_and_serves() {
    let fleet = mcdnn_tests::Fleet::new().expect("fleet");
    let _coord = fleet.coordinator(&[]).expect("coordinator");
    let mut node = fleet
        .node(
            "cam-fresh",
            "phone-2016",
            10.0,
            &["--models", "coordinator"],
        )
        .expect("node");
    let exit = node.wait_exit(Duration::from_secs(90)).expect("exit");
    assert!(exit.success(), "{}", node.log_text());
    let s = fleet.summary("cam-fresh").expect("summary");
    let models = s.models.as_ref().expect("model store figures");
    let complete = &models.variants_complete;
    assert!(
        !complete.is_empty() && complete.len() < 6,
        "only what the plan needs: {s:?}"
    );
    assert!(models.shards_fetched > 0, "{s:?}");
    assert!(s.requests > 20, "{s:?}");
    // Every result the node accepted reached the coordinator once.
    let status = fleet.status().expect("status");
    let recorded = status.results.get("cam-fresh").map_or(0, |r| r.received);
    assert_eq!(s.results_accepted, recorded, "{s:?}");
}

#[test]
fn a_node_restarts_offline_on_its_store_and_delivers_the_spool_later() {
    let fleet = mcdnn_tests::Fleet::new().expect("fleet");
    let mut coord = fleet.coordinator(&[]).expect("coordinator");
    let extra = ["--models", "coordinator", "--drain-timeout-s", "2"];
    let mut first = fleet.node("cam-off", "laptop", 8.0, &extra).expect("node");
    assert!(
        first
            .wait_exit(Duration::from_secs(90))
            .expect("exit")
            .success(),
        "{}",
        first.log_text()
    );
    let online = fleet.summary("cam-off").expect("summary");
    coord.terminate();
    coord
        .wait_exit(Duration::from_secs(30))
        .expect("coordinator stops");
    // Offline: the assignment, catalog copy and model shards come from the node's own store.
    let mut second = fleet
        .node("cam-off", "laptop", 6.0, &extra)
        .expect("node offline");
    assert!(
        second
            .wait_exit(Duration::from_secs(90))
            .expect("exit")
            .success(),
        "{}",
        second.log_text()
    );
    let offline = fleet.summary("cam-off").expect("summary");
    assert!(offline.requests > 10, "{offline:?}");
    let fetched = offline.models.as_ref().map(|m| m.shards_fetched);
    assert_eq!(fetched, Some(0), "{offline:?}");
    let spooled = offline.results_pending;
    assert!(spooled > 0, "results wait in the spool: {offline:?}");
    let _coord = fleet.coordinator(&[]).expect("coordinator again");
    let mut third = fleet
        .node("cam-off", "laptop", 4.0, &["--models", "coordinator"])
        .expect("node");
    assert!(
        third
            .wait_exit(Duration::from_secs(90))
            .expect("exit")
            .success(),
        "{}",
        third.log_text()
    );
    let last = fleet.summary("cam-off").expect("summary");
    assert_eq!(last.results_pending, 0, "{last:?}");
    let accepted: u64 = [&online, &offline, &last]
        .iter()
        .map(|s| s.results_accepted)
        .sum();
    let status = fleet.status().expect("status");
    let r = status.results.get("cam-off").cloned().unwrap_or_default();
    assert_eq!(
        r.received, accepted,
        "every accepted result recorded exactly once: {r:?}"
    );
    assert_eq!(r.gaps, 0);
}
