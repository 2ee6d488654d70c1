//! What a replica that finds its disk empty does, decided from what its configured peers say
//! (their [`Hello`]s) — the same rule on every start, so no flag has to be flipped after the
//! first one:
//!
//! - any peer of this cluster reports a log beyond genesis (or is itself rejoining): the
//!   cluster has formed and this replica lost its disk. It must not bootstrap or vote; it
//!   rejoins through the leader as a learner ([`Decision::Rejoin`]);
//! - a majority of the configured replicas, this one included, answered and every answer is
//!   an empty disk or the very genesis this replica would write: nothing was ever committed,
//!   so writing that genesis is what every one of them did or will do ([`Decision::Bootstrap`]);
//! - otherwise: wait and ask again.
//!
//! Safety rests on majorities intersecting: once anything committed, a majority holds a log
//! beyond genesis, so a majority of "empty or genesis" answers cannot be collected unless a
//! majority of disks were lost too (which no quorum system survives).

use std::collections::BTreeMap;

use super::cluster_id::ClusterId;
use super::hello::{Disk, Hello};

/// The outcome for a replica with an empty disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Not enough peers have answered yet.
    Wait,
    /// Write the genesis: the cluster is brand new.
    Bootstrap,
    /// The cluster exists: catch up as a learner, vote only once promoted.
    Rejoin,
}

/// Decides for replica `me` of cluster `cluster`, configured with voters `peers`, whose
/// genesis would have digest `genesis`, given the latest `Hello` of each peer that answered.
/// Answers from other clusters or from ids outside `peers` do not count; a replica not in
/// `peers` never bootstraps.
pub fn decide(
    me: u64,
    peers: &[u64],
    cluster: ClusterId,
    genesis: u64,
    heard: &BTreeMap<u64, Hello>,
) -> Decision {
    let ours = heard
        .iter()
        .filter(|(id, h)| **id != me && peers.contains(id) && h.cluster == cluster);
    let member = peers.contains(&me);
    let mut agreeing = 1;
    for (_, h) in ours {
        match h.disk {
            Disk::Data | Disk::Rejoining => return Decision::Rejoin,
            Disk::Empty | Disk::Genesis if h.genesis == genesis => agreeing += 1,
            // Same cluster, different genesis: its configuration (voters) differs from ours.
            Disk::Empty | Disk::Genesis => {}
        }
    }
    // A replica outside its own configuration (a new member) never creates a cluster.
    if member && agreeing > peers.len() / 2 {
        Decision::Bootstrap
    } else {
        Decision::Wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const C: ClusterId = ClusterId(1);
    const G: u64 = 42;

    fn hello(disk: Disk, genesis: u64) -> Hello {
        Hello {
            cluster: C,
            genesis,
            disk,
            wants_reply: false,
        }
    }

    fn heard(list: &[(u64, Hello)]) -> BTreeMap<u64, Hello> {
        list.iter().copied().collect()
    }

    #[test]
    fn alone_in_its_configuration_bootstraps_at_once() {
        assert_eq!(decide(1, &[1], C, G, &heard(&[])), Decision::Bootstrap);
    }

    #[test]
    fn needs_a_majority_of_empty_or_genesis_answers() {
        let peers = [1, 2, 3];
        assert_eq!(decide(1, &peers, C, G, &heard(&[])), Decision::Wait);
        let one = heard(&[(2, hello(Disk::Empty, G))]);
        assert_eq!(decide(1, &peers, C, G, &one), Decision::Bootstrap);
        let genesis = heard(&[(3, hello(Disk::Genesis, G))]);
        assert_eq!(decide(1, &peers, C, G, &genesis), Decision::Bootstrap);
        let five = [1, 2, 3, 4, 5];
        assert_eq!(decide(1, &five, C, G, &one), Decision::Wait);
    }

    #[test]
    fn any_formed_peer_means_rejoin() {
        let peers = [1, 2, 3];
        let h = heard(&[(2, hello(Disk::Empty, G)), (3, hello(Disk::Data, 0))]);
        assert_eq!(decide(1, &peers, C, G, &h), Decision::Rejoin);
        let h = heard(&[(2, hello(Disk::Rejoining, G))]);
        assert_eq!(decide(1, &peers, C, G, &h), Decision::Rejoin);
    }

    #[test]
    fn foreign_or_differently_configured_peers_do_not_count() {
        let peers = [1, 2, 3];
        let mut foreign = hello(Disk::Data, G);
        foreign.cluster = ClusterId(2);
        assert_eq!(
            decide(1, &peers, C, G, &heard(&[(2, foreign)])),
            Decision::Wait
        );
        let other_genesis = heard(&[(2, hello(Disk::Empty, G + 1))]);
        assert_eq!(decide(1, &peers, C, G, &other_genesis), Decision::Wait);
        let stranger = heard(&[(9, hello(Disk::Empty, G))]);
        assert_eq!(decide(1, &peers, C, G, &stranger), Decision::Wait);
    }

    #[test]
    fn a_replica_outside_the_configuration_never_bootstraps() {
        let h = heard(&[(2, hello(Disk::Empty, G)), (3, hello(Disk::Empty, G))]);
        assert_eq!(decide(4, &[1, 2, 3], C, G, &h), Decision::Wait);
    }
}
