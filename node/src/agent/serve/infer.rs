//! Inference on the device, one path for every caller: load the variant if it is not resident
//! (timed), compute its trunk embedding once per frame (every app that chose the variant shares
//! it), and run the app's head.

use std::collections::HashMap;

use crate::cache::{CacheError, ModelCache};
use crate::engine::{EngineError, Prediction};

/// A device run's answer and whether it paged the variant in.
#[derive(Debug, Clone, Copy)]
pub struct DeviceRun {
    pub prediction: Prediction,
    /// The variant had to be loaded, and this is how long it took (ms).
    pub loaded_ms: Option<f64>,
}

#[derive(Debug, thiserror::Error)]
pub enum InferError {
    /// The variant's bytes are missing or corrupt: the request is dropped and the variant
    /// refetched; serving goes on.
    #[error(transparent)]
    Load(#[from] CacheError),
    /// ONNX Runtime failed on a loaded model: a bug or a broken runtime, which stops serving.
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// Embeddings computed for the current frame, per variant (a new one for every frame).
#[derive(Debug, Default)]
pub struct FrameEmbeddings(HashMap<String, Vec<f32>>);

/// Runs `variant` for `app` on `pixels`, reusing this frame's embedding of `variant` if any.
pub fn on_device(
    cache: &mut ModelCache,
    embeddings: &mut FrameEmbeddings,
    variant: &str,
    app: &str,
    pixels: &[u8],
) -> Result<DeviceRun, InferError> {
    let loaded_ms = embed(cache, embeddings, variant, pixels)?;
    let (model, _) = cache.get(variant)?;
    Ok(DeviceRun {
        prediction: model.classify(app, &embeddings.0[variant])?,
        loaded_ms,
    })
}

/// Makes sure this frame's embedding of `variant` is computed (a specialised head reads it
/// too); returns the load time if the variant had to be paged in.
pub fn embed(
    cache: &mut ModelCache,
    embeddings: &mut FrameEmbeddings,
    variant: &str,
    pixels: &[u8],
) -> Result<Option<f64>, InferError> {
    let (model, swapped_in) = cache.get(variant)?;
    let loaded_ms = swapped_in.then_some(model.load_ms);
    if !embeddings.0.contains_key(variant) {
        let embedding = model.embed(pixels)?;
        embeddings.0.insert(variant.to_string(), embedding);
    }
    Ok(loaded_ms)
}

impl FrameEmbeddings {
    /// This frame's embedding of `variant`, if computed.
    pub fn get(&self, variant: &str) -> Option<&[f32]> {
        self.0.get(variant).map(Vec::as_slice)
    }
}
