//! Small file helpers: create-only writes with restrictive modes, reads with the path in errors,
//! and the permission check that refuses private keys other users can read.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;

use super::IdentityError;

/// Mode for private keys: readable by the owner only.
pub(super) const KEY_MODE: u32 = 0o600;
/// Mode for certificates: public material.
pub(super) const CERT_MODE: u32 = 0o644;
/// Mode for folders this module creates: they hold private keys.
pub(super) const DIR_MODE: u32 = 0o700;

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

/// Replaces `path` atomically: writes a sibling temporary file with `mode`, syncs it and renames
/// it over `path`, so a reader (or a crash) sees the old or the new content, never a mix. Used
/// when a renewed key and certificate replace the current ones.
pub fn replace_atomically(path: &Path, bytes: &[u8], mode: u32) -> Result<(), IdentityError> {
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{file_name}.new"));
    // A leftover from an interrupted replacement is ours to discard.
    let _ = std::fs::remove_file(&tmp);
    write_new(&tmp, bytes, mode)?;
    std::fs::rename(&tmp, path).map_err(|error| IdentityError::Write {
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

/// Reads a private key after checking that users other than its owner and group cannot read or
/// write it: a key anyone on the machine can copy is no longer a secret, so it is refused with
/// the command that fixes it rather than used.
pub(super) fn read_private_key(path: &Path) -> Result<String, IdentityError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path).map_err(|error| IdentityError::Read {
            path: path.to_owned(),
            error,
        })?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o007 != 0 {
            return Err(IdentityError::KeyExposed {
                path: path.to_owned(),
                mode,
            });
        }
    }
    read_text(path)
}

/// Creates a directory and its parents; the ones created here get mode 0700 (they hold keys).
/// An existing directory keeps its mode.
pub(super) fn ensure_dir(dir: &Path) -> Result<(), IdentityError> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(DIR_MODE);
    }
    builder.create(dir).map_err(|error| IdentityError::Write {
        path: dir.to_owned(),
        error,
    })
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).expect("stat").permissions().mode() & 0o777
    }

    #[test]
    fn new_folders_are_private_and_keys_owner_only() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("a/b");
        ensure_dir(&dir).expect("mkdir");
        assert_eq!(mode(&dir), DIR_MODE);
        let key = dir.join("k.key");
        write_new(&key, b"secret", KEY_MODE).expect("write");
        assert_eq!(mode(&key), KEY_MODE);
        replace_atomically(&key, b"secret2", KEY_MODE).expect("replace");
        assert_eq!(mode(&key), KEY_MODE);
        assert_eq!(read_private_key(&key).expect("read"), "secret2");
    }

    #[test]
    fn a_key_others_can_read_is_refused() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let key = tmp.path().join("k.key");
        write_new(&key, b"secret", 0o644).expect("write");
        let err = read_private_key(&key).expect_err("world-readable key accepted");
        let text = err.to_string();
        assert!(text.contains("chmod 600"), "{text}");
        // Group-readable keys are how systemd units share a key with their service group.
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).expect("chmod");
        read_private_key(&key).expect("group-readable key");
    }
}
