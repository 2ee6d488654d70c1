//! One fetch round's transfer: the missing shards of every variant asked for, over one blob
//! stream, at line rate.
//!
//! - Requests are pipelined with a bounded window: at most [`MAX_IN_FLIGHT`] shard requests are
//!   unanswered at a time, so the coordinator never has more than that many shards queued for us
//!   and one round trip is never paid per shard.
//! - Each reply goes to a store thread that checks its sha256 against the digest asked for and
//!   only then inserts it into sled, while the next shards stream in: the network does not wait
//!   on hashing or on sled. The queue to that thread is bounded ([`STORE_QUEUE`]).
//! - A variant is marked complete when its last shard is stored. Nothing here flushes: shards are
//!   a cache of the coordinator's blob store, so durability only saves a refetch. sled persists
//!   in the background (every 500 ms) and recovers a consistent prefix after a crash, so a
//!   surviving "complete" mark has its manifest and shards (written before it) too, the
//!   start-up scrub verifies every stored shard again, and whatever a crash lost is fetched
//!   again. (An explicit flush waits on the file system's journal, behind whatever other
//!   processes are writing.)
//! - Every reply is read under deadlines and the frame size limit.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use net::clock::SharedClock;
use net::framing::Deadlines;
use wire::codec::MAX_FRAME_BYTES;
use wire::manifest::Manifest;
use wire::msg::{BlobReply, BlobReplyView, BlobRequest, VariantManifest};

use super::shards::ShardStore;
use crate::handles::BlobStreams;

/// Shard requests unanswered at once on the stream (x 64 KiB shards = 4 MiB): enough to keep a
/// fast link busy across the round trip, few enough to bound what is buffered.
pub const MAX_IN_FLIGHT: usize = 64;
/// The window is topped up when this few requests are unanswered, in one write: a request per
/// reply would be a small packet (and a wake-up of the coordinator's stream) per 64 KiB.
const REFILL_AT: usize = MAX_IN_FLIGHT / 2;
/// Received shards waiting for the store thread (x 64 KiB = 1 MiB).
const STORE_QUEUE: usize = 16;
/// The coordinator must start each reply within `idle` and finish it within `frame`.
const REPLY_DEADLINES: Deadlines = Deadlines {
    idle: Duration::from_secs(30),
    frame: Duration::from_secs(30),
};

/// What a transfer reads and writes.
pub struct Transfer<'a> {
    pub streams: &'a BlobStreams,
    /// Cap on download speed in bytes/s (a metered uplink); `None` for no cap.
    pub max_bytes_per_s: Option<f64>,
    pub manifest: &'a Manifest,
    pub store: &'a ShardStore,
    pub clock: &'a SharedClock,
}

/// Fetches every missing shard of `variants` on one stream, marking each variant complete (and
/// calling `done` with its name) as soon as its last shard is stored. Shards already stored
/// (from a fetch a crash cut short) are skipped: the transfer resumes where it stopped.
pub async fn fetch_variants(
    t: &Transfer<'_>,
    variants: &[&str],
    mut done: impl FnMut(&str),
) -> anyhow::Result<()> {
    let (mut send, mut recv) = t.streams.open().await.context("opening a blob stream")?;
    let manifests = manifests(t, &mut send, &mut recv, variants).await?;
    let mut plan = Plan::new(t.store, &manifests)?;
    for v in plan.complete_now() {
        t.store.mark_complete(&v)?;
        done(&v);
    }
    if plan.order.is_empty() {
        let _ = send.finish();
        return Ok(());
    }
    let total = plan.order.len();
    let (to_store, mut queue) = tokio::sync::mpsc::channel::<(String, Bytes)>(STORE_QUEUE);
    // At most one message per shard of this round.
    let (stored_tx, mut stored) = tokio::sync::mpsc::unbounded_channel::<(String, u64)>();
    let writer = {
        let store = t.store.clone();
        tokio::task::spawn_blocking(move || -> Result<(), super::ModelStoreError> {
            while let Some((digest, bytes)) = queue.blocking_recv() {
                // Verifies the sha256 before anything reaches sled.
                store.put_shard(&digest, &bytes)?;
                let _ = stored_tx.send((digest, bytes.len() as u64));
            }
            Ok(())
        })
    };
    let started = t.clock.now();
    let mut pending: VecDeque<String> = plan.order.iter().cloned().collect();
    let mut asked: VecDeque<String> = VecDeque::with_capacity(MAX_IN_FLIGHT);
    let mut received = 0u64;
    let mut progress = Progress { total, stored: 0 };
    loop {
        if asked.len() <= REFILL_AT {
            ask_more(&mut send, &mut pending, &mut asked).await?;
        }
        let Some(d) = asked.pop_front() else { break };
        let (digest, bytes) = read_shard(&mut recv, &d).await?;
        received += bytes.len() as u64;
        if to_store.send((digest, bytes)).await.is_err() {
            // The store thread stopped on an error; it is reported below.
            break;
        }
        while let Ok((digest, len)) = stored.try_recv() {
            progress.stored(t, &mut plan, &digest, len, &mut done)?;
        }
        if let Some(rate) = t.max_bytes_per_s.filter(|r| *r > 0.0) {
            let due = Duration::from_secs_f64(received as f64 / rate);
            if let Some(wait) = due.checked_sub(t.clock.now().duration_since(started)) {
                tokio::time::sleep(wait).await;
            }
        }
    }
    let _ = send.finish();
    drop(to_store);
    writer.await.context("the shard store thread panicked")??;
    while let Some((digest, len)) = stored.recv().await {
        progress.stored(t, &mut plan, &digest, len, &mut done)?;
    }
    t.store.stats().fetch_seconds += t.clock.now().duration_since(started).as_secs_f64();
    if !pending.is_empty() || !asked.is_empty() || progress.stored < total {
        bail!(
            "the transfer stopped with {} of {total} shards stored",
            progress.stored
        );
    }
    Ok(())
}

/// Asks for the next shards until [`MAX_IN_FLIGHT`] are unanswered, in one write.
async fn ask_more(
    send: &mut quinn::SendStream,
    pending: &mut VecDeque<String>,
    asked: &mut VecDeque<String>,
) -> anyhow::Result<()> {
    let mut frames = Vec::new();
    while asked.len() < MAX_IN_FLIGHT {
        let Some(d) = pending.pop_front() else { break };
        let request = BlobRequest::Shard { digest: d.clone() };
        net::framing::append_frame(&mut frames, &request, MAX_FRAME_BYTES)?;
        asked.push_back(d);
    }
    if !frames.is_empty() {
        send.write_all(&frames).await?;
    }
    Ok(())
}

/// The next reply, which must be shard `asked`: its bytes stay in the frame they arrived in
/// (a slice of it, no copy) until the store thread hashes and stores them.
async fn read_shard(recv: &mut quinn::RecvStream, asked: &str) -> anyhow::Result<(String, Bytes)> {
    let payload = net::framing::read_payload_within(recv, MAX_FRAME_BYTES, REPLY_DEADLINES)
        .await?
        .context("the coordinator closed the blob stream mid-transfer")?;
    let payload = Bytes::from(payload);
    match wire::codec::decode_borrowed::<BlobReplyView>(&payload, MAX_FRAME_BYTES)? {
        BlobReplyView::Shard { digest, bytes } if digest == asked => {
            Ok((digest, payload.slice_ref(bytes)))
        }
        BlobReplyView::Shard { digest, .. } => bail!("asked for shard {asked}, got {digest}"),
        BlobReplyView::Missing { what } => {
            bail!("asked for shard {asked}, got a refusal: {what}")
        }
        other => bail!("asked for shard {asked}, got {}", view_kind(&other)),
    }
}

/// The stored (or fetched and checked) manifest of every variant, fetching the missing ones with
/// their requests pipelined.
async fn manifests(
    t: &Transfer<'_>,
    send: &mut quinn::SendStream,
    recv: &mut quinn::RecvStream,
    variants: &[&str],
) -> anyhow::Result<Vec<VariantManifest>> {
    let mut held = Vec::with_capacity(variants.len());
    let mut ask = Vec::new();
    for (i, v) in variants.iter().enumerate() {
        match t.store.manifest(v)? {
            Some(m) => held.push(Some(m)),
            None => {
                held.push(None);
                ask.push(i);
            }
        }
    }
    for &i in &ask {
        let variant = variants[i].to_string();
        net::framing::write_frame(send, &BlobRequest::Manifest { variant }).await?;
    }
    for &i in &ask {
        let variant = variants[i];
        let spec = t
            .manifest
            .variant(variant)
            .with_context(|| format!("{variant} is not in the catalog"))?;
        let reply = net::framing::read_frame_within::<_, BlobReply>(
            &mut *recv,
            MAX_FRAME_BYTES,
            REPLY_DEADLINES,
        )
        .await?
        .context("the coordinator closed the blob stream")?;
        match reply {
            BlobReply::Manifest(m) => {
                check_manifest(&m, t.manifest, spec)?;
                t.store.put_manifest(&m)?;
                held[i] = Some(m);
            }
            BlobReply::Missing { what } => bail!("the coordinator has no {what}"),
            other => bail!("asked for the manifest of {variant}, got {}", kind(&other)),
        }
    }
    Ok(held.into_iter().flatten().collect())
}

/// Which shards to ask for, in order and once each, and which variants wait on each.
struct Plan {
    variants: Vec<String>,
    order: Vec<String>,
    waiting: HashMap<String, Vec<usize>>,
    /// Per variant, its distinct shards not stored yet.
    left: Vec<usize>,
}

impl Plan {
    fn new(store: &ShardStore, manifests: &[VariantManifest]) -> anyhow::Result<Self> {
        let mut plan = Plan {
            variants: Vec::with_capacity(manifests.len()),
            order: Vec::new(),
            waiting: HashMap::new(),
            left: Vec::with_capacity(manifests.len()),
        };
        for (vi, vm) in manifests.iter().enumerate() {
            let missing = store.missing(vm)?;
            let all: BTreeSet<&str> = vm.digests().collect();
            let resumed = store.stored_before_start(&all)?;
            if resumed > 0 && !missing.is_empty() {
                tracing::info!(variant = %vm.variant, resumed, total = all.len(), "resuming an interrupted fetch");
            }
            store.stats().shards_resumed += resumed;
            plan.variants.push(vm.variant.clone());
            plan.left.push(missing.len());
            for d in missing {
                let waiters = plan.waiting.entry(d.clone()).or_default();
                if waiters.is_empty() {
                    plan.order.push(d);
                }
                waiters.push(vi);
            }
        }
        Ok(plan)
    }

    /// Variants with nothing left to fetch.
    fn complete_now(&self) -> Vec<String> {
        self.variants
            .iter()
            .zip(&self.left)
            .filter(|(_, left)| **left == 0)
            .map(|(v, _)| v.clone())
            .collect()
    }

    /// Records `digest` as stored; returns the variants it completed.
    fn stored(&mut self, digest: &str) -> Vec<String> {
        let mut out = Vec::new();
        for vi in self.waiting.remove(digest).unwrap_or_default() {
            self.left[vi] -= 1;
            if self.left[vi] == 0 {
                out.push(self.variants[vi].clone());
            }
        }
        out
    }
}

/// Counts stored shards and completes variants as their last shard lands.
struct Progress {
    total: usize,
    stored: usize,
}

impl Progress {
    fn stored(
        &mut self,
        t: &Transfer<'_>,
        plan: &mut Plan,
        digest: &str,
        len: u64,
        done: &mut impl FnMut(&str),
    ) -> anyhow::Result<()> {
        self.stored += 1;
        {
            let mut st = t.store.stats();
            st.shards_fetched += 1;
            st.bytes_fetched += len;
        }
        tracing::info!(shard = %digest, stored = self.stored, total = self.total, "shard stored");
        for v in plan.stored(digest) {
            t.store.mark_complete(&v)?;
            done(&v);
        }
        Ok(())
    }
}

/// The coordinator's shard list must describe exactly the files the catalog names, with the
/// catalog's digests: the catalog is the root of trust for model bytes.
fn check_manifest(
    m: &VariantManifest,
    catalog: &wire::manifest::Manifest,
    spec: &wire::manifest::VariantSpec,
) -> anyhow::Result<()> {
    let mut expected: Vec<(&str, &str)> = (catalog.variant_files(spec).into_iter())
        .map(|f| (f.file.as_str(), f.sha256.as_str()))
        .collect();
    let mut got: Vec<(&str, &str)> = m
        .files
        .iter()
        .map(|f| (f.file.as_str(), f.sha256.as_str()))
        .collect();
    expected.sort();
    got.sort();
    if m.variant != spec.name || expected != got {
        bail!(
            "the coordinator's shard manifest for {} does not match the catalog",
            spec.name
        );
    }
    Ok(())
}

fn view_kind(reply: &BlobReplyView<'_>) -> &'static str {
    match reply {
        BlobReplyView::Catalog { .. } => "the catalog",
        BlobReplyView::Manifest(_) => "a manifest",
        BlobReplyView::Shard { .. } => "a shard",
        BlobReplyView::Missing { .. } => "a refusal",
    }
}

fn kind(reply: &BlobReply) -> &'static str {
    match reply {
        BlobReply::Catalog { .. } => "the catalog",
        BlobReply::Manifest(_) => "a manifest",
        BlobReply::Shard { .. } => "a shard",
        BlobReply::Missing { .. } => "a refusal",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::shards::sha256_hex;
    use crate::store::NodeStore;
    use wire::msg::FileShards;

    fn manifest(name: &str, chunks: &[&[u8]]) -> VariantManifest {
        let whole: Vec<u8> = chunks.concat();
        VariantManifest {
            variant: name.into(),
            chunk_size: 4,
            files: vec![FileShards {
                file: format!("{name}.trunk.onnx"),
                sha256: sha256_hex(&whole),
                bytes: whole.len() as u64,
                shards: chunks.iter().map(|c| sha256_hex(c)).collect(),
            }],
        }
    }

    #[test]
    fn a_shared_shard_is_asked_once_and_completes_every_variant_waiting_on_it() {
        let dir = tempfile::tempdir().expect("tmp");
        let store = ShardStore::open(&NodeStore::open(dir.path()).expect("open"), u64::MAX)
            .expect("shards");
        let a = manifest("a", &[b"aaaa", b"ssss", b"aaaa"]);
        let b = manifest("b", &[b"ssss", b"bbbb"]);
        let c = manifest("c", &[b"cccc"]);
        store
            .put_shard(&sha256_hex(b"cccc"), b"cccc")
            .expect("stored");
        let mut plan = Plan::new(&store, &[a, b, c]).expect("plan");
        assert_eq!(
            plan.order,
            vec![
                sha256_hex(b"aaaa"),
                sha256_hex(b"ssss"),
                sha256_hex(b"bbbb")
            ],
            "in order, each digest once, stored ones skipped"
        );
        assert_eq!(plan.complete_now(), vec!["c".to_string()]);
        assert!(plan.stored(&sha256_hex(b"ssss")).is_empty());
        assert_eq!(plan.stored(&sha256_hex(b"aaaa")), vec!["a".to_string()]);
        assert_eq!(plan.stored(&sha256_hex(b"bbbb")), vec!["b".to_string()]);
        assert!(
            plan.stored(&sha256_hex(b"bbbb")).is_empty(),
            "a repeat completes nothing twice"
        );
    }

    #[test]
    fn a_manifest_that_does_not_match_the_catalog_is_refused() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/catalog.json");
        let (catalog, _, _) = wire::manifest::load(&path).expect("catalog");
        let spec = catalog.variant("quarter").expect("quarter");
        let mut m = manifest("quarter", &[b"xxxx"]);
        assert!(check_manifest(&m, &catalog, spec).is_err());
        m.files = (catalog.variant_files(spec).into_iter())
            .map(|f| FileShards {
                file: f.file.clone(),
                sha256: f.sha256.clone(),
                bytes: f.bytes,
                shards: vec![],
            })
            .collect();
        assert!(check_manifest(&m, &catalog, spec).is_ok());
    }
}
