//! The seeded fault schedule: every 0.3-2.5 simulated seconds one of leader kill, random
//! replica kill, restart from disk, replica disk loss (it rejoins), minority partition, leader
//! isolation, heal, node restart or store loss, or a change of network weather (loss, duplication, delay
//! spread, which reorders). At most one replica is down at a time.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::cluster::{Cluster, REPLICAS};
use crate::net::{Addr, Partition, SimNet, Weather};
use crate::node::NodeCtl;
use crate::rng::SimRng;
use crate::trace::Trace;

/// Spool openings (so incarnations) per node at most: the ledger keeps the 16 most recent.
const MAX_STORE_OPENS_PER_NODE: usize = 6;

#[derive(Debug, Clone, Copy, Default)]
pub struct FaultStats {
    pub kills: u64,
    /// Replicas whose disk was deleted (they rejoin).
    pub wipes: u64,
    pub partitions: u64,
    pub store_losses: u64,
    /// Node restarts on the same store (new incarnation, old results resent under theirs).
    pub node_restarts: u64,
    pub weather_changes: u64,
}

pub struct Faults {
    pub rng: SimRng,
    pub trace: Trace,
    pub net: SimNet,
    pub nodes: Vec<mpsc::UnboundedSender<NodeCtl>>,
    pub writers: usize,
    pub stats: FaultStats,
    double_disk_loss: bool,
    store_opens: BTreeMap<usize, usize>,
}

impl Faults {
    pub fn new(
        rng: SimRng,
        trace: Trace,
        net: SimNet,
        nodes: Vec<mpsc::UnboundedSender<NodeCtl>>,
        writers: usize,
        double_disk_loss: bool,
    ) -> Self {
        Faults {
            rng,
            trace,
            net,
            nodes,
            writers,
            stats: FaultStats::default(),
            double_disk_loss,
            store_opens: BTreeMap::new(),
        }
    }

    /// Injects faults until `until`.
    pub async fn run(&mut self, cluster: &mut Cluster, until: Instant) -> Result<(), String> {
        loop {
            let next = Instant::now() + Duration::from_millis(self.rng.between(300, 2500));
            if next >= until {
                tokio::time::sleep_until(until).await;
                return Ok(());
            }
            tokio::time::sleep_until(next).await;
            self.one(cluster).await?;
        }
    }

    async fn one(&mut self, cluster: &mut Cluster) -> Result<(), String> {
        let all_up = cluster.down().is_empty();
        match self.rng.index(11) {
            0 | 1 if all_up => {
                if let Some(l) = cluster.leader() {
                    self.stats.kills += 1;
                    cluster.kill(l).await?;
                }
            }
            2 if all_up => {
                let id = REPLICAS[self.rng.index(REPLICAS.len())];
                self.stats.kills += 1;
                cluster.kill(id).await?;
            }
            0..=2 => {
                for id in cluster.down() {
                    cluster.start(id)?;
                }
            }
            3 if self.net.partition().is_none() => {
                let alone = REPLICAS[self.rng.index(REPLICAS.len())];
                self.partition(cluster, alone).await;
            }
            4 if self.net.partition().is_none() => {
                if let Some(l) = cluster.leader() {
                    self.partition(cluster, l).await;
                }
            }
            3..=5 => self.heal(),
            6 | 10 => {
                let n = self.rng.index(self.nodes.len());
                let lose = self.rng.chance(0.5);
                let opened = self.store_opens.entry(n).or_insert(1);
                if *opened < MAX_STORE_OPENS_PER_NODE {
                    *opened += 1;
                    let order = if lose {
                        self.stats.store_losses += 1;
                        NodeCtl::LoseStore
                    } else {
                        self.stats.node_restarts += 1;
                        NodeCtl::Restart
                    };
                    let _ = self.nodes[n].send(order);
                }
            }
            7 | 8 => self.weather(),
            // A second disk loss before the first is restored is two failures at once, beyond
            // what three replicas tolerate (the cluster then waits forever, by design).
            _ if all_up && (self.double_disk_loss || cluster.all_voting().await) => {
                let id = REPLICAS[self.rng.index(REPLICAS.len())];
                self.stats.wipes += 1;
                cluster.wipe(id).await?;
            }
            _ => {}
        }
        Ok(())
    }

    fn heal(&self) {
        if self.net.partition().is_some() {
            self.net.set_partition(None);
            self.trace.event("heal");
        }
    }

    fn weather(&mut self) {
        let w = Weather {
            loss: self.rng.uniform(0.0, 0.2),
            duplicate: self.rng.uniform(0.0, 0.1),
            min_delay_ms: self.rng.between(1, 5),
            max_delay_ms: self.rng.between(5, 80),
        };
        self.stats.weather_changes += 1;
        self.trace.event(format!(
            "weather loss {:.3} dup {:.3} delay {}-{}ms",
            w.loss, w.duplicate, w.min_delay_ms, w.max_delay_ms
        ));
        self.net.set_weather(w);
    }

    /// Cuts `alone` off from the other replicas; each client lands on either side.
    async fn partition(&mut self, cluster: &Cluster, alone: u64) {
        self.stats.partitions += 1;
        let mut sides = BTreeMap::new();
        let mut replicas_by_side: BTreeMap<u8, Vec<u64>> = BTreeMap::new();
        for id in REPLICAS {
            let side = u8::from(id == alone);
            sides.insert(Addr::Replica(id), side);
            replicas_by_side.entry(side).or_default().push(id);
        }
        let clients = (0..self.nodes.len())
            .map(Addr::Node)
            .chain((0..self.writers).map(Addr::Writer));
        for c in clients {
            sides.insert(c, u8::from(self.rng.chance(0.3)));
        }
        let id = self.stats.partitions;
        self.net.set_partition(Some(Partition {
            id,
            sides,
            replicas_by_side,
            commit_bound: None,
        }));
        self.trace
            .event(format!("partition {id}: r{alone} alone in the minority"));
        // Nothing crosses from now on: the highest log index now bounds what the minority can
        // ever see committed while this lasts.
        let mut bound = 0;
        for h in cluster.handles() {
            if let Ok(st) = h.status().await {
                bound = bound.max(st.last_index);
            }
        }
        self.net.set_commit_bound(bound);
    }
}
