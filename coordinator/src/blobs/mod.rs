//! Model distribution from the coordinator: the catalog's ONNX files cut into content-addressed
//! shards at start ([`store`]), served to authenticated nodes on blob streams ([`serve`]).

pub mod serve;
pub mod store;

pub use store::{BlobError, BlobStore};

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;

use crate::fleet::hub::Hub;

/// Builds the blob store from the catalog at `catalog_path` and hands it to the hub before
/// sessions start.
pub fn attach(hub: &Hub, catalog_path: &Path) -> anyhow::Result<()> {
    let (manifest, bytes, dir) = wire::manifest::load(catalog_path)
        .with_context(|| format!("catalog {}", catalog_path.display()))?;
    let store =
        BlobStore::build(&manifest, bytes, &dir).context("sharding the catalog's model files")?;
    tracing::info!(
        shards = store.shard_count(),
        bytes = store.total_bytes(),
        "model shards ready to serve"
    );
    let _ = hub.blobs.set(Arc::new(store));
    Ok(())
}
