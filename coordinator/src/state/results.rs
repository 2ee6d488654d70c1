//! The replicated result ledger: per node and store incarnation, the highest result sequence
//! number recorded, and per node counters of what was recorded. It lives in the Raft state, so a
//! result is acknowledged to its node only once a quorum holds it, and after a failover the new
//! leader still knows what was recorded: a resend (its acknowledgement was lost) is dropped, and
//! every result a node accepted is counted exactly once, whichever replica leads.
//!
//! Sequence numbers are only unique within one incarnation of a node's store: a wiped or
//! rolled-back store numbers from where it stands, so the ledger keeps a high-water mark per
//! (node, incarnation) and a new incarnation starts with none. Only the
//! [`MAX_INCARNATIONS_PER_NODE`] most recently used marks are kept, so a node restarting forever
//! cannot grow the state.

use serde::{Deserialize, Serialize};

/// Marks kept per node. A node's spool sends its oldest unacknowledged incarnation first, so only
/// an incarnation restored from a backup older than this many restarts could be recounted.
pub const MAX_INCARNATIONS_PER_NODE: usize = 16;

/// One result as the ledger needs it (the labels and variants stay with the node's consumer).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultRecord {
    pub seq: u64,
    /// Ground truth was known and the answer matched it.
    pub correct: Option<bool>,
    pub offloaded: bool,
    pub cost_usd: f64,
}

/// The high-water mark of one store incarnation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IncarnationMark {
    /// Random id the node's store made ([`wire::msg::ResultBatch::incarnation`]).
    pub incarnation: u64,
    /// Every result of this incarnation up to this sequence number is recorded (the ack).
    pub up_to_seq: u64,
    /// Value of [`NodeResults::batches`] when this mark was last used (for eviction).
    pub last_batch: u64,
}

/// What the fleet recorded for one node.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeResults {
    /// High-water marks of the node's recent store incarnations.
    pub incarnations: Vec<IncarnationMark>,
    /// Batches applied (a logical clock for the marks' eviction order).
    pub batches: u64,
    /// Results recorded (each once).
    pub received: u64,
    /// Resent results dropped because they were already recorded.
    pub duplicates_dropped: u64,
    /// Sequence numbers a batch skipped within an incarnation (results the node lost before
    /// sending): should be 0.
    pub gaps: u64,
    pub with_truth: u64,
    pub correct: u64,
    pub offloaded: u64,
    pub cost_usd: f64,
}

impl NodeResults {
    /// The acknowledgement for `incarnation`: every result up to this sequence number is held.
    pub fn up_to_seq(&self, incarnation: u64) -> u64 {
        self.incarnations
            .iter()
            .find(|m| m.incarnation == incarnation)
            .map_or(0, |m| m.up_to_seq)
    }

    /// Applies a batch of one incarnation in sequence order; results at or below that
    /// incarnation's high-water mark are resends.
    pub fn record(&mut self, incarnation: u64, records: &[ResultRecord]) {
        self.batches += 1;
        let clock = self.batches;
        let pos = match self
            .incarnations
            .iter()
            .position(|m| m.incarnation == incarnation)
        {
            Some(pos) => pos,
            None => self.start_incarnation(incarnation),
        };
        let mut mark = std::mem::take(&mut self.incarnations[pos]);
        mark.last_batch = clock;
        for r in records {
            if r.seq <= mark.up_to_seq {
                self.duplicates_dropped += 1;
                continue;
            }
            // A new incarnation may start anywhere (its store numbers on from what it holds).
            if mark.up_to_seq > 0 {
                self.gaps += r.seq - mark.up_to_seq - 1;
            }
            mark.up_to_seq = r.seq;
            self.received += 1;
            if let Some(correct) = r.correct {
                self.with_truth += 1;
                self.correct += u64::from(correct);
            }
            self.offloaded += u64::from(r.offloaded);
            self.cost_usd += r.cost_usd;
        }
        self.incarnations[pos] = mark;
    }

    /// Adds an empty mark, evicting the least recently used one when full; returns its index.
    fn start_incarnation(&mut self, incarnation: u64) -> usize {
        if self.incarnations.len() >= MAX_INCARNATIONS_PER_NODE
            && let Some(oldest) = self
                .incarnations
                .iter()
                .enumerate()
                .min_by_key(|(_, m)| m.last_batch)
                .map(|(i, _)| i)
        {
            self.incarnations.remove(oldest);
        }
        self.incarnations.push(IncarnationMark {
            incarnation,
            up_to_seq: 0,
            last_batch: self.batches,
        });
        self.incarnations.len() - 1
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
        n.record(7, &records(1..=10));
        // The ack of 1..=10 was lost: the node resends them with new ones.
        n.record(7, &records(5..=15));
        assert_eq!(
            (
                n.up_to_seq(7),
                n.received,
                n.duplicates_dropped,
                n.gaps,
                n.correct
            ),
            (15, 15, 6, 0, 15)
        );
        n.record(7, &records(18..=18));
        assert_eq!(n.gaps, 2);
    }

    #[test]
    fn a_wiped_store_is_a_new_incarnation_and_loses_nothing() {
        let mut n = NodeResults::default();
        n.record(1, &records(1..=62));
        // The store was wiped: the new one numbers from 1 again under a new incarnation.
        n.record(2, &records(1..=62));
        assert_eq!((n.received, n.duplicates_dropped), (124, 0));
        assert_eq!((n.up_to_seq(1), n.up_to_seq(2)), (62, 62));
        // A restored store resending what the old incarnation already delivered is dropped.
        n.record(1, &records(60..=63));
        assert_eq!((n.received, n.duplicates_dropped), (125, 3));
        assert_eq!(n.up_to_seq(99), 0, "an unknown incarnation holds nothing");
    }

    #[test]
    fn marks_are_bounded_and_the_least_recently_used_goes() {
        let mut n = NodeResults::default();
        for inc in 0..(MAX_INCARNATIONS_PER_NODE as u64 + 5) {
            n.record(inc, &records(1..=1));
            // Incarnation 0 keeps being used, so it survives eviction.
            n.record(0, &records(1..=1));
        }
        assert_eq!(n.incarnations.len(), MAX_INCARNATIONS_PER_NODE);
        assert_eq!(n.up_to_seq(0), 1);
        assert_eq!(n.up_to_seq(1), 0, "the oldest idle incarnation was evicted");
    }
}
