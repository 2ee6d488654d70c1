//! Small file helpers: create-only writes with restrictive modes, reads with the path in errors.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;

use super::IdentityError;

/// Mode for private keys: readable by the owner only.
pub(super) const KEY_MODE: u32 = 0o600;
/// Mode for certificates: public material.
pub(super) const CERT_MODE: u32 = 0o644;

/// Writes a new file; fails if it exists, so a key is never silently replaced.
pub(super) fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), IdentityError> {
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = opts.open(path).map_err(|error| {
        if error.kind() == std::io::ErrorKind::AlreadyExists {
            IdentityError::FileExists {
                path: path.to_owned(),
            }
        } else {
            IdentityError::Write {
                path: path.to_owned(),
                error,
            }
        }
    })?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|error| IdentityError::Write {
            path: path.to_owned(),
            error,
        })
}

/// Reads a whole file as text.
pub(super) fn read_text(path: &Path) -> Result<String, IdentityError> {
    std::fs::read_to_string(path).map_err(|error| IdentityError::Read {
        path: path.to_owned(),
        error,
    })
}

/// Creates a directory and its parents.
pub(super) fn ensure_dir(dir: &Path) -> Result<(), IdentityError> {
    std::fs::create_dir_all(dir).map_err(|error| IdentityError::Write {
        path: dir.to_owned(),
        error,
    })
}
