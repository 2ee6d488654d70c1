//! The link's rules, driven event by event: no sockets, no real time, a seeded jitter.

use rand::SeedableRng;
use wire::msg::{InferenceResult, PlaceTag};

use super::*;

fn core() -> LinkCore {
    LinkCore::new(
        vec!["c0:7400".into(), "c1:7400".into(), "c2:7400".into()],
        None,
        StdRng::seed_from_u64(7),
    )
}

fn connect_addr(actions: &[Action]) -> (String, Duration) {
    match actions {
        [Action::Connect { addr, after }] => (addr.clone(), *after),
        other => panic!("expected one connect, got {other:?}"),
    }
}

/// A core with a welcomed session on c0 whose spool had acks up to `acked`.
fn up(acked: u64) -> LinkCore {
    let mut c = core();
    assert_eq!(connect_addr(&c.handle(Event::Start)).0, "c0:7400");
    assert_eq!(
        c.handle(Event::Connected { acked_up_to: acked }),
        vec![Action::SendHello]
    );
    assert_eq!(
        c.handle(Event::Frame(welcome())),
        vec![Action::Welcomed {
            leader: "coord-0".into(),
            epoch: 3
        }]
    );
    c
}

fn welcome() -> CoordMsg {
    CoordMsg::Welcome {
        node_id: "cam".into(),
        leader: "coord-0".into(),
        epoch: 3,
    }
}

fn result(seq: u64) -> InferenceResult {
    InferenceResult {
        seq,
        app: "garment".into(),
        at_unix_ms: 1,
        label: 1,
        truth: Some(1),
        score: 0.9,
        variant: "half".into(),
        place: PlaceTag::Device,
        energy_j: 0.01,
        cost_usd: 0.0,
        latency_ms: 2.0,
    }
}

fn batch(incarnation: u64, seqs: std::ops::RangeInclusive<u64>) -> SpooledBatch {
    SpooledBatch {
        incarnation,
        results: seqs.map(result).collect(),
    }
}

fn ack(incarnation: u64, up_to_seq: u64) -> Event {
    Event::Frame(CoordMsg::ResultsAck {
        incarnation,
        up_to_seq,
    })
}

/// Sends the spool's results after what was sent, as the shell would.
fn send(c: &mut LinkCore, acked: u64, found: SpooledBatch) -> Vec<Action> {
    match c
        .handle(Event::ResultsDue { acked_up_to: acked })
        .as_slice()
    {
        [Action::ReadResults { max, .. }] => assert_eq!(*max, BATCH),
        other => panic!("expected a read, got {other:?}"),
    }
    c.handle(Event::ResultsRead(found))
}

#[test]
fn sends_from_the_last_ack_and_takes_only_acks_it_covers() {
    let mut c = up(4);
    assert_eq!(
        c.handle(Event::ResultsDue { acked_up_to: 4 }),
        vec![Action::ReadResults {
            after: 4,
            max: BATCH
        }]
    );
    let sent = c.handle(Event::ResultsRead(batch(9, 5..=7)));
    assert!(
        matches!(sent.as_slice(), [Action::SendResults(b)] if b.incarnation == 9 && b.first_seq == 5 && b.results.len() == 3)
    );
    // The next read starts after what was sent.
    assert_eq!(
        c.handle(Event::ResultsDue { acked_up_to: 4 }),
        vec![Action::ReadResults {
            after: 7,
            max: BATCH
        }]
    );
    assert!(
        c.handle(Event::ResultsRead(SpooledBatch::default()))
            .is_empty()
    );
    // Forged, another incarnation's, and beyond the batch: refused.
    for (inc, up_to) in [(9, u64::MAX), (8, 6), (9, 8)] {
        assert_eq!(
            c.handle(ack(inc, up_to)),
            vec![Action::RefuseAck {
                incarnation: inc,
                up_to
            }]
        );
    }
    assert_eq!(
        c.handle(ack(9, 6)),
        vec![Action::AckSpool {
            incarnation: 9,
            up_to: 6
        }]
    );
}

#[test]
fn a_late_ack_for_an_earlier_incarnation_run_still_counts() {
    let mut c = up(0);
    send(&mut c, 0, batch(1, 1..=2));
    send(&mut c, 0, batch(2, 3..=9));
    assert_eq!(
        c.handle(ack(1, 2)),
        vec![Action::AckSpool {
            incarnation: 1,
            up_to: 2
        }]
    );
    assert_eq!(
        c.handle(ack(1, 3)),
        vec![Action::RefuseAck {
            incarnation: 1,
            up_to: 3
        }]
    );
}

#[test]
fn a_new_session_resends_and_forgets_what_the_old_one_sent() {
    let mut c = up(0);
    send(&mut c, 0, batch(1, 1..=5));
    let (addr, _) = connect_addr(&c.handle(Event::Failed("stream reset".into())));
    assert_eq!(addr, "c1:7400");
    c.handle(Event::Connected { acked_up_to: 2 });
    c.handle(Event::Frame(welcome()));
    // An ack the old session was owed is not this session's to take.
    assert_eq!(
        c.handle(ack(1, 5)),
        vec![Action::RefuseAck {
            incarnation: 1,
            up_to: 5
        }]
    );
    // Everything after the last ack goes again.
    assert_eq!(
        c.handle(Event::ResultsDue { acked_up_to: 2 }),
        vec![Action::ReadResults {
            after: 2,
            max: BATCH
        }]
    );
}

#[test]
fn waits_for_acks_when_too_much_is_in_flight() {
    let mut c = up(0);
    send(&mut c, 0, batch(1, 1..=IN_FLIGHT));
    assert!(c.handle(Event::ResultsDue { acked_up_to: 0 }).is_empty());
    assert_eq!(
        c.handle(Event::ResultsDue { acked_up_to: 1 }),
        vec![Action::ReadResults {
            after: IN_FLIGHT,
            max: BATCH
        }]
    );
}

fn assignment(epoch: u64) -> Assignment {
    Assignment {
        epoch,
        node_id: "cam".into(),
        issued_unix_ms: 0,
        apps: vec![],
        energy_price: 0.0,
        cost_price: 0.0,
        plan_gap: 0.0,
    }
}

#[test]
fn installs_only_newer_epochs_and_acks_every_assignment() {
    let mut c = LinkCore::new(vec!["c0".into()], Some(5), StdRng::seed_from_u64(1));
    c.handle(Event::Start);
    c.handle(Event::Connected { acked_up_to: 0 });
    c.handle(Event::Frame(welcome()));
    for epoch in [4, 5] {
        assert_eq!(
            c.handle(Event::Frame(CoordMsg::Assignment(assignment(epoch)))),
            vec![Action::AckAssignment { epoch }]
        );
    }
    assert_eq!(
        c.handle(Event::Frame(CoordMsg::Assignment(assignment(6)))),
        vec![
            Action::InstallAssignment(assignment(6)),
            Action::AckAssignment { epoch: 6 }
        ]
    );
    assert_eq!(
        c.handle(Event::Frame(CoordMsg::Assignment(assignment(6)))),
        vec![Action::AckAssignment { epoch: 6 }]
    );
}

#[test]
fn follows_redirects_at_once_and_polls_replicas_without_a_leader() {
    let mut c = core();
    c.handle(Event::Start);
    c.handle(Event::Connected { acked_up_to: 0 });
    let (addr, after) = connect_addr(&c.handle(Event::Frame(CoordMsg::Redirect {
        leader_addr: "leader:7400".into(),
    })));
    assert_eq!((addr.as_str(), after), ("leader:7400", Duration::ZERO));
    c.handle(Event::Connected { acked_up_to: 0 });
    let (addr, after) = connect_addr(&c.handle(Event::Frame(CoordMsg::Error {
        code: ErrorCode::Unavailable,
        message: "election".into(),
    })));
    assert_eq!(addr, "c1:7400");
    assert!(after >= Duration::from_millis(100) && after < Duration::from_millis(300));
    // A welcomed session redirected when its replica stops leading.
    c.handle(Event::Connected { acked_up_to: 0 });
    c.handle(Event::Frame(welcome()));
    let (addr, _) = connect_addr(&c.handle(Event::Frame(CoordMsg::Redirect {
        leader_addr: "new-leader:7400".into(),
    })));
    assert_eq!(addr, "new-leader:7400");
}

#[test]
fn failures_back_off_and_move_to_the_next_replica() {
    let mut c = core();
    c.handle(Event::Start);
    let mut delays = Vec::new();
    let mut addrs = Vec::new();
    for _ in 0..8 {
        let (addr, after) = connect_addr(&c.handle(Event::Failed("refused".into())));
        addrs.push(addr);
        delays.push(after);
    }
    assert_eq!(&addrs[..4], ["c1:7400", "c2:7400", "c0:7400", "c1:7400"]);
    assert!(delays[0] >= Duration::from_millis(50) && delays[0] < Duration::from_millis(150));
    assert!(delays[7] >= Duration::from_millis(1600), "{delays:?}");
    assert!(delays.iter().all(|d| *d < Duration::from_millis(7_500)));
    // A refusal in answer to hello is a failure too.
    c.handle(Event::Connected { acked_up_to: 0 });
    let refused = c.handle(Event::Frame(CoordMsg::Error {
        code: ErrorCode::CatalogMismatch,
        message: "other catalog".into(),
    }));
    assert!(matches!(refused.as_slice(), [Action::Connect { .. }]));
}

#[test]
fn telemetry_numbers_run_across_sessions_and_only_when_up() {
    let mut c = up(0);
    assert_eq!(
        c.handle(Event::TelemetryDue),
        vec![Action::SendTelemetry { seq: 1 }]
    );
    c.handle(Event::Failed("lost".into()));
    assert!(c.handle(Event::TelemetryDue).is_empty());
    c.handle(Event::Connected { acked_up_to: 0 });
    assert!(c.handle(Event::TelemetryDue).is_empty(), "not welcomed yet");
    c.handle(Event::Frame(welcome()));
    assert_eq!(
        c.handle(Event::TelemetryDue),
        vec![Action::SendTelemetry { seq: 2 }]
    );
}

#[test]
fn stopping_says_goodbye_only_on_a_live_session() {
    let mut c = up(0);
    assert_eq!(
        c.handle(Event::Stop),
        vec![Action::Goodbye, Action::Stopped]
    );
    assert!(c.handle(Event::TelemetryDue).is_empty());
    let mut idle = core();
    idle.handle(Event::Start);
    assert_eq!(idle.handle(Event::Stop), vec![Action::Stopped]);
}

#[test]
fn backoff_grows_caps_and_jitters() {
    let mut rng = StdRng::seed_from_u64(7);
    let first = backoff(1, &mut rng);
    assert!(first >= Duration::from_millis(50) && first < Duration::from_millis(150));
    for attempt in 1..40 {
        assert!(backoff(attempt, &mut rng) < Duration::from_millis(7_500));
    }
    let late: Vec<Duration> = (0..20).map(|_| backoff(30, &mut rng)).collect();
    assert!(
        late.iter().any(|d| *d != late[0]),
        "jitter must vary the delay"
    );
}

/// Ticks every [`TICK_INTERVAL`] on `clock` for `span`, feeding `c`, and returns what came out.
fn tick_for(c: &mut LinkCore, clock: &net::clock::ManualClock, span: Duration) -> Vec<Action> {
    use net::clock::Clock;
    let mut out = Vec::new();
    let mut passed = Duration::ZERO;
    while passed < span {
        clock.advance(TICK_INTERVAL);
        passed += TICK_INTERVAL;
        out.extend(c.handle(Event::Tick {
            now: clock.now(),
            datagrams: 0,
        }));
    }
    without_pings(out)
}

/// The actions other than pings (which every tick of a live session may ask for).
fn without_pings(actions: Vec<Action>) -> Vec<Action> {
    actions.into_iter().filter(|a| *a != Action::Ping).collect()
}

#[test]
fn datagrams_keep_a_session_without_frames_and_their_silence_moves_it_on() {
    use net::clock::Clock;
    let clock = net::clock::ManualClock::new(0);
    let mut c = up(0);
    // The answers to the node's pings arrive (the count grows) though no frame does.
    let mut datagrams = 0;
    for _ in 0..40 {
        clock.advance(TICK_INTERVAL);
        datagrams += 1;
        let now = clock.now();
        assert!(without_pings(c.handle(Event::Tick { now, datagrams })).is_empty());
    }
    // The count stops: past the limit the link moves on, at once.
    let mut moved = Vec::new();
    for _ in 0..(silence_limit(LIVENESS_PING_INTERVAL).as_millis() / TICK_INTERVAL.as_millis() + 1)
    {
        clock.advance(TICK_INTERVAL);
        let now = clock.now();
        moved.extend(without_pings(c.handle(Event::Tick { now, datagrams })));
    }
    assert_eq!(connect_addr(&moved), ("c1:7400".into(), Duration::ZERO));
}

#[test]
fn heartbeats_keep_a_session_and_silence_moves_to_the_next_replica_at_once() {
    let clock = net::clock::ManualClock::new(0);
    let mut c = up(0);
    // A heartbeat every interval: the session stays for as long as they come.
    for _ in 0..20 {
        assert!(tick_for(&mut c, &clock, LIVENESS_PING_INTERVAL).is_empty());
        assert!(c.handle(Event::Frame(CoordMsg::Heartbeat)).is_empty());
    }
    // Silence just under the limit is tolerated (a late heartbeat on a busy machine).
    assert!(
        tick_for(
            &mut c,
            &clock,
            silence_limit(LIVENESS_PING_INTERVAL) - TICK_INTERVAL
        )
        .is_empty()
    );
    assert!(c.handle(Event::Frame(CoordMsg::Heartbeat)).is_empty());
    // Then the leader dies: within the limit plus a tick the link moves on, with no pause.
    let moved = tick_for(
        &mut c,
        &clock,
        silence_limit(LIVENESS_PING_INTERVAL) + TICK_INTERVAL,
    );
    assert_eq!(connect_addr(&moved), ("c1:7400".into(), Duration::ZERO));
    // Ticks of a session not yet welcomed measure nothing.
    assert!(tick_for(&mut c, &clock, silence_limit(LIVENESS_PING_INTERVAL) * 3).is_empty());
}

#[test]
fn a_redirect_back_to_the_silent_leader_is_doubted_for_a_while() {
    let clock = net::clock::ManualClock::new(0);
    let mut c = up(0);
    // The node was redirected to the leader c2, which then went silent.
    let (addr, _) = connect_addr(&c.handle(Event::Frame(CoordMsg::Redirect {
        leader_addr: "c2:7400".into(),
    })));
    assert_eq!(addr, "c2:7400");
    c.handle(Event::Connected { acked_up_to: 0 });
    c.handle(Event::Frame(welcome()));
    let (next, after) = connect_addr(&tick_for(
        &mut c,
        &clock,
        silence_limit(LIVENESS_PING_INTERVAL) * 2,
    ));
    assert_ne!(next, "c2:7400", "never straight back to the silent replica");
    assert_eq!(after, Duration::ZERO);
    // Followers still name the dead leader until their election ends: poll the others.
    for _ in 0..SUSPECT_REDIRECTS {
        c.handle(Event::Connected { acked_up_to: 0 });
        let (addr, pause) = connect_addr(&c.handle(Event::Frame(CoordMsg::Redirect {
            leader_addr: "c2:7400".into(),
        })));
        assert_ne!(addr, "c2:7400");
        assert!(pause >= Duration::from_millis(100) && pause < Duration::from_millis(300));
    }
    // A leader named that often is believed again (it may have been alive all along).
    c.handle(Event::Connected { acked_up_to: 0 });
    let back = c.handle(Event::Frame(CoordMsg::Redirect {
        leader_addr: "c2:7400".into(),
    }));
    assert_eq!(connect_addr(&back), ("c2:7400".into(), Duration::ZERO));
}

#[test]
fn a_new_leader_is_followed_at_once_after_a_silence() {
    let clock = net::clock::ManualClock::new(0);
    let mut c = up(0);
    let (next, _) = connect_addr(&tick_for(
        &mut c,
        &clock,
        silence_limit(LIVENESS_PING_INTERVAL) * 2,
    ));
    assert_eq!(next, "c1:7400");
    c.handle(Event::Connected { acked_up_to: 0 });
    let to_leader = c.handle(Event::Frame(CoordMsg::Redirect {
        leader_addr: "c2:7400".into(),
    }));
    assert_eq!(connect_addr(&to_leader), ("c2:7400".into(), Duration::ZERO));
    // Welcomed there: the suspicion is over, a later redirect to c0 is followed at once.
    c.handle(Event::Connected { acked_up_to: 0 });
    c.handle(Event::Frame(welcome()));
    let back = c.handle(Event::Frame(CoordMsg::Redirect {
        leader_addr: "c0:7400".into(),
    }));
    assert_eq!(connect_addr(&back), ("c0:7400".into(), Duration::ZERO));
}

/// The pings among `n` ticks of a session whose coordinator keeps answering.
fn pings_in(c: &mut LinkCore, clock: &net::clock::ManualClock, n: usize) -> usize {
    use net::clock::Clock;
    let mut pings = 0;
    for i in 0..n {
        clock.advance(TICK_INTERVAL);
        let actions = c.handle(Event::Tick {
            now: clock.now(),
            datagrams: i as u64 + 1,
        });
        assert!(without_pings(actions.clone()).is_empty(), "{actions:?}");
        pings += actions.len();
    }
    pings
}

#[test]
fn the_link_pings_at_the_interval_the_leader_sets_and_refuses_one_out_of_bounds() {
    let clock = net::clock::ManualClock::new(0);
    let mut c = up(0);
    // 200 ms until told otherwise: 10 pings in 2 s of ticks.
    assert_eq!(pings_in(&mut c, &clock, 20), 10);
    let liveness = |ms| {
        Event::Frame(CoordMsg::Liveness {
            ping_interval_ms: ms,
        })
    };
    assert!(c.handle(liveness(1000)).is_empty());
    assert_eq!(pings_in(&mut c, &clock, 40), 4);
    // Out of bounds: refused with a reason, the interval kept.
    for bad in [0, 50, 5000] {
        let refused = c.handle(liveness(bad));
        assert!(
            matches!(&refused[..], [Action::IgnoreLiveness { reason }] if reason.contains("outside")),
            "{refused:?}"
        );
    }
    assert_eq!(pings_in(&mut c, &clock, 40), 4);
}

#[test]
fn a_longer_ping_interval_tolerates_longer_silence() {
    let clock = net::clock::ManualClock::new(0);
    let mut c = up(0);
    c.handle(Event::Frame(CoordMsg::Liveness {
        ping_interval_ms: 1000,
    }));
    // 2.9 s of silence at a 1 s interval is two missed answers: the session stays.
    assert!(tick_for(&mut c, &clock, Duration::from_millis(2900)).is_empty());
    let moved = tick_for(&mut c, &clock, Duration::from_millis(300));
    assert_eq!(connect_addr(&moved), ("c1:7400".into(), Duration::ZERO));
    // The next session starts again at the shortest interval, until its leader says.
    c.handle(Event::Connected { acked_up_to: 0 });
    c.handle(Event::Frame(welcome()));
    let moved = tick_for(&mut c, &clock, Duration::from_millis(800));
    assert_eq!(connect_addr(&moved).1, Duration::ZERO);
}
