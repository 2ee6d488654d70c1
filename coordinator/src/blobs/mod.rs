//! Model distribution from the coordinator: the catalog's ONNX files cut into content-addressed
//! shards at start ([`store`]). Node sessions serve them to nodes on blob streams (in the
//! fleet module).

pub mod store;

pub use store::{BlobError, BlobStore};

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;

/// Builds the blob store from the catalog at `catalog_path`, before sessions start.
pub fn load(catalog_path: &Path) -> anyhow::Result<Arc<BlobStore>> {
    let (manifest, bytes, dir) = wire::manifest::load(catalog_path)
        .with_context(|| format!("catalog {}", catalog_path.display()))?;
    let store =
        BlobStore::build(&manifest, bytes, &dir).context("sharding the catalog's model files")?;
    tracing::info!(
        shards = store.shard_count(),
        bytes = store.total_bytes(),
        "model shards ready to serve"
    );
    Ok(Arc::new(store))
}
