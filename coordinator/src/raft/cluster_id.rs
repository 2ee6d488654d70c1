//! Who a replica belongs to, derived from configuration every start shares.
//!
//! The cluster id is a hash of the configured cluster name: it never depends on disk state or
//! membership, so a replica with an empty disk knows which cluster it must find, and replicas of
//! two clusters that can reach each other (a copied peer list, a reused address) refuse each
//! other instead of mixing logs.
//!
//! The genesis digest names the exact initial snapshot a replica would write (or wrote): its
//! voters and state-machine bytes. Empty replicas form a cluster only with peers whose genesis
//! is identical, so a brand-new cluster never starts from two different first states.

use sha2::{Digest, Sha256};

/// Name used when none is configured.
pub const DEFAULT_CLUSTER_NAME: &str = "mcdnn";

/// Identity of a Raft group, stored beside the log and carried in every hello.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClusterId(pub u64);

impl ClusterId {
    /// The id of the cluster called `name`.
    pub fn from_name(name: &str) -> Self {
        ClusterId(hash64(&[b"mcdnn/cluster-id/v1\0", name.as_bytes()]))
    }
}

impl std::fmt::Display for ClusterId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// Digest of an initial snapshot: sorted `voters` and the state-machine bytes `data`.
pub fn genesis_digest(voters: &[u64], data: &[u8]) -> u64 {
    let mut sorted = voters.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let ids: Vec<u8> = sorted.iter().flat_map(|v| v.to_be_bytes()).collect();
    hash64(&[b"mcdnn/genesis/v1\0", &ids, data])
}

fn hash64(parts: &[&[u8]]) -> u64 {
    let mut h = Sha256::new();
    for p in parts {
        // Length-prefixed so ("ab", "c") and ("a", "bc") differ.
        h.update((p.len() as u64).to_be_bytes());
        h.update(p);
    }
    let out = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&out[..8]);
    u64::from_be_bytes(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_the_name_only() {
        assert_eq!(ClusterId::from_name("a"), ClusterId::from_name("a"));
        assert_ne!(ClusterId::from_name("a"), ClusterId::from_name("b"));
    }

    #[test]
    fn genesis_ignores_order_but_not_members_or_data() {
        assert_eq!(
            genesis_digest(&[3, 1, 2], b"x"),
            genesis_digest(&[1, 2, 3], b"x")
        );
        assert_ne!(
            genesis_digest(&[1, 2], b"x"),
            genesis_digest(&[1, 2, 3], b"x")
        );
        assert_ne!(
            genesis_digest(&[1, 2, 3], b"x"),
            genesis_digest(&[1, 2, 3], b"y")
        );
    }
}
