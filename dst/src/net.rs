//! The simulated network: every message between replicas (raft traffic, through the real
//! [`Transport`] trait) and between replicas and clients (nodes, operator writers) goes through
//! [`SimNet::send`], which draws from the seed whether it is lost, duplicated and how long each
//! copy takes (independent delays reorder messages), and drops what crosses a partition, both
//! when it is sent and when it would arrive.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use mcdnn_coordinator::raft::{ReplicaHandle, Transport};
use raft::prelude::Message;
use tokio::sync::mpsc;

use crate::messages::{ToClient, ToCoord};
use crate::rng::SimRng;
use crate::trace::Trace;

/// An endpoint of the simulated network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Addr {
    /// Coordinator replica (raft id).
    Replica(u64),
    /// Virtual node (index).
    Node(usize),
    /// Operator writer (index).
    Writer(usize),
}

/// How the links behave right now (every link alike).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Weather {
    pub loss: f64,
    pub duplicate: f64,
    pub min_delay_ms: u64,
    pub max_delay_ms: u64,
}

impl Weather {
    /// Short delays, nothing lost or duplicated (still reordered a little).
    pub const CALM: Weather = Weather {
        loss: 0.0,
        duplicate: 0.0,
        min_delay_ms: 1,
        max_delay_ms: 10,
    };
}

/// A split of every endpoint into sides; messages between sides are dropped.
#[derive(Debug, Clone)]
pub struct Partition {
    /// Increases with every partition made during a seed.
    pub id: u64,
    /// Side of each endpoint; an endpoint not listed is on side 0.
    pub sides: BTreeMap<Addr, u8>,
    /// Replicas on each side.
    pub replicas_by_side: BTreeMap<u8, Vec<u64>>,
    /// Highest last log index of any replica when the partition was made (filled just after):
    /// no minority replica may see a commit index above it while the partition lasts.
    pub commit_bound: Option<u64>,
}

impl Partition {
    pub fn side(&self, a: Addr) -> u8 {
        self.sides.get(&a).copied().unwrap_or(0)
    }

    /// Whether replica `id` is on a side without a majority of the `voters`.
    pub fn in_minority(&self, id: u64, voters: usize) -> bool {
        let side = self.side(Addr::Replica(id));
        self.replicas_by_side.get(&side).map_or(0, Vec::len) * 2 <= voters
    }
}

/// What travels.
#[derive(Debug, Clone)]
pub enum Payload {
    Raft(Message),
    ToCoord(ToCoord),
    ToClient(ToClient),
}

impl Payload {
    /// What the digest records of a message: everything that steers the run, nothing the real
    /// code draws at random (spool incarnations, proposal nonces in entry contexts).
    fn describe(&self) -> String {
        match self {
            Payload::Raft(m) => format!(
                "{:?} t{} i{} lt{} c{} n{} r{}",
                m.get_msg_type(),
                m.term,
                m.index,
                m.log_term,
                m.commit,
                m.entries.len(),
                m.reject
            ),
            Payload::ToCoord(w) => format!("{w:?}"),
            Payload::ToClient(m) => format!("{m:?}"),
        }
    }
}

/// Messages an endpoint receives (not raft: that goes to the replica's handle).
#[derive(Debug)]
pub struct Envelope {
    pub from: Addr,
    pub payload: Payload,
}

/// Counters for the report.
#[derive(Debug, Clone, Copy, Default)]
pub struct NetStats {
    pub sent: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub cut: u64,
}

struct State {
    weather: Weather,
    partition: Option<Partition>,
    replicas: BTreeMap<u64, ReplicaHandle>,
    inboxes: BTreeMap<Addr, mpsc::UnboundedSender<Envelope>>,
    stats: NetStats,
}

/// Cheap to clone; all clones are the same network.
#[derive(Clone)]
pub struct SimNet {
    state: Arc<Mutex<State>>,
    rng: SimRng,
    trace: Trace,
}

impl SimNet {
    pub fn new(rng: SimRng, trace: Trace) -> Self {
        SimNet {
            state: Arc::new(Mutex::new(State {
                weather: Weather::CALM,
                partition: None,
                replicas: BTreeMap::new(),
                inboxes: BTreeMap::new(),
                stats: NetStats::default(),
            })),
            rng,
            trace,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The raft transport of replica `id`.
    pub fn transport(&self, id: u64) -> Arc<dyn Transport> {
        Arc::new(SimTransport {
            from: id,
            net: self.clone(),
        })
    }

    /// A running replica: raft messages reach its handle.
    pub fn attach_replica(&self, handle: ReplicaHandle) {
        self.lock().replicas.insert(handle.id(), handle);
    }

    /// A stopped replica: messages to it are dropped.
    pub fn detach_replica(&self, id: u64) {
        self.lock().replicas.remove(&id);
    }

    /// The running replicas' handles, by id.
    pub fn replicas(&self) -> BTreeMap<u64, ReplicaHandle> {
        self.lock().replicas.clone()
    }

    /// An inbox for `addr`'s non-raft messages (replacing an earlier one).
    pub fn inbox(&self, addr: Addr) -> mpsc::UnboundedReceiver<Envelope> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.lock().inboxes.insert(addr, tx);
        rx
    }

    pub fn set_weather(&self, w: Weather) {
        self.lock().weather = w;
    }

    pub fn set_partition(&self, p: Option<Partition>) {
        self.lock().partition = p;
    }

    pub fn set_commit_bound(&self, bound: u64) {
        if let Some(p) = self.lock().partition.as_mut() {
            p.commit_bound = Some(bound);
        }
    }

    /// The partition that leaves replica `id` without a majority of `voters`, if any.
    pub fn minority_partition(&self, id: u64, voters: usize) -> Option<u64> {
        self.lock()
            .partition
            .as_ref()
            .filter(|p| p.in_minority(id, voters))
            .map(|p| p.id)
    }

    /// Checks an acknowledgement `what` given by replica `id` for a proposal submitted while it
    /// was in the minority of partition `at_submit`: if that partition still lasts, the
    /// minority committed, which must never happen.
    pub fn check_minority_ack(&self, id: u64, at_submit: Option<u64>, what: &str) {
        if let Some(pid) = at_submit
            && self.partition().is_some_and(|p| p.id == pid)
        {
            self.trace.violation(format!(
                "replica {id}, in the minority of partition {pid}, acknowledged {what} submitted there"
            ));
        }
    }

    /// How long a frame on a reliable stream takes under the current weather: a delay per
    /// attempt, and `retransmit` more for each attempt lost (duplicates are dropped by the
    /// stream, so they cost nothing).
    pub fn stream_delay(&self, retransmit: Duration) -> Duration {
        let w = self.lock().weather;
        let mut ms = 0;
        loop {
            ms += self.rng.between(w.min_delay_ms, w.max_delay_ms);
            if !self.rng.chance(w.loss) {
                return Duration::from_millis(ms);
            }
            self.lock().stats.lost += 1;
            ms += retransmit.as_millis() as u64;
        }
    }

    pub fn partition(&self) -> Option<Partition> {
        self.lock().partition.clone()
    }

    pub fn stats(&self) -> NetStats {
        self.lock().stats
    }

    fn cut(st: &State, from: Addr, to: Addr) -> bool {
        st.partition
            .as_ref()
            .is_some_and(|p| p.side(from) != p.side(to))
    }

    /// Sends `payload` from `from` to `to` through the weather: maybe lost, maybe twice, each
    /// copy after its own delay.
    pub fn send(&self, from: Addr, to: Addr, payload: Payload) {
        self.trace
            .fold(&format!("{from:?}>{to:?} {}", payload.describe()));
        let weather = {
            let mut st = self.lock();
            st.stats.sent += 1;
            if Self::cut(&st, from, to) {
                st.stats.cut += 1;
                return;
            }
            st.weather
        };
        if self.rng.chance(weather.loss) {
            self.lock().stats.lost += 1;
            return;
        }
        let copies = if self.rng.chance(weather.duplicate) {
            self.lock().stats.duplicated += 1;
            2
        } else {
            1
        };
        for _ in 0..copies {
            let delay = self.rng.between(weather.min_delay_ms, weather.max_delay_ms);
            let net = self.clone();
            let payload = payload.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(delay)).await;
                net.deliver(from, to, payload);
            });
        }
    }

    fn deliver(&self, from: Addr, to: Addr, payload: Payload) {
        let st = self.lock();
        if Self::cut(&st, from, to) {
            return;
        }
        match (payload, to) {
            (Payload::Raft(m), Addr::Replica(id)) => {
                if let Some(h) = st.replicas.get(&id) {
                    // A full queue or a stopped replica drops it, as a lossy network would.
                    let _ = h.step(m);
                }
            }
            (payload, to) => {
                // A replica that is down has no server: only running replicas' inboxes count.
                let down = matches!(to, Addr::Replica(id) if !st.replicas.contains_key(&id));
                if let (false, Some(tx)) = (down, st.inboxes.get(&to)) {
                    let _ = tx.send(Envelope { from, payload });
                }
            }
        }
    }
}

struct SimTransport {
    from: u64,
    net: SimNet,
}

impl Transport for SimTransport {
    fn send(&self, msgs: Vec<Message>) {
        for m in msgs {
            let to = Addr::Replica(m.to);
            self.net
                .send(Addr::Replica(self.from), to, Payload::Raft(m));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(write_id: u64) -> Payload {
        Payload::ToCoord(ToCoord::Write {
            writer: 0,
            write_id,
        })
    }

    async fn drain(rx: &mut mpsc::UnboundedReceiver<Envelope>) -> usize {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut n = 0;
        while rx.try_recv().is_ok() {
            n += 1;
        }
        n
    }

    #[tokio::test(start_paused = true)]
    async fn weather_and_partitions_decide_what_arrives() {
        let net = SimNet::new(SimRng::stream(1, "test"), Trace::new());
        let (a, b) = (Addr::Writer(0), Addr::Writer(1));
        let mut rx = net.inbox(b);
        net.send(a, b, write(1));
        assert_eq!(drain(&mut rx).await, 1, "calm weather delivers");

        net.set_weather(Weather {
            duplicate: 1.0,
            ..Weather::CALM
        });
        net.send(a, b, write(2));
        assert_eq!(drain(&mut rx).await, 2, "duplicated");

        net.set_weather(Weather {
            loss: 1.0,
            ..Weather::CALM
        });
        net.send(a, b, write(3));
        assert_eq!(drain(&mut rx).await, 0, "lost");

        net.set_weather(Weather::CALM);
        let sides = BTreeMap::from([(b, 1)]);
        net.set_partition(Some(Partition {
            id: 1,
            sides,
            replicas_by_side: BTreeMap::new(),
            commit_bound: None,
        }));
        net.send(a, b, write(4));
        assert_eq!(drain(&mut rx).await, 0, "cut by the partition");
        // In flight when the partition begins: dropped on arrival.
        net.set_partition(None);
        net.send(a, b, write(5));
        net.set_partition(Some(Partition {
            id: 2,
            sides: BTreeMap::from([(a, 1)]),
            replicas_by_side: BTreeMap::new(),
            commit_bound: None,
        }));
        assert_eq!(drain(&mut rx).await, 0, "dropped on arrival");
        let st = net.stats();
        assert_eq!((st.sent, st.lost, st.duplicated, st.cut), (5, 1, 1, 1));
    }

    #[test]
    fn a_lone_replica_is_a_minority_of_three() {
        let p = Partition {
            id: 1,
            sides: BTreeMap::from([(Addr::Replica(3), 1)]),
            replicas_by_side: BTreeMap::from([(0, vec![1, 2]), (1, vec![3])]),
            commit_bound: None,
        };
        assert!(p.in_minority(3, 3));
        assert!(!p.in_minority(1, 3));
    }
}
