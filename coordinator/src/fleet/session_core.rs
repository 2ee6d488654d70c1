//! A node's session on the leader as a state machine without I/O: [`NodeSession::handle`] takes
//! one event (a decoded frame, a result batch committed or failed) and the time, and returns
//! what to do ([`Action`]s). The QUIC shell (`sessions`) reads frames, feeds them here and does
//! the actions; the result sink proposes batches through Raft and feeds the outcome back.
//!
//! Result batches: one is proposed at a time per session, the rest wait in order (at most
//! [`MAX_PENDING_BATCHES`]); a batch is acknowledged only after it committed, never above the
//! batch's last sequence number. A batch that did not commit ends the session: the node resends
//! from its last acknowledgement on the next one, so no later batch's ack can cover a hole.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use wire::msg::{CoordMsg, ErrorCode, Hello, NodeMsg, PROTOCOL_VERSION, PlaceTag, ResultBatch};

use crate::state::ResultRecord;

/// Result batches a session holds (the one in flight and those waiting). The node keeps at most
/// 4096 results (16 batches of 256) unacknowledged; more is a misbehaving node.
pub const MAX_PENDING_BATCHES: usize = 64;
/// Results one batch may carry (the node sends 256).
pub const MAX_BATCH_RESULTS: usize = 4096;
/// Shortest gap between two renewals of one session: a node renews at 2/3 of a lifetime, so
/// more often than this is a misbehaving node, not a schedule.
pub const MIN_RENEW_GAP: Duration = Duration::from_secs(5);

/// Whether a rated message is within its identity's rate (`fleet::limits`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rate {
    Within,
    Over,
}

/// What happens to a session.
#[derive(Debug)]
pub enum Event {
    /// A frame from the node, and whether it was within its rate (unrated messages: `Within`).
    Frame(NodeMsg, Rate),
    /// A frame that could not be decoded (too large, malformed, wrong version).
    BadFrame(String),
    /// The batch in flight committed; the ledger holds this incarnation up to `recorded_up_to`.
    ResultsCommitted {
        incarnation: u64,
        recorded_up_to: u64,
    },
    /// The batch in flight did not commit.
    ResultsFailed { reason: String },
}

/// A batch to propose through Raft.
#[derive(Debug, Clone, PartialEq)]
pub struct Proposal {
    pub incarnation: u64,
    pub records: Vec<ResultRecord>,
}

/// What a counter of the session counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    Telemetry,
    RateLimited,
    FramesRejected,
    ProposalsCommitted,
    ProposalsFailed,
}

/// What the shell must do.
#[derive(Debug, PartialEq)]
pub enum Action {
    /// Queue this message to the node.
    Send(CoordMsg),
    /// Record this telemetry in the registry.
    Telemetry(wire::msg::Telemetry),
    /// The node applied plan `epoch`.
    PlanAcked(u64),
    /// Hand this batch to the result sink.
    Propose(Proposal),
    /// Sign a renewed certificate for the node (the gate here already allowed it).
    Renew(String),
    Count(Counter),
    /// End the session: the node said goodbye.
    End,
    /// End the session with this reason (bad input or a failed commit).
    Close(String),
}

/// The batch being proposed.
#[derive(Debug, Clone, Copy)]
struct InFlight {
    incarnation: u64,
    last_seq: u64,
}

/// One node's session, after its hello was accepted.
#[derive(Debug)]
pub struct NodeSession {
    node: String,
    in_flight: Option<InFlight>,
    waiting: VecDeque<ResultBatch>,
    last_renewal: Option<Instant>,
    closed: bool,
}

impl NodeSession {
    pub fn new(node: impl Into<String>) -> Self {
        NodeSession {
            node: node.into(),
            in_flight: None,
            waiting: VecDeque::new(),
            last_renewal: None,
            closed: false,
        }
    }

    /// Result batches held (in flight and waiting).
    pub fn pending_batches(&self) -> usize {
        usize::from(self.in_flight.is_some()) + self.waiting.len()
    }

    pub fn handle(&mut self, event: Event, now: Instant) -> Vec<Action> {
        if self.closed {
            return Vec::new();
        }
        let actions = match event {
            Event::Frame(msg, rate) => self.frame(msg, rate, now),
            Event::BadFrame(e) => vec![
                Action::Count(Counter::FramesRejected),
                Action::Close(format!("bad frame from {}: {e}", self.node)),
            ],
            Event::ResultsCommitted {
                incarnation,
                recorded_up_to,
            } => self.committed(incarnation, recorded_up_to),
            Event::ResultsFailed { reason } => {
                self.in_flight = None;
                self.waiting.clear();
                vec![
                    Action::Count(Counter::ProposalsFailed),
                    Action::Close(format!(
                        "results of {} not committed ({reason}); reconnect and resend from the last ack",
                        self.node
                    )),
                ]
            }
        };
        if actions
            .iter()
            .any(|a| matches!(a, Action::Close(_) | Action::End))
        {
            self.closed = true;
        }
        actions
    }

    fn frame(&mut self, msg: NodeMsg, rate: Rate, now: Instant) -> Vec<Action> {
        // Over its rate a node's telemetry is dropped (the next report supersedes it). A result
        // batch over the rate ends the session instead: dropping it would leave a hole the next
        // batch's ack covers, while on a new session the node resends from its last ack.
        if rate == Rate::Over {
            let mut actions = vec![Action::Count(Counter::RateLimited)];
            if matches!(msg, NodeMsg::Results(_)) {
                actions.push(Action::Close(format!(
                    "{} sent result batches over its rate; reconnect",
                    self.node
                )));
            }
            return actions;
        }
        match msg {
            NodeMsg::Telemetry(t) => vec![Action::Count(Counter::Telemetry), Action::Telemetry(t)],
            NodeMsg::Ack { epoch } => vec![Action::PlanAcked(epoch)],
            NodeMsg::Results(batch) => self.results(batch),
            NodeMsg::Renew { csr_pem } => self.renew(csr_pem, now),
            NodeMsg::Bye => vec![Action::End],
            NodeMsg::Hello(_) => vec![Action::Close(format!("{} sent a second hello", self.node))],
        }
    }

    fn results(&mut self, batch: ResultBatch) -> Vec<Action> {
        if let Err(why) = check_batch(&batch) {
            return vec![
                Action::Count(Counter::FramesRejected),
                Action::Close(format!("bad result batch from {}: {why}", self.node)),
            ];
        }
        if self.pending_batches() >= MAX_PENDING_BATCHES {
            return vec![Action::Close(format!(
                "{} has more than {MAX_PENDING_BATCHES} result batches unacknowledged; reconnect",
                self.node
            ))];
        }
        self.waiting.push_back(batch);
        self.next_proposal().into_iter().collect()
    }

    /// Starts the next waiting batch if none is in flight.
    fn next_proposal(&mut self) -> Option<Action> {
        if self.in_flight.is_some() {
            return None;
        }
        let batch = self.waiting.pop_front()?;
        let last_seq = batch.results.last().map_or(0, |r| r.seq);
        self.in_flight = Some(InFlight {
            incarnation: batch.incarnation,
            last_seq,
        });
        Some(Action::Propose(Proposal {
            incarnation: batch.incarnation,
            records: records(&batch),
        }))
    }

    fn committed(&mut self, incarnation: u64, recorded_up_to: u64) -> Vec<Action> {
        let Some(batch) = self.in_flight.filter(|b| b.incarnation == incarnation) else {
            // Nothing of this incarnation in flight: a stale answer; acknowledging it could
            // confirm what this session never sent.
            return Vec::new();
        };
        self.in_flight = None;
        let mut actions = vec![
            Action::Count(Counter::ProposalsCommitted),
            // Never past what this batch carried: a store rolled back below the mark resends
            // old results, and an ack above what it sent would be refused by the node.
            Action::Send(CoordMsg::ResultsAck {
                incarnation,
                up_to_seq: recorded_up_to.min(batch.last_seq),
            }),
        ];
        actions.extend(self.next_proposal());
        actions
    }

    fn renew(&mut self, csr_pem: String, now: Instant) -> Vec<Action> {
        if self
            .last_renewal
            .is_some_and(|t| now.saturating_duration_since(t) < MIN_RENEW_GAP)
        {
            let reason = format!("renewals are limited to one per {MIN_RENEW_GAP:?} per session");
            tracing::warn!(node = %self.node, %reason, "renewal refused");
            return vec![Action::Send(CoordMsg::RenewRefused { reason })];
        }
        self.last_renewal = Some(now);
        vec![Action::Renew(csr_pem)]
    }
}

/// A batch the ledger can take: non-empty, bounded, sequence numbers strictly increasing from
/// `first_seq`.
fn check_batch(batch: &ResultBatch) -> Result<(), String> {
    let Some(first) = batch.results.first() else {
        return Err("it is empty".into());
    };
    if batch.results.len() > MAX_BATCH_RESULTS {
        return Err(format!(
            "{} results, over the {MAX_BATCH_RESULTS} a batch may carry",
            batch.results.len()
        ));
    }
    if first.seq != batch.first_seq {
        return Err(format!(
            "first_seq {} but the first result is {}",
            batch.first_seq, first.seq
        ));
    }
    if batch.results.windows(2).any(|w| w[1].seq <= w[0].seq) {
        return Err("sequence numbers do not increase".into());
    }
    Ok(())
}

fn records(batch: &ResultBatch) -> Vec<ResultRecord> {
    batch
        .results
        .iter()
        .map(|r| ResultRecord {
            seq: r.seq,
            correct: r.truth.map(|t| t == r.label),
            offloaded: r.place == PlaceTag::Server,
            cost_usd: r.cost_usd,
        })
        .collect()
}

/// Why a node's first message is refused.
#[derive(Debug, PartialEq)]
pub struct HelloRefusal {
    pub code: ErrorCode,
    pub message: String,
}

/// Checks a node's first message: a hello, of this protocol version, for the certificate's own
/// name, holding the fleet's catalog.
pub fn check_hello(peer: &str, first: NodeMsg, fleet_digest: &str) -> Result<Hello, HelloRefusal> {
    let refuse = |code, message: String| Err(HelloRefusal { code, message });
    let NodeMsg::Hello(hello) = first else {
        return refuse(
            ErrorCode::BadSequence,
            "the first message must be hello".into(),
        );
    };
    if hello.protocol_version != PROTOCOL_VERSION {
        return refuse(
            ErrorCode::VersionMismatch,
            format!(
                "protocol version {} is not {PROTOCOL_VERSION}; upgrade the node",
                hello.protocol_version
            ),
        );
    }
    if hello.node_id != peer {
        return refuse(
            ErrorCode::IdentityMismatch,
            format!(
                "certificate is {peer} but hello claims {:?}: a node may only report for itself",
                hello.node_id
            ),
        );
    }
    if !hello.catalog_digests.iter().any(|d| d == fleet_digest) {
        return refuse(
            ErrorCode::CatalogMismatch,
            format!(
                "the node holds catalog {:?} but the fleet's is {fleet_digest}; install the fleet's catalog",
                hello.catalog_digests
            ),
        );
    }
    Ok(hello)
}

#[cfg(test)]
#[path = "session_core_tests.rs"]
mod tests;
