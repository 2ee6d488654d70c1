//! `mcdnn-chaos bench-writes`: commit latency (p50/p99) of operator policy writes through the
//! leader of a 3-replica cluster on this machine, one writer at a time, then throughput with
//! `concurrency` writers. Each write is acknowledged only once committed by a quorum and
//! applied; the run is then audited like every chaos scenario (every acknowledged write on
//! every replica once, replicas identical, the replicated write counter up by exactly the
//! writes acknowledged), so `ok`, `lost` and `duplicated` are computed, not assumed.

use std::time::Instant;

use serde_json::{Value, json};

use super::{T, client, percentile, replica_logs};
use crate::cluster::Cluster;
use crate::verdict::{self, Ack};

pub fn write_bench(count: usize, concurrency: usize) -> anyhow::Result<Value> {
    let mut c = Cluster::new(3)?;
    c.start_all()?;
    let leader = c.wait_leader(T, None)?;
    let client = client(&c);
    let post = |writer: &str, id: u64| -> anyhow::Result<Ack> {
        let index = client.post(leader, writer, id, std::time::Duration::from_secs(5))?;
        Ok(Ack {
            write_id: id,
            index,
            attempts: 1,
        })
    };
    for id in 1..=20 {
        post("warmup", id)?;
    }
    let writes_before = c.status(leader)?.policy_writes;
    let mut latencies = Vec::with_capacity(count);
    let mut serial = Vec::with_capacity(count);
    for id in 1..=count as u64 {
        let t = Instant::now();
        serial.push(post("serial", id)?);
        latencies.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let started = Instant::now();
    let per = count.max(1);
    let writers: Vec<String> = (0..concurrency.max(1)).map(|w| format!("w{w}")).collect();
    let concurrent: Vec<Vec<Ack>> = std::thread::scope(|s| -> anyhow::Result<Vec<Vec<Ack>>> {
        let handles: Vec<_> = writers
            .iter()
            .map(|name| {
                let post = &post;
                s.spawn(move || -> anyhow::Result<Vec<Ack>> {
                    (1..=per as u64).map(|id| post(name, id)).collect()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().map_err(|_| anyhow::anyhow!("writer panicked"))?)
            .collect()
    })?;
    let secs = started.elapsed().as_secs_f64();
    let total = per * writers.len();
    let replicas = replica_logs(&c)?;
    let applied = c.status(c.wait_leader(T, None)?)?.policy_writes - writes_before;
    let mut problems = Vec::new();
    let (mut lost, mut duplicated) = (0, 0);
    let runs = std::iter::once(("serial", &serial))
        .chain(writers.iter().map(String::as_str).zip(&concurrent));
    for (writer, acked) in runs {
        let v = verdict::writes(&verdict::WriteEvidence {
            writer,
            acked,
            replicas: &replicas,
        });
        lost += v.lost;
        duplicated += v.duplicated;
        problems.extend(v.problems.into_iter().map(|p| format!("{writer}: {p}")));
    }
    let acknowledged = count + total;
    if applied != acknowledged {
        problems.push(format!(
            "{acknowledged} writes acknowledged but the replicated counter moved by {applied}"
        ));
    }
    let (p50, p99) = (
        percentile(&mut latencies.clone(), 0.5),
        percentile(&mut latencies.clone(), 0.99),
    );
    Ok(verdict::report(
        "bench-writes",
        lost,
        duplicated,
        &problems,
        json!({
            "acknowledged": acknowledged,
            "serial_writes": count,
            "commit_latency_ms": { "p50": p50, "p99": p99 },
            "concurrent_writers": writers.len(),
            "concurrent_writes": total,
            "writes_applied": applied,
            "throughput_writes_per_s": total as f64 / secs,
        }),
    ))
}
