//! `mcdnn-chaos snapshot-restore`: a backup taken with `mcdnnctl snapshot save` while an operator
//! keeps writing holds every write acknowledged before the save began; restored with `mcdnnctl
//! snapshot restore` into a brand-new cluster, every replica of it has those writes, once each,
//! and the new cluster accepts writes.

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use serde_json::json;

use crate::cluster::Cluster;
use crate::{OPERATOR, bin};

const T: Duration = Duration::from_secs(20);
const LABEL: &str = "backup-writer";

fn mcdnnctl(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(bin("mcdnnctl")?).args(args).output()?;
    ensure!(
        out.status.success(),
        "mcdnnctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// What the check compares: the ids acknowledged before the save, and each replica's log of
/// this writer's ids.
pub fn verdict(before_save: &[u64], logs: &[Vec<u64>]) -> (u64, u64) {
    let (mut lost, mut duplicated) = (0, 0);
    for log in logs {
        let mut seen: BTreeMap<u64, u64> = BTreeMap::new();
        for id in log {
            *seen.entry(*id).or_default() += 1;
        }
        lost += before_save
            .iter()
            .filter(|id| !seen.contains_key(id))
            .count() as u64;
        duplicated += seen.values().map(|n| n - 1).sum::<u64>();
    }
    (lost, duplicated)
}

/// Runs the scenario with `writes` acknowledged writes before the save.
pub fn snapshot_restore(writes: usize) -> anyhow::Result<serde_json::Value> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("fleet.backup");
    let file_arg = file.to_string_lossy().into_owned();
    let (before_save, after_save, save_out) = {
        let mut a = Cluster::new(3)?;
        a.start_all()?;
        a.wait_leader(T, None)?;
        let a = Arc::new(a);
        let acked = Arc::new(Mutex::new(Vec::<u64>::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let (a, acked, stop) = (a.clone(), acked.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut id = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    id += 1;
                    // Retried with the same id until acknowledged: applied once either way.
                    let deadline = Instant::now() + T;
                    while a
                        .write_policy("fleet.cost_budget_usd", 0.01, LABEL, id)
                        .is_err()
                    {
                        if Instant::now() > deadline || stop.load(Ordering::Relaxed) {
                            return;
                        }
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    acked.lock().unwrap_or_else(|p| p.into_inner()).push(id);
                }
            })
        };
        let deadline = Instant::now() + T;
        while acked.lock().unwrap_or_else(|p| p.into_inner()).len() < writes {
            ensure!(
                Instant::now() < deadline,
                "writes were not acknowledged in time"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        let before: Vec<u64> = acked.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let admins = (0..a.size)
            .map(|i| a.admin(i))
            .collect::<Vec<_>>()
            .join(",");
        let ca = a.ca.to_string_lossy().into_owned();
        let save_out = mcdnnctl(&[
            "snapshot",
            "save",
            &file_arg,
            "--coordinator",
            &admins,
            "--identity-dir",
            &ca,
            "--identity",
            OPERATOR,
        ])?;
        // Writes go on during and after the save; the backup must not need them.
        std::thread::sleep(Duration::from_millis(300));
        stop.store(true, Ordering::Relaxed);
        writer
            .join()
            .map_err(|_| anyhow::anyhow!("writer panicked"))?;
        let after = acked.lock().unwrap_or_else(|p| p.into_inner()).len() - before.len();
        (before, after, save_out)
    };
    let snapshot_bytes = std::fs::metadata(&file)?.len();
    let mut b = Cluster::new(3)?;
    let peers = b.peers();
    let restored_at = Instant::now();
    for i in 0..b.size {
        let data = b.data_dir(i).to_string_lossy().into_owned();
        mcdnnctl(&[
            "snapshot",
            "restore",
            &file_arg,
            "--data-dir",
            &data,
            "--peers",
            &peers,
        ])?;
    }
    for i in 0..b.size {
        b.start(i, false)?;
    }
    b.wait_leader(T, None)?;
    let restore_ms = restored_at.elapsed().as_millis() as u64;
    let mut logs = Vec::new();
    for i in 0..b.size {
        let log = b
            .policy_log(i)
            .with_context(|| format!("policy log of replica {i}"))?;
        logs.push(
            log.into_iter()
                .filter(|(w, _)| w == LABEL)
                .map(|(_, id)| id)
                .collect(),
        );
    }
    let (lost, duplicated) = verdict(&before_save, &logs);
    let new_write = b.write_policy("fleet.cost_budget_usd", 0.02, "after-restore", 1);
    let ok = lost == 0 && duplicated == 0 && new_write.is_ok();
    Ok(json!({
        "scenario": "snapshot-restore",
        "ok": ok,
        "lost": lost,
        "duplicated": duplicated,
        "acked_before_save": before_save.len(),
        "acked_after_save": after_save,
        "restored_writes_per_replica": logs.iter().map(Vec::len).collect::<Vec<_>>(),
        "snapshot_bytes": snapshot_bytes,
        "restore_to_leader_ms": restore_ms,
        "new_cluster_accepts_writes": new_write.is_ok(),
        "save": save_out.trim(),
    }))
}

#[cfg(test)]
mod tests {
    use super::verdict;

    #[test]
    fn the_verdict_counts_missing_and_repeated_writes_per_replica() {
        assert_eq!(
            verdict(&[1, 2, 3], &[vec![1, 2, 3, 4], vec![1, 2, 3]]),
            (0, 0)
        );
        assert_eq!(
            verdict(&[1, 2, 3], &[vec![1, 3], vec![1, 2, 3]]),
            (1, 0),
            "a lost write"
        );
        assert_eq!(verdict(&[1, 2], &[vec![1, 2, 2]]), (0, 1), "a duplicate");
    }
}
