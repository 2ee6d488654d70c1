//! Model distribution: variants as content-addressed shards. A node opens a bi stream beside its
//! control stream and sends [`BlobRequest`]s; the coordinator answers each with one [`BlobReply`],
//! in order, so a node may pipeline many requests on one stream.

use serde::{Deserialize, Serialize};

/// Bytes per shard. Small enough that a shard frame stays far under the codec's frame limit, a
/// transfer interrupted by a crash loses little, and the node's sled (0.34) keeps a shard inside
/// its log segments: a value whose log record exceeds a quarter of the 512 KiB segment (minus
/// headers: 131 052 bytes) goes to a file of its own, an inode created per shard, which made
/// 256 KiB shards cost the node's store 2-3 times as much per byte. Large enough that per-shard
/// overhead is noise. Nodes key shards by digest and keep the manifest they fetched, so a store
/// filled with another shard size stays readable.
pub const SHARD_BYTES: usize = 64 * 1024;

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
        #[serde(with = "raw_bytes")]
        bytes: Vec<u8>,
    },
    Manifest(VariantManifest),
    Shard {
        digest: String,
        #[serde(with = "raw_bytes")]
        bytes: Vec<u8>,
    },
    /// The request cannot be served (unknown variant or digest); the stream stays usable.
    Missing {
        what: String,
    },
}

/// A [`BlobReply`] as received, borrowing its blob bytes from the frame it was decoded from
/// (`codec::decode_borrowed`): a 256 KiB shard is not copied out of the frame to be hashed and
/// stored. Same encoding as [`BlobReply`] (same variants in the same order).
#[derive(Debug, PartialEq, Deserialize)]
pub enum BlobReplyView<'a> {
    Catalog {
        #[serde(borrow)]
        bytes: &'a [u8],
    },
    Manifest(VariantManifest),
    Shard {
        digest: String,
        #[serde(borrow)]
        bytes: &'a [u8],
    },
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

/// Blob bytes as one length-prefixed run instead of serde's default sequence of `u8`s: a shard is
/// copied, not visited byte by byte, which keeps shard transfer near raw stream speed.
mod raw_bytes {
    use serde::de::{Deserializer, SeqAccess, Visitor};
    use serde::ser::Serializer;

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(bytes)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        d.deserialize_byte_buf(BytesVisitor)
    }

    struct BytesVisitor;

    impl<'de> Visitor<'de> for BytesVisitor {
        type Value = Vec<u8>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a byte string")
        }

        fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }

        fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(v)
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 20));
            while let Some(b) = seq.next_element()? {
                out.push(b);
            }
            Ok(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec;

    #[test]
    fn shard_replies_round_trip_and_stay_compact() {
        let bytes: Vec<u8> = (0..SHARD_BYTES).map(|i| (i % 251) as u8).collect();
        let reply = BlobReply::Shard {
            digest: "d".into(),
            bytes,
        };
        let frame = codec::encode(&reply).expect("encode");
        assert!(
            frame.len() < SHARD_BYTES + 64,
            "frame of {} bytes",
            frame.len()
        );
        assert_eq!(codec::decode::<BlobReply>(&frame).expect("decode"), reply);
        let truncated = &frame[..frame.len() - 1];
        assert!(codec::decode::<BlobReply>(truncated).is_err());
        assert!(
            codec::decode_borrowed::<BlobReplyView>(truncated, codec::MAX_FRAME_BYTES).is_err()
        );
    }

    #[test]
    fn the_view_reads_every_reply_and_borrows_the_blob_bytes() {
        let shard: Vec<u8> = (0..SHARD_BYTES).map(|i| (i % 7) as u8).collect();
        let replies = [
            BlobReply::Catalog {
                bytes: b"{}".to_vec(),
            },
            BlobReply::Manifest(VariantManifest {
                variant: "v".into(),
                chunk_size: 4,
                files: vec![],
            }),
            BlobReply::Shard {
                digest: "d".into(),
                bytes: shard.clone(),
            },
            BlobReply::Missing { what: "w".into() },
        ];
        for reply in replies {
            let frame = codec::encode(&reply).expect("encode");
            let view: BlobReplyView =
                codec::decode_borrowed(&frame, codec::MAX_FRAME_BYTES).expect("view");
            let same = match (&reply, &view) {
                (BlobReply::Catalog { bytes: a }, BlobReplyView::Catalog { bytes: b }) => a == b,
                (BlobReply::Manifest(a), BlobReplyView::Manifest(b)) => a == b,
                (
                    BlobReply::Shard { digest, bytes },
                    BlobReplyView::Shard {
                        digest: d,
                        bytes: b,
                    },
                ) => {
                    let inside = frame.as_ptr_range();
                    digest == d && bytes == b && inside.contains(&b.as_ptr())
                }
                (BlobReply::Missing { what: a }, BlobReplyView::Missing { what: b }) => a == b,
                _ => false,
            };
            assert!(same, "{reply:?} read as {view:?}");
        }
    }
}
