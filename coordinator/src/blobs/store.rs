//! Shards of every variant file in the catalog, built once at start. Each file is checked against
//! the catalog's sha256 first, so the coordinator never serves bytes the catalog does not vouch
//! for; each shard is addressed by its own sha256, which the node verifies on arrival.

use std::collections::HashMap;
use std::path::Path;

use bytes::Bytes;
use sha2::{Digest, Sha256};
use wire::manifest::{FileSpec, Manifest};
use wire::msg::{FileShards, SHARD_BYTES, VariantManifest};

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("cannot read model file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "model file {file} does not match the catalog (sha256 {actual}, catalog says {expected}); rebuild the catalog"
    )]
    Digest {
        file: String,
        expected: String,
        actual: String,
    },
}

pub struct BlobStore {
    catalog: Vec<u8>,
    manifests: HashMap<String, VariantManifest>,
    /// Shared, not copied, into every reply that sends them.
    shards: HashMap<String, Bytes>,
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl BlobStore {
    /// Shards every variant of `manifest`, reading files from `dir` (the catalog's folder).
    pub fn build(
        manifest: &Manifest,
        catalog_bytes: Vec<u8>,
        dir: &Path,
    ) -> Result<Self, BlobError> {
        let mut manifests = HashMap::new();
        let mut shards = HashMap::new();
        for v in &manifest.variants {
            let mut files = Vec::new();
            for spec in manifest.variant_files(v) {
                files.push(shard_file(dir, spec, &mut shards)?);
            }
            manifests.insert(
                v.name.clone(),
                VariantManifest {
                    variant: v.name.clone(),
                    chunk_size: SHARD_BYTES as u32,
                    files,
                },
            );
        }
        Ok(Self {
            catalog: catalog_bytes,
            manifests,
            shards,
        })
    }

    pub fn catalog(&self) -> &[u8] {
        &self.catalog
    }

    pub fn manifest(&self, variant: &str) -> Option<&VariantManifest> {
        self.manifests.get(variant)
    }

    pub fn shard(&self, digest: &str) -> Option<Bytes> {
        self.shards.get(digest).cloned()
    }

    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    pub fn total_bytes(&self) -> u64 {
        self.shards.values().map(|s| s.len() as u64).sum()
    }
}

fn shard_file(
    dir: &Path,
    spec: &FileSpec,
    shards: &mut HashMap<String, Bytes>,
) -> Result<FileShards, BlobError> {
    let path = dir.join(&spec.file);
    let bytes = Bytes::from(std::fs::read(&path).map_err(|source| BlobError::Read {
        path: path.display().to_string(),
        source,
    })?);
    let actual = sha256_hex(&bytes);
    if actual != spec.sha256 {
        return Err(BlobError::Digest {
            file: spec.file.clone(),
            expected: spec.sha256.clone(),
            actual,
        });
    }
    let mut digests = Vec::new();
    for chunk in bytes.chunks(SHARD_BYTES) {
        let d = sha256_hex(chunk);
        shards
            .entry(d.clone())
            .or_insert_with(|| bytes.slice_ref(chunk));
        digests.push(d);
    }
    Ok(FileShards {
        file: spec.file.clone(),
        sha256: spec.sha256.clone(),
        bytes: bytes.len() as u64,
        shards: digests,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_repo_catalog_shards_and_reassembles() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/catalog.json");
        let (manifest, bytes, dir) = wire::manifest::load(&path).expect("catalog");
        let store = BlobStore::build(&manifest, bytes, &dir).expect("build");
        let full = store.manifest("full").expect("full variant");
        let trunk = &full.files[0];
        assert!(
            trunk.shards.len() > 1,
            "the full trunk spans several shards"
        );
        let whole: Vec<u8> = trunk
            .shards
            .iter()
            .flat_map(|d| store.shard(d).expect("shard").to_vec())
            .collect();
        assert_eq!(sha256_hex(&whole), trunk.sha256);
        assert_eq!(
            full.total_bytes(),
            manifest.variant("full").expect("spec").bytes()
        );
    }

    #[test]
    fn a_face_variant_of_the_fleet_catalog_ships_with_its_detector() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/fleet.json");
        let (manifest, bytes, dir) = wire::manifest::load(&path).expect("fleet catalog");
        let store = BlobStore::build(&manifest, bytes, &dir).expect("build");
        let detector = manifest.detector.as_ref().expect("detector");
        let int8 = store.manifest("int8-150").expect("face variant");
        let files: Vec<&str> = int8.files.iter().map(|f| f.file.as_str()).collect();
        assert_eq!(
            files,
            [
                "face/face_recognition_150_int8.onnx",
                "face/blazeface_front_128.onnx"
            ]
        );
        assert!(int8.files.iter().any(|f| f.sha256 == detector.file.sha256));
        // Grey variants carry no detector.
        let quarter = store.manifest("quarter").expect("grey variant");
        assert!(
            quarter
                .files
                .iter()
                .all(|f| f.sha256 != detector.file.sha256)
        );
    }
}
