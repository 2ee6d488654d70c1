//! `mcdnn-chaos wiped-replica`: again and again, a replica (the leader on every other round) is
//! killed, its data folder deleted, and it is started again with its unchanged configuration
//! while an operator keeps writing. It must rejoin by itself (learner, restored by snapshot,
//! promoted once caught up) and every acknowledged write must be on every replica, in order,
//! exactly once.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::cluster::Cluster;
use crate::raft_chaos::{Writer, audit, percentile};

const T: Duration = Duration::from_secs(30);

fn locked(c: &Arc<Mutex<Cluster>>) -> anyhow::Result<std::sync::MutexGuard<'_, Cluster>> {
    c.lock()
        .map_err(|_| anyhow::anyhow!("cluster lock poisoned"))
}

/// Runs `rounds` wipe-and-restart rounds on a three-replica cluster under writes.
pub fn wiped_replica(rounds: usize) -> anyhow::Result<serde_json::Value> {
    let mut c = Cluster::new(3)?;
    c.start_all()?;
    c.wait_leader(T, None)?;
    let shared = Arc::new(Mutex::new(c));
    let writer = Writer::start(shared.clone());
    let mut rejoin_s = Vec::new();
    for round in 0..rounds {
        // Let writes pile up (and the log compact) between rounds.
        std::thread::sleep(Duration::from_millis(700));
        let t0 = {
            let mut c = locked(&shared)?;
            let leader = c.wait_leader(T, None)?;
            let victim = if round % 2 == 0 {
                leader
            } else {
                (leader + 1 + round / 2 % 2) % 3
            };
            c.kill(victim);
            c.wipe(victim);
            drop(c);
            // Writes go on with two replicas while the third is gone.
            std::thread::sleep(Duration::from_millis(500));
            let mut c = locked(&shared)?;
            c.start(victim)?;
            let t0 = Instant::now();
            drop(c);
            (victim, t0)
        };
        // Poll without holding the lock for long, so the writer keeps writing meanwhile.
        let deadline = Instant::now() + T;
        loop {
            let done = locked(&shared)?
                .wait_rejoined(t0.0, Duration::from_millis(1))
                .is_ok();
            if done {
                break;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "round {round}: replica {} did not rejoin within {T:?}",
                t0.0
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        rejoin_s.push(t0.1.elapsed().as_secs_f64());
    }
    let acked = writer.finish();
    let c = locked(&shared)?;
    let (lost, duplicated, ordered, lens) = audit(&c, &acked)?;
    let p50 = percentile(&mut rejoin_s.clone(), 0.5);
    let max = rejoin_s.iter().copied().fold(0.0, f64::max);
    Ok(json!({
        "scenario": "wiped-replica",
        "ok": lost == 0 && duplicated == 0 && ordered && !acked.is_empty(),
        "rounds": rounds,
        "acknowledged": acked.len(),
        "lost": lost,
        "duplicated": duplicated,
        "in_order": ordered,
        "replica_log_lengths": lens,
        "rejoin_s": { "p50": p50, "max": max, "all": rejoin_s },
    }))
}
