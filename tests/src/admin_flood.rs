//! `mcdnn-chaos admin-flood`: the finding that bricked a cluster (75 policy writes of 1.9 MB
//! plus ~935 small ones made the fleet-state snapshot too large to decode, and no replica could
//! restart) replayed against a 3-replica cluster. Oversized and invalid writes must be refused
//! and change nothing; legitimate writes, enough to force a snapshot, must still commit; then
//! every replica is stopped and restarted and must come back ready with the same state.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;

use crate::cluster::Cluster;

const T: Duration = Duration::from_secs(30);
const KEY: &str = "fleet.cost_budget_usd";
/// Ids of refused writes start here, so finding one in a log would show it landed.
const BAD_IDS: u64 = 1 << 40;

/// How hard the flood pushes.
#[derive(Debug, Clone)]
pub struct FloodOptions {
    /// Writes carrying a 1.9 MB value (the finding's 75).
    pub oversized: usize,
    /// Writes with an unknown key, an out-of-range or non-numeric value, or an oversized field.
    pub invalid: usize,
    /// Legitimate writes; above the replicas' snapshot interval (1000 entries) so the restart
    /// reads a snapshot.
    pub writes: usize,
    /// Concurrent legitimate writers.
    pub writers: usize,
}

impl Default for FloodOptions {
    fn default() -> Self {
        Self {
            oversized: 75,
            invalid: 935,
            writes: 1200,
            writers: 4,
        }
    }
}

/// The i-th invalid write body: each kind of mistake in turn.
fn invalid_body(i: usize) -> String {
    let id = BAD_IDS + i as u64;
    let (key, value) = match i % 6 {
        0 => ("fleet.cost_budgt_usd".to_string(), json!(0.05)),
        1 => (KEY.to_string(), json!(1e300)),
        2 => (KEY.to_string(), json!(-1.0)),
        3 => (KEY.to_string(), json!("x".repeat(4096))),
        4 => ("k".repeat(300), json!(1.0)),
        _ => (KEY.to_string(), json!({"nested": [1, 2, 3]})),
    };
    json!({"key": key, "value": value, "writer": "flood", "write_id": id}).to_string()
}

/// POSTs `body` to `/policy` on replica `i` (the leader, so no answer is a redirect); true when it was refused (any answer but 200, or
/// a connection the server cut while the body was still arriving).
fn refused(c: &Cluster, i: usize, body: &str) -> bool {
    match c
        .ops
        .post_json(&c.admin(i), "/policy", body, Duration::from_secs(10))
    {
        Ok(r) => r.status != 200,
        Err(_) => true,
    }
}

/// Writes `count` legitimate policies from `writers` threads through any replica; returns the
/// acknowledged write ids.
fn legitimate_writes(c: &Cluster, count: usize, writers: usize) -> Vec<u64> {
    let writers = writers.max(1);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..writers)
            .map(|w| {
                s.spawn(move || {
                    let mut acked = Vec::new();
                    let deadline = Instant::now() + Duration::from_secs(300);
                    for id in (w..count).step_by(writers).map(|i| i as u64 + 1) {
                        // Retried with the same id until acknowledged (bounded in time): a
                        // retry whose first attempt did commit is answered as a duplicate.
                        while Instant::now() < deadline {
                            if c.write_policy(KEY, (id % 1000) as f64, "flood", id).is_ok() {
                                acked.push(id);
                                break;
                            }
                            std::thread::sleep(Duration::from_millis(50));
                        }
                    }
                    acked
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    })
}

/// Every replica's `/policy` answer once all have applied the leader's commit index.
fn policy_views(c: &Cluster) -> anyhow::Result<Vec<serde_json::Value>> {
    let leader = c.wait_leader(T, None)?;
    let commit = c.status(leader)?.commit;
    c.wait_applied(commit, T)?;
    (0..c.size)
        .map(|i| {
            let body = c.ops.get(&c.admin(i), "/policy", Duration::from_secs(5))?;
            serde_json::from_str(&body).context("policy JSON")
        })
        .collect()
}

pub fn run(o: &FloodOptions) -> anyhow::Result<serde_json::Value> {
    let mut c = Cluster::new(3)?;
    c.start_all()?;
    let leader = c.wait_leader(T, None)?;
    let before = policy_views(&c)?;

    let big = json!({
        "key": KEY, "value": "x".repeat(1_900_000), "writer": "flood", "write_id": BAD_IDS - 1
    })
    .to_string();
    let oversized_refused = (0..o.oversized)
        .filter(|_| refused(&c, leader, &big))
        .count();
    let invalid_refused = (0..o.invalid)
        .filter(|&i| refused(&c, leader, &invalid_body(i)))
        .count();
    let unchanged_by_refused = policy_views(&c)? == before;

    let t0 = Instant::now();
    let acked = legitimate_writes(&c, o.writes, o.writers);
    let write_s = t0.elapsed().as_secs_f64();
    let views = policy_views(&c)?;
    let leader = c.wait_leader(T, None)?;
    let status = c.status(leader)?;
    let snapshot_taken = status.first_index > 2;

    // Stop every replica, then start them all again from their disks.
    for i in 0..c.size {
        c.terminate(i)?;
    }
    for i in 0..c.size {
        c.start(i, false)?;
    }
    let _ = c.wait_leader(T, None)?;
    let after = policy_views(&c)?;
    let restarted_ok = (0..c.size)
        .filter(|&i| c.wait_readyz(i, 200, T).ok() == Some(200) && after[i] == views[i])
        .count();

    let log: Vec<u64> = after
        .first()
        .and_then(|v| v["log"].as_array())
        .map(|l| l.iter().filter_map(|w| w["write_id"].as_u64()).collect())
        .unwrap_or_default();
    let mut seen = HashSet::new();
    let duplicated = log.iter().filter(|id| !seen.insert(**id)).count();
    // The log keeps the most recent writes; an acknowledged write older than its first entry
    // was trimmed, not lost.
    let oldest = log.iter().copied().min().unwrap_or(u64::MAX);
    let lost = acked
        .iter()
        .filter(|id| **id >= oldest && !seen.contains(id))
        .count();
    let refused_landed = log.iter().filter(|id| **id >= BAD_IDS - 1).count();
    let refused = oversized_refused + invalid_refused;
    let ok = refused == o.oversized + o.invalid
        && unchanged_by_refused
        && refused_landed == 0
        && acked.len() == o.writes
        && lost == 0
        && duplicated == 0
        && restarted_ok == c.size;
    Ok(json!({
        "scenario": "admin-flood",
        "ok": ok,
        "lost": lost,
        "duplicated": duplicated,
        "refused": refused,
        "oversized_refused": oversized_refused,
        "invalid_refused": invalid_refused,
        "refused_landed": refused_landed,
        "unchanged_by_refused": unchanged_by_refused,
        "accepted": acked.len(),
        "write_s": write_s,
        "log_len": log.len(),
        "snapshot_taken": snapshot_taken,
        "restarted_ok": restarted_ok,
        "replicas": c.size,
    }))
}
