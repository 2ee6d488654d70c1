//! The node's side: the real link core (`mcdnn_node::agent::link::core::LinkCore`) driven over a
//! simulated connection, as the node's QUIC shell (`agent::link::run`) drives it: dial after the
//! core's pause (handshake within 1 s), hello and its first answer within 5 s, then telemetry
//! every second and spooled results every 100 ms, frames in, the core's actions carried out on
//! the real spool and store. The core's random backoff draws from the seed.

use std::collections::VecDeque;
use std::time::Duration;

use mcdnn_node::agent::link::core::{Action, Event, LinkCore};
use mcdnn_node::spool::Spool;
use mcdnn_node::store::NodeStore;
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::time::Instant;
use wire::codec;
use wire::msg::{CoordMsg, Hello, NodeMsg, PROTOCOL_VERSION, Role};

use super::conn::{ConnEnd, Inbound, Switchboard};
use super::session::{CATALOG_DIGEST, DEVICE_CLASS, addr_replica, encode, node_name};

/// As the real shell.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(1);
const WELCOME_WITHIN: Duration = Duration::from_secs(5);
const RESULTS_INTERVAL: Duration = Duration::from_millis(100);
const TELEMETRY_INTERVAL: Duration = Duration::from_secs(1);

/// Where the link stands.
enum Phase {
    /// Nothing to wait for (stopped).
    Idle,
    /// Dial `addr` at `at`.
    Dialing { at: Instant, addr: String },
    /// Waiting for the handshake, until.
    Handshake(Instant),
    /// Hello sent; waiting for the first answer, until.
    Hello(Instant),
    /// Welcomed: the next telemetry and results ticks.
    Up {
        telemetry: Instant,
        results: Instant,
    },
}

/// What the link did that the node's evidence records.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    /// The spool took an acknowledgement of `incarnation` up to `up_to`.
    Acked { incarnation: u64, up_to: u64 },
    /// An acknowledgement the core let through but the spool refused: it covers results never
    /// numbered.
    AckBeyondSpool { up_to: u64 },
    /// The core refused an acknowledgement for results this session did not send.
    Refused { up_to: u64 },
    /// An assignment was installed (persisted, then followed).
    Installed(u64),
    /// An assignment not newer than the held one was acknowledged and ignored.
    Stale(u64),
}

/// One node process's link.
pub struct NodeLink {
    node: usize,
    board: Switchboard,
    core: LinkCore,
    conn: Option<ConnEnd>,
    phase: Phase,
    spool: Spool,
    store: NodeStore,
}

impl NodeLink {
    /// A node process starting on `store`, with the assignment it persisted (if any).
    pub fn start(
        node: usize,
        board: Switchboard,
        coordinators: Vec<String>,
        spool: Spool,
        store: NodeStore,
        rng_seed: u64,
    ) -> Result<(Self, Vec<Outcome>), String> {
        let held = store
            .load_assignment()
            .map_err(|e| format!("node {node} assignment: {e}"))?
            .map(|a| a.epoch);
        let core = LinkCore::new(coordinators, held, StdRng::seed_from_u64(rng_seed));
        let mut link = NodeLink {
            node,
            board,
            core,
            conn: None,
            phase: Phase::Idle,
            spool,
            store,
        };
        let out = link.feed(Event::Start)?;
        Ok((link, out))
    }

    /// Waits for what happens next: an event for the core, or `None` when it is time to dial
    /// (cancel-safe: nothing changes until it returns).
    pub async fn next(&mut self) -> Option<Event> {
        Some(match self.phase {
            Phase::Idle => std::future::pending().await,
            Phase::Dialing { at, .. } => {
                tokio::time::sleep_until(at).await;
                return None;
            }
            Phase::Handshake(until) | Phase::Hello(until) => {
                let Some(conn) = self.conn.as_mut() else {
                    return Some(Event::Failed("no connection".into()));
                };
                match tokio::time::timeout_at(until, conn.recv()).await {
                    Err(_) => Event::Failed("no answer in time".into()),
                    Ok(inbound) => self.inbound(inbound),
                }
            }
            Phase::Up { telemetry, results } => {
                let Some(conn) = self.conn.as_mut() else {
                    return Some(Event::Failed("no connection".into()));
                };
                tokio::select! {
                    // Not random: the same seed must take the same branch.
                    biased;
                    inbound = conn.recv() => self.inbound(inbound),
                    () = tokio::time::sleep_until(telemetry) => Event::TelemetryDue,
                    () = tokio::time::sleep_until(results) => match self.spool.acked_up_to() {
                        Ok(acked_up_to) => Event::ResultsDue { acked_up_to },
                        Err(e) => Event::Failed(format!("reading the spool: {e}")),
                    },
                }
            }
        })
    }

    fn inbound(&self, inbound: Inbound) -> Event {
        match inbound {
            Inbound::Accepted => match self.spool.acked_up_to() {
                Ok(acked_up_to) => Event::Connected { acked_up_to },
                Err(e) => Event::Failed(format!("reading the spool: {e}")),
            },
            Inbound::Frame(bytes) => match codec::decode::<CoordMsg>(&bytes) {
                Ok(msg) => Event::Frame(msg),
                Err(e) => Event::Failed(format!("bad frame from the coordinator: {e}")),
            },
            Inbound::Closed(reason) => Event::Failed(format!("connection closed: {reason}")),
        }
    }

    /// Takes what [`NodeLink::next`] returned.
    pub fn happen(&mut self, next: Option<Event>) -> Result<Vec<Outcome>, String> {
        let now = Instant::now();
        let Some(event) = next else {
            return match std::mem::replace(&mut self.phase, Phase::Idle) {
                Phase::Dialing { addr, .. } => self.dial(&addr),
                other => {
                    self.phase = other;
                    Ok(Vec::new())
                }
            };
        };
        match &mut self.phase {
            Phase::Up { telemetry, .. } if matches!(event, Event::TelemetryDue) => {
                *telemetry = now + TELEMETRY_INTERVAL;
            }
            Phase::Up { results, .. } if matches!(event, Event::ResultsDue { .. }) => {
                *results = now + RESULTS_INTERVAL;
            }
            _ => {}
        }
        self.feed(event)
    }

    /// The node process stops in order (goodbye, then an orderly close).
    pub fn stop(mut self) -> Result<Vec<Outcome>, String> {
        self.feed(Event::Stop)
    }

    fn dial(&mut self, addr: &str) -> Result<Vec<Outcome>, String> {
        let Some(replica) = addr_replica(addr) else {
            return self.feed(Event::Failed(format!("{addr:?} resolves to nothing")));
        };
        self.conn = Some(self.board.connect(self.node, replica));
        self.phase = Phase::Handshake(Instant::now() + HANDSHAKE_TIMEOUT);
        Ok(Vec::new())
    }

    /// Feeds `event` to the core and carries out its actions (feeding back what they lead to).
    fn feed(&mut self, event: Event) -> Result<Vec<Outcome>, String> {
        let mut out = Vec::new();
        let mut actions: VecDeque<Action> = self.core.handle(event).into();
        while let Some(action) = actions.pop_front() {
            if let Some(next) = self.execute(action, &mut out)? {
                actions.extend(self.core.handle(next));
            }
        }
        Ok(out)
    }

    fn send(&self, what: &str, msg: &NodeMsg) {
        if let Some(c) = &self.conn {
            c.send(what, encode(msg));
        }
    }

    fn execute(&mut self, action: Action, out: &mut Vec<Outcome>) -> Result<Option<Event>, String> {
        let now = Instant::now();
        let node = self.node;
        let spool_err = |e: mcdnn_node::store::StoreError| format!("node {node} spool: {e}");
        match action {
            Action::Connect { addr, after } => {
                if let Some(c) = self.conn.take() {
                    c.close("reconnecting");
                }
                self.phase = Phase::Dialing {
                    at: now + after,
                    addr,
                };
            }
            Action::SendHello => {
                let hello = Hello {
                    node_id: node_name(node),
                    device_class: DEVICE_CLASS.into(),
                    role: Role::Device,
                    protocol_version: PROTOCOL_VERSION,
                    catalog_digests: vec![CATALOG_DIGEST.into()],
                    offload_addr: None,
                    battery: wire::msg::Battery::unreported(),
                    apps: vec!["app".into()],
                    watchlist_version: 0,
                };
                self.send("hello", &NodeMsg::Hello(hello));
                self.phase = Phase::Hello(now + WELCOME_WITHIN);
            }
            Action::Welcomed { .. } => {
                // Intervals tick at once when they start, as tokio's do.
                self.phase = Phase::Up {
                    telemetry: now,
                    results: now,
                };
            }
            Action::SendTelemetry { seq } => {
                self.send("telemetry", &NodeMsg::Telemetry(telemetry(seq)));
            }
            Action::ReadResults { after, max } => {
                let batch = self.spool.batch_after(after, max).map_err(spool_err)?;
                return Ok(Some(Event::ResultsRead(batch)));
            }
            Action::SendResults(batch) => {
                let what = format!(
                    "results {}..{}",
                    batch.first_seq,
                    batch.results.last().map_or(0, |r| r.seq)
                );
                self.send(&what, &NodeMsg::Results(batch));
            }
            Action::AckSpool { incarnation, up_to } => {
                if self.spool.ack(up_to).map_err(spool_err)? {
                    out.push(Outcome::Acked { incarnation, up_to });
                } else {
                    self.spool.refuse_ack();
                    out.push(Outcome::AckBeyondSpool { up_to });
                }
            }
            Action::RefuseAck { up_to, .. } => {
                self.spool.refuse_ack();
                out.push(Outcome::Refused { up_to });
            }
            Action::InstallAssignment(a) => {
                self.store
                    .save_assignment(&a)
                    .map_err(|e| format!("node {node} assignment: {e}"))?;
                out.push(Outcome::Installed(a.epoch));
            }
            Action::AckAssignment { epoch } => {
                if !out.contains(&Outcome::Installed(epoch)) {
                    out.push(Outcome::Stale(epoch));
                }
                self.send(&format!("ack plan {epoch}"), &NodeMsg::Ack { epoch });
            }
            Action::Goodbye => {
                self.send("bye", &NodeMsg::Bye);
                if let Some(c) = self.conn.take() {
                    c.close("bye");
                }
            }
            Action::Stopped => self.phase = Phase::Idle,
            // Renewal and revocations are not simulated (no `RenewalDue` is ever fed).
            // The simulated connection is kept alive by its own model of pings
            // (`exchange::conn`), and the link's silence ticks are not simulated.
            Action::Ping | Action::IgnoreLiveness { .. } => {}
            Action::StartRenewal
            | Action::FinishRenewal { .. }
            | Action::RenewalRefused { .. }
            | Action::ReplaceRevocations(_) => {}
        }
        Ok(None)
    }
}

/// A minimal report: the leader keeps it as soft state; nothing here reads it.
fn telemetry(seq: u64) -> wire::msg::Telemetry {
    wire::msg::Telemetry {
        seq,
        at_unix_ms: 0,
        battery: wire::msg::Battery::unreported(),
        memory_free_bytes: 0,
        model_memory_budget_bytes: 0,
        loaded_variants: Vec::new(),
        apps: Vec::new(),
        link: wire::msg::Link {
            rtt_ms: 0.0,
            bandwidth_bps: 0.0,
            connected: true,
        },
        offload_queue: 0,
        served_offload: 0,
        load_profiles: Vec::new(),
        spool: wire::msg::SpoolCounters::default(),
    }
}
