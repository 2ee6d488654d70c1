//! The fetcher: keeps the variants the node wants present in the shard store, over blob streams
//! on the link's QUIC connection. Serving never waits on it: the serving thread only chooses
//! variants in `ModelAvailability`, which the fetcher updates as variants complete.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio_util::sync::CancellationToken;
use wire::codec::MAX_FRAME_BYTES;
use wire::manifest::Manifest;
use wire::msg::{BlobReply, BlobRequest, VariantManifest};

use net::clock::SharedClock;

use super::shards::ShardStore;
use crate::handles::{AssignmentCell, BlobStreams, CoordinatorLink, ModelAvailability};

/// Which variants the node keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// The assignment's allowed variants (and the smallest variant before any assignment).
    Assigned,
    /// Every variant of the catalog (offload servers, or prefetching devices).
    All,
}

#[derive(Debug, Clone)]
pub struct FetchConfig {
    pub want: Want,
    /// Cap on download speed in bytes/s (a metered uplink); `None` for no cap.
    pub max_bytes_per_s: Option<f64>,
}

/// The state the fetcher reads and writes.
#[derive(Debug, Clone)]
pub struct FetchHandles {
    /// Which variants the assignment allows (what to fetch).
    pub assignment: AssignmentCell,
    /// Published as variants complete; variants serving could not load come back here.
    pub models: ModelAvailability,
    /// Blob streams ride on the link's session.
    pub coordinator: CoordinatorLink,
    pub clock: SharedClock,
}

/// Runs until `cancel`.
pub async fn run(
    cfg: FetchConfig,
    manifest: Manifest,
    store: ShardStore,
    handles: FetchHandles,
    cancel: CancellationToken,
) {
    // Scrub at start: every stored variant is verified shard by shard before serving may choose
    // it, so corruption on disk (bit rot, a crash mid-write, tampering) is found and refetched.
    match store.complete_variants() {
        Ok(stored) => {
            for v in &stored {
                match store.verify_variant(v) {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::warn!(variant = %v, "stored variant failed verification; refetching it")
                    }
                    Err(e) => {
                        tracing::error!(variant = %v, error = %e, "cannot verify a stored variant")
                    }
                }
            }
        }
        Err(e) => tracing::error!(error = %e, "cannot list stored variants"),
    }
    publish(&store, &handles.models);
    while !cancel.is_cancelled() {
        if let Err(e) = round(&cfg, &manifest, &store, &handles, &cancel).await {
            tracing::warn!(
                error = format!("{e:#}"),
                "model fetch interrupted; retrying"
            );
        }
        publish(&store, &handles.models);
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(300)) => {}
            _ = cancel.cancelled() => break,
        }
    }
}

/// The complete variants become the serving thread's available set.
fn publish(store: &ShardStore, models: &ModelAvailability) {
    match store.complete_variants() {
        Ok(set) => models.publish(set),
        Err(e) => tracing::error!(error = %e, "cannot list stored variants"),
    }
}

fn wanted(cfg: &FetchConfig, manifest: &Manifest, assignment: &AssignmentCell) -> BTreeSet<String> {
    let smallest = manifest
        .variants
        .iter()
        .min_by_key(|v| v.bytes())
        .map(|v| v.name.clone());
    let mut out: BTreeSet<String> = smallest.into_iter().collect();
    match cfg.want {
        Want::All => out.extend(manifest.variants.iter().map(|v| v.name.clone())),
        Want::Assigned => {
            assignment.read(|a| {
                for app in a.iter().flat_map(|a| &a.apps) {
                    out.extend(app.allowed_variants.iter().cloned());
                    out.extend(app.mix.iter().map(|m| m.variant.clone()));
                    // A specialised head reads this variant's trunk.
                    out.extend(app.specialised.iter().map(|s| s.trunk_variant.clone()));
                }
            });
        }
    }
    out.retain(|v| manifest.variant(v).is_some());
    out
}

async fn round(
    cfg: &FetchConfig,
    manifest: &Manifest,
    store: &ShardStore,
    handles: &FetchHandles,
    cancel: &CancellationToken,
) -> anyhow::Result<()> {
    // Variants the serving thread could not load: check every shard again (dropping corrupt
    // ones) so the fetch below replaces exactly what is bad.
    let broken = handles.models.take_broken();
    for v in &broken {
        store.verify_variant(v)?;
    }
    if !broken.is_empty() {
        publish(store, &handles.models);
    }
    let want = wanted(cfg, manifest, &handles.assignment);
    let complete = store.complete_variants()?;
    let todo: Vec<&String> = want.iter().filter(|v| !complete.contains(*v)).collect();
    if todo.is_empty() {
        store.collect(&want)?;
        return Ok(());
    }
    let Some(streams) = handles.coordinator.streams() else {
        return Ok(());
    };
    for variant in todo {
        if cancel.is_cancelled() {
            break;
        }
        fetch_variant(&streams, cfg, manifest, store, variant, &handles.clock).await?;
        store.mark_complete(variant)?;
        publish(store, &handles.models);
        tracing::info!(%variant, "variant fetched and verified");
    }
    store.collect(&want)?;
    Ok(())
}

async fn request(
    send: &mut quinn::SendStream,
    recv: &mut quinn::RecvStream,
    req: &BlobRequest,
) -> anyhow::Result<BlobReply> {
    net::framing::write_frame(send, req).await?;
    net::framing::read_frame::<_, BlobReply>(recv, MAX_FRAME_BYTES)
        .await?
        .context("the coordinator closed the blob stream")
}

/// Fetches the missing shards of one variant. Shards already stored (from a fetch a crash cut
/// short) are skipped: the transfer resumes where it stopped.
pub async fn fetch_variant(
    streams: &BlobStreams,
    cfg: &FetchConfig,
    manifest: &Manifest,
    store: &ShardStore,
    variant: &str,
    clock: &SharedClock,
) -> anyhow::Result<()> {
    let spec = manifest
        .variant(variant)
        .with_context(|| format!("{variant} is not in the catalog"))?;
    let (mut send, mut recv) = streams.open().await.context("opening a blob stream")?;
    let vm = match store.manifest(variant)? {
        Some(m) => m,
        None => match request(
            &mut send,
            &mut recv,
            &BlobRequest::Manifest {
                variant: variant.to_string(),
            },
        )
        .await?
        {
            BlobReply::Manifest(m) => {
                check_manifest(&m, spec)?;
                store.put_manifest(&m)?;
                m
            }
            BlobReply::Missing { what } => bail!("the coordinator has no {what}"),
            other => bail!("asked for the manifest of {variant}, got {}", kind(&other)),
        },
    };
    let missing = store.missing(&vm)?;
    let all: BTreeSet<&str> = vm.digests().collect();
    let total = all.len();
    let present = total - missing.len();
    let resumed = store.stored_before_start(&all)?;
    if resumed > 0 && !missing.is_empty() {
        tracing::info!(variant, resumed, total, "resuming an interrupted fetch");
    }
    store.stats().shards_resumed += resumed;
    let started = clock.now();
    let mut bytes_done = 0u64;
    // Pipeline: every request goes out first (they are tiny), then the replies are read in order.
    for d in &missing {
        net::framing::write_frame(&mut send, &BlobRequest::Shard { digest: d.clone() }).await?;
    }
    for (i, d) in missing.iter().enumerate() {
        let reply = net::framing::read_frame::<_, BlobReply>(&mut recv, MAX_FRAME_BYTES)
            .await?
            .context("the coordinator closed the blob stream mid-transfer")?;
        let BlobReply::Shard { digest, bytes } = reply else {
            bail!("asked for shard {d}, got {}", kind(&reply));
        };
        if &digest != d {
            bail!("asked for shard {d}, got {digest}");
        }
        store.put_shard(d, &bytes)?;
        bytes_done += bytes.len() as u64;
        {
            let mut st = store.stats();
            st.shards_fetched += 1;
            st.bytes_fetched += bytes.len() as u64;
        }
        tracing::info!(variant, shard = i + 1 + present, total, "shard stored");
        if let Some(rate) = cfg.max_bytes_per_s.filter(|r| *r > 0.0) {
            let due = Duration::from_secs_f64(bytes_done as f64 / rate);
            if let Some(wait) = due.checked_sub(clock.now().duration_since(started)) {
                tokio::time::sleep(wait).await;
            }
        }
    }
    let _ = send.finish();
    store.stats().fetch_seconds += clock.now().duration_since(started).as_secs_f64();
    Ok(())
}

/// The coordinator's shard list must describe exactly the files the catalog names, with the
/// catalog's digests: the catalog is the root of trust for model bytes.
fn check_manifest(m: &VariantManifest, spec: &wire::manifest::VariantSpec) -> anyhow::Result<()> {
    let mut expected: Vec<(&str, &str)> = std::iter::once(&spec.trunk)
        .chain(spec.heads.iter().map(|h| &h.file))
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

fn kind(reply: &BlobReply) -> &'static str {
    match reply {
        BlobReply::Catalog { .. } => "the catalog",
        BlobReply::Manifest(_) => "a manifest",
        BlobReply::Shard { .. } => "a shard",
        BlobReply::Missing { .. } => "a refusal",
    }
}
