//! The result spool: every result the node accepts is written to sled (and flushed) before it
//! counts, keyed by a node-local sequence number. The link sends spooled results in order and
//! deletes them only when the coordinator acknowledges them as durable, so a lost link, a lost ack
//! or a node crash loses nothing; the coordinator drops resends it already holds, so nothing is
//! counted twice.
//!
//! Every open of the spool starts a new random *incarnation*, stored with each result it appends.
//! The coordinator deduplicates per (node, incarnation), so a wiped store, or one sled rolled back
//! to an older state, numbering from where it stands never has its new results taken for resends.
//! Results left from an earlier incarnation are still sent under theirs.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rand::Rng;
use wire::codec;
use wire::msg::InferenceResult;

use crate::store::{NodeStore, StoreError};

const SPOOL_TREE: &str = "spool";
const META_TREE: &str = "spool_meta";
const ACKED_KEY: &[u8] = b"acked_up_to";

/// Bytes of the incarnation id in front of each stored result.
const INCARNATION_BYTES: usize = 8;

/// Cheap to clone; every clone appends to and acknowledges the same spool.
#[derive(Clone)]
pub struct Spool {
    tree: sled::Tree,
    meta: sled::Tree,
    /// This open's incarnation id (random, non-zero).
    incarnation: u64,
    /// Serialises appends so sequence numbers are dense and in key order.
    next_seq: Arc<Mutex<u64>>,
    /// Results accepted by this process (since it opened the spool).
    accepted: Arc<AtomicU64>,
    /// Acknowledgements refused because they covered results never sent.
    acks_refused: Arc<AtomicU64>,
}

impl std::fmt::Debug for Spool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spool")
            .field("pending", &self.pending())
            .finish()
    }
}

fn key(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

fn seq_of(key: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(key.try_into().ok()?))
}

impl Spool {
    pub fn open(store: &NodeStore) -> Result<Self, StoreError> {
        let tree = store.tree(SPOOL_TREE)?;
        let meta = store.tree(META_TREE)?;
        let acked = read_acked(&meta)?;
        // A crash between recording an ack and deleting what it covers leaves acked entries
        // behind: finish the deletion now.
        for k in tree.range(..=key(acked)).keys() {
            tree.remove(k?)?;
        }
        let last = match tree.last()? {
            Some((k, _)) => seq_of(&k).unwrap_or(0),
            None => 0,
        };
        Ok(Self {
            tree,
            meta,
            incarnation: rand::thread_rng().gen_range(1..=u64::MAX),
            next_seq: Arc::new(Mutex::new(last.max(acked) + 1)),
            accepted: Arc::new(AtomicU64::new(0)),
            acks_refused: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Assigns the next sequence number, writes the result and flushes: once this returns, the
    /// result survives a crash. Returns the sequence number.
    pub fn append(&self, mut result: InferenceResult) -> Result<u64, StoreError> {
        let mut next = self.next_seq.lock().unwrap_or_else(|p| p.into_inner());
        result.seq = *next;
        let body = codec::encode(&result).map_err(|source| StoreError::Encode {
            what: "spooled result",
            source,
        })?;
        let mut bytes = Vec::with_capacity(INCARNATION_BYTES + body.len());
        bytes.extend_from_slice(&self.incarnation.to_be_bytes());
        bytes.extend_from_slice(&body);
        fail::fail_point!("spool-append", |_| Err(StoreError::Injected(
            "spool-append"
        )));
        self.tree.insert(key(result.seq), bytes)?;
        self.tree.flush()?;
        *next += 1;
        self.accepted.fetch_add(1, Ordering::Relaxed);
        Ok(result.seq)
    }

    /// Up to `max` results with sequence numbers above `after`, in order, all of one incarnation
    /// (the first one's), with that incarnation's id.
    pub fn batch_after(&self, after: u64, max: usize) -> Result<SpooledBatch, StoreError> {
        let start = after.saturating_add(1);
        let mut batch = SpooledBatch::default();
        for item in self.tree.range(key(start)..).take(max) {
            let (_, v) = item?;
            let (incarnation, result) = decode_entry(&v)?;
            if batch.results.is_empty() {
                batch.incarnation = incarnation;
            } else if incarnation != batch.incarnation {
                break;
            }
            batch.results.push(result);
        }
        Ok(batch)
    }

    /// This open's incarnation id.
    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }

    /// The coordinator holds every result up to `up_to`: record that, then delete them.
    /// An ack beyond the last result this spool ever numbered is refused (returns `false`) and
    /// changes nothing: only a confused or forged peer sends one, and taking it would make the
    /// spool drop results never delivered.
    pub fn ack(&self, up_to: u64) -> Result<bool, StoreError> {
        let last_numbered = self
            .next_seq
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .saturating_sub(1);
        if up_to > last_numbered {
            return Ok(false);
        }
        if up_to <= self.acked_up_to()? {
            return Ok(true);
        }
        fail::fail_point!("spool-ack", |_| Err(StoreError::Injected("spool-ack")));
        self.meta.insert(ACKED_KEY, &key(up_to))?;
        self.meta.flush()?;
        // A crash here leaves acknowledged results behind; `open` deletes them.
        fail::fail_point!("spool-ack-recorded", |_| Err(StoreError::Injected(
            "spool-ack-recorded"
        )));
        for k in self.tree.range(..=key(up_to)).keys() {
            self.tree.remove(k?)?;
        }
        Ok(true)
    }

    pub fn acked_up_to(&self) -> Result<u64, StoreError> {
        read_acked(&self.meta)
    }

    /// Results waiting for an ack.
    pub fn pending(&self) -> usize {
        self.tree.len()
    }

    /// Counts an acknowledgement the link refused; returns the count so far.
    pub fn refuse_ack(&self) -> u64 {
        self.acks_refused.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Acknowledgements refused since the spool was opened.
    pub fn acks_refused(&self) -> u64 {
        self.acks_refused.load(Ordering::Relaxed)
    }

    /// Results this process accepted.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }
}

/// Results from [`Spool::batch_after`]: one incarnation's, in order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SpooledBatch {
    pub incarnation: u64,
    pub results: Vec<InferenceResult>,
}

fn decode_entry(v: &[u8]) -> Result<(u64, InferenceResult), StoreError> {
    let corrupt = |source| StoreError::Corrupt {
        what: "spooled result",
        source,
    };
    let Some((inc, body)) = v.split_first_chunk::<INCARNATION_BYTES>() else {
        return Err(corrupt(codec::CodecError::TooShort { len: v.len() }));
    };
    Ok((
        u64::from_be_bytes(*inc),
        codec::decode(body).map_err(corrupt)?,
    ))
}

fn read_acked(meta: &sled::Tree) -> Result<u64, StoreError> {
    Ok(meta.get(ACKED_KEY)?.and_then(|v| seq_of(&v)).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use wire::msg::PlaceTag;

    fn result(label: u32) -> InferenceResult {
        InferenceResult {
            seq: 0,
            app: "garment".into(),
            at_unix_ms: 1,
            label,
            truth: Some(label),
            score: 0.9,
            variant: "half".into(),
            place: PlaceTag::Device,
            energy_j: 0.01,
            cost_usd: 0.0,
            latency_ms: 2.0,
        }
    }

    #[test]
    fn acked_results_go_and_unacked_survive_reopen_in_order() {
        let dir = tempfile::tempdir().expect("tmp");
        {
            let store = NodeStore::open(dir.path()).expect("open");
            let spool = Spool::open(&store).expect("spool");
            for i in 0..5 {
                assert_eq!(spool.append(result(i)).expect("append"), u64::from(i) + 1);
            }
            let first = spool.batch_after(0, 3).expect("batch");
            assert_eq!(first.incarnation, spool.incarnation());
            assert_eq!(
                first.results.iter().map(|r| r.seq).collect::<Vec<_>>(),
                vec![1, 2, 3]
            );
            assert!(spool.ack(3).expect("ack"));
            assert!(spool.ack(2).expect("an older ack is harmless"));
            assert!(!spool.ack(u64::MAX).expect("a forged ack is refused"));
            assert!(
                !spool
                    .ack(6)
                    .expect("an ack beyond the last result is refused")
            );
            assert_eq!(spool.pending(), 2);
        }
        let store = NodeStore::open(dir.path()).expect("reopen");
        let spool = Spool::open(&store).expect("spool");
        assert_eq!(spool.acked_up_to().expect("acked"), 3);
        let rest = spool.batch_after(3, 100).expect("batch");
        assert_eq!(
            rest.results
                .iter()
                .map(|r| (r.seq, r.label))
                .collect::<Vec<_>>(),
            vec![(4, 3), (5, 4)]
        );
        // Numbering continues after the survivors, never reusing an acknowledged number.
        assert_eq!(spool.append(result(9)).expect("append"), 6);
        // The survivors keep their old incarnation; the new result is in this open's, so a batch
        // never mixes the two.
        assert_ne!(rest.incarnation, spool.incarnation());
        let old = spool.batch_after(3, 100).expect("batch");
        assert_eq!(old.results.len(), 2);
        let new = spool.batch_after(5, 100).expect("batch");
        assert_eq!(
            (new.incarnation, new.results.len()),
            (spool.incarnation(), 1)
        );
        assert!(spool.ack(6).expect("ack all"));
        assert_eq!(spool.pending(), 0);
        assert_eq!(spool.append(result(9)).expect("append"), 7);
    }
}
