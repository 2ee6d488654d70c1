//! Replication scenarios on real sled directories, over the in-process transport: election,
//! replication, failover without losing acknowledged writes, restart from disk, rejoin after
//! disk loss via snapshot, minority partitions, leadership transfer and membership changes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use mcdnn_coordinator::raft::{ProposeError, ReplicaConfig, Role};
use mcdnn_coordinator::state::Command;
use support::{Cluster, PATIENCE, acked_ids, assert_consistent, fast_config, write, write_many};
use tokio::time::{Instant, sleep};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_elect_a_leader_and_replicate() {
    let c = Cluster::new(3, fast_config());
    let leader = c.wait_leader(&[1, 2, 3]).await;
    let (acked, last) = write_many(&c, "op", 0..20).await;
    c.wait_applied(&[1, 2, 3], last).await;
    assert_consistent(&c, &[1, 2, 3], &acked);

    let st = c.get(leader).status().await.unwrap();
    assert_eq!(st.voters, vec![1, 2, 3]);
    assert_eq!(
        st.progress.len(),
        3,
        "leader reports progress of every peer"
    );
    assert!(st.commit >= last);

    // Plan epochs never go back, through the whole replication path.
    let plan = |epoch| Command::CommitPlan {
        epoch,
        plan: vec![epoch as u8],
    };
    c.propose(plan(5)).await;
    let leader = c.wait_leader(&[1, 2, 3]).await;
    match c.get(leader).propose(plan(4)).await {
        Err(ProposeError::Rejected { .. }) => {}
        other => panic!("stale plan accepted: {other:?}"),
    }
    // A follower refuses with a hint to the leader.
    let follower = [1, 2, 3].into_iter().find(|&i| i != leader).unwrap();
    match c.get(follower).propose(write("op", 99)).await {
        Err(ProposeError::NotLeader { leader_hint }) => assert_eq!(leader_hint, Some(leader)),
        other => panic!("follower accepted a proposal: {other:?}"),
    }
    for id in [1, 2, 3] {
        c.get(id).shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_failover_loses_no_acknowledged_write_and_restart_recovers() {
    let mut c = Cluster::new(3, fast_config());
    let old = c.wait_leader(&[1, 2, 3]).await;
    let (mut acked, _) = write_many(&c, "op", 0..10).await;

    c.stop(old).await;
    let rest: Vec<u64> = [1, 2, 3].into_iter().filter(|&i| i != old).collect();
    let new = c.wait_leader(&rest).await;
    assert_ne!(new, old);
    let (more, last) = write_many(&c, "op", 10..20).await;
    acked.extend(more);
    c.wait_applied(&rest, last).await;
    assert_consistent(&c, &rest, &acked);

    // The old leader restarts from its disk (the same configuration as its first start) and
    // catches up.
    c.start(old);
    c.wait_applied(&[old], last).await;
    assert_consistent(&c, &[1, 2, 3], &acked);
    for id in [1, 2, 3] {
        c.stop(id).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_cluster_restarts_from_disk() {
    // A small snapshot interval so recovery goes through snapshot + log replay.
    let config = ReplicaConfig {
        snapshot_interval: 7,
        log_retain_entries: 2,
        ..fast_config()
    };
    let mut c = Cluster::new(3, config);
    c.wait_leader(&[1, 2, 3]).await;
    let (acked, last) = write_many(&c, "op", 0..25).await;
    c.wait_applied(&[1, 2, 3], last).await;
    let before = c.get(1).state();
    for id in [1, 2, 3] {
        c.stop(id).await;
    }
    for id in [1, 2, 3] {
        c.start(id);
    }
    c.wait_leader(&[1, 2, 3]).await;
    c.wait_applied(&[1, 2, 3], last).await;
    assert_consistent(&c, &[1, 2, 3], &acked);
    assert_eq!(acked_ids(&c.get(2).state()), acked_ids(&before));
    // And the restarted cluster keeps working.
    c.propose(write("op", 100)).await;
    for id in [1, 2, 3] {
        c.stop(id).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_with_wiped_disk_rejoins_via_snapshot() {
    let config = ReplicaConfig {
        snapshot_interval: 5,
        log_retain_entries: 0,
        ..fast_config()
    };
    wipe_and_rejoin(config, true).await;
}

/// Without compaction the leader first has to notice that the follower lost entries it had
/// acknowledged; it then serves the bootstrap snapshot and the whole log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_with_wiped_disk_rejoins_from_uncompacted_log() {
    wipe_and_rejoin(fast_config(), false).await;
}

async fn wipe_and_rejoin(config: ReplicaConfig, compacted: bool) {
    let mut c = Cluster::new(3, config);
    let leader = c.wait_leader(&[1, 2, 3]).await;
    let victim = [1, 2, 3].into_iter().find(|&i| i != leader).unwrap();
    let (mut acked, _) = write_many(&c, "op", 0..12).await;

    c.stop(victim).await;
    std::fs::remove_dir_all(c.dir(victim)).unwrap();
    let (more, last) = write_many(&c, "op", 12..24).await;
    acked.extend(more);
    let rest: Vec<u64> = [1, 2, 3].into_iter().filter(|&i| i != victim).collect();
    let leader = c.wait_leader(&rest).await;
    let st = c.get(leader).status().await.unwrap();
    assert_eq!(
        st.first_index > 2,
        compacted,
        "leader log compaction: {st:?}"
    );

    // Same id, empty disk, unchanged configuration: it must be restored from the leader's
    // snapshot (as a learner, then promoted).
    c.start(victim);
    c.wait_applied(&[victim], last).await;
    assert_consistent(&c, &[1, 2, 3], &acked);
    // Learner first, promoted by the leader once caught up.
    let vs = c.wait_rejoined(victim).await;
    assert_eq!(vs.voters, vec![1, 2, 3]);
    assert_eq!(
        vs.first_index > 2,
        compacted,
        "rejoined replica's log: {vs:?}"
    );

    // It is a full member again: it can take over leadership.
    c.transfer_until_leads(victim).await;
    c.wait_leader_is(&[1, 2, 3], victim).await;
    c.propose(write("op", 100)).await;
    for id in [1, 2, 3] {
        c.stop(id).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minority_partition_cannot_commit() {
    let mut c = Cluster::new(3, fast_config());
    let old = c.wait_leader(&[1, 2, 3]).await;
    let (mut acked, _) = write_many(&c, "op", 0..5).await;
    let rest: Vec<u64> = [1, 2, 3].into_iter().filter(|&i| i != old).collect();

    // Cut the leader off: it is now a minority of one.
    c.net.isolate(old);
    let before = c.get(old).state();
    match c.get(old).propose(write("lost", 1)).await {
        Err(ProposeError::NotLeader { .. }) | Err(ProposeError::Timeout(_)) => {}
        other => panic!("minority leader acknowledged a write: {other:?}"),
    }
    assert_eq!(c.get(old).state(), before, "minority state advanced");
    // check_quorum makes it step down.
    let deadline = Instant::now() + PATIENCE;
    while c.get(old).status().await.unwrap().role == Role::Leader {
        assert!(
            Instant::now() < deadline,
            "isolated leader never stepped down"
        );
        sleep(Duration::from_millis(20)).await;
    }

    // The majority elects a new leader and keeps committing.
    let new = c.wait_leader(&rest).await;
    assert_ne!(new, old);
    for i in 5..10 {
        c.get(new).propose(write("op", i)).await.unwrap();
        acked.push(("op".into(), i));
    }
    // A follower in the minority refuses too, and does not advance.
    assert!(c.get(old).propose(write("lost", 2)).await.is_err());
    assert_eq!(c.get(old).state(), before);

    // After healing the partition the old leader converges; the unacknowledged write is gone.
    c.net.heal();
    let last = c.propose(write("op", 10)).await;
    acked.push(("op".into(), 10));
    c.wait_applied(&[1, 2, 3], last).await;
    assert_consistent(&c, &[1, 2, 3], &acked);
    assert!(
        !acked_ids(&c.get(old).state())
            .iter()
            .any(|(w, _)| w == "lost")
    );
    for id in [1, 2, 3] {
        c.stop(id).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leadership_transfer() {
    let mut c = Cluster::new(3, fast_config());
    let leader = c.wait_leader(&[1, 2, 3]).await;
    let target = [1, 2, 3].into_iter().find(|&i| i != leader).unwrap();
    let (_, last) = write_many(&c, "op", 0..3).await;
    c.wait_applied(&[target], last).await;

    c.get(leader).transfer_leader(target).await.unwrap();
    c.wait_leader_is(&[1, 2, 3], target).await;
    c.get(target).propose(write("op", 3)).await.unwrap();
    // Only a leader can transfer.
    assert!(matches!(
        c.get(leader).transfer_leader(leader).await,
        Err(ProposeError::NotLeader { .. })
    ));
    // What a leader does on SIGTERM: hand over to the most up-to-date voter.
    assert_eq!(c.get(leader).step_down(PATIENCE).await.unwrap(), None);
    let next = c.get(target).step_down(PATIENCE).await.unwrap().unwrap();
    assert_ne!(next, target);
    c.wait_leader_is(&[1, 2, 3], next).await;
    for id in [1, 2, 3] {
        c.stop(id).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_and_remove_members() {
    let mut c = Cluster::new(3, fast_config());
    let leader = c.wait_leader(&[1, 2, 3]).await;
    let (mut acked, _) = write_many(&c, "op", 0..5).await;

    // A new replica (outside the configured set) starts empty, then the leader adds it.
    c.start(4);
    let idx = c.get(leader).add_member(4).await.unwrap();
    let (more, last) = write_many(&c, "op", 5..8).await;
    acked.extend(more);
    c.wait_applied(&[1, 2, 3, 4], last.max(idx)).await;
    assert_consistent(&c, &[1, 2, 3, 4], &acked);
    let leader = c.wait_leader(&[1, 2, 3, 4]).await;
    assert_eq!(
        c.get(leader).status().await.unwrap().voters,
        vec![1, 2, 3, 4]
    );
    assert_eq!(c.get(4).status().await.unwrap().voters, vec![1, 2, 3, 4]);

    assert_eq!(
        c.get(leader).remove_member(leader).await,
        Err(ProposeError::CannotRemoveLeader)
    );
    // Remove a follower other than the new one; the rest keep committing.
    let gone = [1, 2, 3].into_iter().find(|&i| i != leader).unwrap();
    c.get(leader).remove_member(gone).await.unwrap();
    c.stop(gone).await;
    let remaining: Vec<u64> = [1, 2, 3, 4].into_iter().filter(|&i| i != gone).collect();
    let leader = c.wait_leader(&remaining).await;
    let mut want = remaining.clone();
    want.sort_unstable();
    assert_eq!(c.get(leader).status().await.unwrap().voters, want);
    let last = c.propose(write("op", 8)).await;
    acked.push(("op".into(), 8));
    c.wait_applied(&remaining, last).await;
    assert_consistent(&c, &remaining, &acked);
    for id in remaining {
        c.stop(id).await;
    }
}
