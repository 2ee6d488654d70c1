//! A replica whose disk is wiped while its configuration stays the same rejoins by itself, as
//! real processes: no committed write is lost, and brand-new replicas started from one
//! configuration form one cluster.

use std::time::Duration;

use mcdnn_tests::cluster::Cluster;

const T: Duration = Duration::from_secs(20);

#[test]
fn identical_configuration_on_empty_disks_forms_one_cluster() {
    let mut c = Cluster::new(3).expect("cluster");
    c.start_all().expect("start");
    let leader = c.wait_leader(T, None).expect("leader");
    c.write_policy("fleet.cost_budget_usd", 1.0, "op", 1)
        .expect("write");
    let commit = c.status(leader).expect("status").commit;
    c.wait_applied(commit, T).expect("applied");
    for i in 0..3 {
        let s = c.status(i).expect("status");
        assert_eq!(s.voters, vec![1, 2, 3], "replica {i}");
        assert_eq!(s.leader_id, Some(leader as u64 + 1), "replica {i}");
        assert_eq!(
            s.first_index, 2,
            "replica {i} did not start from the shared genesis"
        );
    }
}

#[test]
fn a_wiped_replica_with_unchanged_configuration_rejoins_without_losing_a_write() {
    let mut c = Cluster::new(3).expect("cluster");
    c.start_all().expect("start");
    let leader = c.wait_leader(T, None).expect("leader");
    let mut acked = Vec::new();
    for id in 1..=5 {
        c.write_policy("fleet.cost_budget_usd", id as f64, "op", id)
            .expect("write");
        acked.push(("op".to_string(), id));
    }
    // The leader itself loses its disk: the most demanding case (its log was the reference).
    c.kill(leader);
    c.wipe(leader);
    let next = c.wait_leader(T, Some(leader)).expect("new leader");
    for id in 6..=8 {
        c.write_policy("fleet.cost_budget_usd", id as f64, "op", id)
            .expect("write while it is gone");
        acked.push(("op".to_string(), id));
    }
    c.start(leader)
        .expect("same configuration as its first start");
    c.wait_rejoined(leader, T).expect("rejoined as a voter");
    c.write_policy("fleet.cost_budget_usd", 9.0, "op", 9)
        .expect("write after rejoin");
    acked.push(("op".to_string(), 9));
    let commit = c.status(next).expect("status").commit;
    c.wait_applied(commit, T).expect("applied");
    for i in 0..3 {
        assert_eq!(c.policy_log(i).expect("log"), acked, "replica {i}");
    }
}

#[test]
fn wiped_replica_chaos_loses_nothing() {
    let v = mcdnn_tests::wiped_chaos::wiped_replica(2).expect("scenario runs");
    assert_eq!(v["ok"], true, "{v:#}");
    assert_eq!(v["lost"], 0, "{v:#}");
    assert_eq!(v["duplicated"], 0, "{v:#}");
}
