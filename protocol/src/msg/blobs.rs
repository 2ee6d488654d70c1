//! Model distribution: variants as content-addressed shards. A node opens a bi stream beside its
//! control stream and sends [`BlobRequest`]s; the coordinator answers each with one [`BlobReply`],
//! in order, so a node may pipeline many requests on one stream.

use serde::{Deserialize, Serialize};

/// Bytes per shard. Small enough that a shard frame stays far under the codec's frame limit and a
/// transfer interrupted by a crash loses little; large enough that per-shard overhead is noise.
pub const SHARD_BYTES: usize = 256 * 1024;

/// Node -> coordinator on a blob stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum BlobRequest {
    /// The raw catalog manifest (`catalog.json`), so a node needs no local model folder.
    Catalog,
    /// The shard list of one variant.
    Manifest { variant: String },
    /// One shard by its hex sha256.
    Shard { digest: String },
}

/// Coordinator -> node on a blob stream: the answer to one [`BlobRequest`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum BlobReply {
    Catalog {
        bytes: Vec<u8>,
    },
    Manifest(VariantManifest),
    Shard {
        digest: String,
        bytes: Vec<u8>,
    },
    /// The request cannot be served (unknown variant or digest); the stream stays usable.
    Missing {
        what: String,
    },
}

/// How a variant's files are cut into shards.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VariantManifest {
    pub variant: String,
    /// Every shard but the last of a file holds exactly this many bytes.
    pub chunk_size: u32,
    pub files: Vec<FileShards>,
}

impl VariantManifest {
    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.bytes).sum()
    }

    /// Every shard digest of every file, in order (a digest may repeat).
    pub fn digests(&self) -> impl Iterator<Item = &str> {
        self.files
            .iter()
            .flat_map(|f| f.shards.iter().map(String::as_str))
    }
}

/// One model file (a trunk or a head) of a variant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileShards {
    /// The file's name as the catalog gives it.
    pub file: String,
    /// Hex sha256 of the whole file (the catalog's digest).
    pub sha256: String,
    pub bytes: u64,
    /// Hex sha256 of each shard, in file order.
    pub shards: Vec<String>,
}
