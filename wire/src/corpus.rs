//! The labelled embedding corpus the coordinator trains specialised heads on: images of the
//! training split run once through a cheap trunk (`mcdnn-node corpus`, real ONNX Runtime), plus
//! held-out test images to measure a head on. The coordinator holds embeddings, not images, so it
//! needs no ONNX Runtime and trains in seconds.
//!
//! Layout, little-endian: `MCDNNEM1`, the trunk's variant name (`u32` length + UTF-8), the
//! trunk file's sha256 (64 hex bytes), `dim: u32`, `train: u32`, `test: u32`, labels (one byte
//! each, train then test), embeddings (`f32`, row per image, train then test).

const MAGIC: &[u8; 8] = b"MCDNNEM1";

/// Most images a corpus may hold (train + test): bounds the trainer's memory and time.
pub const MAX_IMAGES: usize = 70_000;
/// Widest embedding.
pub const MAX_DIM: usize = super::head::MAX_DIM;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CorpusError {
    #[error("embedding corpus: {0}")]
    Invalid(String),
}

fn bad(what: impl Into<String>) -> CorpusError {
    CorpusError::Invalid(what.into())
}

#[derive(Debug, Clone, PartialEq)]
pub struct Corpus {
    /// The catalog variant whose trunk made the embeddings.
    pub variant: String,
    /// sha256 (hex) of that trunk file, so a corpus from another catalog is refused.
    pub trunk_sha256: String,
    pub dim: usize,
    pub train: Split,
    pub test: Split,
}

/// Labels (dataset class ids) and embeddings (`labels.len() * dim`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Split {
    pub labels: Vec<u8>,
    pub embeddings: Vec<f32>,
}

impl Split {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    pub fn row(&self, i: usize, dim: usize) -> &[f32] {
        &self.embeddings[i * dim..(i + 1) * dim]
    }
}

impl Corpus {
    pub fn validate(&self) -> Result<(), CorpusError> {
        if self.dim == 0 || self.dim > MAX_DIM {
            return Err(bad(format!("width {} out of 1..={MAX_DIM}", self.dim)));
        }
        if self.train.is_empty() || self.test.is_empty() {
            return Err(bad("needs training and held-out images"));
        }
        if self.train.len() + self.test.len() > MAX_IMAGES {
            return Err(bad(format!("more than {MAX_IMAGES} images")));
        }
        for s in [&self.train, &self.test] {
            if s.embeddings.len() != s.len() * self.dim {
                return Err(bad("embeddings do not match labels x width"));
            }
            if s.embeddings.iter().any(|x| !x.is_finite()) {
                return Err(bad("an embedding is not finite"));
            }
        }
        if self.trunk_sha256.len() != 64
            || !self.trunk_sha256.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return Err(bad("trunk digest is not 64 hex digits"));
        }
        if self.variant.is_empty() || self.variant.len() > 64 {
            return Err(bad("variant name must be 1-64 bytes"));
        }
        Ok(())
    }

    pub fn encode(&self) -> Result<Vec<u8>, CorpusError> {
        self.validate()?;
        let n = self.train.len() + self.test.len();
        let mut out = Vec::with_capacity(128 + n * (1 + 4 * self.dim));
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(self.variant.len() as u32).to_le_bytes());
        out.extend_from_slice(self.variant.as_bytes());
        out.extend_from_slice(self.trunk_sha256.as_bytes());
        for v in [self.dim, self.train.len(), self.test.len()] {
            out.extend_from_slice(&(v as u32).to_le_bytes());
        }
        out.extend_from_slice(&self.train.labels);
        out.extend_from_slice(&self.test.labels);
        for x in self.train.embeddings.iter().chain(&self.test.embeddings) {
            out.extend_from_slice(&x.to_le_bytes());
        }
        Ok(out)
    }

    pub fn decode(bytes: &[u8]) -> Result<Corpus, CorpusError> {
        let mut r = Reader(bytes);
        if r.take(8)? != MAGIC {
            return Err(bad("not a corpus file (bad magic)"));
        }
        let name_len = r.u32()? as usize;
        if name_len == 0 || name_len > 64 {
            return Err(bad("variant name must be 1-64 bytes"));
        }
        let variant = String::from_utf8(r.take(name_len)?.to_vec())
            .map_err(|_| bad("variant name is not UTF-8"))?;
        let trunk_sha256 = String::from_utf8(r.take(64)?.to_vec())
            .map_err(|_| bad("trunk digest is not UTF-8"))?;
        let (dim, train, test) = (r.u32()? as usize, r.u32()? as usize, r.u32()? as usize);
        if dim == 0 || dim > MAX_DIM || train.saturating_add(test) > MAX_IMAGES {
            return Err(bad(format!(
                "{train}+{test} images of width {dim} out of bounds"
            )));
        }
        let n = train + test;
        if r.0.len() != n + 4 * n * dim {
            return Err(bad(format!(
                "{} bytes of data, header promises {}",
                r.0.len(),
                n + 4 * n * dim
            )));
        }
        let labels = r.take(n)?;
        let floats: Vec<f32> =
            r.0.chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
        let corpus = Corpus {
            variant,
            trunk_sha256,
            dim,
            train: Split {
                labels: labels[..train].to_vec(),
                embeddings: floats[..train * dim].to_vec(),
            },
            test: Split {
                labels: labels[train..].to_vec(),
                embeddings: floats[train * dim..].to_vec(),
            },
        };
        corpus.validate()?;
        Ok(corpus)
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], CorpusError> {
        if self.0.len() < n {
            return Err(bad("truncated"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u32(&mut self) -> Result<u32, CorpusError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub fn tiny() -> Corpus {
        Corpus {
            variant: "quarter".into(),
            trunk_sha256: "ab".repeat(32),
            dim: 2,
            train: Split {
                labels: vec![0, 1, 2],
                embeddings: vec![1.0, 0.0, 0.0, 1.0, 1.0, 1.0],
            },
            test: Split {
                labels: vec![1],
                embeddings: vec![0.0, 2.0],
            },
        }
    }

    #[test]
    fn round_trips_and_refuses_damage() {
        let c = tiny();
        let bytes = c.encode().expect("encode");
        assert_eq!(Corpus::decode(&bytes).expect("decode"), c);
        assert!(Corpus::decode(&bytes[..bytes.len() - 1]).is_err());
        assert!(Corpus::decode(&[bytes.as_slice(), &[0]].concat()).is_err());
        let mut wide = bytes.clone();
        let dim_at = 8 + 4 + "quarter".len() + 64;
        wide[dim_at..dim_at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(Corpus::decode(&wide).is_err());
        let mut nan = c.clone();
        nan.test.embeddings[0] = f32::INFINITY;
        assert!(nan.encode().is_err());
    }
}
