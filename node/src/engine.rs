//! ONNX inference for one variant: a trunk (image -> embedding) and one head per app
//! (embedding -> logits). One trunk run per frame feeds every app's head (model sharing).

use std::path::Path;
use std::time::Instant;

use ort::session::Session;
use ort::value::TensorRef;
use sha2::{Digest, Sha256};
use wire::manifest::{FileSpec, InputSpec, VariantSpec};

use crate::picture::{Picture, PixelFormat};
use crate::runtime::RuntimeError;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Model(#[from] vision::model::ModelError),
    #[error("cannot read model file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("model file {file} is corrupt: sha256 {actual}, manifest says {expected}")]
    Digest {
        file: String,
        expected: String,
        actual: String,
    },
    #[error("ONNX Runtime rejected {what}: {message}")]
    Ort { what: String, message: String },
    #[error("variant {variant} has no head for app {app}")]
    NoHead { variant: String, app: String },
    #[error("input has {got} pixels, the model expects {expected}")]
    InputSize { got: usize, expected: usize },
}

/// The text is made only if there is an error: the request path passes `&'static str`s and
/// allocates nothing on success.
fn ort_err(what: impl Into<String>) -> impl FnOnce(ort::Error) -> EngineError {
    move |e| EngineError::Ort {
        what: what.into(),
        message: e.to_string(),
    }
}

/// One app's answer for one frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prediction {
    pub label: u32,
    /// Softmax probability of `label`.
    pub score: f32,
}

/// A variant loaded into ONNX Runtime.
pub struct LoadedVariant {
    pub name: String,
    input: InputSpec,
    trunk: Session,
    heads: Vec<(String, Session)>,
    /// Bytes of the model files (what paging moves).
    pub model_bytes: u64,
    /// Wall time it took to verify and load every file.
    pub load_ms: f64,
    /// Buffers reused from frame to frame, so a request allocates nothing of its own here: the
    /// preprocessed input, and the trunk's embedding with the frame it was computed for.
    input_buf: Vec<f32>,
    embedding: Vec<f32>,
    embedded_frame: Option<u64>,
}

/// Checks a model file's bytes against its manifest digest: a corrupt file is never loaded.
pub fn verify(spec: &FileSpec, bytes: &[u8]) -> Result<(), EngineError> {
    let actual = hex::encode(Sha256::digest(bytes));
    if actual != spec.sha256 {
        return Err(EngineError::Digest {
            file: spec.file.clone(),
            expected: spec.sha256.clone(),
            actual,
        });
    }
    Ok(())
}

fn session_from(spec: &FileSpec, bytes: &[u8]) -> Result<Session, EngineError> {
    verify(spec, bytes)?;
    // One thread per session: a body camera serves one frame at a time, and batch-1 latency on
    // small models is dominated by thread hand-off when more threads are used.
    Ok(vision::model::session(
        &format!("model {}", spec.file),
        bytes,
        1,
    )?)
}

impl LoadedVariant {
    /// Loads a variant whose files sit beside the manifest in `dir`.
    pub fn load_dir(
        dir: &Path,
        spec: &VariantSpec,
        input: &InputSpec,
    ) -> Result<Self, EngineError> {
        Self::load_with(spec, input, |file| {
            let path = dir.join(&file.file);
            std::fs::read(&path).map_err(|source| EngineError::Read {
                path: path.display().to_string(),
                source,
            })
        })
    }

    /// Loads a variant, asking `fetch` for each file's bytes (a folder, or the node's sled store).
    /// Every file is verified against its digest before ONNX Runtime sees it.
    pub fn load_with(
        spec: &VariantSpec,
        input: &InputSpec,
        mut fetch: impl FnMut(&FileSpec) -> Result<Vec<u8>, EngineError>,
    ) -> Result<Self, EngineError> {
        let started = Instant::now();
        let trunk = session_from(&spec.trunk, &fetch(&spec.trunk)?)?;
        let mut heads = Vec::with_capacity(spec.heads.len());
        for head in &spec.heads {
            heads.push((
                head.app.clone(),
                session_from(&head.file, &fetch(&head.file)?)?,
            ));
        }
        Ok(Self {
            name: spec.name.clone(),
            input: input.clone(),
            trunk,
            heads,
            model_bytes: spec.bytes(),
            load_ms: started.elapsed().as_secs_f64() * 1e3,
            input_buf: Vec::new(),
            embedding: Vec::new(),
            embedded_frame: None,
        })
    }

    /// Runs the trunk on one grey-scale image (height x width bytes).
    pub fn embed(&mut self, pixels: &[u8]) -> Result<Vec<f32>, EngineError> {
        self.run_trunk(pixels)?;
        self.embedded_frame = None;
        Ok(self.embedding.clone())
    }

    /// The trunk's embedding of frame number `frame` into the variant's own buffer, computed
    /// once however many apps use it (model sharing); a new frame number runs the trunk again.
    /// Any picture is converted to the variant's input on the way (see [`preprocess_picture`]).
    pub fn embed_frame(&mut self, frame: u64, picture: &Picture) -> Result<(), EngineError> {
        if self.embedded_frame != Some(frame) {
            self.embedded_frame = None;
            preprocess_picture(picture, &self.input, &mut self.input_buf);
            self.run_input()?;
            self.embedded_frame = Some(frame);
        }
        Ok(())
    }

    /// The embedding of frame number `frame`, if [`embed_frame`](Self::embed_frame) computed it.
    pub fn frame_embedding(&self, frame: u64) -> Option<&[f32]> {
        (self.embedded_frame == Some(frame)).then_some(self.embedding.as_slice())
    }

    /// Runs `app`'s head on the embedding of the last [`embed_frame`](Self::embed_frame).
    pub fn classify_frame(&mut self, app: &str) -> Result<Prediction, EngineError> {
        let Self {
            name,
            heads,
            embedding,
            ..
        } = self;
        run_head(name, heads, app, embedding)
    }

    fn run_trunk(&mut self, pixels: &[u8]) -> Result<(), EngineError> {
        preprocess_into(pixels, &self.input, &mut self.input_buf)?;
        self.run_input()
    }

    /// Runs the trunk on the preprocessed `input_buf`.
    fn run_input(&mut self) -> Result<(), EngineError> {
        let shape = [1usize, 1, self.input.height, self.input.width];
        let tensor = TensorRef::from_array_view((shape, self.input_buf.as_slice()))
            .map_err(ort_err("input tensor"))?;
        let outputs = self
            .trunk
            .run(ort::inputs!["image" => tensor])
            .map_err(|e| ort_err(format!("trunk of {}", self.name))(e))?;
        let (_, data) = outputs[0]
            .try_extract_tensor::<f32>()
            .map_err(ort_err("trunk output"))?;
        self.embedding.clear();
        self.embedding.extend_from_slice(data);
        Ok(())
    }

    /// Runs `app`'s head on an embedding from [`embed`](Self::embed).
    pub fn classify(&mut self, app: &str, embedding: &[f32]) -> Result<Prediction, EngineError> {
        run_head(&self.name, &mut self.heads, app, embedding)
    }

    /// One frame through the trunk once and through the heads of `apps`.
    pub fn infer(&mut self, pixels: &[u8], apps: &[&str]) -> Result<Vec<Prediction>, EngineError> {
        let embedding = self.embed(pixels)?;
        apps.iter()
            .map(|app| self.classify(app, &embedding))
            .collect()
    }
}

/// `app`'s head of variant `name` on `embedding`. The error texts are built only on failure.
fn run_head(
    name: &str,
    heads: &mut [(String, Session)],
    app: &str,
    embedding: &[f32],
) -> Result<Prediction, EngineError> {
    let session = heads
        .iter_mut()
        .find(|(a, _)| a == app)
        .map(|(_, s)| s)
        .ok_or_else(|| EngineError::NoHead {
            variant: name.to_string(),
            app: app.to_string(),
        })?;
    let tensor = TensorRef::from_array_view(([1usize, embedding.len()], embedding))
        .map_err(ort_err("embedding tensor"))?;
    let outputs = session
        .run(ort::inputs!["embedding" => tensor])
        .map_err(|e| ort_err(format!("{app} head of {name}"))(e))?;
    let (_, logits) = outputs[0]
        .try_extract_tensor::<f32>()
        .map_err(ort_err("head output"))?;
    Ok(argmax_softmax(logits))
}

/// `(pixel / 255 - mean) / std`, as `models/train.py` normalises.
pub fn preprocess(pixels: &[u8], input: &InputSpec) -> Result<Vec<f32>, EngineError> {
    let mut out = Vec::with_capacity(pixels.len());
    preprocess_into(pixels, input, &mut out)?;
    Ok(out)
}

/// [`preprocess`] into `out` (cleared first), reusing its allocation.
pub fn preprocess_into(
    pixels: &[u8],
    input: &InputSpec,
    out: &mut Vec<f32>,
) -> Result<(), EngineError> {
    let expected = input.height * input.width;
    if pixels.len() != expected {
        return Err(EngineError::InputSize {
            got: pixels.len(),
            expected,
        });
    }
    out.clear();
    out.extend(
        pixels
            .iter()
            .map(|&p| (p as f32 / 255.0 - input.mean) / input.std),
    );
    Ok(())
}

/// Any picture into the model's normalised input (`out` cleared first, its allocation reused):
/// gray (BT.601 luma, as [`Picture::to_gray`]) and resized bilinearly to the input size, in one
/// pass with no intermediate picture. A gray picture already at the input size (the replay's
/// 28x28 images, the common case) takes the plain per-pixel path.
pub fn preprocess_picture(picture: &Picture, input: &InputSpec, out: &mut Vec<f32>) {
    let norm = |v: f32| (v / 255.0 - input.mean) / input.std;
    out.clear();
    if picture.format == PixelFormat::Gray8
        && picture.width as usize == input.width
        && picture.height as usize == input.height
    {
        out.extend(picture.pixels.iter().map(|&p| norm(f32::from(p))));
        return;
    }
    let c = picture.format.channels();
    let (w, h) = (picture.width as usize, picture.height as usize);
    let luma = |px: usize, py: usize| -> f32 {
        let i = (py * w + px) * c;
        match picture.format {
            PixelFormat::Gray8 => f32::from(picture.pixels[i]),
            PixelFormat::Rgb8 => {
                let p = &picture.pixels[i..i + 3];
                (299.0 * f32::from(p[0]) + 587.0 * f32::from(p[1]) + 114.0 * f32::from(p[2]))
                    / 1000.0
            }
        }
    };
    let sx = w as f32 / input.width as f32;
    let sy = h as f32 / input.height as f32;
    for oy in 0..input.height {
        let fy = ((oy as f32 + 0.5) * sy - 0.5).clamp(0.0, (h - 1) as f32);
        let (y0, ty) = (fy.floor() as usize, fy.fract());
        let y1 = (y0 + 1).min(h - 1);
        for ox in 0..input.width {
            let fx = ((ox as f32 + 0.5) * sx - 0.5).clamp(0.0, (w - 1) as f32);
            let (x0, tx) = (fx.floor() as usize, fx.fract());
            let x1 = (x0 + 1).min(w - 1);
            let top = luma(x0, y0) * (1.0 - tx) + luma(x1, y0) * tx;
            let bottom = luma(x0, y1) * (1.0 - tx) + luma(x1, y1) * tx;
            out.push(norm((top * (1.0 - ty) + bottom * ty).round()));
        }
    }
}

fn argmax_softmax(logits: &[f32]) -> Prediction {
    let (label, max) =
        logits
            .iter()
            .copied()
            .enumerate()
            .fold((0, f32::NEG_INFINITY), |best, (i, v)| {
                if v > best.1 { (i, v) } else { best }
            });
    let sum: f32 = logits.iter().map(|v| (v - max).exp()).sum();
    Prediction {
        label: label as u32,
        score: if sum > 0.0 { 1.0 / sum } else { 0.0 },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_of_the_winner() {
        let p = argmax_softmax(&[0.0, 2.0, 0.0]);
        assert_eq!(p.label, 1);
        let expected = 2f32.exp() / (2.0 + 2f32.exp());
        assert!((p.score - expected).abs() < 1e-6);
    }

    #[test]
    fn preprocess_checks_size_and_normalises() {
        let input = InputSpec {
            height: 2,
            width: 2,
            mean: 0.5,
            std: 0.5,
            kind: Default::default(),
        };
        assert!(matches!(
            preprocess(&[0; 3], &input),
            Err(EngineError::InputSize {
                got: 3,
                expected: 4
            })
        ));
        let x = preprocess(&[0, 255, 0, 255], &input).expect("right size");
        assert_eq!(x, vec![-1.0, 1.0, -1.0, 1.0]);
    }

    #[test]
    fn any_picture_becomes_the_models_input() {
        let input = InputSpec {
            height: 2,
            width: 2,
            mean: 0.0,
            std: 1.0,
            kind: Default::default(),
        };
        let mut out = Vec::new();
        let gray = Picture::new(2, 2, PixelFormat::Gray8, vec![0, 255, 0, 255]).expect("valid");
        preprocess_picture(&gray, &input, &mut out);
        assert_eq!(out, vec![0.0, 1.0, 0.0, 1.0]);
        // A 4x4 RGB picture, left half white, right half black: gray, then halved.
        let rgb: Vec<u8> = (0..16)
            .flat_map(|i| if i % 4 < 2 { [255u8; 3] } else { [0u8; 3] })
            .collect();
        let big = Picture::new(4, 4, PixelFormat::Rgb8, rgb).expect("valid");
        preprocess_picture(&big, &input, &mut out);
        assert_eq!(out, vec![1.0, 0.0, 1.0, 0.0]);
        // The same as converting and resizing as pictures.
        let via = big.to_gray().resize(2, 2);
        assert_eq!(via.pixels, vec![255, 0, 255, 0]);
    }

    #[test]
    fn corrupt_bytes_are_refused_before_loading() {
        let spec = FileSpec {
            file: "m.onnx".into(),
            sha256: hex::encode(Sha256::digest(b"good")),
            bytes: 4,
        };
        assert!(verify(&spec, b"good").is_ok());
        let err = verify(&spec, b"evil").unwrap_err();
        assert!(err.to_string().contains("m.onnx"), "{err}");
    }
}
