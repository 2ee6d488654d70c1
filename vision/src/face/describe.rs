//! The face descriptor network: aligned RGB crops `[N,3,S,S]` (0..255; the graph subtracts its
//! own means) in, one 128-number descriptor per face out. Two descriptors closer than about 0.6
//! (Euclidean) are the same person. Variants differ in the crop side `S` and in int8 weights.

use ort::session::Session;
use ort::value::TensorRef;

use crate::model::{self, ModelError, ort_err};
use crate::picture::{Picture, PixelFormat};

/// Numbers per descriptor.
pub const DESCRIPTOR_DIM: usize = 128;
/// Faces per network run: bounds the input tensor a crowded frame can make us allocate.
pub const MAX_BATCH: usize = 16;

/// One face's descriptor (`DESCRIPTOR_DIM` numbers). A plain vector so callers can store and
/// send it (the watchlist replicates descriptors, never photos).
pub type Descriptor = Vec<f32>;

pub struct Describer {
    session: Session,
    what: String,
    /// The crop side the network takes.
    pub size: u32,
    /// Faces per run: the graph's fixed batch, or [`MAX_BATCH`] when it is open.
    batch: usize,
    input: Vec<f32>,
}

impl Describer {
    /// Loads a descriptor network from its ONNX bytes; `what` names it in errors. The input must
    /// be `[N or fixed, 3, S, S]` with a fixed square `S`, the output `[N, 128]`.
    pub fn from_bytes(what: &str, bytes: &[u8], threads: usize) -> Result<Self, ModelError> {
        let session = model::session(what, bytes, threads)?;
        let dims = model::input_dims(&session);
        let shape_error = |message: String| ModelError::Shape {
            what: what.to_string(),
            message,
        };
        let [n, 3, s, s2] = dims[..] else {
            return Err(shape_error(format!(
                "input is {dims:?}, expected [N, 3, S, S]"
            )));
        };
        if s != s2 || !(16..=512).contains(&s) {
            return Err(shape_error(format!(
                "input is {dims:?}, expected a square crop of 16..=512"
            )));
        }
        let batch = if n > 0 { n as usize } else { MAX_BATCH };
        let out = session
            .outputs()
            .first()
            .and_then(|o| o.dtype().tensor_shape())
            .map(|s| s.to_vec())
            .unwrap_or_default();
        if out.last() != Some(&(DESCRIPTOR_DIM as i64)) {
            return Err(shape_error(format!("output is {out:?}, expected [N, 128]")));
        }
        Ok(Self {
            session,
            what: what.to_string(),
            size: s as u32,
            batch: batch.min(MAX_BATCH),
            input: Vec::new(),
        })
    }

    /// Descriptors of aligned crops ([`super::align::align`] at [`Self::size`]), in order.
    /// Crops of another size are resized; grey crops are repeated over the three channels.
    pub fn describe(&mut self, crops: &[Picture]) -> Result<Vec<Descriptor>, ModelError> {
        let mut out = Vec::with_capacity(crops.len());
        for chunk in crops.chunks(self.batch) {
            self.fill_input(chunk);
            let s = self.size as usize;
            // A graph with a fixed batch gets exactly that many crops (the rest zero).
            let n = if self.batch < MAX_BATCH {
                self.batch
            } else {
                chunk.len()
            };
            self.input.resize(n * 3 * s * s, 0.0);
            let tensor = TensorRef::from_array_view(([n, 3, s, s], self.input.as_slice()))
                .map_err(ort_err("descriptor input tensor"))?;
            let outputs = self
                .session
                .run(ort::inputs![tensor])
                .map_err(ort_err(&self.what))?;
            let (_, data) = outputs[0]
                .try_extract_tensor::<f32>()
                .map_err(ort_err("descriptor output"))?;
            out.extend(
                data.chunks_exact(DESCRIPTOR_DIM)
                    .take(chunk.len())
                    .map(<[f32]>::to_vec),
            );
        }
        Ok(out)
    }

    /// NCHW floats 0..255 from the crops.
    fn fill_input(&mut self, crops: &[Picture]) {
        let s = self.size;
        let plane = (s * s) as usize;
        self.input.clear();
        self.input.resize(crops.len() * 3 * plane, 0.0);
        for (i, crop) in crops.iter().enumerate() {
            let sized;
            let crop = if crop.width == s && crop.height == s && crop.format == PixelFormat::Rgb8 {
                crop
            } else {
                sized = crop.to_rgb().resize(s, s);
                &sized
            };
            let base = i * 3 * plane;
            for (p, rgb) in crop.pixels.chunks_exact(3).enumerate() {
                for (c, &value) in rgb.iter().enumerate() {
                    self.input[base + c * plane + p] = f32::from(value);
                }
            }
        }
    }
}

/// Euclidean distance between two descriptors (over the shorter length).
pub fn distance(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y) * (x - y))
        .sum::<f32>()
        .sqrt()
}
