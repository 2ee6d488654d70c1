//! The node's view of the model catalog: finding and reading the manifest, and evaluating every
//! variant on real data.

pub mod corpus;
pub mod eval;
pub mod face_eval;

use std::path::{Path, PathBuf};

use anyhow::Context;
use wire::manifest::{self, Manifest};

/// See [`wire::manifest::locate`].
pub fn locate(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    Ok(manifest::locate(explicit)?)
}

/// Reads and validates a manifest; the model files sit in the same folder.
pub fn load(path: &Path) -> anyhow::Result<(Manifest, PathBuf)> {
    let (manifest, _, dir) =
        manifest::load(path).with_context(|| format!("catalog {}", path.display()))?;
    Ok((manifest, dir))
}
