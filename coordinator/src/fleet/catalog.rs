//! The catalog this replica serves: the manifest, its digest (what nodes must hold) and one
//! scheduler catalog per device class. Fixed for the life of the process.

use scheduler::catalog::Catalog;
use wire::manifest::Manifest;

#[derive(Debug)]
pub struct FleetCatalog {
    pub manifest: Manifest,
    /// Hex sha256 of the manifest file.
    pub digest: String,
    /// One per device class the manifest makes usable.
    pub catalogs: Vec<Catalog>,
}

impl FleetCatalog {
    pub fn new(manifest: Manifest, digest: String) -> Self {
        let catalogs = super::plan::catalogs(&manifest);
        FleetCatalog {
            manifest,
            digest,
            catalogs,
        }
    }

    /// The manifest's digest and every model file's, sorted: what the replicated catalog index
    /// records.
    pub fn index_digests(&self) -> Vec<String> {
        let mut digests = vec![self.digest.clone()];
        for v in &self.manifest.variants {
            let files = self.manifest.variant_files(v);
            digests.extend(files.into_iter().map(|f| f.sha256.clone()));
        }
        digests.sort();
        digests.dedup();
        digests
    }
}
