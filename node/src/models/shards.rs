//! Shards and per-variant manifests in sled. A shard is stored only after its sha256 matched the
//! digest it was asked for, and verified again every time it is read: a shard corrupted on disk is
//! dropped, its variant leaves the complete set, and the fetcher gets it again. ONNX Runtime never
//! sees bytes that did not verify.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard};

use net::clock::{SharedClock, SystemClock};
use sha2::{Digest, Sha256};
use wire::codec;
use wire::manifest::FileSpec;
use wire::msg::VariantManifest;

use super::shard_trees::ShardTrees;
use crate::engine::EngineError;
use crate::store::{NodeStore, StoreError};

// A full shard's sled record (key, value, sled's headers) must stay under sled's blob threshold
// (a quarter of its 512 KiB segment, less the segment header), or every shard becomes a file of
// its own: see `wire::msg::SHARD_BYTES`.
const _: () = assert!(wire::msg::SHARD_BYTES + 64 + 64 < 512 * 1024 / 4 - 20);
const MANIFESTS_TREE: &str = "model_manifests";
const COMPLETE_TREE: &str = "model_complete";
const LAST_USED_TREE: &str = "model_last_used";

#[derive(Debug, thiserror::Error)]
pub enum ModelStoreError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("model store: {0}")]
    Sled(#[from] sled::Error),
    #[error("shard {expected} arrived with sha256 {actual}; refusing it")]
    BadShard { expected: String, actual: String },
    /// A failpoint fired (tests only).
    #[error("injected failure at {0}")]
    Injected(&'static str),
    #[error("the stored manifest of {variant} is unreadable: {source}")]
    Manifest {
        variant: String,
        source: codec::CodecError,
    },
}

/// Figures for the node's summary and the chaos scenarios.
pub use wire::summary::ModelStoreSummary as StoreStats;

#[derive(Clone)]
pub struct ShardStore {
    /// Shard bytes by hex sha256, spread over bucket trees (`shard_trees`).
    shards: ShardTrees,
    manifests: sled::Tree,
    complete: sled::Tree,
    last_used: sled::Tree,
    disk_budget_bytes: u64,
    clock: SharedClock,
    stats: Arc<Mutex<StoreStats>>,
    /// Shards this process fetched: a shard shared by two variants is not "resumed" when the
    /// second variant's fetch finds it.
    fetched_here: Arc<Mutex<BTreeSet<String>>>,
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl ShardStore {
    pub fn open(store: &NodeStore, disk_budget_bytes: u64) -> Result<Self, ModelStoreError> {
        Self::open_with_clock(store, disk_budget_bytes, SystemClock::shared())
    }

    /// `clock` dates each variant's last use (least recently used variants are collected first).
    pub fn open_with_clock(
        store: &NodeStore,
        disk_budget_bytes: u64,
        clock: SharedClock,
    ) -> Result<Self, ModelStoreError> {
        let s = Self {
            clock,
            shards: ShardTrees::open(store)?,
            manifests: store.tree(MANIFESTS_TREE)?,
            complete: store.tree(COMPLETE_TREE)?,
            last_used: store.tree(LAST_USED_TREE)?,
            disk_budget_bytes,
            stats: Arc::default(),
            fetched_here: Arc::default(),
        };
        s.stats().variants_complete = s.complete_variants()?.into_iter().collect();
        Ok(s)
    }

    pub fn stats(&self) -> MutexGuard<'_, StoreStats> {
        self.stats.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A copy of the figures with the stored size filled in.
    pub fn snapshot(&self) -> StoreStats {
        let stored = self.stored_bytes();
        let mut s = self.stats().clone();
        s.stored_bytes = stored;
        s
    }

    pub fn manifest(&self, variant: &str) -> Result<Option<VariantManifest>, ModelStoreError> {
        let Some(bytes) = self.manifests.get(variant)? else {
            return Ok(None);
        };
        codec::decode(&bytes)
            .map(Some)
            .map_err(|source| ModelStoreError::Manifest {
                variant: variant.to_string(),
                source,
            })
    }

    pub fn put_manifest(&self, m: &VariantManifest) -> Result<(), ModelStoreError> {
        let bytes = codec::encode(m).map_err(|source| {
            ModelStoreError::Store(StoreError::Encode {
                what: "variant manifest",
                source,
            })
        })?;
        // No flush: see `mark_complete`.
        self.manifests.insert(m.variant.as_bytes(), bytes)?;
        Ok(())
    }

    pub fn has_shard(&self, digest: &str) -> Result<bool, ModelStoreError> {
        Ok(self.shards.contains(digest)?)
    }

    /// Stores a shard after checking it is what was asked for; a resumed fetch skips it.
    pub fn put_shard(&self, digest: &str, bytes: &[u8]) -> Result<(), ModelStoreError> {
        let actual = sha256_hex(bytes);
        if actual != digest {
            self.stats().shards_rejected_in_transit += 1;
            return Err(ModelStoreError::BadShard {
                expected: digest.to_string(),
                actual,
            });
        }
        // Fault injection: `return` fails the write; `return(torn)` leaves the first half of
        // the bytes under the digest first, as a write cut short would.
        fail::fail_point!("shard-write", |arg| {
            if arg.as_deref() == Some("torn") {
                self.shards.insert(digest, &bytes[..bytes.len() / 2])?;
            }
            Err(ModelStoreError::Injected("shard-write"))
        });
        // No flush per shard: sled persists in the background (every 500 ms) and recovers to a
        // consistent prefix after a crash, so a crash costs at most the last moments' shards.
        self.shards.insert(digest, bytes)?;
        self.fetched_here
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(digest.to_string());
        Ok(())
    }

    /// Of `digests`, how many were stored before this process started (a resumed transfer).
    pub fn stored_before_start(&self, digests: &BTreeSet<&str>) -> Result<u64, ModelStoreError> {
        let here = self
            .fetched_here
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut n = 0;
        for d in digests {
            n += u64::from(!here.contains(*d) && self.has_shard(d)?);
        }
        Ok(n)
    }

    /// Digests of `m` not stored yet, in order, without repeats.
    pub fn missing(&self, m: &VariantManifest) -> Result<Vec<String>, ModelStoreError> {
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        for d in m.digests() {
            if seen.insert(d.to_string()) && !self.has_shard(d)? {
                out.push(d.to_string());
            }
        }
        Ok(out)
    }

    /// Marks `variant` complete. Not flushed (see `models::transfer`): sled recovers a
    /// consistent prefix after a crash, so a mark that survives one has its manifest and shards,
    /// written before it, with it; and the start-up scrub verifies them again.
    pub fn mark_complete(&self, variant: &str) -> Result<(), ModelStoreError> {
        self.complete.insert(variant, &[][..])?;
        self.touch(variant)?;
        let mut st = self.stats();
        if !st.variants_complete.iter().any(|v| v == variant) {
            st.variants_complete.push(variant.to_string());
        }
        Ok(())
    }

    fn unmark_complete(&self, variant: &str) -> Result<(), ModelStoreError> {
        self.complete.remove(variant)?;
        self.stats().variants_complete.retain(|v| v != variant);
        Ok(())
    }

    pub fn complete_variants(&self) -> Result<BTreeSet<String>, ModelStoreError> {
        let mut out = BTreeSet::new();
        for k in self.complete.iter().keys() {
            out.insert(String::from_utf8_lossy(&k?).into_owned());
        }
        Ok(out)
    }

    pub fn touch(&self, variant: &str) -> Result<(), ModelStoreError> {
        self.last_used
            .insert(variant, &self.clock.unix_ms().to_be_bytes())?;
        Ok(())
    }

    /// Re-reads every shard of `variant`, dropping corrupt ones. Returns whether all verified.
    pub fn verify_variant(&self, variant: &str) -> Result<bool, ModelStoreError> {
        let Some(m) = self.manifest(variant)? else {
            return Ok(false);
        };
        let mut ok = true;
        for d in m.digests() {
            ok &= self.verified_shard(d)?.is_some();
        }
        if !ok {
            self.unmark_complete(variant)?;
        }
        Ok(ok)
    }

    /// A stored shard's bytes if they still match their digest; a corrupt shard is removed.
    fn verified_shard(&self, digest: &str) -> Result<Option<sled::IVec>, ModelStoreError> {
        let Some(bytes) = self.shards.get(digest)? else {
            return Ok(None);
        };
        if sha256_hex(&bytes) != digest {
            tracing::warn!(shard = %digest, "stored shard is corrupt; dropping it to fetch again");
            self.shards.remove(digest)?;
            self.shards.flush()?;
            self.stats().corrupt_shards_dropped += 1;
            return Ok(None);
        }
        self.stats().shards_verified += 1;
        Ok(Some(bytes))
    }

    /// A model file assembled from verified shards (the model cache's fetch). A missing or
    /// corrupt shard makes the variant incomplete again so the fetcher replaces it.
    pub fn read_file(&self, file: &FileSpec) -> Result<Vec<u8>, EngineError> {
        let not_present = |why: String| EngineError::Read {
            path: file.file.clone(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, why),
        };
        let store_err = |e: ModelStoreError| not_present(e.to_string());
        for item in self.manifests.iter() {
            let (k, v) = item.map_err(|e| store_err(e.into()))?;
            let variant = String::from_utf8_lossy(&k).into_owned();
            let Ok(m) = codec::decode::<VariantManifest>(&v) else {
                continue;
            };
            let Some(fs) = m
                .files
                .iter()
                .find(|f| f.file == file.file && f.sha256 == file.sha256)
            else {
                continue;
            };
            if !self
                .complete
                .contains_key(&k)
                .map_err(|e| store_err(e.into()))?
            {
                return Err(not_present(format!(
                    "variant {variant} is not completely fetched"
                )));
            }
            let mut out = Vec::with_capacity(fs.bytes as usize);
            for d in &fs.shards {
                match self.verified_shard(d).map_err(store_err)? {
                    Some(b) => out.extend_from_slice(&b),
                    None => {
                        self.unmark_complete(&variant).map_err(store_err)?;
                        return Err(EngineError::Digest {
                            file: format!("{} (shard {d})", file.file),
                            expected: d.clone(),
                            actual: "corrupt or missing; dropped for refetch".into(),
                        });
                    }
                }
            }
            self.touch(&variant).map_err(store_err)?;
            return Ok(out);
        }
        Err(not_present("no stored variant holds this file".into()))
    }

    pub fn stored_bytes(&self) -> u64 {
        self.shards.stored_bytes()
    }

    /// Removes least recently used variants outside `keep` until the shards fit the disk budget.
    /// A shard another kept manifest references stays. Returns the variants removed.
    pub fn collect(&self, keep: &BTreeSet<String>) -> Result<Vec<String>, ModelStoreError> {
        let mut removed = Vec::new();
        while self.stored_bytes() > self.disk_budget_bytes {
            let mut candidates: Vec<(u64, String)> = Vec::new();
            for k in self.manifests.iter().keys() {
                let name = String::from_utf8_lossy(&k?).into_owned();
                if keep.contains(&name) {
                    continue;
                }
                let used = self
                    .last_used
                    .get(&name)?
                    .and_then(|b| <[u8; 8]>::try_from(b.as_ref()).ok())
                    .map_or(0, u64::from_be_bytes);
                candidates.push((used, name));
            }
            candidates.sort();
            let Some((_, victim)) = candidates.into_iter().next() else {
                break;
            };
            self.remove_variant(&victim)?;
            removed.push(victim);
        }
        self.stats().variants_collected += removed.len() as u64;
        Ok(removed)
    }

    fn remove_variant(&self, variant: &str) -> Result<(), ModelStoreError> {
        let doomed: BTreeSet<String> = match self.manifest(variant)? {
            Some(m) => m.digests().map(str::to_string).collect(),
            None => BTreeSet::new(),
        };
        self.unmark_complete(variant)?;
        self.manifests.remove(variant)?;
        self.last_used.remove(variant)?;
        let mut still_used = BTreeSet::new();
        for v in self.manifests.iter().values() {
            if let Ok(m) = codec::decode::<VariantManifest>(&v?) {
                still_used.extend(m.digests().map(str::to_string));
            }
        }
        for d in doomed.difference(&still_used) {
            self.shards.remove(d)?;
        }
        self.shards.flush()?;
        tracing::info!(
            variant,
            "collected an unreferenced variant to stay within the disk budget"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wire::msg::FileShards;

    fn variant(name: &str, chunks: &[&[u8]]) -> (VariantManifest, FileSpec) {
        let whole: Vec<u8> = chunks.concat();
        let file = format!("{name}.trunk.onnx");
        let m = VariantManifest {
            variant: name.into(),
            chunk_size: 4,
            files: vec![FileShards {
                file: file.clone(),
                sha256: sha256_hex(&whole),
                bytes: whole.len() as u64,
                shards: chunks.iter().map(|c| sha256_hex(c)).collect(),
            }],
        };
        let spec = FileSpec {
            file,
            sha256: sha256_hex(&whole),
            bytes: whole.len() as u64,
        };
        (m, spec)
    }

    fn fill(s: &ShardStore, m: &VariantManifest, chunks: &[&[u8]]) {
        s.put_manifest(m).expect("manifest");
        for c in chunks {
            s.put_shard(&sha256_hex(c), c).expect("shard");
        }
        s.mark_complete(&m.variant).expect("complete");
    }

    #[test]
    fn corrupt_shards_are_dropped_and_never_returned() {
        let dir = tempfile::tempdir().expect("tmp");
        let store = NodeStore::open(dir.path()).expect("open");
        let s = ShardStore::open(&store, u64::MAX).expect("shards");
        let chunks: [&[u8]; 2] = [b"abcd", b"ef"];
        let (m, spec) = variant("half", &chunks);
        assert!(s.read_file(&spec).is_err(), "nothing stored yet");
        assert!(
            s.put_shard(&sha256_hex(b"abcd"), b"abcX").is_err(),
            "a wrong shard is refused"
        );
        fill(&s, &m, &chunks);
        assert_eq!(s.read_file(&spec).expect("read"), b"abcdef");
        // Flip a byte on disk.
        store
            .tree(&crate::models::shard_trees::tree_name(&sha256_hex(b"ef")))
            .expect("tree")
            .insert(sha256_hex(b"ef"), &b"eX"[..])
            .expect("tamper");
        assert!(matches!(
            s.read_file(&spec),
            Err(EngineError::Digest { .. })
        ));
        assert_eq!(s.snapshot().corrupt_shards_dropped, 1);
        assert!(!s.complete_variants().expect("complete").contains("half"));
        assert_eq!(
            s.missing(&m).expect("missing"),
            vec![sha256_hex(b"ef")],
            "only the bad shard is refetched"
        );
    }

    fn blob_files(dir: &std::path::Path) -> usize {
        std::fs::read_dir(dir.join("blobs")).map_or(0, |d| d.count())
    }

    #[test]
    fn full_size_shards_stay_in_sleds_log_not_in_files_of_their_own() {
        let dir = tempfile::tempdir().expect("tmp");
        let store = NodeStore::open(dir.path()).expect("open");
        let s = ShardStore::open(&store, u64::MAX).expect("shards");
        for i in 0..40u32 {
            let shard: Vec<u8> = (0..wire::msg::SHARD_BYTES)
                .map(|j| (j as u32 ^ i) as u8)
                .collect();
            s.put_shard(&sha256_hex(&shard), &shard).expect("stored");
        }
        store.flush().expect("flush");
        assert_eq!(blob_files(dir.path()), 0, "no shard became a blob file");
        // The threshold is real: a value four times a shard is written as a file.
        let big = vec![7u8; 4 * wire::msg::SHARD_BYTES];
        store
            .tree("scratch")
            .expect("tree")
            .insert("big", big)
            .expect("big");
        store.flush().expect("flush");
        assert!(blob_files(dir.path()) > 0, "a 256 KiB value is a blob file");
    }

    #[test]
    fn unreferenced_variants_are_collected_under_the_budget() {
        let dir = tempfile::tempdir().expect("tmp");
        let store = NodeStore::open(dir.path()).expect("open");
        let s = ShardStore::open(&store, 10).expect("shards");
        let a: [&[u8]; 2] = [b"aaaa", b"aaab"];
        let b: [&[u8]; 2] = [b"bbbb", b"bbbc"];
        let (ma, _) = variant("a", &a);
        let (mb, _) = variant("b", &b);
        fill(&s, &ma, &a);
        fill(&s, &mb, &b);
        let keep = ["b".to_string()].into_iter().collect();
        assert_eq!(s.collect(&keep).expect("gc"), vec!["a".to_string()]);
        assert!(s.stored_bytes() <= 10);
        assert_eq!(
            s.complete_variants()
                .expect("complete")
                .into_iter()
                .collect::<Vec<_>>(),
            vec!["b"]
        );
    }
}
