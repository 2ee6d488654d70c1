//! A specialised head: an affine layer from a trunk's embedding to K dominant classes plus
//! "other", trained by the coordinator at run time and evaluated by the node in Rust. It is a
//! few kilobytes, so a tiny fixed binary format (not an ONNX graph) keeps both ends simple and
//! lets the decoder bound every size before allocating.
//!
//! Layout, little-endian: `MCDNNHD1`, `dim: u32`, `k: u32`, `classes: [u32; k]`,
//! `weights: [f32; (k + 1) * dim]` (row per output, "other" last), `bias: [f32; k + 1]`.

const MAGIC: &[u8; 8] = b"MCDNNHD1";

/// Most dominant classes a head may serve (the stream is dominated by fewer than ten).
pub const MAX_CLASSES: usize = 8;
/// Largest embedding a head may read.
pub const MAX_DIM: usize = 2048;
/// Largest encoded head: (8 + 1) x 2048 weights fit with room to spare.
pub const MAX_HEAD_BYTES: usize = 96 * 1024;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum HeadError {
    #[error("specialised head: {0}")]
    Invalid(String),
}

fn bad(what: impl Into<String>) -> HeadError {
    HeadError::Invalid(what.into())
}

/// K classes plus "other" over a `dim`-wide embedding.
#[derive(Debug, Clone, PartialEq)]
pub struct Head {
    pub dim: usize,
    /// The app's class ids this head answers for, in output order.
    pub classes: Vec<u32>,
    /// `(classes.len() + 1) * dim`, row-major, "other" last.
    pub weights: Vec<f32>,
    /// `classes.len() + 1`.
    pub bias: Vec<f32>,
}

/// What the head says about one embedding.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Verdict {
    /// One of its classes, with the softmax probability.
    Class { class: u32, score: f32 },
    /// Not one of its classes: the general variant must answer.
    Other,
}

impl Head {
    /// Checks the shapes and bounds (every constructor and the decoder go through this).
    pub fn validate(&self) -> Result<(), HeadError> {
        let k = self.classes.len();
        if k == 0 || k > MAX_CLASSES {
            return Err(bad(format!("{k} classes, want 1..={MAX_CLASSES}")));
        }
        if self.dim == 0 || self.dim > MAX_DIM {
            return Err(bad(format!(
                "embedding width {}, want 1..={MAX_DIM}",
                self.dim
            )));
        }
        if self.weights.len() != (k + 1) * self.dim || self.bias.len() != k + 1 {
            return Err(bad("weights or bias do not match classes x width"));
        }
        if self
            .weights
            .iter()
            .chain(&self.bias)
            .any(|w| !w.is_finite())
        {
            return Err(bad("a weight is not finite"));
        }
        let mut sorted = self.classes.clone();
        sorted.sort_unstable();
        sorted.dedup();
        if sorted.len() != k {
            return Err(bad("a class appears twice"));
        }
        Ok(())
    }

    /// Logits for one embedding (`dim` wide).
    pub fn logits(&self, embedding: &[f32]) -> Result<Vec<f32>, HeadError> {
        if embedding.len() != self.dim {
            return Err(bad(format!(
                "embedding is {} wide, the head reads {}",
                embedding.len(),
                self.dim
            )));
        }
        Ok(self
            .weights
            .chunks_exact(self.dim)
            .zip(&self.bias)
            .map(|(row, b)| b + row.iter().zip(embedding).map(|(w, x)| w * x).sum::<f32>())
            .collect())
    }

    /// The cascade's first stage on one embedding.
    pub fn verdict(&self, embedding: &[f32]) -> Result<Verdict, HeadError> {
        let logits = self.logits(embedding)?;
        let (best, &top) = logits
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .ok_or_else(|| bad("no outputs"))?;
        let total: f32 = logits.iter().map(|l| (l - top).exp()).sum();
        Ok(match self.classes.get(best) {
            Some(&class) => Verdict::Class {
                class,
                score: 1.0 / total,
            },
            None => Verdict::Other,
        })
    }

    pub fn encode(&self) -> Result<Vec<u8>, HeadError> {
        self.validate()?;
        let mut out = Vec::with_capacity(16 + 4 * (self.classes.len() + self.weights.len() + 8));
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(self.dim as u32).to_le_bytes());
        out.extend_from_slice(&(self.classes.len() as u32).to_le_bytes());
        for c in &self.classes {
            out.extend_from_slice(&c.to_le_bytes());
        }
        for w in self.weights.iter().chain(&self.bias) {
            out.extend_from_slice(&w.to_le_bytes());
        }
        if out.len() > MAX_HEAD_BYTES {
            return Err(bad(format!("{} bytes, limit {MAX_HEAD_BYTES}", out.len())));
        }
        Ok(out)
    }

    pub fn decode(bytes: &[u8]) -> Result<Head, HeadError> {
        if bytes.len() > MAX_HEAD_BYTES {
            return Err(bad(format!(
                "{} bytes, limit {MAX_HEAD_BYTES}",
                bytes.len()
            )));
        }
        let rest = bytes
            .strip_prefix(MAGIC.as_slice())
            .ok_or_else(|| bad("not a head file (bad magic)"))?;
        let mut words = rest
            .chunks(4)
            .map(|c| <[u8; 4]>::try_from(c).map_err(|_| bad("length is not whole words")));
        let mut next = || words.next().unwrap_or_else(|| Err(bad("truncated")));
        let dim = u32::from_le_bytes(next()?) as usize;
        let k = u32::from_le_bytes(next()?) as usize;
        if k == 0 || k > MAX_CLASSES || dim == 0 || dim > MAX_DIM {
            return Err(bad(format!(
                "{k} classes over width {dim} is out of bounds"
            )));
        }
        let classes = (0..k)
            .map(|_| next().map(u32::from_le_bytes))
            .collect::<Result<Vec<_>, _>>()?;
        let weights = (0..(k + 1) * dim)
            .map(|_| next().map(f32::from_le_bytes))
            .collect::<Result<Vec<_>, _>>()?;
        let bias = (0..k + 1)
            .map(|_| next().map(f32::from_le_bytes))
            .collect::<Result<Vec<_>, _>>()?;
        if words.next().is_some() {
            return Err(bad("trailing bytes"));
        }
        let head = Head {
            dim,
            classes,
            weights,
            bias,
        };
        head.validate()?;
        Ok(head)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head() -> Head {
        // Two classes (7 and 2) over a 3-wide embedding: each output reads one coordinate.
        Head {
            dim: 3,
            classes: vec![7, 2],
            weights: vec![1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
            bias: vec![0.0, 0.0, 0.5],
        }
    }

    #[test]
    fn round_trips_and_routes_other_to_the_fallback() {
        let h = head();
        let bytes = h.encode().expect("encode");
        assert_eq!(Head::decode(&bytes).expect("decode"), h);
        match h.verdict(&[3.0, 0.0, 0.0]).expect("verdict") {
            Verdict::Class { class, score } => {
                assert_eq!(class, 7);
                assert!(score > 0.8 && score <= 1.0);
            }
            Verdict::Other => panic!("class 7 expected"),
        }
        assert_eq!(h.verdict(&[0.0, 0.0, 1.0]).expect("v"), Verdict::Other);
        assert!(h.verdict(&[1.0]).is_err(), "a wrong width is refused");
    }

    #[test]
    fn bad_files_are_refused() {
        let bytes = head().encode().expect("encode");
        assert!(Head::decode(&bytes[..bytes.len() - 4]).is_err());
        assert!(Head::decode(&[bytes.as_slice(), &[0, 0, 0, 0]].concat()).is_err());
        assert!(Head::decode(b"MCDNNHD0").is_err());
        let mut huge = bytes.clone();
        huge[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(Head::decode(&huge).is_err());
        let mut nan = head();
        nan.weights[0] = f32::NAN;
        assert!(nan.encode().is_err());
        let mut twice = head();
        twice.classes = vec![2, 2];
        assert!(twice.encode().is_err());
    }
}
