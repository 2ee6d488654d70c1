//! Finding and reading a catalog manifest; a manifest with `include` is a fleet catalog made
//! of several (`include.rs`).

use super::{Manifest, ManifestError, include};

/// Finds the catalog manifest: `explicit`, else `MCDNN_CATALOG`, else `models/catalog.json` under
/// the current folder or any ancestor of the executable, else the container image's copy.
pub fn locate(explicit: Option<&std::path::Path>) -> Result<std::path::PathBuf, ManifestError> {
    use std::path::PathBuf;
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os("MCDNN_CATALOG") {
        return Ok(PathBuf::from(p));
    }
    let mut candidates = vec![PathBuf::from("models/catalog.json")];
    if let Ok(exe) = std::env::current_exe() {
        candidates.extend(
            exe.ancestors()
                .skip(1)
                .map(|a| a.join("models/catalog.json")),
        );
    }
    candidates.push(PathBuf::from("/usr/share/mcdnn/models/catalog.json"));
    candidates.into_iter().find(|p| p.is_file()).ok_or_else(|| {
        ManifestError::Invalid(
            "no model catalog found: pass --catalog PATH or set MCDNN_CATALOG (the repo's is models/catalog.json)"
                .into(),
        )
    })
}

/// Reads and validates a manifest file; returns it with its bytes (for digests) and the folder
/// its model files are relative to. A fleet catalog (`include`) comes back merged, with the
/// merged manifest's own encoding as its bytes, so every reader of the same files digests alike.
pub fn load(
    path: &std::path::Path,
) -> Result<(Manifest, Vec<u8>, std::path::PathBuf), ManifestError> {
    let text = read_text(path)?;
    let dir = path
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_default();
    if let Some(includes) = include::parse(&text)? {
        let manifest = include::merge(&dir, &includes, |p| {
            read_text(p).and_then(|t| Manifest::from_json(&t))
        })?;
        let bytes = serde_json::to_vec_pretty(&manifest).map_err(|e| {
            ManifestError::Invalid(format!("cannot encode the merged catalog: {e}"))
        })?;
        return Ok((manifest, bytes, dir));
    }
    let manifest = Manifest::from_json(&text)?;
    Ok((manifest, text.into_bytes(), dir))
}

fn read_text(path: &std::path::Path) -> Result<String, ManifestError> {
    let bytes = std::fs::read(path).map_err(|e| {
        ManifestError::Invalid(format!("cannot read catalog {}: {e}", path.display()))
    })?;
    String::from_utf8(bytes)
        .map_err(|_| ManifestError::Parse(format!("{} is not UTF-8", path.display())))
}
