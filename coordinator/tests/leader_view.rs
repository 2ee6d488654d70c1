//! The leadership view follows the Raft driver's published soft state: a lone replica's view
//! shows it leading with its term, commit and applied index moving with each write, counts one
//! leader change, and stops claiming leadership the moment the driver stops.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use mcdnn_coordinator::state::{Command, PolicyValue};
use mcdnn_coordinator::wiring::standalone;
use tokio::time::{Instant, sleep};
use tokio_util::sync::CancellationToken;

const PATIENCE: Duration = Duration::from_secs(20);

async fn eventually(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !ok() {
        assert!(Instant::now() < deadline, "never: {what}");
        sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_view_follows_raft_and_drops_leadership_when_the_driver_stops() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/catalog.json");
    let (manifest, _, _) = wire::manifest::load(&path).expect("catalog");
    let dir = tempfile::tempdir().unwrap();
    let cancel = CancellationToken::new();
    let hub = standalone("coord-0", manifest, dir.path(), cancel.clone())
        .await
        .unwrap();
    let view = hub.leader.view();
    assert!(view.is_leader());
    assert_eq!(view.leader_id(), Some(1));
    assert!(view.term.load(Ordering::Relaxed) >= 2);
    assert_eq!(view.leader_changes_total.load(Ordering::Relaxed), 1);

    let index = hub
        .raft
        .propose(Command::SetPolicy {
            key: "fleet.cost_budget_usd".into(),
            value: PolicyValue::Number(1.0),
            writer: "op".into(),
            write_id: 1,
        })
        .await
        .unwrap();
    eventually("commit and applied reach the write", || {
        view.commit.load(Ordering::Relaxed) >= index
            && view.applied.load(Ordering::Relaxed) >= index
    })
    .await;
    assert_eq!(view.leader_changes_total.load(Ordering::Relaxed), 1);

    // The driver stops (as on a storage failure): the view must not keep claiming leadership.
    hub.raft.shutdown().await.unwrap();
    eventually("leadership dropped", || !view.is_leader()).await;
    assert_eq!(view.leader_id(), None);
    cancel.cancel();
}
