//! The fetcher: keeps the variants the node wants present in the shard store, over blob streams
//! on the link's QUIC connection. Serving never waits on it: the serving thread only chooses
//! variants in `ModelAvailability`, which the fetcher updates as variants complete.

use std::collections::BTreeSet;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use wire::manifest::Manifest;

use net::clock::SharedClock;

use super::shards::ShardStore;
use super::transfer::{Transfer, fetch_variants};
use crate::handles::{AssignmentCell, CoordinatorLink, ModelAvailability};

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
    let names: Vec<&str> = todo.iter().map(|v| v.as_str()).collect();
    let transfer = Transfer {
        streams: &streams,
        max_bytes_per_s: cfg.max_bytes_per_s,
        manifest,
        store,
        clock: &handles.clock,
    };
    let fetch = fetch_variants(&transfer, &names, |variant| {
        publish(store, &handles.models);
        tracing::info!(%variant, "variant fetched and verified");
    });
    tokio::select! {
        done = fetch => done?,
        _ = cancel.cancelled() => return Ok(()),
    }
    store.collect(&want)?;
    Ok(())
}
