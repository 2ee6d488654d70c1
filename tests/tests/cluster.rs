//! The coordinator replicated with Raft, as real processes on 127.0.0.2-4: election, replication
//! of operator writes, failover, SIGTERM handover, lost-disk rejoin, membership and redirects.

use std::time::Duration;

use mcdnn_tests::cluster::Cluster;

const T: Duration = Duration::from_secs(20);

#[test]
fn writes_survive_leader_crash_and_every_replica_agrees() {
    let mut c = Cluster::new(3).expect("cluster");
    c.start_all().expect("start");
    let leader = c.wait_leader(T, None).expect("leader");
    let mut acked = Vec::new();
    for id in 1..=10 {
        c.write_policy("fleet.cost_budget_usd", id as f64, "op", id)
            .expect("write");
        acked.push(("op".to_string(), id));
    }
    c.kill(leader);
    let next = c.wait_leader(T, Some(leader)).expect("new leader");
    assert_ne!(next, leader);
    for id in 11..=20 {
        c.write_policy("fleet.cost_budget_usd", id as f64, "op", id)
            .expect("write after failover");
        acked.push(("op".to_string(), id));
    }
    // The crashed replica comes back from its disk and catches up.
    c.start(leader).expect("restart");
    let last = c.status(next).expect("status").commit;
    c.wait_applied(last, T).expect("caught up");
    for i in 0..3 {
        assert_eq!(
            c.policy_log(i).expect("log"),
            acked,
            "replica {i} must hold every acknowledged write in order"
        );
    }
    // The leader recorded the catalog the fleet runs; every replica holds it.
    for i in 0..3 {
        assert!(
            c.status(i).expect("status").catalog_index >= 2,
            "replica {i} lacks the catalog index"
        );
    }
    // A retried write (same writer and id) is applied once.
    c.write_policy("fleet.cost_budget_usd", 99.0, "op", 20)
        .expect("retry");
    c.wait_applied(c.status(next).expect("status").commit, T)
        .expect("applied");
    assert_eq!(c.policy_log(next).expect("log").len(), 20);
}

#[test]
fn sigterm_on_the_leader_hands_leadership_over() {
    let mut c = Cluster::new(3).expect("cluster");
    c.start_all().expect("start");
    let leader = c.wait_leader(T, None).expect("leader");
    let term = c.status(leader).expect("status").term;
    let exit = c.terminate(leader).expect("terminate");
    assert!(exit.success(), "an orderly stop exits 0");
    let next = c
        .wait_leader(Duration::from_secs(5), Some(leader))
        .expect("handover");
    let s = c.status(next).expect("status");
    assert!(s.term > term);
    c.write_policy("fleet.cost_budget_usd", 1.0, "op", 1)
        .expect("the new leader commits");
}

#[test]
fn a_replica_that_lost_its_disk_rejoins_from_a_snapshot() {
    let mut c = Cluster::new(3).expect("cluster");
    c.start_all().expect("start");
    let leader = c.wait_leader(T, None).expect("leader");
    let victim = (leader + 1) % 3;
    for id in 1..=5 {
        c.write_policy("fleet.cost_budget_usd", id as f64, "op", id)
            .expect("write");
    }
    c.kill(victim);
    c.wipe(victim);
    for id in 6..=8 {
        c.write_policy("fleet.cost_budget_usd", id as f64, "op", id)
            .expect("write while it is gone");
    }
    c.start(victim).expect("rejoin in join mode");
    let commit = c.status(leader).expect("status").commit;
    c.wait_applied(commit, T).expect("restored");
    assert_eq!(
        c.policy_log(victim).expect("log"),
        c.policy_log(leader).expect("log")
    );
    assert_eq!(c.policy_log(victim).expect("log").len(), 8);
}

#[test]
fn readiness_needs_a_leader_and_followers_redirect_writes() {
    let mut c = Cluster::new(3).expect("cluster");
    c.start(0).expect("start one");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        c.readyz(0, T).expect("readyz"),
        503,
        "a lone replica of three has no leader and is not ready"
    );
    c.start(1).expect("start");
    c.start(2).expect("start");
    let leader = c.wait_leader(T, None).expect("leader");
    let follower = (leader + 1) % 3;
    wait_follows(&c, follower, leader);
    let body =
        serde_json::json!({"key": "fleet.cost_budget_usd", "value": 5.0, "writer": "op", "write_id": 1}).to_string();
    let direct = post_policy(&c, follower, &body);
    assert_eq!(direct.status, 307, "a follower redirects writes");
    assert!(
        direct
            .location
            .as_deref()
            .is_some_and(|l| l.contains(&c.admin(leader))),
        "{:?}",
        direct.location
    );
    let followed = c
        .ops
        .post_json(&c.admin(follower), "/policy", &body, Duration::from_secs(3))
        .expect("post");
    assert_eq!(followed.status, 200, "{}", followed.body);
    // Its view of the leader follows Raft as it changes.
    assert_eq!(c.wait_readyz(0, 200, T).expect("readyz"), 200);
    let m = mcdnn_coordinator::ctl::http::health_get(
        &c.health(leader),
        "/metrics",
        Duration::from_secs(2),
    )
    .expect("metrics");
    for name in [
        "mcdnn_has_leader 1",
        "mcdnn_leader_changes_total",
        "mcdnn_proposals_committed_total",
        "mcdnn_proposals_failed_total",
    ] {
        assert!(m.contains(name), "{name} missing from /metrics");
    }
}

#[test]
fn members_are_removed_and_added_through_the_admin_api() {
    let mut c = Cluster::new(3).expect("cluster");
    c.start_all().expect("start");
    let leader = c.wait_leader(T, None).expect("leader");
    let victim = (leader + 2) % 3;
    let r = c
        .change_members(leader, serde_json::json!({ "remove": victim + 1 }))
        .expect("remove");
    assert_eq!(r.status, 200, "{}", r.body);
    c.kill(victim);
    assert_eq!(c.status(leader).expect("status").voters.len(), 2);
    c.write_policy("fleet.cost_budget_usd", 1.0, "op", 1)
        .expect("two voters still commit");
    c.wipe(victim);
    let r = c
        .change_members(leader, serde_json::json!({ "add": victim + 1 }))
        .expect("add");
    assert_eq!(r.status, 200, "{}", r.body);
    c.start(victim).expect("join");
    // Its disk is empty: it goes through learner before it votes again.
    c.wait_rejoined(victim, T).expect("rejoined");
    let commit = c.status(leader).expect("status").commit;
    c.wait_applied(commit, T)
        .expect("the new member catches up");
    assert_eq!(c.status(leader).expect("status").voters.len(), 3);
    assert_eq!(c.policy_log(victim).expect("log").len(), 1);
}

#[test]
fn followers_send_writers_to_the_leaders_advertised_address() {
    let mut c = Cluster::new(3).expect("cluster");
    // What operators outside would dial: every replica advertises another name for itself.
    let advertised: Vec<String> = (0..3)
        .map(|i| format!("coord-{i}=ops-{i}.example.org:9:10"))
        .collect();
    c.extra_args = vec!["--advertise".into(), advertised.join(",")];
    c.start_all().expect("start");
    let leader = c.wait_leader(T, None).expect("leader");
    let follower = (leader + 1) % 3;
    wait_follows(&c, follower, leader);
    let body = serde_json::json!({"key": "fleet.cost_budget_usd", "value": 1.0, "write_id": 1})
        .to_string();
    let r = post_policy(&c, follower, &body);
    assert_eq!(r.status, 307, "{}", r.body);
    assert_eq!(
        r.location.as_deref(),
        Some(format!("https://ops-{leader}.example.org:10/policy").as_str())
    );
}

/// One `POST /policy` to replica `i`, without following a redirect.
fn post_policy(c: &Cluster, i: usize, body: &str) -> mcdnn_coordinator::ctl::http::Response {
    c.ops
        .request(
            "POST",
            &c.admin(i),
            "/policy",
            Some(body),
            Duration::from_secs(3),
        )
        .expect("post")
}

/// Waits until replica `follower` knows `leader`: a leader is elected by a majority, and the
/// third replica may still be connecting (elections take 0.5-1 s) when the test asks it.
fn wait_follows(c: &Cluster, follower: usize, leader: usize) {
    let deadline = std::time::Instant::now() + T;
    while c
        .status(follower)
        .ok()
        .and_then(|s| s.leader_id)
        .is_none_or(|l| l as usize != leader + 1)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "replica {follower} never learnt of leader {leader}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
