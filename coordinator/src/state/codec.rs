//! bincode encoding of commands and snapshots, with a format version byte in front so a
//! replica running older code refuses newer data with a clear error instead of misreading it.

use serde::{Serialize, de::DeserializeOwned};
use thiserror::Error;

/// Format version of command and snapshot bytes. 2: the policy state became bounded (latest
/// value per key, a capped log, per-writer id windows). 3: the committed plan is held per node
/// (`CommitPlanDelta`); format-2 commands and snapshots are still read and converted. 4: the
/// state holds the watchlist (`AddWatchlistEntry`/`RemoveWatchlistEntry`); format-3 commands
/// and snapshots are still read. 5: `RegisterNodes` (a burst of joins in one entry); format-4
/// commands and snapshots (the same state layout) are still read.
const FORMAT_VERSION: u8 = 5;

/// Format 4, still read (see [`FORMAT_VERSION`]).
pub(crate) const FORMAT_V4: u8 = 4;

/// Format 3, still read (see [`FORMAT_VERSION`]).
pub(crate) const FORMAT_V3: u8 = 3;

/// The previous format, still read (see [`FORMAT_VERSION`]).
pub(crate) const FORMAT_V2: u8 = 2;

/// Upper bound on decoded sizes: commands and snapshots come from disk and peers. The decoder
/// refuses data whose [`claimed_len`] exceeds it, the encoder refuses to write such data, and
/// the state machine refuses commands that would grow the state past [`STATE_BUDGET`], so a
/// snapshot written is always a snapshot a restarting replica can read.
pub(crate) const LIMIT: usize = 256 * 1024 * 1024;

/// Largest [`claimed_len`] the fleet state may reach. Below [`LIMIT`] because the varint bytes
/// on the wire can exceed the claimed figure (a u64 claims 8 bytes and may take 9): three
/// quarters of the limit keeps the encoded snapshot, its Raft metadata included, inside both the
/// decoder's limit and the Raft message limit.
pub(crate) const STATE_BUDGET: usize = LIMIT / 4 * 3;

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
    /// The value is larger than the decoder would accept.
    #[error(
        "{what} would need {claimed} bytes to decode, over the {LIMIT}-byte limit; refused so it can always be read back"
    )]
    TooLarge {
        /// What was being encoded.
        what: &'static str,
        /// Its [`claimed_len`].
        claimed: usize,
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

/// What bincode's decoder counts against [`LIMIT`] when it decodes `value`: it claims every
/// integer and float at its in-memory width (a u64 is 8 bytes even when its varint takes 1),
/// every length as 8 bytes and every string or byte sequence at its length. That is exactly the
/// fixed-width encoding's length, measured here without allocating.
pub(crate) fn claimed_len<T: Serialize>(value: &T) -> usize {
    let fixed = bincode::config::standard().with_fixed_int_encoding();
    let mut size = bincode::enc::write::SizeWriter::default();
    match bincode::serde::encode_into_writer(value, &mut size, fixed) {
        Ok(()) => size.bytes_written,
        // Serialising plain data into a counter cannot fail; if it ever did, treat the value
        // as too large rather than as small.
        Err(_) => usize::MAX,
    }
}

/// Encodes `value` with a version byte; refuses values the decoder would not accept.
pub(crate) fn encode<T: Serialize>(value: &T, what: &'static str) -> Result<Vec<u8>, StateError> {
    let claimed = claimed_len(value);
    if claimed > LIMIT {
        return Err(StateError::TooLarge { what, claimed });
    }
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
    decode_version(bytes, what, FORMAT_VERSION)
}

/// Decodes bytes written under format `expected` (an older format's layout, for conversion).
pub(crate) fn decode_version<T: DeserializeOwned>(
    bytes: &[u8],
    what: &'static str,
    expected: u8,
) -> Result<T, StateError> {
    let (&version, body) = bytes
        .split_first()
        .ok_or(StateError::Framing { what, extra: 0 })?;
    if version != expected {
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A value with every shape the state holds: strings, small and large integers, floats,
    /// options, enums, maps, sequences and bytes.
    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
    struct Sample {
        name: String,
        small: u64,
        large: u64,
        ratio: f64,
        flag: bool,
        maybe: Option<u32>,
        kind: crate::state::PolicyValue,
        map: std::collections::BTreeMap<String, u64>,
        bytes: Vec<u8>,
    }

    fn sample() -> Sample {
        Sample {
            name: "coord-0".into(),
            small: 3,
            large: u64::MAX,
            ratio: 0.5,
            flag: true,
            maybe: Some(7),
            kind: crate::state::PolicyValue::Text("abc".into()),
            map: [("a".to_string(), 1), ("bc".to_string(), 2)].into(),
            bytes: vec![1, 2, 3, 4, 5],
        }
    }

    fn decode_limited<const N: usize>(body: &[u8]) -> Result<Sample, bincode::error::DecodeError> {
        let c = bincode::config::standard().with_limit::<N>();
        bincode::serde::decode_from_slice(body, c).map(|(v, _)| v)
    }

    /// `claimed_len` is the decoder's own measure: a limit of exactly that many bytes decodes,
    /// one byte less does not.
    #[test]
    fn claimed_len_is_what_the_decoder_counts() {
        let v = sample();
        let body = bincode::serde::encode_to_vec(&v, bincode::config::standard()).unwrap();
        // name 8+7, small/large/ratio 3x8, flag 1, maybe 1+4, kind 4+8+3, map 8+17+18, bytes 8+5.
        assert_eq!(claimed_len(&v), 116);
        assert_eq!(decode_limited::<116>(&body).unwrap(), v);
        assert!(matches!(
            decode_limited::<115>(&body),
            Err(bincode::error::DecodeError::LimitExceeded)
        ));
    }

    #[test]
    fn the_state_budget_leaves_room_for_varints_and_raft_framing() {
        // Worst case a varint takes 9 bytes for 8 claimed.
        let worst_encoded = STATE_BUDGET / 8 * 9;
        assert!(worst_encoded < LIMIT);
    }
}
