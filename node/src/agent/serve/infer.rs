//! Inference on the device, one path for every caller: load the variant if it is not resident
//! (timed), compute its trunk embedding once per frame (every app that chose the variant shares
//! it, in the variant's own reused buffer), and run the app's head.

use crate::cache::{CacheError, ModelCache};
use crate::engine::{EngineError, Prediction};
use crate::picture::Picture;

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

/// Runs `variant` for `app` on the cache's current frame (`picture`, any size and format), reusing the variant's
/// embedding of this frame if another app already ran it.
pub fn on_device(
    cache: &mut ModelCache,
    variant: &str,
    app: &str,
    picture: &Picture,
) -> Result<DeviceRun, InferError> {
    let loaded_ms = embed(cache, variant, picture)?;
    let (model, _) = cache.get(variant)?;
    Ok(DeviceRun {
        prediction: model.classify_frame(app)?,
        loaded_ms,
    })
}

/// Makes sure the cache's current frame is embedded by `variant` (a specialised head reads the
/// embedding too, through [`frame_embedding`]); returns the load time if the variant had to be
/// paged in.
pub fn embed(
    cache: &mut ModelCache,
    variant: &str,
    picture: &Picture,
) -> Result<Option<f64>, InferError> {
    let frame = cache.frame();
    let (model, swapped_in) = cache.get(variant)?;
    let loaded_ms = swapped_in.then_some(model.load_ms);
    model.embed_frame(frame, picture)?;
    Ok(loaded_ms)
}

/// The current frame's embedding by `variant`, after [`embed`].
pub fn frame_embedding<'c>(
    cache: &'c mut ModelCache,
    variant: &str,
) -> Result<&'c [f32], InferError> {
    let frame = cache.frame();
    let (model, _) = cache.get(variant)?;
    Ok(model.frame_embedding(frame).unwrap_or_default())
}
