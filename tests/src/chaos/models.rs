//! Model-store fault scenarios (`mcdnn-chaos`): a node killed in the middle of its download, and
//! shards corrupted on disk between runs. Both prove the fault from the node's store itself (a
//! download incomplete at the kill; bytes that no longer match their digest before the restart)
//! and judge the run that follows, including its results, with [`crate::verdict`].

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use super::{merge, node_results, tail, wait_exit};
use crate::verdict::{self, CorruptionEvidence};
use crate::{Fleet, Proc};

fn shard_lines(p: &Proc) -> usize {
    p.log_text()
        .lines()
        .filter(|l| l.contains("shard stored"))
        .count()
}

/// Shards in a stopped node's store: digest -> whether the bytes still match it.
fn stored_shards(fleet: &Fleet, node: &str) -> anyhow::Result<BTreeMap<String, bool>> {
    let db = sled::open(fleet.store_path(node)).context("opening the stopped node's store")?;
    let mut out = BTreeMap::new();
    for name in mcdnn_node::models::shard_trees::tree_names() {
        for item in db.open_tree(name)?.iter() {
            let (k, v) = item?;
            let digest = String::from_utf8_lossy(&k).to_string();
            let sound = digest == sha256(&v);
            out.insert(digest, sound);
        }
    }
    Ok(out)
}

/// Kill -9 a node in the middle of its first model download; on restart it fetches only the
/// shards it lacks, verifies everything and serves.
pub fn crash_during_download() -> anyhow::Result<Value> {
    let fleet = Fleet::new()?;
    let _coord = fleet.coordinator(&[])?;
    let extra = [
        "--models",
        "coordinator",
        "--prefetch",
        "all",
        "--fetch-max-mbps",
        "1.5",
    ];
    let mut first = fleet.node("cam-dl", "laptop", 120.0, &extra)?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while shard_lines(&first) < 10 {
        if Instant::now() > deadline {
            bail!("the download never started: {}", tail(&first.log_text()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    first.kill();
    let stored_before_crash = shard_lines(&first) as u64;
    let total = total_shards()?;
    // The kill hit the download only if the store is incomplete now.
    let on_disk_after_kill = stored_shards(&fleet, "cam-dl")?.len() as u64;
    let mut second = fleet.node(
        "cam-dl",
        "laptop",
        12.0,
        &["--models", "coordinator", "--prefetch", "all"],
    )?;
    wait_exit(&mut second, Duration::from_secs(120))?;
    let summary = fleet.summary("cam-dl")?;
    let (results, mut problems, figures) = node_results(&fleet, "cam-dl", &[&summary])?;
    let m = summary
        .models
        .as_ref()
        .context("the node summary has no model store figures")?;
    let (resumed, fetched) = (m.shards_resumed, m.shards_fetched);
    let complete = m.variants_complete.len();
    let lost = total.saturating_sub(resumed + fetched);
    let duplicated = (resumed + fetched).saturating_sub(total);
    if on_disk_after_kill >= total {
        problems.push(format!(
            "the download was complete ({on_disk_after_kill} of {total} shards) when the node was killed"
        ));
    }
    if resumed == 0 || fetched == 0 {
        problems.push(format!(
            "resumed {resumed} and fetched {fetched} shards: the restart did not resume"
        ));
    }
    if lost > 0 || duplicated > 0 {
        problems.push(format!(
            "{total} shards needed; {resumed} resumed + {fetched} fetched"
        ));
    }
    if complete != 6 {
        problems.push(format!("{complete} of 6 variants complete"));
    }
    Ok(verdict::report(
        "node-crash-during-download",
        lost + results.lost,
        duplicated + results.duplicated,
        &problems,
        merge(
            json!({
                "shards_total": total,
                "shards_stored_before_kill": stored_before_crash,
                "shards_on_disk_after_kill": on_disk_after_kill,
                "shards_resumed": resumed,
                // Stored in the last moments before the kill, not yet flushed by sled.
                "shards_lost_to_crash": stored_before_crash.saturating_sub(resumed),
                "shards_fetched_after_restart": fetched,
                "shards_verified": m.shards_verified,
                "variants_complete": complete,
                "requests_served_after_restart": summary.requests,
                "accuracy": summary.accuracy,
            }),
            figures,
        ),
    ))
}

/// Distinct shards of the repo catalog, as the coordinator cuts them.
fn total_shards() -> anyhow::Result<u64> {
    let (manifest, _, dir) = wire::manifest::load(&crate::catalog())?;
    let mut digests = std::collections::BTreeSet::new();
    for v in &manifest.variants {
        for f in std::iter::once(&v.trunk).chain(v.heads.iter().map(|h| &h.file)) {
            let bytes = std::fs::read(dir.join(&f.file))?;
            for c in bytes.chunks(wire::msg::SHARD_BYTES) {
                digests.insert(sha256(c));
            }
        }
    }
    Ok(digests.len() as u64)
}

fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Flips one byte in one trunk shard of every stored variant of a stopped node: digest ->
/// variant it was flipped for.
fn flip_shards(fleet: &Fleet, node: &str) -> anyhow::Result<BTreeMap<String, String>> {
    let db = sled::open(fleet.store_path(node)).context("opening the stopped node's store")?;
    let manifests = db.open_tree("model_manifests")?;
    let mut flipped = BTreeMap::new();
    for item in manifests.iter() {
        let (_, v) = item?;
        let m: wire::msg::VariantManifest = wire::codec::decode(&v)?;
        let Some(d) = m.files.first().and_then(|f| f.shards.last()) else {
            continue;
        };
        if flipped.contains_key(d) {
            continue; // a trunk shared by two variants is flipped once
        }
        let shards = db.open_tree(mcdnn_node::models::shard_trees::tree_name(d))?;
        if let Some(bytes) = shards.get(d)? {
            let mut bad = bytes.to_vec();
            let mid = bad.len() / 2;
            bad[mid] ^= 0xff;
            shards.insert(d.as_bytes(), bad)?;
            flipped.insert(d.clone(), m.variant.clone());
        }
    }
    db.flush()?;
    Ok(flipped)
}

/// Flip bytes in stored shards of a stopped node; on its next run every corruption is detected
/// when the variant is read, the shard is dropped and fetched again, and nothing corrupt serves.
pub fn corrupt_shard() -> anyhow::Result<Value> {
    let fleet = Fleet::new()?;
    let _coord = fleet.coordinator(&[])?;
    let extra = ["--models", "coordinator", "--prefetch", "all"];
    let mut first = fleet.node("cam-cs", "laptop", 8.0, &extra)?;
    wait_exit(&mut first, Duration::from_secs(120))?;
    let before = fleet.summary("cam-cs")?;
    let complete_before = before
        .models
        .as_ref()
        .context("the node summary has no model store figures")?
        .variants_complete
        .len();
    // One flipped byte in one shard of every variant's trunk: whichever variant the node loads
    // first meets corruption.
    let flipped = flip_shards(&fleet, "cam-cs")?;
    let on_disk = stored_shards(&fleet, "cam-cs")?;
    let corrupt_before = flipped
        .keys()
        .filter(|d| on_disk.get(*d) == Some(&false))
        .count() as u64;
    let mut second = fleet.node("cam-cs", "laptop", 12.0, &extra)?;
    wait_exit(&mut second, Duration::from_secs(120))?;
    let summary = fleet.summary("cam-cs")?;
    let (results, mut problems, figures) = node_results(&fleet, "cam-cs", &[&before, &summary])?;
    let m = summary
        .models
        .as_ref()
        .context("the node summary has no model store figures")?;
    let after = stored_shards(&fleet, "cam-cs")?;
    let corrupt_left = after.values().filter(|sound| !**sound).count() as u64;
    // A flipped shard still corrupt after the run, of a variant that answered requests: served
    // from corrupt bytes without the node noticing.
    let served = |variant: &str| {
        summary
            .apps
            .values()
            .any(|a| a.by_variant.get(variant).is_some_and(|n| *n > 0))
    };
    let loaded_corrupt = flipped
        .iter()
        .filter(|(d, variant)| after.get(*d) == Some(&false) && served(variant))
        .count() as u64;
    let e = CorruptionEvidence {
        flipped: flipped.len() as u64,
        corrupt_on_disk_before: corrupt_before,
        detected: m.corrupt_shards_dropped,
        refetched: m.shards_fetched,
        corrupt_left,
        loaded_corrupt,
    };
    problems.extend(verdict::corruption(&e));
    Ok(verdict::report(
        "corrupt-shard",
        results.lost,
        results.duplicated,
        &problems,
        merge(
            json!({
                "variants_complete_before": complete_before,
                "shards_flipped": e.flipped,
                "corrupt_on_disk_before_restart": e.corrupt_on_disk_before,
                "corrupt_detected_and_dropped": e.detected,
                "shards_refetched": e.refetched,
                "corrupt_shards_left": e.corrupt_left,
                "loaded_corrupt": e.loaded_corrupt,
                "accuracy": summary.accuracy,
            }),
            figures,
        ),
    ))
}
