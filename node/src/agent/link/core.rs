//! The link's decisions, without I/O or real time: which coordinator to try and when, what to
//! send, which results acknowledgements to take, which assignments to install. The QUIC shell
//! (`link::run`) turns what happens into [`Event`]s and carries out the [`Action`]s.
//!
//! The rules it keeps: results are resent from the last ack on every new session; an ack is
//! taken only if it covers nothing beyond what this session sent of that incarnation (anything
//! else is refused and counted); an assignment is installed only if its epoch is newer than the
//! one held (epochs never go back), and every assignment is acknowledged; a redirect goes to the
//! leader at once; a replica without a leader is left for the next one after 100-300 ms (an
//! election is short); any other failure backs off exponentially with jitter.
//!
//! A dead leader is found by its silence: the link pings the leader (an empty QUIC datagram,
//! [`Action::Ping`]) every ping interval, [`LIVENESS_PING_INTERVAL`] until the leader sets
//! another with [`CoordMsg::Liveness`] (longer in large fleets), and the leader's QUIC stack
//! acknowledges each ping, so a live leader's datagrams arrive at least that often (frames count
//! too); a session that received nothing for three intervals ([`silence_limit`]) is dropped for
//! the next replica in the list at once (no back-off), long before the QUIC idle timeout would
//! end it. Until a session is welcomed again, a follower's redirect back to the
//! silent replica (it still believes in the dead leader until its election) is taken as "no
//! leader yet", at most [`SUSPECT_REDIRECTS`] times, so an alive leader is found again.

use std::time::{Duration, Instant};

use rand::Rng;
use rand::rngs::StdRng;
use wire::msg::{Assignment, CoordMsg, ErrorCode, LIVENESS_PING_INTERVAL, ResultBatch};

use crate::spool::SpooledBatch;

/// Results per [`ResultBatch`] (a few hundred bytes each: far under the frame limit).
pub const BATCH: usize = 256;
/// Results sent but not yet acknowledged before the link waits for acks.
pub const IN_FLIGHT: u64 = 4096;
/// Runs of (incarnation, last seq) remembered per session; more than a spool holds in practice.
const SENT_RUNS: usize = 64;
/// Silence after which a session's coordinator counts as gone: three missed pings' answers
/// (600 ms at the shortest interval, 3 s at the longest).
pub fn silence_limit(ping_interval: Duration) -> Duration {
    3 * ping_interval
}
/// How often the shell should report [`Event::Tick`]: silence is measured in these steps.
pub const TICK_INTERVAL: Duration = Duration::from_millis(100);
/// Redirects to a replica that went silent that are taken as "no leader yet" before the link
/// believes them again (about one to two seconds of polling: an election's length).
pub const SUSPECT_REDIRECTS: u32 = 6;

const _: () = assert!(
    LIVENESS_PING_INTERVAL
        .as_millis()
        .is_multiple_of(TICK_INTERVAL.as_millis())
);

/// What happened.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The link starts.
    Start,
    /// The QUIC/TLS handshake with the coordinator of the last [`Action::Connect`] succeeded;
    /// the spool holds acknowledgements up to `acked_up_to`.
    Connected { acked_up_to: u64 },
    /// A frame from the coordinator.
    Frame(CoordMsg),
    /// The session (or the attempt to open one) failed: connection, stream, or a closed stream.
    Failed(String),
    /// The telemetry interval passed.
    TelemetryDue,
    /// The results interval passed; the spool holds acknowledgements up to `acked_up_to`.
    ResultsDue { acked_up_to: u64 },
    /// What [`Action::ReadResults`] found in the spool.
    ResultsRead(SpooledBatch),
    /// The certificate is due for renewal.
    RenewalDue,
    /// The node is stopping.
    Stop,
    /// Time passed (every [`TICK_INTERVAL`] while a session is up): the leader is pinged when
    /// its interval passed, and a session whose coordinator was silent for [`silence_limit`] is
    /// left for the next replica.
    /// `datagrams`: how many the connection has received so far (any change since the last
    /// tick is a sign of life: the answers to the node's pings, or anything else).
    Tick { now: Instant, datagrams: u64 },
}

/// What to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// End any session, wait `after`, then open a QUIC connection to `addr`.
    Connect {
        addr: String,
        after: Duration,
    },
    /// Send the hello and read the coordinator's answer.
    SendHello,
    /// Ping the coordinator (an empty QUIC datagram; its QUIC stack acknowledges it).
    Ping,
    /// Log a [`CoordMsg::Liveness`] that was not taken, and why.
    IgnoreLiveness {
        reason: String,
    },
    /// The coordinator accepted the node: the session is up.
    Welcomed {
        leader: String,
        epoch: u64,
    },
    SendTelemetry {
        seq: u64,
    },
    /// Read up to `max` spooled results after `after`, and report them as
    /// [`Event::ResultsRead`].
    ReadResults {
        after: u64,
        max: usize,
    },
    SendResults(ResultBatch),
    /// Delete spooled results up to `up_to` (if the spool numbered that far; else refuse).
    AckSpool {
        incarnation: u64,
        up_to: u64,
    },
    /// Count and log an ack for results this session did not send.
    RefuseAck {
        incarnation: u64,
        up_to: u64,
    },
    /// Persist, then install, an assignment newer than the one held.
    InstallAssignment(Assignment),
    AckAssignment {
        epoch: u64,
    },
    StartRenewal,
    FinishRenewal {
        chain_pem: String,
    },
    RenewalRefused {
        reason: String,
    },
    ReplaceRevocations(Vec<String>),
    /// Say goodbye and close the session (the link stops after).
    Goodbye,
    /// The link is done.
    Stopped,
}

/// One session's state.
#[derive(Debug)]
struct Session {
    welcomed: bool,
    /// Results up to here were sent in this session (or acknowledged before it).
    sent_up_to: u64,
    /// (incarnation, last seq) of what this session sent, per run of one incarnation: an ack
    /// is only taken for something in here.
    sent: Vec<(u64, u64)>,
    /// When the coordinator was last heard from, as of the ticks (`None` before the first).
    last_heard: Option<Instant>,
    /// A frame arrived since the last tick.
    heard: bool,
    /// The connection's received-datagram count at the last tick.
    datagrams: u64,
    /// How often to ping the coordinator, as it last said.
    ping_interval: Duration,
    /// When the last ping was asked for (`None` before the first).
    last_ping: Option<Instant>,
}

/// A replica that went silent, and how many more redirects to it are to be doubted.
#[derive(Debug)]
struct Suspect {
    addr: String,
    doubts_left: u32,
}

#[derive(Debug)]
pub struct LinkCore {
    coordinators: Vec<String>,
    /// Index (mod the list) of the replica tried next when there is no redirect.
    target: usize,
    /// Failures since the last redirect, for the backoff.
    attempt: u32,
    /// Telemetry sequence number, across sessions.
    seq: u64,
    /// Epoch of the assignment held.
    held_epoch: Option<u64>,
    session: Option<Session>,
    /// The address of the last [`Action::Connect`].
    addr: String,
    suspect: Option<Suspect>,
    stopped: bool,
    rng: StdRng,
}

impl LinkCore {
    /// `held_epoch`: the assignment the node already follows (persisted from an earlier run).
    pub fn new(coordinators: Vec<String>, held_epoch: Option<u64>, rng: StdRng) -> Self {
        Self {
            coordinators,
            target: 0,
            attempt: 0,
            seq: 0,
            held_epoch,
            session: None,
            addr: String::new(),
            suspect: None,
            stopped: false,
            rng,
        }
    }

    pub fn handle(&mut self, event: Event) -> Vec<Action> {
        if self.stopped {
            return Vec::new();
        }
        match event {
            Event::Start => vec![self.connect_next(Duration::ZERO)],
            Event::Connected { acked_up_to } => {
                self.session = Some(Session {
                    welcomed: false,
                    sent_up_to: acked_up_to,
                    sent: Vec::new(),
                    last_heard: None,
                    heard: true,
                    datagrams: 0,
                    ping_interval: LIVENESS_PING_INTERVAL,
                    last_ping: None,
                });
                vec![Action::SendHello]
            }
            Event::Frame(msg) => {
                if let Some(s) = &mut self.session {
                    s.heard = true;
                }
                self.frame(msg)
            }
            Event::Tick { now, datagrams } => self.tick(now, datagrams),
            Event::Failed(_) => self.failed(),
            Event::TelemetryDue => match self.up() {
                Some(_) => {
                    self.seq += 1;
                    vec![Action::SendTelemetry { seq: self.seq }]
                }
                None => Vec::new(),
            },
            Event::ResultsDue { acked_up_to } => match self.up() {
                Some(s) if s.sent_up_to.saturating_sub(acked_up_to) < IN_FLIGHT => {
                    vec![Action::ReadResults {
                        after: s.sent_up_to,
                        max: BATCH,
                    }]
                }
                _ => Vec::new(),
            },
            Event::ResultsRead(batch) => self.results_read(batch),
            Event::RenewalDue => match self.up() {
                Some(_) => vec![Action::StartRenewal],
                None => Vec::new(),
            },
            Event::Stop => {
                self.stopped = true;
                let mut out = Vec::new();
                if self.session.take().is_some_and(|s| s.welcomed) {
                    out.push(Action::Goodbye);
                }
                out.push(Action::Stopped);
                out
            }
        }
    }

    /// The session, if it is up (welcomed).
    fn up(&mut self) -> Option<&mut Session> {
        self.session.as_mut().filter(|s| s.welcomed)
    }

    fn connect_next(&mut self, after: Duration) -> Action {
        let n = self.coordinators.len().max(1);
        // Never straight back to the replica that went silent while another one is listed.
        for _ in 0..n {
            let silent = self.suspect.as_ref().map(|s| s.addr.as_str());
            if self.coordinators.get(self.target % n).map(String::as_str) != silent {
                break;
            }
            self.target += 1;
        }
        let addr = self
            .coordinators
            .get(self.target % n)
            .cloned()
            .unwrap_or_default();
        self.connect(addr, after)
    }

    fn connect(&mut self, addr: String, after: Duration) -> Action {
        self.session = None;
        self.addr = addr.clone();
        Action::Connect { addr, after }
    }

    /// Measures the welcomed session's silence; past [`silence_limit`] its coordinator is
    /// taken for dead and the next replica is tried at once. Otherwise pings it when the
    /// interval passed.
    fn tick(&mut self, now: Instant, datagrams: u64) -> Vec<Action> {
        let Some(session) = self.up() else {
            return Vec::new();
        };
        let received = datagrams != session.datagrams;
        session.datagrams = datagrams;
        if session.heard || received || session.last_heard.is_none() {
            session.heard = false;
            session.last_heard = Some(now);
        }
        let silent_for = session
            .last_heard
            .map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
        if silent_for < silence_limit(session.ping_interval) {
            let due = session
                .last_ping
                .is_none_or(|t| now.saturating_duration_since(t) >= session.ping_interval);
            if !due {
                return Vec::new();
            }
            session.last_ping = Some(now);
            return vec![Action::Ping];
        }
        self.suspect = Some(Suspect {
            addr: self.addr.clone(),
            doubts_left: SUSPECT_REDIRECTS,
        });
        self.target += 1;
        self.attempt = 0;
        vec![self.connect_next(Duration::ZERO)]
    }

    /// A follower without a leader: poll the next replica briskly rather than back off
    /// exponentially, so failover is bounded by the election.
    fn poll_next(&mut self) -> Vec<Action> {
        self.target += 1;
        let pause = Duration::from_millis(self.rng.gen_range(100..300));
        vec![self.connect_next(pause)]
    }

    /// Any failure: the next replica, after a growing, jittered pause.
    fn failed(&mut self) -> Vec<Action> {
        self.target += 1;
        self.attempt = self.attempt.saturating_add(1);
        let delay = backoff(self.attempt, &mut self.rng);
        vec![self.connect_next(delay)]
    }

    fn frame(&mut self, msg: CoordMsg) -> Vec<Action> {
        let Some(session) = &mut self.session else {
            return Vec::new();
        };
        if !session.welcomed {
            return match msg {
                CoordMsg::Welcome { leader, epoch, .. } => {
                    session.welcomed = true;
                    self.suspect = None;
                    vec![Action::Welcomed { leader, epoch }]
                }
                CoordMsg::Redirect { leader_addr } => self.redirect(leader_addr),
                CoordMsg::Error {
                    code: ErrorCode::Unavailable,
                    ..
                } => self.poll_next(),
                _ => self.failed(),
            };
        }
        match msg {
            CoordMsg::ResultsAck {
                incarnation,
                up_to_seq,
            } => {
                let covered = session
                    .sent
                    .iter()
                    .any(|&(inc, last)| inc == incarnation && up_to_seq <= last);
                if covered {
                    vec![Action::AckSpool {
                        incarnation,
                        up_to: up_to_seq,
                    }]
                } else {
                    vec![Action::RefuseAck {
                        incarnation,
                        up_to: up_to_seq,
                    }]
                }
            }
            CoordMsg::Assignment(a) => {
                let epoch = a.epoch;
                let mut out = Vec::new();
                if self.held_epoch.is_none_or(|held| epoch > held) {
                    self.held_epoch = Some(epoch);
                    out.push(Action::InstallAssignment(a));
                }
                out.push(Action::AckAssignment { epoch });
                out
            }
            CoordMsg::Redirect { leader_addr } => self.redirect(leader_addr),
            CoordMsg::Renewed { chain_pem } => vec![Action::FinishRenewal { chain_pem }],
            CoordMsg::RenewRefused { reason } => vec![Action::RenewalRefused { reason }],
            CoordMsg::Revocations { names } => vec![Action::ReplaceRevocations(names)],
            CoordMsg::Liveness { ping_interval_ms } => {
                match wire::msg::check_liveness_interval(ping_interval_ms) {
                    Ok(interval) => {
                        session.ping_interval = interval;
                        Vec::new()
                    }
                    Err(reason) => vec![Action::IgnoreLiveness { reason }],
                }
            }
            CoordMsg::Error { .. } => self.failed(),
            _ => Vec::new(),
        }
    }

    /// Straight to the leader, unless it is the replica that just went silent (a follower
    /// names it until its election ends): then, for a while, as if there were no leader yet.
    fn redirect(&mut self, leader: String) -> Vec<Action> {
        if let Some(s) = self.suspect.as_mut().filter(|s| s.addr == leader)
            && s.doubts_left > 0
        {
            s.doubts_left -= 1;
            return self.poll_next();
        }
        self.attempt = 0;
        vec![self.connect(leader, Duration::ZERO)]
    }

    fn results_read(&mut self, batch: SpooledBatch) -> Vec<Action> {
        let Some(session) = self.up() else {
            return Vec::new();
        };
        let (Some(first), Some(last)) = (batch.results.first(), batch.results.last()) else {
            return Vec::new();
        };
        let (first_seq, last_seq) = (first.seq, last.seq);
        note_sent(&mut session.sent, batch.incarnation, last_seq);
        session.sent_up_to = last_seq;
        vec![Action::SendResults(ResultBatch {
            incarnation: batch.incarnation,
            first_seq,
            results: batch.results,
        })]
    }
}

/// Records that results of `incarnation` up to `last_seq` were sent.
fn note_sent(sent: &mut Vec<(u64, u64)>, incarnation: u64, last_seq: u64) {
    match sent.last_mut() {
        Some((inc, last)) if *inc == incarnation => *last = last_seq,
        _ => {
            if sent.len() >= SENT_RUNS {
                sent.remove(0);
            }
            sent.push((incarnation, last_seq));
        }
    }
}

/// 100 ms doubling to 5 s, times a jitter in [0.5, 1.5) so a fleet that lost its coordinator does
/// not reconnect in lockstep.
pub fn backoff(attempt: u32, rng: &mut impl Rng) -> Duration {
    let base = 0.1 * 2f64.powi(attempt.min(6) as i32 - 1);
    Duration::from_secs_f64(base.min(5.0) * rng.gen_range(0.5..1.5))
}

#[cfg(test)]
mod tests;
