//! Finding and loading the ONNX Runtime shared library (ort's `load-dynamic`).
//!
//! Nothing is downloaded at build or run time: the library comes from the `onnxruntime` wheel on
//! PyPI, which `scripts/setup.sh` unpacks into `.deps/onnxruntime/`. A missing library is a clear
//! error that says how to get it, never a panic inside ort.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ort::environment::Environment;

/// The ONNX Runtime version the project is built and tested against (ort's `api-31`).
pub const ORT_VERSION: &str = "1.31.1";

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(
        "ONNX Runtime library not found (looked for {looked}). Run `scripts/setup.sh`, which unpacks \
         libonnxruntime.so.{ORT_VERSION} from the PyPI wheel `onnxruntime=={ORT_VERSION}` into .deps/onnxruntime/, \
         or set ORT_DYLIB_PATH to a libonnxruntime.so of version 1.31"
    )]
    NotFound { looked: String },
    #[error("ONNX Runtime library {path} could not be loaded: {message}")]
    Load { path: PathBuf, message: String },
}

/// Candidates in order: `ORT_DYLIB_PATH`, then `.deps/onnxruntime/` under the current folder and
/// under every ancestor of the executable (so `target/release/mcdnn-node` finds the repo's copy),
/// then beside the executable and the container image's library folder.
pub fn candidates() -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        out.push(PathBuf::from(p));
        return out;
    }
    let lib = format!("libonnxruntime.so.{ORT_VERSION}");
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Ok(cwd) = std::env::current_dir() {
        dirs.push(cwd.join(".deps/onnxruntime"));
    }
    if let Ok(exe) = std::env::current_exe() {
        for ancestor in exe.ancestors().skip(1) {
            dirs.push(ancestor.join(".deps/onnxruntime"));
        }
        if let Some(dir) = exe.parent() {
            dirs.push(dir.to_path_buf());
        }
    }
    dirs.push(PathBuf::from("/usr/lib/mcdnn"));
    for dir in dirs {
        out.push(dir.join(&lib));
    }
    out
}

/// The first candidate that exists.
pub fn locate() -> Result<PathBuf, RuntimeError> {
    let candidates = candidates();
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or_else(|| RuntimeError::NotFound {
            looked: candidates
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

static ENVIRONMENT: OnceLock<Result<Environment, String>> = OnceLock::new();
static LOADED_FROM: OnceLock<PathBuf> = OnceLock::new();

/// Loads the library once per process and returns the shared ort environment.
pub fn environment() -> Result<&'static Environment, RuntimeError> {
    let path = locate()?;
    let result = ENVIRONMENT.get_or_init(|| {
        init(&path).inspect(|_| {
            let _ = LOADED_FROM.set(path.clone());
        })
    });
    result.as_ref().map_err(|message| RuntimeError::Load {
        path: LOADED_FROM.get().cloned().unwrap_or(path),
        message: message.clone(),
    })
}

fn init(path: &Path) -> Result<Environment, String> {
    ort::init_from(path)
        .map_err(|e| e.to_string())?
        .with_name("mcdnn")
        .build()
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_error_says_how_to_get_the_library() {
        let err = RuntimeError::NotFound {
            looked: "/x".into(),
        };
        let text = err.to_string();
        assert!(
            text.contains("scripts/setup.sh") && text.contains("ORT_DYLIB_PATH"),
            "{text}"
        );
    }
}
