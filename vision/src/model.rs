//! One ONNX model in memory, loaded through the shared runtime: the detector and the descriptor
//! networks all start here, so a missing library or a corrupt file is the same clear error.

use ort::session::Session;

use crate::runtime::{self, RuntimeError};

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("cannot read model file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("ONNX Runtime rejected {what}: {message}")]
    Ort { what: String, message: String },
    #[error("{what} does not look like the expected model: {message}")]
    Shape { what: String, message: String },
}

/// Wraps an ort error with what was being done; the text is built only on failure.
pub(crate) fn ort_err(what: &str) -> impl FnOnce(ort::Error) -> ModelError + '_ {
    move |e| ModelError::Ort {
        what: what.to_string(),
        message: e.to_string(),
    }
}

/// A session from a model's bytes. `threads` is ONNX Runtime's intra-op thread count: 1 on a
/// body camera (it serves one frame at a time; more threads only add hand-off at batch 1).
pub fn session(what: &str, bytes: &[u8], threads: usize) -> Result<Session, ModelError> {
    let env = runtime::environment()?;
    Session::builder(env)
        .map_err(ort_err(what))?
        .with_intra_threads(threads)
        .map_err(|e| ModelError::Ort {
            what: what.to_string(),
            message: e.to_string(),
        })?
        .commit_from_memory(bytes)
        .map_err(ort_err(what))
}

/// The dimensions of a session's first input (-1 where the graph leaves one open).
pub(crate) fn input_dims(session: &Session) -> Vec<i64> {
    session
        .inputs()
        .first()
        .and_then(|i| i.dtype().tensor_shape())
        .map(|s| s.to_vec())
        .unwrap_or_default()
}

/// Reads a model file, saying which one could not be read.
pub fn read(path: &std::path::Path) -> Result<Vec<u8>, ModelError> {
    std::fs::read(path).map_err(|source| ModelError::Read {
        path: path.display().to_string(),
        source,
    })
}
