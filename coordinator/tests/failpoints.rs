//! Faults injected at exact points (fail-rs failpoints, feature `failpoints`) instead of a kill
//! timed against a running process: a Raft persist that fails on the leader while a write is in
//! flight, and result batches whose commit fails before or after Raft. Failpoints are global to
//! the process, so each test holds a `FailScenario` (which also serialises them).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use fail::FailScenario;
use mcdnn_coordinator::daemon::raft_driver;
use mcdnn_coordinator::fleet::result_sink::Job;
use mcdnn_coordinator::fleet::session_core::{Event, Proposal};
use mcdnn_coordinator::state::ResultRecord;
use mcdnn_coordinator::supervisor::{Health, Supervisor};
use support::{Cluster, PATIENCE, assert_consistent, fast_config, write, write_many};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_persist_stops_the_leader_fails_readiness_and_loses_no_acknowledged_write() {
    let scenario = FailScenario::setup();
    let mut c = Cluster::new(3, fast_config());
    let leader = c.wait_leader(&[1, 2, 3]).await;
    let (mut acked, _) = write_many(&c, "op", 0..10).await;

    // The leader's worker as the daemon supervises it.
    let cancel = CancellationToken::new();
    let health = Health::default();
    let mut workers = Supervisor::new(cancel.clone(), health.clone());
    workers.spawn(
        "raft-driver",
        raft_driver(c.get(leader).clone(), cancel.clone()),
    );
    let supervised = tokio::spawn(workers.run());

    // The next entries the leader writes fail as a full or broken disk would.
    fail::cfg("raft-persist", &format!("return({leader})")).unwrap();
    let in_flight = c.get(leader).propose(write("op", 10)).await;
    assert!(
        in_flight.is_err(),
        "a write the leader could not persist was acknowledged"
    );
    let outcome = tokio::time::timeout(PATIENCE, supervised)
        .await
        .expect("the supervisor noticed")
        .unwrap();
    let err = format!("{:#}", outcome.expect_err("the replica must stop"));
    assert!(err.contains("raft-driver"), "{err}");
    assert!(!health.is_healthy(), "readiness fails");
    fail::remove("raft-persist");

    // The others elect a leader that holds every acknowledged write and takes new ones.
    let others: Vec<u64> = [1, 2, 3].into_iter().filter(|&i| i != leader).collect();
    c.net.unregister(leader);
    c.replicas.remove(&leader);
    c.wait_leader(&others).await;
    let (more, last) = write_many(&c, "op", 11..15).await;
    acked.extend(more);
    c.wait_applied(&others, last).await;
    assert_consistent(&c, &others, &acked);

    // Restarted on the same disk, the failed replica catches up with nothing acked missing.
    c.start(leader);
    c.wait_applied(&[leader], last).await;
    assert_consistent(&c, &[1, 2, 3], &acked);
    c.stop_all().await;
    scenario.teardown();
}

fn batch(seqs: std::ops::RangeInclusive<u64>) -> Proposal {
    Proposal {
        incarnation: 42,
        records: seqs
            .map(|seq| ResultRecord {
                seq,
                correct: Some(true),
                offloaded: false,
                cost_usd: 0.0,
            })
            .collect(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn result_batches_are_recorded_exactly_once_when_commits_fail() {
    let scenario = FailScenario::setup();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/catalog.json");
    let (manifest, _, _) = wire::manifest::load(&path).expect("catalog");
    let dir = tempfile::tempdir().unwrap();
    let cancel = CancellationToken::new();
    let wiring =
        mcdnn_coordinator::wiring::standalone("coord-0", manifest, dir.path(), cancel.clone())
            .await
            .unwrap();
    let (reply, mut outcomes) = mpsc::channel(4);
    let submit = |proposal: Proposal| {
        wiring.results.submit(Job {
            node: "cam-1".into(),
            proposal,
            reply: reply.clone(),
        });
    };
    let mut next = async || {
        tokio::time::timeout(Duration::from_secs(10), outcomes.recv())
            .await
            .expect("an outcome")
            .expect("the sink answers")
    };
    let recorded = || {
        wiring.raft.with_state(|s| {
            s.results()
                .get("cam-1")
                .map_or((0, 0), |r| (r.received, r.duplicates_dropped))
        })
    };

    // Refused before Raft: nothing recorded, the session is told.
    fail::cfg("results-before-commit", "return(disk full)").unwrap();
    submit(batch(1..=3));
    match next().await {
        Event::ResultsFailed { reason } => assert_eq!(reason, "disk full"),
        other => panic!("{other:?}"),
    }
    assert_eq!(recorded(), (0, 0));
    fail::remove("results-before-commit");

    // Committed, but the ack is lost (the session hears a failure): the node resends.
    fail::cfg("results-after-commit", "return").unwrap();
    submit(batch(1..=3));
    assert!(matches!(next().await, Event::ResultsFailed { .. }));
    assert_eq!(recorded(), (3, 0), "the batch did commit");
    fail::remove("results-after-commit");

    // The resend is recorded once: its results count as duplicates, the mark covers them.
    submit(batch(1..=3));
    match next().await {
        Event::ResultsCommitted {
            incarnation,
            recorded_up_to,
        } => assert_eq!((incarnation, recorded_up_to), (42, 3)),
        other => panic!("{other:?}"),
    }
    assert_eq!(recorded(), (3, 3));
    cancel.cancel();
    scenario.teardown();
}
