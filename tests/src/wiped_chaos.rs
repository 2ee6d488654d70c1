//! `mcdnn-chaos wiped-replica`: again and again, a replica (the leader on every other round) is
//! killed, its data folder deleted, and it is started again with its unchanged configuration
//! while an operator keeps writing. It must rejoin by itself (learner, restored by snapshot,
//! promoted once caught up) and every acknowledged write must be on every replica, in order,
//! exactly once.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::cluster::Cluster;
use crate::raft_chaos::{audit, client, percentile};
use crate::writer::Writer;

const T: Duration = Duration::from_secs(30);
const WRITER: &str = "wiped-writer";

/// Runs `rounds` wipe-and-restart rounds on a three-replica cluster under writes.
pub fn wiped_replica(rounds: usize) -> anyhow::Result<serde_json::Value> {
    let mut c = Cluster::new(3)?;
    c.start_all()?;
    c.wait_leader(T, None)?;
    // The writer has its own client and thread: it shares no lock with the rounds below.
    let writer = Writer::start(client(&c), WRITER);
    let mut rejoin_s = Vec::new();
    for round in 0..rounds {
        // Let writes pile up (and the log compact) between rounds.
        std::thread::sleep(Duration::from_millis(700));
        let leader = c.wait_leader(T, None)?;
        let victim = if round % 2 == 0 {
            leader
        } else {
            (leader + 1 + round / 2 % 2) % 3
        };
        c.kill(victim);
        c.wipe(victim);
        // Writes go on with two replicas while the third is gone.
        std::thread::sleep(Duration::from_millis(500));
        c.start(victim)?;
        let t0 = Instant::now();
        if let Err(e) = c.wait_rejoined(victim, T) {
            crate::keep_and_report(&mut c.dir);
            anyhow::bail!("round {round}: replica {victim} did not rejoin within {T:?}: {e:#}");
        }
        rejoin_s.push(t0.elapsed().as_secs_f64());
    }
    let acked = writer.finish();
    let w = audit(&c, WRITER, &acked)?;
    let p50 = percentile(&mut rejoin_s.clone(), 0.5);
    let max = rejoin_s.iter().copied().fold(0.0, f64::max);
    Ok(json!({
        "scenario": "wiped-replica",
        "ok": w.ok() && !acked.is_empty(),
        "rounds": rounds,
        "acknowledged": w.acknowledged,
        "lost": w.lost,
        "duplicated": w.duplicated,
        "in_order": w.in_order,
        "replicas_agree": w.replicas_agree,
        "replica_log_lengths": w.replica_log_lengths,
        "problems": w.problems,
        "rejoin_s": { "p50": p50, "max": max, "all": rejoin_s },
    }))
}
