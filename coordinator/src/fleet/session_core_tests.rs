//! The session core with no sockets and no real time: every instant is built by hand.

use wire::msg::{InferenceResult, Role};

use super::super::fixtures::{hello, telemetry};
use super::*;

const DIGEST: &str = "fleet-digest";

fn result(seq: u64) -> InferenceResult {
    InferenceResult {
        seq,
        app: "faces".into(),
        at_unix_ms: seq,
        label: 1,
        truth: Some(1),
        score: 0.9,
        variant: "v".into(),
        place: PlaceTag::Device,
        energy_j: 0.1,
        cost_usd: 0.0,
        latency_ms: 3.0,
    }
}

fn batch(incarnation: u64, seqs: std::ops::RangeInclusive<u64>) -> NodeMsg {
    NodeMsg::Results(ResultBatch {
        incarnation,
        first_seq: *seqs.start(),
        results: seqs.map(result).collect(),
    })
}

fn frame(msg: NodeMsg) -> Event {
    Event::Frame(msg, Rate::Within)
}

fn proposals(actions: &[Action]) -> Vec<&Proposal> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Propose(p) => Some(p),
            _ => None,
        })
        .collect()
}

fn acks(actions: &[Action]) -> Vec<(u64, u64)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send(CoordMsg::ResultsAck {
                incarnation,
                up_to_seq,
            }) => Some((*incarnation, *up_to_seq)),
            _ => None,
        })
        .collect()
}

fn closes(actions: &[Action]) -> Vec<&str> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Close(r) => Some(r.as_str()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_good_hello_is_accepted_and_bad_ones_refused_with_a_reason() {
    let good = || Hello {
        catalog_digests: vec!["old".into(), DIGEST.into()],
        ..hello("cam-1", "phone", Role::Device)
    };
    assert_eq!(
        check_hello("cam-1", NodeMsg::Hello(good()), DIGEST).map(|h| h.node_id),
        Ok("cam-1".to_string())
    );
    let code =
        |peer: &str, msg: NodeMsg| check_hello(peer, msg, DIGEST).map(|_| ()).unwrap_err().code;
    assert_eq!(code("cam-1", NodeMsg::Bye), ErrorCode::BadSequence);
    assert_eq!(
        code("cam-2", NodeMsg::Hello(good())),
        ErrorCode::IdentityMismatch
    );
    let old = Hello {
        protocol_version: PROTOCOL_VERSION + 1,
        ..good()
    };
    assert_eq!(
        code("cam-1", NodeMsg::Hello(old)),
        ErrorCode::VersionMismatch
    );
    let foreign = Hello {
        catalog_digests: vec!["other".into()],
        ..good()
    };
    let refusal = check_hello("cam-1", NodeMsg::Hello(foreign), DIGEST).unwrap_err();
    assert_eq!(refusal.code, ErrorCode::CatalogMismatch);
    assert!(refusal.message.contains(DIGEST), "{}", refusal.message);
}

#[test]
fn results_are_acknowledged_only_after_commit_and_never_above_the_batch() {
    let now = Instant::now();
    let mut s = NodeSession::new("cam-1");
    let sent = s.handle(frame(batch(7, 1..=3)), now);
    assert!(acks(&sent).is_empty(), "no ack before the commit");
    let p = proposals(&sent);
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].incarnation, 7);
    assert_eq!(
        p[0].records.iter().map(|r| r.seq).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    // The ledger holds more than this batch (a rolled-back store resending old results):
    // the ack stays at what this batch carried.
    let done = s.handle(
        Event::ResultsCommitted {
            incarnation: 7,
            recorded_up_to: 10,
        },
        now,
    );
    assert_eq!(acks(&done), [(7, 3)]);
    assert_eq!(s.pending_batches(), 0);
}

#[test]
fn a_second_batch_waits_for_the_first_to_commit() {
    let now = Instant::now();
    let mut s = NodeSession::new("cam-1");
    assert_eq!(proposals(&s.handle(frame(batch(7, 1..=2)), now)).len(), 1);
    let second = s.handle(frame(batch(7, 3..=4)), now);
    assert!(
        proposals(&second).is_empty(),
        "one batch in flight at a time"
    );
    assert_eq!(s.pending_batches(), 2);
    let first_done = s.handle(
        Event::ResultsCommitted {
            incarnation: 7,
            recorded_up_to: 2,
        },
        now,
    );
    assert_eq!(acks(&first_done), [(7, 2)]);
    let next = proposals(&first_done);
    assert_eq!(next.len(), 1, "the waiting batch goes next");
    assert_eq!(next[0].records[0].seq, 3);
    let second_done = s.handle(
        Event::ResultsCommitted {
            incarnation: 7,
            recorded_up_to: 4,
        },
        now,
    );
    assert_eq!(acks(&second_done), [(7, 4)]);
}

#[test]
fn a_stale_commit_acknowledges_nothing() {
    let now = Instant::now();
    let mut s = NodeSession::new("cam-1");
    let stale = s.handle(
        Event::ResultsCommitted {
            incarnation: 7,
            recorded_up_to: 9,
        },
        now,
    );
    assert!(acks(&stale).is_empty());
    s.handle(frame(batch(8, 1..=1)), now);
    let other = s.handle(
        Event::ResultsCommitted {
            incarnation: 7,
            recorded_up_to: 9,
        },
        now,
    );
    assert!(acks(&other).is_empty(), "another incarnation's commit");
}

#[test]
fn a_failed_commit_closes_the_session_without_an_ack() {
    let now = Instant::now();
    let mut s = NodeSession::new("cam-1");
    s.handle(frame(batch(7, 1..=2)), now);
    s.handle(frame(batch(7, 3..=4)), now);
    let failed = s.handle(
        Event::ResultsFailed {
            reason: "no quorum".into(),
        },
        now,
    );
    assert!(acks(&failed).is_empty());
    assert!(
        proposals(&failed).is_empty(),
        "the waiting batch is not proposed over a hole"
    );
    assert_eq!(closes(&failed).len(), 1);
    assert!(closes(&failed)[0].contains("no quorum"));
    assert!(
        s.handle(frame(batch(7, 5..=5)), now).is_empty(),
        "closed sessions do nothing"
    );
}

#[test]
fn invalid_or_oversized_input_closes_with_a_reason() {
    let now = Instant::now();
    let bad = [
        NodeMsg::Results(ResultBatch {
            incarnation: 1,
            first_seq: 1,
            results: vec![],
        }),
        NodeMsg::Results(ResultBatch {
            incarnation: 1,
            first_seq: 2,
            results: vec![result(3)],
        }),
        NodeMsg::Results(ResultBatch {
            incarnation: 1,
            first_seq: 2,
            results: vec![result(2), result(2)],
        }),
        batch(1, 1..=(MAX_BATCH_RESULTS as u64 + 1)),
        NodeMsg::Hello(hello("cam-1", "phone", Role::Device)),
    ];
    for msg in bad {
        let mut s = NodeSession::new("cam-1");
        let actions = s.handle(frame(msg), now);
        assert_eq!(closes(&actions).len(), 1, "{actions:?}");
        assert!(proposals(&actions).is_empty());
    }
    let mut s = NodeSession::new("cam-1");
    let actions = s.handle(Event::BadFrame("frame of 9 GiB".into()), now);
    assert!(closes(&actions)[0].contains("9 GiB"));
    assert!(actions.contains(&Action::Count(Counter::FramesRejected)));
}

#[test]
fn too_many_unacknowledged_batches_close_the_session() {
    let now = Instant::now();
    let mut s = NodeSession::new("cam-1");
    for i in 0..MAX_PENDING_BATCHES as u64 {
        let actions = s.handle(frame(batch(1, (2 * i + 1)..=(2 * i + 2))), now);
        assert!(closes(&actions).is_empty());
    }
    let over = s.handle(frame(batch(1, 1000..=1001)), now);
    assert_eq!(closes(&over).len(), 1);
}

#[test]
fn over_its_rate_telemetry_is_dropped_and_a_result_batch_ends_the_session() {
    let now = Instant::now();
    let mut s = NodeSession::new("cam-1");
    let dropped = s.handle(
        Event::Frame(NodeMsg::Telemetry(telemetry(1)), Rate::Over),
        now,
    );
    assert_eq!(dropped, [Action::Count(Counter::RateLimited)]);
    let kept = s.handle(frame(NodeMsg::Telemetry(telemetry(2))), now);
    assert!(matches!(
        kept[..],
        [Action::Count(Counter::Telemetry), Action::Telemetry(_)]
    ));
    let over = s.handle(Event::Frame(batch(1, 1..=1), Rate::Over), now);
    assert!(
        proposals(&over).is_empty(),
        "no result over the rate is proposed"
    );
    assert_eq!(closes(&over).len(), 1);
}

#[test]
fn renewals_are_spaced_by_the_gate() {
    let t0 = Instant::now();
    let mut s = NodeSession::new("cam-1");
    let renew = |csr: &str| {
        frame(NodeMsg::Renew {
            csr_pem: csr.into(),
        })
    };
    assert_eq!(s.handle(renew("a"), t0), [Action::Renew("a".into())]);
    let soon = s.handle(renew("b"), t0 + Duration::from_secs(1));
    assert!(matches!(
        soon[..],
        [Action::Send(CoordMsg::RenewRefused { .. })]
    ));
    let later = s.handle(renew("c"), t0 + MIN_RENEW_GAP + Duration::from_secs(1));
    assert_eq!(later, [Action::Renew("c".into())]);
}

#[test]
fn bye_ends_and_plan_acks_pass_through() {
    let now = Instant::now();
    let mut s = NodeSession::new("cam-1");
    assert_eq!(
        s.handle(frame(NodeMsg::Ack { epoch: 4 }), now),
        [Action::PlanAcked(4)]
    );
    assert_eq!(s.handle(frame(NodeMsg::Bye), now), [Action::End]);
}
