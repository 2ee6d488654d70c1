//! Each verdict fed a broken history. Where the scenarios had a verdict before, the old formula
//! is restated here and shown to pass the same broken history, so the test proves the change.

use super::*;

fn node(accepted: u64, recorded: u64, pending: u64) -> NodeEvidence {
    NodeEvidence {
        node: "cam-0".into(),
        requests: accepted + 5,
        dropped: 5,
        accepted,
        spool_failures: 0,
        pending,
        recorded,
        gaps: 0,
    }
}

/// The old leader-kill result check: pending counted as safe.
fn old_results_lost(n: &NodeEvidence) -> u64 {
    n.accepted.saturating_sub(n.recorded + n.pending)
}

#[test]
fn a_sound_run_passes() {
    let v = results(&[node(100, 100, 0)]);
    assert!(v.ok(), "{:?}", v.problems);
    assert_eq!((v.lost, v.duplicated), (0, 0));
}

#[test]
fn a_result_left_pending_fails() {
    // A new leader that never records: everything stays pending.
    let n = node(100, 0, 100);
    assert_eq!(old_results_lost(&n), 0, "the old verdict passed this");
    let v = results(&[n]);
    assert!(!v.ok());
    assert_eq!(v.pending, 100);
    assert_eq!(v.lost, 100);
}

#[test]
fn a_recorded_but_unacknowledged_result_cannot_hide_a_loss() {
    // 3 results never recorded; 3 others recorded whose ack was lost (still pending).
    let n = node(10, 7, 3);
    assert_eq!(old_results_lost(&n), 0, "the old verdict passed this");
    let v = results(&[n]);
    assert!(!v.ok());
    assert_eq!(v.lost, 3);
}

#[test]
fn a_spool_that_accepted_nothing_fails() {
    // The old offload-server-kill check: lost = (accepted - recorded) + dropped.
    let broken = NodeEvidence {
        node: "cam-off".into(),
        requests: 100,
        dropped: 0,
        accepted: 0,
        spool_failures: 100,
        pending: 0,
        recorded: 0,
        gaps: 0,
    };
    let old_lost = broken.accepted.saturating_sub(broken.recorded) + broken.dropped;
    assert_eq!(old_lost, 0, "the old verdict passed this");
    let v = results(std::slice::from_ref(&broken));
    assert!(!v.ok());
    assert_eq!(v.lost, 100);
    // Even when the failures were not counted at all, conservation catches the gap.
    let silent = NodeEvidence {
        spool_failures: 0,
        ..broken
    };
    assert!(!results(&[silent]).ok());
}

#[test]
fn a_result_recorded_twice_fails() {
    let v = results(&[node(10, 11, 0)]);
    assert!(!v.ok());
    assert_eq!(v.duplicated, 1);
}

#[test]
fn no_results_at_all_is_not_a_pass() {
    assert!(!results(&[]).ok());
    assert!(!results(&[node(0, 0, 0)]).ok());
}

#[test]
fn telemetry_must_conserve_requests() {
    let good = TelemetryCounters {
        requests: 10,
        dropped: 2,
        accepted: 8,
        spool_failures: 0,
    };
    assert!(telemetry("n", &good).is_empty());
    let failed = TelemetryCounters {
        accepted: 7,
        spool_failures: 1,
        ..good
    };
    assert_eq!(telemetry("n", &failed).len(), 1);
    let leaking = TelemetryCounters {
        accepted: 7,
        ..good
    };
    assert_eq!(telemetry("n", &leaking).len(), 1);
}

fn entry(writer: &str, id: u64, index: u64) -> LogEntry {
    LogEntry {
        writer: writer.into(),
        write_id: id,
        index,
    }
}

fn acked(ids: &[u64]) -> Vec<Ack> {
    ids.iter()
        .map(|&id| Ack {
            write_id: id,
            index: 10 + id,
            attempts: 1,
        })
        .collect()
}

fn log(ids: &[u64]) -> Vec<LogEntry> {
    ids.iter().map(|&id| entry("w", id, 10 + id)).collect()
}

/// The old audit: per replica, acknowledged ids missing and ids repeated; nothing across
/// replicas.
fn old_audit(acked: &[u64], replicas: &[Vec<LogEntry>]) -> (usize, usize, bool) {
    let (mut lost, mut dup, mut ordered) = (0, 0, true);
    for r in replicas {
        let ids: Vec<u64> = r.iter().map(|w| w.write_id).collect();
        let mut seen = std::collections::HashSet::new();
        dup = dup.max(ids.iter().filter(|id| !seen.insert(**id)).count());
        lost = lost.max(acked.iter().filter(|id| !seen.contains(id)).count());
        ordered &= ids.windows(2).all(|w| w[0] < w[1]);
    }
    (lost, dup, ordered)
}

fn judge(acked: &[Ack], replicas: &[Vec<LogEntry>]) -> WriteVerdict {
    writes(&WriteEvidence {
        writer: "w",
        acked,
        replicas,
    })
}

#[test]
fn sound_writes_pass() {
    let replicas = vec![log(&[1, 2, 3]), log(&[1, 2, 3]), log(&[1, 2, 3])];
    let a = acked(&[1, 2, 3]);
    let v = judge(&a, &replicas);
    assert!(v.ok(), "{:?}", v.problems);
}

#[test]
fn a_lost_write_fails() {
    let replicas = vec![log(&[1, 2, 3]), log(&[1, 3])];
    let a = acked(&[1, 2, 3]);
    let v = judge(&a, &replicas);
    assert!(!v.ok());
    assert_eq!(v.lost, 1);
}

#[test]
fn a_write_applied_twice_fails() {
    let replicas = vec![log(&[1, 2, 2, 3]), log(&[1, 2, 2, 3])];
    let a = acked(&[1, 2, 3]);
    let v = judge(&a, &replicas);
    assert!(!v.ok());
    assert_eq!(v.duplicated, 1);
}

#[test]
fn replicas_that_disagree_fail_even_when_each_holds_every_ack() {
    // Replica 1 applied an unacknowledged write the others never saw; replica 2 applied a
    // write at another index.
    let mut moved = log(&[1, 2, 3]);
    moved[1].index += 1;
    let replicas = vec![log(&[1, 2, 3]), log(&[1, 2, 3, 4]), moved];
    let a = acked(&[1, 2, 3]);
    assert_eq!(
        old_audit(&[1, 2, 3], &replicas),
        (0, 0, true),
        "the old verdict passed this"
    );
    let v = judge(&a, &replicas);
    assert!(!v.ok());
    assert!(!v.replicas_agree);
    assert_eq!(v.problems.len(), 2, "{:?}", v.problems);
}

#[test]
fn no_acknowledged_write_is_not_a_pass() {
    let replicas = vec![log(&[])];
    let v = judge(&[], &replicas);
    assert!(!v.ok());
}

#[test]
fn a_retry_whose_first_attempt_was_applied_counts_as_deduplicated() {
    // Write 2 was applied at index 12; its ack was lost; the retry was acknowledged at 14.
    let a = vec![
        Ack {
            write_id: 1,
            index: 11,
            attempts: 1,
        },
        Ack {
            write_id: 2,
            index: 14,
            attempts: 2,
        },
    ];
    let replicas = vec![log(&[1, 2])];
    let v = judge(&a, &replicas);
    assert!(v.ok(), "{:?}", v.problems);
    assert_eq!((v.retried, v.deduplicated_retries), (1, 1));
}

#[test]
fn a_partition_that_dropped_nothing_fails() {
    let e = PartitionEvidence {
        datagrams_dropped: 0,
        recorded_at_cut: 50,
        recorded_at_heal: 50,
        backlog_after_heal: 20,
    };
    // The old check only wanted a backlog after the heal.
    assert!(e.backlog_after_heal > 0, "the old verdict passed this");
    assert_eq!(partition(&e).len(), 1);
    let leaky = PartitionEvidence {
        datagrams_dropped: 30,
        recorded_at_heal: 60,
        ..e
    };
    assert_eq!(partition(&leaky).len(), 1, "results flowed through the cut");
    let sound = PartitionEvidence {
        datagrams_dropped: 30,
        ..e
    };
    assert!(partition(&sound).is_empty());
}

#[test]
fn an_undetected_corrupt_shard_fails() {
    let e = CorruptionEvidence {
        flipped: 6,
        corrupt_on_disk_before: 6,
        detected: 1,
        refetched: 1,
        corrupt_left: 0,
        loaded_corrupt: 0,
    };
    // The old check: detected >= 1 && refetched >= 1 && corrupt_left == 0.
    assert!(e.detected >= 1 && e.refetched >= 1 && e.corrupt_left == 0);
    assert!(!corruption(&e).is_empty());
    let served = CorruptionEvidence {
        detected: 6,
        refetched: 6,
        loaded_corrupt: 1,
        ..e
    };
    assert_eq!(corruption(&served).len(), 1);
    let never_corrupt = CorruptionEvidence {
        detected: 6,
        refetched: 6,
        corrupt_on_disk_before: 0,
        ..e
    };
    assert_eq!(
        corruption(&never_corrupt).len(),
        1,
        "the flip never reached disk"
    );
    let sound = CorruptionEvidence {
        detected: 6,
        refetched: 6,
        ..e
    };
    assert!(corruption(&sound).is_empty());
}

#[test]
fn the_report_computes_ok_from_the_problems() {
    let r = report(
        "x",
        0,
        0,
        &["something broke".into()],
        json!({"ok": true, "n": 1}),
    );
    assert_eq!(r["ok"], false, "a figure cannot override the verdict");
    assert_eq!(r["n"], 1);
    assert_eq!(report("x", 0, 0, &[], json!({}))["ok"], true);
}
