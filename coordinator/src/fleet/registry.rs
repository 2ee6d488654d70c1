//! Soft state on the leader: every node that said hello, its latest telemetry and the channel to
//! its session. Never written to the Raft log; a new leader rebuilds it as nodes reconnect.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use wire::msg::{CoordMsg, Hello, Role, Telemetry};

use super::liveness::PingPacer;

fn liveness(interval: Duration) -> CoordMsg {
    CoordMsg::Liveness {
        ping_interval_ms: interval.as_millis() as u32,
    }
}

/// One node as the leader knows it.
#[derive(Debug)]
pub struct NodeEntry {
    pub hello: Hello,
    /// Identifies the session so a stale session's cleanup cannot clobber a newer one.
    pub session: u64,
    pub connected: bool,
    pub last_seen: Instant,
    pub telemetry: Option<Telemetry>,
    /// When the latest telemetry was accepted, or when the session began if none has been
    /// since: how fresh what the planner reads from this node is.
    pub telemetry_at: Instant,
    pub sent_epoch: u64,
    /// When the plan of `sent_epoch` was committed (for the plan-push latency).
    pub sent_at: Option<Instant>,
    pub acked_epoch: u64,
    pub tx: Option<mpsc::Sender<CoordMsg>>,
}

impl NodeEntry {
    pub fn is_server(&self) -> bool {
        matches!(self.hello.role, Role::Server { .. })
    }
}

/// The registry, shared by the tasks that read and change it (node sessions, the solve loop,
/// the leadership handoff, the revocation sync, the status view).
#[derive(Debug, Clone, Default)]
pub struct Nodes(Arc<Mutex<Registry>>);

impl Nodes {
    pub fn lock(&self) -> MutexGuard<'_, Registry> {
        // Plain data: a panic elsewhere while holding the lock leaves it usable.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[derive(Debug, Default)]
pub struct Registry {
    nodes: BTreeMap<String, NodeEntry>,
    next_session: u64,
    /// Entries with `connected` set, kept with every change (pacing must not count the map).
    connected: usize,
    pings: PingPacer,
}

impl Registry {
    /// Registers a node's new session; an older session of the same node is replaced (its
    /// channel dropped, so its writer ends). The session is told its ping interval, and every
    /// session the new one if the fleet's size moved it.
    pub fn connect(&mut self, hello: Hello, tx: mpsc::Sender<CoordMsg>, now: Instant) -> u64 {
        self.next_session += 1;
        let session = self.next_session;
        let id = hello.node_id.clone();
        let previous = self.nodes.remove(&id);
        if !previous.as_ref().is_some_and(|p| p.connected) {
            self.connected += 1;
        }
        self.nodes.insert(
            id.clone(),
            NodeEntry {
                hello,
                session,
                connected: true,
                last_seen: now,
                telemetry: previous.and_then(|p| p.telemetry),
                telemetry_at: now,
                sent_epoch: 0,
                sent_at: None,
                acked_epoch: 0,
                tx: Some(tx.clone()),
            },
        );
        if !self.repace() {
            let _ = tx.try_send(liveness(self.pings.current()));
        }
        session
    }

    /// Tells every connected session a new ping interval if the fleet's size changed it;
    /// returns whether it did. A session whose queue is full keeps its interval (it pings more
    /// often than needed or somewhat less, both harmless) until the next change.
    fn repace(&mut self) -> bool {
        let Some(interval) = self.pings.retell(self.connected) else {
            return false;
        };
        let msg = liveness(interval);
        for tx in self.nodes.values().filter_map(|e| e.tx.as_ref()) {
            let _ = tx.try_send(msg.clone());
        }
        true
    }

    /// Records telemetry unless it is older than what is held (reordered or replayed).
    pub fn telemetry(&mut self, id: &str, session: u64, t: Telemetry, now: Instant) -> bool {
        let Some(e) = self.nodes.get_mut(id).filter(|e| e.session == session) else {
            return false;
        };
        e.last_seen = now;
        if e.telemetry
            .as_ref()
            .is_some_and(|old| old.seq >= t.seq && old.at_unix_ms >= t.at_unix_ms)
        {
            return false;
        }
        e.telemetry = Some(t);
        e.telemetry_at = e.last_seen;
        true
    }

    /// Records an acknowledged epoch; returns how long after its commit the node acknowledged
    /// the latest plan sent to it (once per sent plan).
    pub fn ack(&mut self, id: &str, session: u64, epoch: u64, now: Instant) -> Option<Duration> {
        let e = self.nodes.get_mut(id).filter(|e| e.session == session)?;
        e.acked_epoch = e.acked_epoch.max(epoch);
        e.last_seen = now;
        if epoch >= e.sent_epoch {
            return e.sent_at.take().map(|at| e.last_seen - at);
        }
        None
    }

    pub fn disconnect(&mut self, id: &str, session: u64) {
        if let Some(e) = self.nodes.get_mut(id).filter(|e| e.session == session) {
            if e.connected {
                self.connected -= 1;
            }
            e.connected = false;
            e.tx = None;
            self.repace();
        }
    }

    /// Forgets nodes not heard from for `timeout` before `now`; returns their ids.
    pub fn expire(&mut self, timeout: Duration, now: Instant) -> Vec<String> {
        let gone: Vec<String> = self
            .nodes
            .iter()
            .filter(|(_, e)| now.saturating_duration_since(e.last_seen) > timeout)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &gone {
            if self.nodes.remove(id).is_some_and(|e| e.connected) {
                self.connected -= 1;
            }
        }
        if !gone.is_empty() {
            self.repace();
        }
        gone
    }

    pub fn get(&self, id: &str) -> Option<&NodeEntry> {
        self.nodes.get(id)
    }

    pub fn get_mut(&mut self, id: &str) -> Option<&mut NodeEntry> {
        self.nodes.get_mut(id)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &NodeEntry)> {
        self.nodes.iter()
    }

    pub fn connected(&self) -> usize {
        self.connected
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{self, telemetry};
    use super::*;

    fn hello(id: &str) -> Hello {
        fixtures::hello(id, "laptop", Role::Device)
    }

    #[test]
    fn newer_session_wins_and_stale_telemetry_is_dropped() {
        let mut r = Registry::default();
        let (tx, _rx) = mpsc::channel(1);
        let s1 = r.connect(hello("a"), tx.clone(), Instant::now());
        assert!(r.telemetry("a", s1, telemetry(5), Instant::now()));
        assert!(
            !r.telemetry("a", s1, telemetry(4), Instant::now()),
            "older telemetry must not replace newer"
        );
        let s2 = r.connect(hello("a"), tx, Instant::now());
        r.disconnect("a", s1); // the old session's cleanup
        assert!(
            r.get("a").is_some_and(|e| e.connected),
            "stale cleanup must not disconnect the new session"
        );
        assert!(
            !r.telemetry("a", s1, telemetry(9), Instant::now()),
            "a replaced session cannot report"
        );
        r.ack("a", s2, 3, Instant::now());
        r.ack("a", s2, 2, Instant::now());
        assert_eq!(r.get("a").map(|e| e.acked_epoch), Some(3));
        assert!(
            !r.telemetry("zzz", s2, telemetry(1), Instant::now()),
            "unknown nodes are ignored"
        );
    }

    #[test]
    fn silent_nodes_expire() {
        let mut r = Registry::default();
        let (tx, _rx) = mpsc::channel(1);
        r.connect(hello("a"), tx, Instant::now());
        assert!(r.expire(Duration::from_secs(60), Instant::now()).is_empty());
        assert_eq!(
            r.expire(Duration::ZERO, Instant::now() + Duration::from_millis(1)),
            vec!["a".to_string()]
        );
        assert_eq!(r.connected(), 0);
    }

    #[test]
    fn sessions_are_told_their_ping_interval_and_a_growing_fleet_a_longer_one() {
        let mut r = Registry::default();
        let (tx, mut first) = mpsc::channel(64);
        r.connect(hello("n0000"), tx, Instant::now());
        let told = |rx: &mut mpsc::Receiver<CoordMsg>| {
            let mut ms = Vec::new();
            while let Ok(m) = rx.try_recv() {
                if let CoordMsg::Liveness { ping_interval_ms } = m {
                    ms.push(ping_interval_ms);
                }
            }
            ms
        };
        assert_eq!(told(&mut first), [200]);
        let mut last = None;
        for i in 1..=1001 {
            let (tx, rx) = mpsc::channel(64);
            r.connect(hello(&format!("n{i:04}")), tx, Instant::now());
            last = Some(rx);
        }
        assert_eq!(r.connected(), 1002);
        assert_eq!(
            told(&mut first),
            [300],
            "the first node hears of the step once"
        );
        assert_eq!(last.as_mut().map(told), Some(vec![300]));
        // A reconnecting node is not counted twice.
        let (tx, _rx) = mpsc::channel(64);
        r.connect(hello("n0000"), tx, Instant::now());
        assert_eq!(r.connected(), 1002);
        for i in 1..=1001 {
            let s = r.get(&format!("n{i:04}")).map_or(0, |e| e.session);
            r.disconnect(&format!("n{i:04}"), s);
        }
        assert_eq!(r.connected(), 1);
    }
}
