//! How evenly a flood's accepted messages are spread over its connections: Jain's index and a
//! min/p50/max summary of the per-connection counts.

use serde::Serialize;

/// Jain's fairness index `(sum x)^2 / (n * sum x^2)`: 1 when every connection got the same, 1/n
/// when one got everything. No connections, or nothing accepted at all, is 0: nobody got a share.
pub fn jain(counts: &[u64]) -> f64 {
    let sum: f64 = counts.iter().map(|&x| x as f64).sum();
    let squares: f64 = counts.iter().map(|&x| (x as f64) * (x as f64)).sum();
    if squares == 0.0 {
        return 0.0;
    }
    sum * sum / (counts.len() as f64 * squares)
}

/// Per-connection accepted messages of one kind, summarised.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Share {
    /// Connections with at least one message accepted.
    pub got_through: usize,
    pub min: u64,
    pub p50: u64,
    pub max: u64,
    pub total: u64,
    pub jain: f64,
}

impl Share {
    pub fn of(counts: &[u64]) -> Self {
        let mut sorted = counts.to_vec();
        sorted.sort_unstable();
        Share {
            got_through: sorted.iter().filter(|&&x| x > 0).count(),
            min: sorted.first().copied().unwrap_or(0),
            p50: sorted.get(sorted.len() / 2).copied().unwrap_or(0),
            max: sorted.last().copied().unwrap_or(0),
            total: sorted.iter().sum(),
            jain: jain(counts),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_shares_are_fair_and_one_taker_is_not() {
        assert!((jain(&[5, 5, 5, 5]) - 1.0).abs() < 1e-12);
        assert!((jain(&[8, 0, 0, 0]) - 0.25).abs() < 1e-12);
        assert_eq!(jain(&[]), 0.0);
        assert_eq!(jain(&[0, 0]), 0.0);
    }

    #[test]
    fn a_share_summarises_the_counts() {
        let s = Share::of(&[3, 0, 9, 6]);
        assert_eq!(
            (s.got_through, s.min, s.p50, s.max, s.total),
            (3, 0, 6, 9, 18)
        );
        assert!((s.jain - 324.0 / (4.0 * 126.0)).abs() < 1e-12);
    }
}
