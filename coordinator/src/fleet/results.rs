//! The coordinator's result ledger: per node, the highest result sequence number recorded and
//! counters of what was recorded, kept in sled and flushed before the node is acknowledged. A
//! result at or below the high-water mark is a resend (its ack was lost) and is dropped, so every
//! result a node accepted is counted exactly once.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

use protocol::msg::{PlaceTag, ResultBatch};
use serde::{Deserialize, Serialize};

/// What the coordinator recorded for one node.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeResults {
    /// Every result up to this sequence number is recorded (the ack the node gets).
    pub up_to_seq: u64,
    /// Results recorded (each once).
    pub received: u64,
    /// Resent results dropped because they were already recorded.
    pub duplicates_dropped: u64,
    /// Sequence numbers skipped by a batch (results the node lost before sending): should be 0.
    pub gaps: u64,
    pub with_truth: u64,
    pub correct: u64,
    pub offloaded: u64,
    pub cost_usd: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("result ledger: {0}")]
    Sled(#[from] sled::Error),
    #[error("result ledger entry of {node} is unreadable: {source}")]
    Corrupt {
        node: String,
        source: serde_json::Error,
    },
    #[error("cannot encode the ledger entry: {0}")]
    Encode(serde_json::Error),
}

pub struct ResultLedger {
    db: sled::Db,
    /// Two sessions of one node (an old one still draining) must not interleave read-modify-write.
    write: Mutex<()>,
}

impl ResultLedger {
    pub fn open(dir: &Path) -> Result<Self, LedgerError> {
        Ok(Self {
            db: sled::open(dir)?,
            write: Mutex::new(()),
        })
    }

    fn get(&self, node: &str) -> Result<NodeResults, LedgerError> {
        match self.db.get(node)? {
            Some(b) => serde_json::from_slice(&b).map_err(|source| LedgerError::Corrupt {
                node: node.to_string(),
                source,
            }),
            None => Ok(NodeResults::default()),
        }
    }

    /// Records a batch durably and returns the node's entry; its `up_to_seq` is the ack to send.
    pub fn record(&self, node: &str, batch: &ResultBatch) -> Result<NodeResults, LedgerError> {
        let _guard = self.write.lock().unwrap_or_else(|p| p.into_inner());
        let mut e = self.get(node)?;
        let before = e.clone();
        for r in &batch.results {
            if r.seq <= e.up_to_seq {
                e.duplicates_dropped += 1;
                continue;
            }
            e.gaps += r.seq - e.up_to_seq - 1;
            e.up_to_seq = r.seq;
            e.received += 1;
            if let Some(truth) = r.truth {
                e.with_truth += 1;
                e.correct += u64::from(truth == r.label);
            }
            e.offloaded += u64::from(r.place == PlaceTag::Server);
            e.cost_usd += r.cost_usd;
        }
        if e != before {
            self.db
                .insert(node, serde_json::to_vec(&e).map_err(LedgerError::Encode)?)?;
            self.db.flush()?;
        }
        Ok(e)
    }

    pub fn all(&self) -> BTreeMap<String, NodeResults> {
        self.db
            .iter()
            .filter_map(Result::ok)
            .filter_map(|(k, v)| {
                Some((
                    String::from_utf8(k.to_vec()).ok()?,
                    serde_json::from_slice(&v).ok()?,
                ))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::msg::InferenceResult;

    fn batch(seqs: std::ops::RangeInclusive<u64>) -> ResultBatch {
        let results: Vec<InferenceResult> = seqs
            .map(|seq| InferenceResult {
                seq,
                app: "garment".into(),
                at_unix_ms: 0,
                label: 1,
                truth: Some(1),
                score: 0.5,
                variant: "half".into(),
                place: PlaceTag::Device,
                energy_j: 0.0,
                cost_usd: 0.0,
                latency_ms: 1.0,
            })
            .collect();
        ResultBatch {
            first_seq: results.first().map_or(0, |r| r.seq),
            results,
        }
    }

    #[test]
    fn resends_are_dropped_and_the_mark_survives_reopen() {
        let dir = tempfile::tempdir().expect("tmp");
        {
            let l = ResultLedger::open(dir.path()).expect("open");
            assert_eq!(
                l.record("cam", &batch(1..=10)).expect("record").up_to_seq,
                10
            );
        }
        let l = ResultLedger::open(dir.path()).expect("reopen");
        // The ack of 1..=10 was lost: the node resends them with new ones.
        let e = l.record("cam", &batch(5..=15)).expect("record");
        assert_eq!(
            (e.up_to_seq, e.received, e.duplicates_dropped, e.gaps),
            (15, 15, 6, 0)
        );
        assert_eq!(e.correct, 15);
        assert_eq!(
            l.record("other", &batch(1..=1)).expect("record").received,
            1
        );
        assert_eq!(l.all().len(), 2);
    }
}
