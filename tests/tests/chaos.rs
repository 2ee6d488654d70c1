//! Every `mcdnn-chaos` scenario once, against real processes: each must report `ok` with nothing
//! lost and nothing duplicated. The partition is shortened from the CLI's 30 s to keep the suite
//! quick; it still outlasts QUIC's 10 s idle timeout, so the link really drops and reconnects.

use std::time::Duration;

use mcdnn_tests::chaos::{self, Options};

fn check(scenario: &str, opts: &Options) -> serde_json::Value {
    let result = chaos::run(scenario, opts).unwrap_or_else(|e| panic!("{scenario}: {e:#}"));
    assert_eq!(result["scenario"], scenario);
    assert_eq!(result["lost"], 0, "{result}");
    assert_eq!(result["duplicated"], 0, "{result}");
    assert_eq!(result["ok"], true, "{result}");
    result
}

#[test]
fn node_crash_during_download_resumes_and_verifies() {
    let r = check("node-crash-during-download", &Options::default());
    assert!(r["shards_resumed"].as_u64() > Some(0), "{r}");
    assert_eq!(r["variants_complete"], 6, "{r}");
}

#[test]
fn corrupt_shard_is_detected_refetched_and_never_loaded() {
    let r = check("corrupt-shard", &Options::default());
    assert!(r["corrupt_detected_and_dropped"].as_u64() >= Some(1), "{r}");
    assert_eq!(r["corrupt_shards_left"], 0, "{r}");
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
    assert!(
        r["first_backlog_batch"].as_u64() > Some(0),
        "the spool flowed after the cut: {r}"
    );
}
