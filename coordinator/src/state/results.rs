//! The replicated result ledger: per node, the highest result sequence number recorded and
//! counters of what was recorded. It lives in the Raft state, so a result is acknowledged to its
//! node only once a quorum holds it, and after a failover the new leader still knows what was
//! recorded: a resend (its acknowledgement was lost) is dropped, and every result a node accepted
//! is counted exactly once, whichever replica leads.

use serde::{Deserialize, Serialize};

/// One result as the ledger needs it (the labels and variants stay with the node's consumer).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultRecord {
    pub seq: u64,
    /// Ground truth was known and the answer matched it.
    pub correct: Option<bool>,
    pub offloaded: bool,
    pub cost_usd: f64,
}

/// What the fleet recorded for one node.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeResults {
    /// Every result up to this sequence number is recorded (the ack the node gets).
    pub up_to_seq: u64,
    /// Results recorded (each once).
    pub received: u64,
    /// Resent results dropped because they were already recorded.
    pub duplicates_dropped: u64,
    /// Sequence numbers a batch skipped (results the node lost before sending): should be 0.
    pub gaps: u64,
    pub with_truth: u64,
    pub correct: u64,
    pub offloaded: u64,
    pub cost_usd: f64,
}

impl NodeResults {
    /// Applies a batch in sequence order; results at or below the high-water mark are resends.
    pub fn record(&mut self, records: &[ResultRecord]) {
        for r in records {
            if r.seq <= self.up_to_seq {
                self.duplicates_dropped += 1;
                continue;
            }
            self.gaps += r.seq - self.up_to_seq - 1;
            self.up_to_seq = r.seq;
            self.received += 1;
            if let Some(correct) = r.correct {
                self.with_truth += 1;
                self.correct += u64::from(correct);
            }
            self.offloaded += u64::from(r.offloaded);
            self.cost_usd += r.cost_usd;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(seqs: std::ops::RangeInclusive<u64>) -> Vec<ResultRecord> {
        seqs.map(|seq| ResultRecord {
            seq,
            correct: Some(true),
            offloaded: false,
            cost_usd: 0.0,
        })
        .collect()
    }

    #[test]
    fn resends_are_dropped_and_gaps_counted() {
        let mut n = NodeResults::default();
        n.record(&records(1..=10));
        // The ack of 1..=10 was lost: the node resends them with new ones.
        n.record(&records(5..=15));
        assert_eq!(
            (
                n.up_to_seq,
                n.received,
                n.duplicates_dropped,
                n.gaps,
                n.correct
            ),
            (15, 15, 6, 0, 15)
        );
        n.record(&records(18..=18));
        assert_eq!(n.gaps, 2);
    }
}
