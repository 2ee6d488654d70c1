//! The node side of the exchange, without I/O: events in, actions out. It sends one result batch
//! at a time to the replica it believes leads, applies an acknowledgement only if it answers the
//! batch in flight (same incarnation, not above what was sent), resends after a silence (to the
//! next replica), follows redirects, and adopts only plan epochs newer than the one it holds
//! (pushes can arrive reordered or twice).

use std::time::Duration;

use tokio::time::Instant;
use wire::msg::ResultBatch;

use super::{ToClient, ToCoord};

/// What happened to the link.
#[derive(Debug)]
pub enum Event {
    /// Time passed; `next` is the spool's oldest unacknowledged batch when
    /// [`NodeLink::wants_batch`] said so (else `None`).
    Tick { next: Option<ResultBatch> },
    /// A message from a replica.
    Received(ToClient),
}

/// What the node must do.
#[derive(Debug, PartialEq)]
pub enum Action {
    Send {
        to: u64,
        msg: ToCoord,
    },
    /// Delete spooled results of `incarnation` up to `up_to` (they are committed).
    AckSpool {
        incarnation: u64,
        up_to: u64,
    },
    /// Follow plan `epoch` from now on.
    AdoptPlan {
        epoch: u64,
    },
}

#[derive(Debug, Clone, Copy)]
struct Inflight {
    incarnation: u64,
    last_seq: u64,
    sent_at: Instant,
}

/// Node-side link state.
#[derive(Debug)]
pub struct NodeLink {
    node: usize,
    replicas: Vec<u64>,
    target: usize,
    inflight: Option<Inflight>,
    plan_epoch: u64,
    retry_after: Duration,
    /// Plan pushes ignored because not newer than the held plan.
    pub stale_plans: u64,
    /// Acknowledgements that did not answer the batch in flight.
    pub ignored_acks: u64,
}

impl NodeLink {
    pub fn new(node: usize, replicas: Vec<u64>, retry_after: Duration) -> Self {
        let target = node % replicas.len().max(1);
        NodeLink {
            node,
            replicas,
            target,
            inflight: None,
            plan_epoch: 0,
            retry_after,
            stale_plans: 0,
            ignored_acks: 0,
        }
    }

    /// Whether the next tick should carry the spool's oldest batch: nothing in flight, or the
    /// batch in flight went unanswered for too long.
    pub fn wants_batch(&self, now: Instant) -> bool {
        self.inflight
            .is_none_or(|f| now.duration_since(f.sent_at) >= self.retry_after)
    }

    pub fn plan_epoch(&self) -> u64 {
        self.plan_epoch
    }

    fn target_id(&self) -> u64 {
        self.replicas[self.target % self.replicas.len()]
    }

    fn rotate(&mut self) {
        self.target = (self.target + 1) % self.replicas.len().max(1);
    }

    pub fn handle(&mut self, event: Event, now: Instant) -> Vec<Action> {
        match event {
            Event::Tick { next } => self.tick(next, now),
            Event::Received(msg) => self.received(msg),
        }
    }

    fn tick(&mut self, next: Option<ResultBatch>, now: Instant) -> Vec<Action> {
        if !self.wants_batch(now) {
            return Vec::new();
        }
        if self.inflight.take().is_some() {
            // Unanswered: the target may be down or cut off; try the next replica.
            self.rotate();
        }
        let Some(batch) = next.filter(|b| !b.results.is_empty()) else {
            return Vec::new();
        };
        let last_seq = batch.results.last().map_or(0, |r| r.seq);
        self.inflight = Some(Inflight {
            incarnation: batch.incarnation,
            last_seq,
            sent_at: now,
        });
        vec![Action::Send {
            to: self.target_id(),
            msg: ToCoord::Results {
                node: self.node,
                batch,
            },
        }]
    }

    fn received(&mut self, msg: ToClient) -> Vec<Action> {
        match msg {
            ToClient::ResultsAck {
                incarnation,
                up_to_seq,
            } => match self.inflight {
                Some(f) if f.incarnation == incarnation && up_to_seq <= f.last_seq => {
                    self.inflight = None;
                    vec![Action::AckSpool {
                        incarnation,
                        up_to: up_to_seq,
                    }]
                }
                _ => {
                    self.ignored_acks += 1;
                    Vec::new()
                }
            },
            ToClient::Redirect { leader } => {
                match leader.and_then(|l| self.replicas.iter().position(|&r| r == l)) {
                    Some(i) => self.target = i,
                    None => self.rotate(),
                }
                // Resend at the next tick, to the new target.
                self.inflight = None;
                Vec::new()
            }
            ToClient::Plan { epoch } if epoch > self.plan_epoch => {
                self.plan_epoch = epoch;
                vec![Action::AdoptPlan { epoch }]
            }
            ToClient::Plan { .. } => {
                self.stale_plans += 1;
                Vec::new()
            }
            ToClient::WriteOk { .. } | ToClient::WriteRejected { .. } => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use wire::msg::{InferenceResult, PlaceTag};

    fn batch(incarnation: u64, seqs: std::ops::RangeInclusive<u64>) -> ResultBatch {
        ResultBatch {
            incarnation,
            first_seq: *seqs.start(),
            results: seqs
                .map(|seq| InferenceResult {
                    seq,
                    app: "a".into(),
                    at_unix_ms: 0,
                    label: 0,
                    truth: None,
                    score: 1.0,
                    variant: "v".into(),
                    place: PlaceTag::Device,
                    energy_j: 0.0,
                    cost_usd: 0.0,
                    latency_ms: 0.0,
                })
                .collect(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn acks_apply_only_to_the_batch_in_flight_and_silence_moves_on() {
        let mut l = NodeLink::new(0, vec![1, 2, 3], Duration::from_secs(1));
        let t0 = Instant::now();
        let sent = l.handle(
            Event::Tick {
                next: Some(batch(7, 1..=4)),
            },
            t0,
        );
        assert!(matches!(sent[..], [Action::Send { to: 1, .. }]));
        assert!(!l.wants_batch(t0));
        // Another incarnation's or too high an ack is ignored.
        let ack = |incarnation, up_to_seq| {
            Event::Received(ToClient::ResultsAck {
                incarnation,
                up_to_seq,
            })
        };
        assert!(l.handle(ack(8, 4), t0).is_empty());
        assert!(l.handle(ack(7, 5), t0).is_empty());
        assert_eq!(l.ignored_acks, 2);
        assert_eq!(
            l.handle(ack(7, 4), t0),
            vec![Action::AckSpool {
                incarnation: 7,
                up_to: 4
            }]
        );
        // Silence: resent to the next replica.
        l.handle(
            Event::Tick {
                next: Some(batch(7, 5..=6)),
            },
            t0,
        );
        let later = t0 + Duration::from_secs(1);
        assert!(l.wants_batch(later));
        let resent = l.handle(
            Event::Tick {
                next: Some(batch(7, 5..=6)),
            },
            later,
        );
        assert!(matches!(resent[..], [Action::Send { to: 2, .. }]));
    }

    #[tokio::test(start_paused = true)]
    async fn plans_never_go_back_and_redirects_are_followed() {
        let mut l = NodeLink::new(0, vec![1, 2, 3], Duration::from_secs(1));
        let now = Instant::now();
        let plan = |epoch| Event::Received(ToClient::Plan { epoch });
        assert_eq!(l.handle(plan(3), now), vec![Action::AdoptPlan { epoch: 3 }]);
        assert!(l.handle(plan(2), now).is_empty());
        assert!(l.handle(plan(3), now).is_empty());
        assert_eq!((l.plan_epoch(), l.stale_plans), (3, 2));
        l.handle(Event::Received(ToClient::Redirect { leader: Some(3) }), now);
        let sent = l.handle(
            Event::Tick {
                next: Some(batch(1, 1..=1)),
            },
            now,
        );
        assert!(matches!(sent[..], [Action::Send { to: 3, .. }]));
    }
}
