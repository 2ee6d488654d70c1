//! The in-process replica cluster the Raft scenario tests share: real sled directories, the
//! in-process transport with cuttable links, and helpers that wait (never on wall-clock speed)
//! for leaders, commits and applies.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use mcdnn_coordinator::raft::{
    InProcessNetwork, ProposeError, Replica, ReplicaConfig, ReplicaHandle, Role, Status,
};
use mcdnn_coordinator::state::{Command, FleetState, PolicyValue};
use tokio::time::{Instant, sleep};

/// Generous bound for anything that needs an election or catch-up; tests never assert speed.
pub const PATIENCE: Duration = Duration::from_secs(20);

pub fn fast_config() -> ReplicaConfig {
    ReplicaConfig {
        tick_interval: Duration::from_millis(20),
        proposal_timeout: Duration::from_secs(2),
        ..ReplicaConfig::default()
    }
}

pub struct Cluster {
    pub net: InProcessNetwork,
    root: tempfile::TempDir,
    peers: Vec<u64>,
    config: ReplicaConfig,
    pub replicas: BTreeMap<u64, ReplicaHandle>,
}

impl Cluster {
    /// A brand-new cluster of `n` replicas started one after another on empty disks, all with
    /// the same configuration.
    pub fn new(n: u64, config: ReplicaConfig) -> Self {
        let mut c = Self::unstarted(n, config);
        for id in 1..=n {
            c.start(id);
        }
        c
    }

    /// `n` configured replicas, none started yet.
    pub fn unstarted(n: u64, config: ReplicaConfig) -> Self {
        // Logs show with `RUST_LOG=debug cargo test ... -- --nocapture`.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        Cluster {
            net: InProcessNetwork::new(),
            root: tempfile::tempdir().unwrap(),
            peers: (1..=n).collect(),
            config,
            replicas: BTreeMap::new(),
        }
    }

    pub fn dir(&self, id: u64) -> PathBuf {
        self.root.path().join(format!("replica-{id}"))
    }

    /// Starts replica `id` with the cluster's configuration (the same on every start).
    pub fn start(&mut self, id: u64) {
        let h = self.try_start(id, self.config.clone()).unwrap();
        self.adopt(h);
    }

    /// Starts replica `id` with `config`, reporting why it could not start.
    pub fn try_start(
        &self,
        id: u64,
        config: ReplicaConfig,
    ) -> Result<ReplicaHandle, mcdnn_coordinator::raft::ReplicaError> {
        Replica::start(
            id,
            &self.peers,
            self.dir(id),
            self.net.transport(id),
            config,
        )
    }

    /// Makes an already started handle part of the cluster.
    pub fn adopt(&mut self, h: ReplicaHandle) {
        let id = h.id();
        self.net.register(h.clone());
        self.replicas.insert(id, h);
    }

    /// Stops replica `id` (its task ends and the sled database closes).
    pub async fn stop(&mut self, id: u64) {
        self.net.unregister(id);
        let h = self.replicas.remove(&id).unwrap();
        h.shutdown().await.unwrap();
    }

    /// Stops every running replica.
    pub async fn stop_all(&mut self) {
        let ids: Vec<u64> = self.replicas.keys().copied().collect();
        for id in ids {
            self.stop(id).await;
        }
    }

    pub fn get(&self, id: u64) -> &ReplicaHandle {
        &self.replicas[&id]
    }

    pub async fn statuses(&self) -> BTreeMap<u64, Status> {
        let mut out = BTreeMap::new();
        for (&id, h) in &self.replicas {
            if let Ok(s) = h.status().await {
                out.insert(id, s);
            }
        }
        out
    }

    /// Waits for a leader that every replica in `among` agrees on.
    pub async fn wait_leader(&self, among: &[u64]) -> u64 {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let st = self.statuses().await;
            let leaders: Vec<u64> = among
                .iter()
                .filter_map(|id| st.get(id))
                .filter(|s| s.role == Role::Leader)
                .map(|s| s.id)
                .collect();
            if let [l] = leaders[..]
                && among
                    .iter()
                    .all(|id| st.get(id).and_then(|s| s.leader_id) == Some(l))
            {
                return l;
            }
            assert!(
                Instant::now() < deadline,
                "no agreed leader among {among:?}: {st:#?}"
            );
            sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until replica `id`, back from an empty disk, is a voter again in the leader's view
    /// (no learners left) and has applied the leader's commit index, so it knows it too; its
    /// status then. (Its own view alone can be a stale snapshot's membership.)
    pub async fn wait_rejoined(&self, id: u64) -> Status {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let st = self.statuses().await;
            let leader = st.values().find(|s| s.role == Role::Leader);
            if let (Some(l), Some(me)) = (leader, st.get(&id))
                && l.voters.contains(&id)
                && l.learners.is_empty()
                && me.applied >= l.commit
                && me.voters == l.voters
            {
                return me.clone();
            }
            assert!(Instant::now() < deadline, "{id} never rejoined: {st:#?}");
            sleep(Duration::from_millis(20)).await;
        }
    }

    /// Asks whichever replica leads to hand leadership to `to` until `to` leads: raft-rs drops a
    /// transfer when the transferee is not caught up within an election timeout (a replica
    /// just promoted may still be receiving the last entries), so one request can go unheard.
    pub async fn transfer_until_leads(&self, to: u64) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let st = self.statuses().await;
            if st.get(&to).map(|s| s.role) == Some(Role::Leader) {
                return;
            }
            if let Some(leader) = st.values().find(|s| s.role == Role::Leader).map(|s| s.id) {
                let _ = self.get(leader).transfer_leader(to).await;
            }
            assert!(Instant::now() < deadline, "{to} never took over: {st:#?}");
            sleep(Duration::from_millis(300)).await;
        }
    }

    /// Waits until every replica in `among` follows `expected` (e.g. after a transfer).
    pub async fn wait_leader_is(&self, among: &[u64], expected: u64) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let st = self.statuses().await;
            if among
                .iter()
                .all(|id| st.get(id).and_then(|s| s.leader_id) == Some(expected))
                && st.get(&expected).map(|s| s.role) == Some(Role::Leader)
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{expected} never led {among:?}: {st:#?}"
            );
            sleep(Duration::from_millis(20)).await;
        }
    }

    /// Proposes on whichever replica leads, retrying until acknowledged; returns the index.
    pub async fn propose(&self, cmd: Command) -> u64 {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let ids: Vec<u64> = self.replicas.keys().copied().collect();
            for id in ids {
                match self.get(id).propose(cmd.clone()).await {
                    Ok(index) => return index,
                    Err(ProposeError::NotLeader { .. })
                    | Err(ProposeError::Dropped(_))
                    | Err(ProposeError::Timeout(_)) => {}
                    Err(e) => panic!("proposal failed: {e}"),
                }
            }
            assert!(Instant::now() < deadline, "no replica accepted {cmd:?}");
            sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn wait_applied(&self, ids: &[u64], index: u64) {
        for id in ids {
            tokio::time::timeout(PATIENCE, self.get(*id).wait_applied(index))
                .await
                .unwrap_or_else(|_| panic!("replica {id} did not apply {index}"))
                .unwrap();
        }
    }
}

pub fn write(writer: &str, write_id: u64) -> Command {
    Command::SetPolicy {
        key: "fleet.cost_budget_usd".into(),
        value: PolicyValue::Number(write_id as f64),
        writer: writer.into(),
        write_id,
    }
}

pub fn acked_ids(state: &FleetState) -> Vec<(String, u64)> {
    state
        .policy_log()
        .iter()
        .map(|w| (w.writer.clone(), w.write_id))
        .collect()
}

/// Every acknowledged write is present, in acknowledgement order, on each of `ids`, and the
/// replicas' states are identical.
pub fn assert_consistent(c: &Cluster, ids: &[u64], acked: &[(String, u64)]) {
    let first = c.get(ids[0]).state();
    for id in ids {
        let s = c.get(*id).state();
        let log = acked_ids(&s);
        let present: Vec<_> = log.iter().filter(|w| acked.contains(w)).cloned().collect();
        assert_eq!(
            present, acked,
            "replica {id} lost or reordered acknowledged writes"
        );
        assert_eq!(
            log,
            acked_ids(&first),
            "replica {id} diverged from {}",
            ids[0]
        );
        assert_eq!(s.policies(), first.policies());
    }
}

pub async fn write_many(
    c: &Cluster,
    writer: &str,
    ids: std::ops::Range<u64>,
) -> (Vec<(String, u64)>, u64) {
    let mut acked = Vec::new();
    let mut last = 0;
    for i in ids {
        last = c.propose(write(writer, i)).await;
        acked.push((writer.to_string(), i));
    }
    (acked, last)
}
