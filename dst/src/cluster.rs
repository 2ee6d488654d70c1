//! The three coordinator replicas: the real `Replica` on real sled folders, each with its
//! client server ([`crate::exchange::serve`]) and planner, killed and restarted from the same
//! folder by the fault schedule.
//!
//! Determinism: raft-rs draws its election timeout from the OS-seeded thread RNG, so every
//! replica runs with a fixed timeout (`max_election_tick = election_tick + 1`) and the seed
//! picks each start's `election_tick` (and so its tick at which it campaigns) instead.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use mcdnn_coordinator::raft::{Replica, ReplicaConfig, ReplicaHandle, Role};
use tokio::task::JoinHandle;

use crate::exchange::conn::Switchboard;
use crate::exchange::serve;
use crate::monitor::Monitor;
use crate::net::SimNet;
use crate::plans::{PlanBook, Planner};
use crate::rng::SimRng;
use crate::trace::Trace;

/// The replica ids (StatefulSet ordinal + 1).
pub use crate::REPLICAS;

struct Running {
    handle: ReplicaHandle,
    tasks: Vec<JoinHandle<()>>,
}

pub struct Cluster {
    root: PathBuf,
    net: SimNet,
    trace: Trace,
    rng: SimRng,
    monitor: Monitor,
    pub book: PlanBook,
    /// Planners propose only while this is set (cleared before the final comparison).
    pub planning: Arc<AtomicBool>,
    board: Switchboard,
    running: BTreeMap<u64, Running>,
    pub starts: u64,
}

impl Cluster {
    pub fn new(
        root: PathBuf,
        net: SimNet,
        trace: Trace,
        rng: SimRng,
        monitor: Monitor,
        board: Switchboard,
    ) -> Self {
        Cluster {
            root,
            net,
            trace,
            rng,
            monitor,
            book: PlanBook::default(),
            planning: Arc::new(AtomicBool::new(true)),
            board,
            running: BTreeMap::new(),
            starts: 0,
        }
    }

    fn config(&self) -> ReplicaConfig {
        let election_tick = self.rng.between(8, 16) as usize;
        ReplicaConfig {
            tick_interval: Duration::from_millis(100),
            election_tick,
            heartbeat_tick: 2,
            max_election_tick: election_tick + 1,
            // Small, so snapshots, compaction and restarts from a snapshot happen every seed.
            snapshot_interval: 40,
            log_retain_entries: 10,
            proposal_timeout: Duration::from_secs(3),
            ..ReplicaConfig::default()
        }
    }

    /// Starts replica `id` on its folder (empty the first time, its old disk afterwards).
    pub fn start(&mut self, id: u64) -> Result<(), String> {
        if self.running.contains_key(&id) {
            return Ok(());
        }
        let config = self.config();
        let ticks = config.election_tick;
        let dir = self.root.join(format!("replica-{id}"));
        let transport = self.net.transport(id);
        let handle = crate::lock_wait::when_unlocked(|| {
            Replica::start(id, &REPLICAS, &dir, transport.clone(), config.clone())
        })
        .map_err(|e| format!("starting replica {id}: {e}"))?;
        self.monitor.forget(id);
        self.net.attach_replica(handle.clone());
        let (mut tasks, sessions) = serve::spawn(
            handle.clone(),
            self.net.clone(),
            &self.board,
            REPLICAS.len(),
        );
        let planner = Planner {
            net: self.net.clone(),
            trace: self.trace.clone(),
            rng: self.rng.clone(),
            sessions,
            book: self.book.clone(),
            planning: self.planning.clone(),
        }
        .spawn(handle.clone());
        tasks.push(planner);
        self.running.insert(id, Running { handle, tasks });
        self.starts += 1;
        self.trace
            .event(format!("start r{id} (election after {ticks} ticks)"));
        Ok(())
    }

    /// Stops replica `id` as a crash would (its disk stays).
    pub async fn kill(&mut self, id: u64) -> Result<(), String> {
        let Some(r) = self.running.remove(&id) else {
            return Ok(());
        };
        self.net.detach_replica(id);
        for t in &r.tasks {
            t.abort();
        }
        self.trace.event(format!("kill r{id}"));
        r.handle
            .shutdown()
            .await
            .map_err(|e| format!("replica {id} had stopped with an error: {e}"))
    }

    /// Stops replica `id` and deletes its folder: it comes back with an empty disk and must
    /// rejoin (learner, snapshot, promotion).
    pub async fn wipe(&mut self, id: u64) -> Result<(), String> {
        self.kill(id).await?;
        let dir = self.root.join(format!("replica-{id}"));
        std::fs::remove_dir_all(&dir).map_err(|e| format!("wiping {}: {e}", dir.display()))?;
        self.trace.event(format!("wipe r{id}'s disk"));
        Ok(())
    }

    /// Every replica runs, votes (no rejoin under way: a rejoining replica does not vote even
    /// once a snapshot restored it, and an empty disk cut off from its peers has not even
    /// started one) and is a voter, as the leader sees it.
    pub async fn all_voting(&self) -> bool {
        let Some(l) = self.leader() else {
            return false;
        };
        if !self.down().is_empty() {
            return false;
        }
        for (id, r) in &self.running {
            match r.handle.status().await {
                // Still rejoining, or an empty disk that has not yet heard whether to rejoin.
                Ok(st) if st.rejoining || st.last_index == 0 => return false,
                Ok(st) if *id == l && (st.voters != REPLICAS || !st.learners.is_empty()) => {
                    return false;
                }
                Ok(_) => {}
                Err(_) => return false,
            }
        }
        true
    }

    pub fn is_running(&self, id: u64) -> bool {
        self.running.contains_key(&id)
    }

    pub fn down(&self) -> Vec<u64> {
        REPLICAS
            .into_iter()
            .filter(|id| !self.running.contains_key(id))
            .collect()
    }

    pub fn handles(&self) -> Vec<ReplicaHandle> {
        self.running.values().map(|r| r.handle.clone()).collect()
    }

    /// The running replica that leads the highest term, if any.
    pub fn leader(&self) -> Option<u64> {
        self.running
            .iter()
            .map(|(id, r)| (*id, *r.handle.raft_view().borrow()))
            .filter(|(_, v)| v.role == Role::Leader)
            .max_by_key(|(_, v)| v.term)
            .map(|(id, _)| id)
    }

    /// Whether the replica has stopped on its own (an error inside the driver).
    pub fn crashed(&self) -> Vec<u64> {
        self.running
            .iter()
            .filter(|(_, r)| !r.handle.is_running())
            .map(|(id, _)| *id)
            .collect()
    }

    /// Stops everything (end of seed).
    pub async fn stop_all(&mut self) -> Vec<String> {
        let mut errors = Vec::new();
        for id in REPLICAS {
            if let Err(e) = self.kill(id).await {
                errors.push(e);
            }
        }
        errors
    }
}
