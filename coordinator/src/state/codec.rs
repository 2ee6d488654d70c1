//! bincode encoding of commands and snapshots, with a format version byte in front so a
//! replica running older code refuses newer data with a clear error instead of misreading it.

use serde::{Serialize, de::DeserializeOwned};
use thiserror::Error;

/// Format version of command and snapshot bytes.
const FORMAT_VERSION: u8 = 1;

/// Upper bound on decoded sizes: commands and snapshots come from disk and peers.
const LIMIT: usize = 256 * 1024 * 1024;

/// Errors encoding or decoding state-machine data.
#[derive(Debug, Error)]
pub enum StateError {
    /// The value could not be encoded.
    #[error("cannot encode {what}: {source}")]
    Encode {
        /// What was being encoded.
        what: &'static str,
        /// bincode's error.
        source: bincode::error::EncodeError,
    },
    /// Bytes did not decode.
    #[error("cannot decode {what}: {source}")]
    Decode {
        /// What was being decoded.
        what: &'static str,
        /// bincode's error.
        source: bincode::error::DecodeError,
    },
    /// Bytes were written by a different format version.
    #[error(
        "{what} has format version {found}, this build reads version {FORMAT_VERSION}; upgrade the replica"
    )]
    Version {
        /// What was being decoded.
        what: &'static str,
        /// Version byte found.
        found: u8,
    },
    /// Empty or truncated input.
    #[error("{what} is empty or has {extra} trailing bytes")]
    Framing {
        /// What was being decoded.
        what: &'static str,
        /// Unconsumed bytes.
        extra: usize,
    },
}

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<LIMIT>()
}

/// Encodes `value` with a version byte.
pub(crate) fn encode<T: Serialize>(value: &T, what: &'static str) -> Result<Vec<u8>, StateError> {
    let mut out = vec![FORMAT_VERSION];
    let body = bincode::serde::encode_to_vec(value, config())
        .map_err(|source| StateError::Encode { what, source })?;
    out.extend_from_slice(&body);
    Ok(out)
}

/// Decodes bytes produced by [`encode`]; trailing bytes are an error.
pub(crate) fn decode<T: DeserializeOwned>(
    bytes: &[u8],
    what: &'static str,
) -> Result<T, StateError> {
    let (&version, body) = bytes
        .split_first()
        .ok_or(StateError::Framing { what, extra: 0 })?;
    if version != FORMAT_VERSION {
        return Err(StateError::Version {
            what,
            found: version,
        });
    }
    let (value, used) = bincode::serde::decode_from_slice(body, config())
        .map_err(|source| StateError::Decode { what, source })?;
    if used != body.len() {
        return Err(StateError::Framing {
            what,
            extra: body.len() - used,
        });
    }
    Ok(value)
}
