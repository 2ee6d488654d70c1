//! The backup file `mcdnnctl snapshot save` writes and `restore` reads: the replicated fleet
//! state as the leader had applied it, with where it came from and a checksum, so a truncated
//! or altered file is refused instead of seeding a cluster with damaged state.
//!
//! Layout: `MCDNNBAK` magic, format version (u16 BE), the Raft index the state was taken at
//! (u64 BE), the state's length (u64 BE), its sha256 (32 bytes), then the state bytes
//! ([`FleetState::to_snapshot_bytes`]).

use sha2::{Digest, Sha256};

use super::{FleetState, StateError};

const MAGIC: &[u8; 8] = b"MCDNNBAK";
const VERSION: u16 = 1;
const HEADER: usize = 8 + 2 + 8 + 8 + 32;

/// What went wrong reading a backup.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("not an MCDNN backup (no MCDNNBAK header)")]
    NotABackup,
    #[error("backup format {found} is not {VERSION}; use the mcdnnctl that wrote it")]
    Version { found: u16 },
    #[error("backup is truncated: the header announces {expected} state bytes, {found} follow")]
    Truncated { expected: u64, found: usize },
    #[error("backup checksum mismatch: the file was altered or damaged")]
    Checksum,
    #[error("backup state does not decode: {0}")]
    State(#[from] StateError),
}

/// A decoded, verified backup.
#[derive(Debug, Clone, PartialEq)]
pub struct Backup {
    /// The Raft index the leader had applied when the state was taken.
    pub index: u64,
    pub state: FleetState,
    /// Hex sha256 of the state bytes.
    pub sha256: String,
}

/// Encodes `state` (applied up to `index`) as a backup file.
pub fn encode(index: u64, state: &FleetState) -> Result<Vec<u8>, StateError> {
    let bytes = state.to_snapshot_bytes()?;
    let mut out = Vec::with_capacity(HEADER + bytes.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_be_bytes());
    out.extend_from_slice(&index.to_be_bytes());
    out.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
    out.extend_from_slice(&Sha256::digest(&bytes));
    out.extend_from_slice(&bytes);
    Ok(out)
}

fn be_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

/// Verifies and decodes a backup file.
pub fn decode(file: &[u8]) -> Result<Backup, BackupError> {
    if file.len() < HEADER || &file[..8] != MAGIC {
        return Err(BackupError::NotABackup);
    }
    let version = u16::from_be_bytes([file[8], file[9]]);
    if version != VERSION {
        return Err(BackupError::Version { found: version });
    }
    let index = be_u64(&file[10..18]);
    let len = be_u64(&file[18..26]);
    let digest = &file[26..HEADER];
    let body = &file[HEADER..];
    if body.len() as u64 != len {
        return Err(BackupError::Truncated {
            expected: len,
            found: body.len(),
        });
    }
    let actual = Sha256::digest(body);
    if actual.as_slice() != digest {
        return Err(BackupError::Checksum);
    }
    Ok(Backup {
        index,
        state: FleetState::from_snapshot_bytes(body)?,
        sha256: hex::encode(actual),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{Command, PolicyValue};

    fn sample() -> FleetState {
        let mut s = FleetState::default();
        s.apply(
            7,
            &Command::SetPolicy {
                key: "fleet.cost_budget_usd".into(),
                value: PolicyValue::Number(0.5),
                writer: "ops".into(),
                write_id: 1,
            },
        );
        s
    }

    #[test]
    fn round_trips_and_refuses_damage() {
        let state = sample();
        let file = encode(7, &state).expect("encode");
        let back = decode(&file).expect("decode");
        assert_eq!((back.index, &back.state), (7, &state));
        assert!(matches!(decode(b"hello"), Err(BackupError::NotABackup)));
        assert!(matches!(
            decode(&file[..file.len() - 1]),
            Err(BackupError::Truncated { .. })
        ));
        let mut flipped = file.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert!(matches!(decode(&flipped), Err(BackupError::Checksum)));
        let mut future = file;
        future[9] = 9;
        assert!(matches!(decode(&future), Err(BackupError::Version { .. })));
    }
}
