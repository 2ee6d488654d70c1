//! A simulated QUIC connection between a node and a replica, over the [`SimNet`]'s weather and
//! partitions. What the real cores rely on QUIC for holds here too: frames arrive in order and
//! once (a lost packet only costs a retransmission's delay, a duplicate is dropped), and a path
//! cut for longer than the idle timeout ([`net::tls::IDLE_TIMEOUT`], kept alive by pings) closes
//! the connection at both ends. A close is a frame behind the data (an orderly close delivers
//! what was sent first); an end that vanishes without closing (a crash, a killed replica) is
//! noticed by the other end only after the idle timeout.
//!
//! Frames travel encoded with the real `wire::codec`, so what the cores exchange is exactly what
//! would cross a socket. A replica listens by registering in the [`Switchboard`]; a handshake
//! reaches only a running, reachable listener.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::net::{Addr, SimNet};
use crate::trace::Trace;

/// How long a lost packet waits before QUIC sends it again (and a cut path is retried).
const RETRANSMIT: Duration = Duration::from_millis(200);
/// How often a connection looks at its path (the keep-alive's role).
const WATCH: Duration = Duration::from_millis(100);

/// What one end receives.
#[derive(Debug)]
pub enum Inbound {
    /// The handshake completed (to the node).
    Accepted,
    /// One encoded frame.
    Frame(Vec<u8>),
    /// The connection is closed, and why.
    Closed(String),
}

enum Wire {
    Accepted,
    Frame(Vec<u8>),
    Close(String),
}

struct State {
    closed: bool,
    /// When an end went away without closing.
    gone: [Option<Instant>; 2],
    /// Who gets what arrives, per end (0: node, 1: replica).
    inbox: [Option<mpsc::UnboundedSender<Inbound>>; 2],
}

struct Shared {
    id: u64,
    node: usize,
    replica: u64,
    net: SimNet,
    trace: Trace,
    state: Mutex<State>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn addr(&self, end: usize) -> Addr {
        if end == 0 {
            Addr::Node(self.node)
        } else {
            Addr::Replica(self.replica)
        }
    }

    fn path_open(&self) -> bool {
        self.net
            .partition()
            .is_none_or(|p| p.side(self.addr(0)) == p.side(self.addr(1)))
    }

    /// Closes the connection; `notify` ends hear why.
    fn close(&self, reason: &str, notify: &[usize]) {
        let mut st = self.lock();
        if st.closed {
            return;
        }
        st.closed = true;
        for &end in notify {
            if let Some(tx) = st.inbox[end].take() {
                let _ = tx.send(Inbound::Closed(reason.to_owned()));
            }
        }
        st.inbox = [None, None];
        drop(st);
        self.trace
            .fold(&format!("conn {} closed: {reason}", self.id));
    }
}

/// One end of a connection. Dropping it without [`ConnEnd::close`] is a crash: the other end
/// notices after the idle timeout.
pub struct ConnEnd {
    shared: Arc<Shared>,
    end: usize,
    out: mpsc::UnboundedSender<(Instant, Wire)>,
    rx: mpsc::UnboundedReceiver<Inbound>,
}

/// Sends on a connection from elsewhere (a plan push to a session).
#[derive(Clone)]
pub struct ConnTx {
    shared: Arc<Shared>,
    end: usize,
    out: mpsc::UnboundedSender<(Instant, Wire)>,
}

impl ConnTx {
    /// Queues an encoded frame; it arrives after the path's delay, in order, or never if the
    /// connection closes first.
    pub fn send(&self, what: &str, frame: Vec<u8>) {
        self.push(what, Wire::Frame(frame));
    }

    fn push(&self, what: &str, wire: Wire) {
        let s = &self.shared;
        s.trace.fold(&format!(
            "conn {} {:?}>{:?} {what}",
            s.id,
            s.addr(self.end),
            s.addr(1 - self.end)
        ));
        let due = Instant::now() + s.net.stream_delay(RETRANSMIT);
        let _ = self.out.send((due, wire));
    }

    /// An orderly close, behind what was sent.
    pub fn close(&self, reason: &str) {
        self.push(&format!("close: {reason}"), Wire::Close(reason.to_owned()));
    }

    pub fn id(&self) -> u64 {
        self.shared.id
    }
}

impl ConnEnd {
    pub fn tx(&self) -> ConnTx {
        ConnTx {
            shared: self.shared.clone(),
            end: self.end,
            out: self.out.clone(),
        }
    }

    pub fn send(&self, what: &str, frame: Vec<u8>) {
        self.tx().send(what, frame);
    }

    /// An orderly close (the other end hears it after what was sent).
    pub fn close(self, reason: &str) {
        self.tx().close(reason);
        self.shared.lock().inbox[self.end] = None;
    }

    /// What arrives next; `Closed` once the connection is gone.
    pub async fn recv(&mut self) -> Inbound {
        self.rx
            .recv()
            .await
            .unwrap_or_else(|| Inbound::Closed("connection gone".into()))
    }

    pub fn id(&self) -> u64 {
        self.shared.id
    }

    /// The node this connection is from.
    pub fn node(&self) -> usize {
        self.shared.node
    }
}

impl Drop for ConnEnd {
    fn drop(&mut self) {
        let mut st = self.shared.lock();
        if st.inbox[self.end].take().is_some() {
            st.gone[self.end] = Some(Instant::now());
        }
    }
}

/// Where replicas listen for connections; numbers connections (deterministically).
#[derive(Clone)]
pub struct Switchboard {
    inner: Arc<Mutex<Board>>,
    net: SimNet,
    trace: Trace,
}

#[derive(Default)]
struct Board {
    next_id: u64,
    listeners: BTreeMap<u64, mpsc::UnboundedSender<ConnEnd>>,
}

impl Switchboard {
    pub fn new(net: SimNet, trace: Trace) -> Self {
        Switchboard {
            inner: Arc::default(),
            net,
            trace,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Board> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Replica `id` accepts connections from now on, until the receiver is dropped (its server
    /// stopped with it).
    pub fn listen(&self, id: u64) -> mpsc::UnboundedReceiver<ConnEnd> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.lock().listeners.insert(id, tx);
        rx
    }

    /// Node `node` dials replica `replica`: its end hears [`Inbound::Accepted`] once the
    /// handshake reached a listening replica over an open path, and nothing otherwise (the
    /// caller's handshake timeout decides).
    pub fn connect(&self, node: usize, replica: u64) -> ConnEnd {
        let id = {
            let mut b = self.lock();
            b.next_id += 1;
            b.next_id
        };
        let (node_tx, node_rx) = mpsc::unbounded_channel();
        let (replica_tx, replica_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            id,
            node,
            replica,
            net: self.net.clone(),
            trace: self.trace.clone(),
            state: Mutex::new(State {
                closed: false,
                gone: [None, None],
                inbox: [Some(node_tx), Some(replica_tx)],
            }),
        });
        let to_replica = pump(shared.clone(), 1);
        let to_node = pump(shared.clone(), 0);
        tokio::spawn(watch(shared.clone()));
        let replica_end = ConnEnd {
            shared: shared.clone(),
            end: 1,
            out: to_node,
            rx: replica_rx,
        };
        let node_end = ConnEnd {
            shared: shared.clone(),
            end: 0,
            out: to_replica,
            rx: node_rx,
        };
        self.trace
            .fold(&format!("conn {id} node {node} dials r{replica}"));
        // The handshake: one trip there; a listener that is gone or out of reach never answers.
        let board = self.clone();
        let delay = self.net.stream_delay(RETRANSMIT);
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let listener = board.lock().listeners.get(&replica).cloned();
            if let Some(l) = listener.filter(|_| shared.path_open()) {
                let tx = replica_end.tx();
                if l.send(replica_end).is_ok() {
                    tx.push("accepted", Wire::Accepted);
                }
            }
        });
        node_end
    }
}

/// Carries one direction's frames in order, each after its delay, waiting out cuts.
fn pump(shared: Arc<Shared>, to: usize) -> mpsc::UnboundedSender<(Instant, Wire)> {
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Wire)>();
    tokio::spawn(async move {
        while let Some((due, wire)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            while !shared.lock().closed && !shared.path_open() {
                tokio::time::sleep(RETRANSMIT).await;
            }
            let st = shared.lock();
            if st.closed {
                return;
            }
            let inbox = st.inbox[to].clone();
            drop(st);
            match wire {
                Wire::Close(reason) => {
                    shared.close(&reason, &[to]);
                    return;
                }
                Wire::Accepted => {
                    if let Some(tx) = inbox {
                        let _ = tx.send(Inbound::Accepted);
                    }
                }
                Wire::Frame(f) => {
                    if let Some(tx) = inbox {
                        let _ = tx.send(Inbound::Frame(f));
                    }
                }
            }
        }
    });
    tx
}

/// Closes the connection once its path was cut, or an end silent, for the idle timeout.
async fn watch(shared: Arc<Shared>) {
    let mut cut_since: Option<Instant> = None;
    loop {
        tokio::time::sleep(WATCH).await;
        let now = Instant::now();
        let (closed, gone) = {
            let st = shared.lock();
            (st.closed, st.gone)
        };
        if closed {
            return;
        }
        if shared.path_open() {
            cut_since = None;
        } else {
            cut_since.get_or_insert(now);
        }
        let silent = [cut_since, gone[0], gone[1]].into_iter().flatten().min();
        if silent.is_some_and(|t| now.duration_since(t) >= net::tls::IDLE_TIMEOUT) {
            shared.close("idle timeout", &[0, 1]);
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::{Partition, Weather};
    use crate::rng::SimRng;

    fn board() -> (SimNet, Switchboard) {
        let trace = Trace::new();
        let net = SimNet::new(SimRng::stream(3, "conn-test"), trace.clone());
        (net.clone(), Switchboard::new(net, trace))
    }

    fn listen(board: &Switchboard) -> mpsc::UnboundedReceiver<ConnEnd> {
        board.listen(1)
    }

    #[tokio::test(start_paused = true)]
    async fn frames_arrive_in_order_through_loss_and_a_close_comes_after_them() {
        let (net, board) = board();
        let mut accepted = listen(&board);
        net.set_weather(Weather {
            loss: 0.3,
            duplicate: 0.3,
            min_delay_ms: 1,
            max_delay_ms: 80,
        });
        let mut node = board.connect(0, 1);
        let Some(mut replica) = accepted.recv().await else {
            panic!("no connection accepted");
        };
        assert!(matches!(node.recv().await, Inbound::Accepted));
        for i in 0..50u8 {
            node.send("frame", vec![i]);
        }
        node.close("done");
        for i in 0..50u8 {
            match replica.recv().await {
                Inbound::Frame(f) => assert_eq!(f, vec![i]),
                other => panic!("frame {i}: {other:?}"),
            }
        }
        assert!(matches!(replica.recv().await, Inbound::Closed(r) if r == "done"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_cut_path_closes_both_ends_after_the_idle_timeout_and_nobody_answers_the_unheard() {
        let (net, board) = board();
        let mut accepted = listen(&board);
        let mut node = board.connect(0, 1);
        let Some(mut replica) = accepted.recv().await else {
            panic!("no connection accepted");
        };
        assert!(matches!(node.recv().await, Inbound::Accepted));
        let cut_at = Instant::now();
        net.set_partition(Some(Partition {
            id: 1,
            sides: [(Addr::Replica(1), 1)].into(),
            replicas_by_side: Default::default(),
            commit_bound: None,
        }));
        node.send("lost in the cut", vec![1]);
        assert!(matches!(replica.recv().await, Inbound::Closed(r) if r == "idle timeout"));
        assert!(matches!(node.recv().await, Inbound::Closed(_)));
        assert!(Instant::now().duration_since(cut_at) >= net::tls::IDLE_TIMEOUT);
        // While cut, a handshake reaches nobody.
        let mut again = board.connect(0, 1);
        let silence = tokio::time::timeout(Duration::from_secs(1), again.recv()).await;
        assert!(silence.is_err(), "a handshake crossed a partition");
    }

    #[tokio::test(start_paused = true)]
    async fn an_end_that_vanishes_is_noticed_after_the_idle_timeout() {
        let (_, board) = board();
        let mut accepted = listen(&board);
        let mut node = board.connect(0, 1);
        let Some(replica) = accepted.recv().await else {
            panic!("no connection accepted");
        };
        assert!(matches!(node.recv().await, Inbound::Accepted));
        let crashed_at = Instant::now();
        drop(replica);
        assert!(matches!(node.recv().await, Inbound::Closed(r) if r == "idle timeout"));
        assert!(Instant::now().duration_since(crashed_at) >= net::tls::IDLE_TIMEOUT);
    }
}
