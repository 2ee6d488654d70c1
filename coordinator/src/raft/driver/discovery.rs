//! Finding out who the peers are before trusting their Raft traffic, and what an empty disk
//! does: every replica says `Hello` (cluster id, genesis, what its disk holds) to its
//! configured peers on start and every election timeout until each has answered; Raft
//! messages from a peer are stepped only once its `Hello` named this cluster. A replica with an
//! empty disk decides with [`formation::decide`] whether to write the genesis or rejoin.

use raft::RawNode;
use tracing::{info, warn};

use super::Driver;
use crate::raft::cluster_id::{ClusterId, genesis_digest};
use crate::raft::error::ReplicaError;
use crate::raft::formation::{self, Decision};
use crate::raft::hello::{self, Control, Disk, Hello};
use crate::raft::logger::raft_logger;
use crate::raft::storage::SledStorage;
use crate::state::FleetState;

/// Replicas outside the configured set whose hellos are remembered (members added through the
/// admin API); beyond this, strangers' hellos are dropped so the table stays bounded.
const MAX_STRANGERS: usize = 64;

/// What a replica knows about itself when it opens its disk.
pub(super) struct Start {
    pub genesis: u64,
    pub forming: bool,
    pub rejoining: bool,
}

/// Checks the disk belongs to `cluster` (recording it on logs that predate cluster ids) and
/// works out the replica's genesis and whether it must still form or is rejoining. A replica
/// alone in its configuration forms at once.
pub(super) fn prepare(
    store: &mut SledStorage,
    id: u64,
    peers: &[u64],
    cluster: ClusterId,
    empty_state: &[u8],
) -> Result<Start, ReplicaError> {
    match store.cluster_id()? {
        Some(stored) if stored != cluster => {
            return Err(ReplicaError::ForeignCluster {
                stored,
                configured: cluster,
            });
        }
        None if store.is_initialized() => store.set_cluster_id(cluster)?,
        _ => {}
    }
    let genesis = match store.stored_snapshot()? {
        Some(s) if store.at_genesis() => {
            genesis_digest(&s.get_metadata().get_conf_state().voters, &s.data)
        }
        _ => genesis_digest(peers, empty_state),
    };
    let rejoining = store.rejoining()?;
    let mut forming = !store.is_initialized() && !rejoining;
    let heard = Default::default();
    if forming && formation::decide(id, peers, cluster, genesis, &heard) == Decision::Bootstrap {
        info!(id, ?peers, %cluster, "the only configured replica: forming a new cluster");
        write_genesis(store, peers, cluster, empty_state)?;
        forming = false;
    }
    Ok(Start {
        genesis,
        forming,
        rejoining,
    })
}

fn write_genesis(
    store: &mut SledStorage,
    peers: &[u64],
    cluster: ClusterId,
    empty_state: &[u8],
) -> Result<(), ReplicaError> {
    store.set_cluster_id(cluster)?;
    store.bootstrap(peers, empty_state.to_vec())?;
    Ok(())
}

impl Driver {
    /// Whether Raft traffic from `from` may be stepped: its latest `Hello` named our cluster.
    /// An unknown sender is asked for one (once per round) and its message dropped; Raft
    /// retransmits.
    pub(super) fn is_our_cluster(&mut self, from: u64) -> bool {
        match self.heard.get(&from) {
            Some(h) => h.cluster == self.cluster,
            None => {
                if self.asked.insert(from) {
                    self.say_hello(from, true);
                }
                false
            }
        }
    }

    fn disk(&self) -> Disk {
        let store = self.raw.store();
        if self.rejoining {
            Disk::Rejoining
        } else if !store.is_initialized() {
            Disk::Empty
        } else if store.at_genesis() {
            Disk::Genesis
        } else {
            Disk::Data
        }
    }

    fn say_hello(&mut self, to: u64, wants_reply: bool) {
        let msg = hello::encode(
            self.id,
            to,
            Control::Hello(Hello {
                cluster: self.cluster,
                genesis: self.genesis,
                disk: self.disk(),
                wants_reply,
            }),
        );
        self.transport.send(vec![msg]);
    }

    /// Every election timeout: hello to the peers not heard from (all of them while forming),
    /// and, while rejoining, ask for the learner path again (the leader keeps no memory of it).
    pub(super) fn on_tick(&mut self) {
        if self.hello_in > 0 {
            self.hello_in -= 1;
            return;
        }
        self.hello_in = self.config.election_tick;
        self.asked.clear();
        let others: Vec<u64> = self
            .peers
            .iter()
            .copied()
            .filter(|&p| p != self.id)
            .collect();
        for &p in &others {
            if self.forming || !self.heard.contains_key(&p) {
                self.say_hello(p, true);
            }
        }
        if self.rejoining {
            let msgs = others
                .iter()
                .map(|&p| {
                    hello::encode(
                        self.id,
                        p,
                        Control::Rejoin {
                            cluster: self.cluster,
                        },
                    )
                })
                .collect();
            self.transport.send(msgs);
        }
    }

    /// Hellos are taken from any replica the transport let through (a member added through
    /// the admin API may be outside the configured set); formation counts configured ones
    /// only, and only configured replicas are taken through a rejoin.
    pub(super) fn on_control(&mut self, from: u64, control: Control) -> Result<(), ReplicaError> {
        match control {
            Control::Hello(_)
                if !self.peers.contains(&from)
                    && !self.heard.contains_key(&from)
                    && self.heard.len() >= self.peers.len() + MAX_STRANGERS =>
            {
                warn!(
                    id = self.id,
                    from, "hello from one replica too many outside the configuration dropped"
                );
            }
            Control::Hello(h) => {
                let before = self.heard.insert(from, h);
                if h.cluster != self.cluster && before.map(|b| b.cluster) != Some(h.cluster) {
                    warn!(id = self.id, from, theirs = %h.cluster, ours = %self.cluster,
                        "peer belongs to another cluster (cluster name differs); refusing its messages");
                }
                if h.wants_reply {
                    self.say_hello(from, false);
                }
                if self.forming {
                    self.try_form()?;
                }
            }
            Control::Rejoin { cluster }
                if cluster == self.cluster && self.peers.contains(&from) =>
            {
                self.admit_rejoiner(from)
            }
            Control::Rejoin { cluster } => {
                warn!(id = self.id, from, theirs = %cluster, "rejoin request from another cluster or outside the configured replicas refused");
            }
        }
        Ok(())
    }

    /// An empty disk decides, from the hellos so far, to form a new cluster or rejoin.
    fn try_form(&mut self) -> Result<(), ReplicaError> {
        let decision = formation::decide(
            self.id,
            &self.peers,
            self.cluster,
            self.genesis,
            &self.heard,
        );
        match decision {
            Decision::Wait => return Ok(()),
            Decision::Bootstrap => {
                info!(id = self.id, peers = ?self.peers, cluster = %self.cluster,
                    "a majority of the configured replicas are new: forming the cluster");
                let empty_state = FleetState::default().to_snapshot_bytes()?;
                let store = self.raw.mut_store();
                write_genesis(store, &self.peers, self.cluster, &empty_state)?;
                // raft-rs reads membership only when a node is built: build it again on the
                // now-initialised storage (same database, fresh view).
                let store = self.raw.store().reopen()?;
                self.raft_config.applied = store.snapshot_metadata().index;
                self.raw = RawNode::new(&self.raft_config, store, &raft_logger(self.id))?;
                *self.fleet_mut() = FleetState::from_snapshot_bytes(&empty_state)?;
                self.applied_tx.send_replace(self.raft_config.applied);
            }
            Decision::Rejoin if self.peers.contains(&self.id) => {
                warn!(id = self.id, cluster = %self.cluster,
                    "the cluster exists but this disk is empty (lost or wiped): rejoining as a learner; not voting until caught up");
                let store = self.raw.mut_store();
                store.set_cluster_id(self.cluster)?;
                store.set_rejoining(true)?;
                self.rejoining = true;
                self.hello_in = 0;
            }
            Decision::Rejoin => {
                info!(
                    id = self.id,
                    "new member with an empty disk: waiting for the leader's snapshot"
                );
                self.raw.mut_store().set_cluster_id(self.cluster)?;
            }
        }
        self.forming = false;
        Ok(())
    }
}
