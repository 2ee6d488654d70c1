//! Forming and rejoining without a bootstrap flag: replicas started from one configuration on
//! empty disks form one cluster once a majority can talk; a replica whose disk was wiped does
//! not vote before it has caught up (so it cannot help elect a leader missing committed
//! writes); replicas of another cluster are refused.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use mcdnn_coordinator::raft::hello::{self, Control, Disk, Hello};
use mcdnn_coordinator::raft::{ClusterId, ReplicaConfig, ReplicaError, Role};
use support::{Cluster, assert_consistent, fast_config, write, write_many};
use tokio::time::{Instant, sleep};

/// Long enough for many election timeouts at the test tick (20 ms x 10 ticks); used only to
/// check that something does not happen, never as a speed bound.
const QUIET: Duration = Duration::from_millis(1500);

/// Asserts that for `QUIET`, none of `ids` leads and each has no membership yet (its disk is
/// still empty) when `uninitialised` is set.
async fn assert_no_leader_for_a_while(c: &Cluster, ids: &[u64], uninitialised: &[u64]) {
    let until = Instant::now() + QUIET;
    while Instant::now() < until {
        let st = c.statuses().await;
        for id in ids {
            let s = &st[id];
            assert_ne!(s.role, Role::Leader, "replica {id} was elected: {st:#?}");
        }
        for id in uninitialised {
            assert!(
                st[id].voters.is_empty(),
                "replica {id} wrote a genesis: {st:#?}"
            );
        }
        sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_disks_with_one_configuration_form_one_cluster_once_a_majority_is_up() {
    let mut c = Cluster::unstarted(3, fast_config());
    // Alone, a replica of a three-replica configuration must neither form nor lead.
    c.start(1);
    assert_no_leader_for_a_while(&c, &[1], &[1]).await;

    c.start(2);
    c.start(3);
    let leader = c.wait_leader(&[1, 2, 3]).await;
    let (acked, last) = write_many(&c, "op", 0..5).await;
    c.wait_applied(&[1, 2, 3], last).await;
    assert_consistent(&c, &[1, 2, 3], &acked);
    for (id, s) in c.statuses().await {
        assert_eq!(s.voters, vec![1, 2, 3], "replica {id}");
        assert_eq!(
            s.first_index, 2,
            "replica {id} did not start from the shared genesis"
        );
    }
    assert!(c.get(leader).status().await.unwrap().term >= 2);
    c.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wiped_replica_does_not_vote_before_it_caught_up() {
    let mut c = Cluster::new(3, fast_config());
    let leader = c.wait_leader(&[1, 2, 3]).await;
    let mut others = [1, 2, 3].into_iter().filter(|&i| i != leader);
    let (wiped, behind) = (others.next().unwrap(), others.next().unwrap());

    // Writes committed by the leader and `wiped` only: `behind` is cut off.
    c.net.isolate(behind);
    let (acked, _) = write_many(&c, "op", 0..10).await;

    // `wiped` loses its disk and the leader goes down: the only up-to-date copy left is on
    // the stopped leader's disk. If the wiped replica voted, `behind` would be elected
    // without those writes.
    c.stop(wiped).await;
    std::fs::remove_dir_all(c.dir(wiped)).unwrap();
    c.stop(leader).await;
    c.net.heal();
    c.start(wiped);
    assert_no_leader_for_a_while(&c, &[wiped, behind], &[wiped]).await;

    // The old leader returns: it leads, takes the wiped replica through learner to voter,
    // and every acknowledged write is everywhere.
    c.start(leader);
    c.wait_leader(&[1, 2, 3]).await;
    let last = c.propose(write("op", 100)).await;
    let mut acked = acked;
    acked.push(("op".into(), 100));
    c.wait_applied(&[1, 2, 3], last).await;
    c.wait_rejoined(wiped).await;
    assert_consistent(&c, &[1, 2, 3], &acked);
    c.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_clusters_replica_and_data_folder_are_refused() {
    let mut c = Cluster::new(3, fast_config());
    c.wait_leader(&[1, 2, 3]).await;
    let (mut acked, _) = write_many(&c, "op", 0..3).await;
    c.stop(3).await;
    let foreign = ReplicaConfig {
        cluster_name: "another-fleet".into(),
        ..fast_config()
    };

    // Its data folder belongs to this cluster: a replica configured for another refuses it.
    match c.try_start(3, foreign.clone()) {
        Err(ReplicaError::ForeignCluster { .. }) => {}
        other => panic!("expected a foreign-cluster refusal, got {other:?}"),
    }

    // On an empty disk it neither joins nor disturbs this cluster.
    std::fs::remove_dir_all(c.dir(3)).unwrap();
    let h = c.try_start(3, foreign).unwrap();
    c.adopt(h);
    assert_no_leader_for_a_while(&c, &[3], &[3]).await;
    let (more, _) = write_many(&c, "op", 3..6).await;
    acked.extend(more);
    let leader = c.wait_leader(&[1, 2]).await;
    assert_eq!(c.get(leader).status().await.unwrap().voters, vec![1, 2, 3]);

    // Configured for this cluster again, it rejoins.
    c.stop(3).await;
    std::fs::remove_dir_all(c.dir(3)).unwrap();
    c.start(3);
    c.wait_rejoined(3).await;
    let last = c.propose(write("op", 6)).await;
    acked.push(("op".into(), 6));
    c.wait_applied(&[1, 2, 3], last).await;
    assert_consistent(&c, &[1, 2, 3], &acked);
    c.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bogus_control_messages_change_nothing() {
    let mut c = Cluster::new(3, fast_config());
    let leader = c.wait_leader(&[1, 2, 3]).await;
    let follower = [1, 2, 3].into_iter().find(|&i| i != leader).unwrap();
    let ours = ClusterId::from_name(&fast_config().cluster_name);
    let before = c.get(leader).status().await.unwrap();

    let mut garbage = hello::encode(follower, leader, Control::Rejoin { cluster: ours });
    garbage.context = garbage.context[..9].to_vec().into();
    let mut bogus = vec![garbage];
    // A rejoin request from a replica outside the configuration, and one naming another
    // cluster, from a configured replica.
    bogus.push(hello::encode(9, leader, Control::Rejoin { cluster: ours }));
    bogus.push(hello::encode(
        follower,
        leader,
        Control::Rejoin {
            cluster: ClusterId(ours.0 ^ 1),
        },
    ));
    // Many strangers saying hello (the table of hellos stays bounded).
    for stranger in 100..400 {
        bogus.push(hello::encode(
            stranger,
            leader,
            Control::Hello(Hello {
                cluster: ours,
                genesis: 0,
                disk: Disk::Data,
                wants_reply: true,
            }),
        ));
    }
    c.net.transport(9).send(bogus);

    let (acked, last) = write_many(&c, "op", 0..3).await;
    c.wait_applied(&[1, 2, 3], last).await;
    assert_consistent(&c, &[1, 2, 3], &acked);
    let after = c.get(leader).status().await.unwrap();
    assert_eq!(after.voters, before.voters);
    assert!(after.learners.is_empty());
    assert_eq!(after.leader_id, Some(leader), "the leader was disturbed");
    c.stop_all().await;
}
