//! Every peer checked for what it is, and no node able to hurt the others: attacks by a holder of
//! a valid fleet certificate against the real binaries over loopback QUIC, each asserting the
//! attack fails while legitimate use goes on.

use std::net::SocketAddr;
use std::time::Duration;

use mcdnn_tests::peers::{self, Fake};
use mcdnn_tests::{Fleet, NodeOpts, free_port, metric};
use net::identity::{Ca, Identity, Kind};
use wire::msg::{CoordMsg, ErrorCode, Role};

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

#[test]
fn a_node_refuses_a_coordinator_with_a_node_certificate() {
    let fleet = Fleet::new().expect("fleet");
    let fake_identity = peers::node_identity(&fleet, "fake-coord").expect("identity");
    let rt = tokio::runtime::Runtime::new().expect("rt");
    let port = free_port();
    let (_endpoint, seen) = rt
        .block_on(async { peers::fake_server(&fake_identity, loopback(port), Fake::Coordinator) })
        .expect("fake coordinator");
    let opts = NodeOpts {
        coordinator: Some(format!("127.0.0.1:{port}")),
        energy_budget_j: None,
    };
    let mut node = fleet
        .node_with(
            "cam-victim",
            "laptop",
            4.0,
            &opts,
            &["--drain-timeout-s", "1"],
        )
        .expect("node");
    let exit = node.wait_exit(Duration::from_secs(30)).expect("exit");
    assert!(exit.success(), "{}", node.log_text());
    assert!(seen.connections() >= 1, "the node did try the address");
    assert_eq!(
        seen.frames(),
        0,
        "the node sent nothing to a non-coordinator"
    );
    assert!(
        node.log_text().contains("not a coordinator"),
        "{}",
        node.log_text()
    );
    // No forged ack reached the spool: every result the node accepted is still waiting.
    let s = fleet.summary("cam-victim").expect("summary");
    let accepted = s.results_accepted;
    assert!(accepted > 0);
    assert_eq!(s.results_pending, accepted);
}

#[test]
fn an_offload_impostor_is_refused_and_the_victim_falls_back() {
    let fleet = Fleet::new().expect("fleet");
    let _coord = fleet.coordinator(&[]).expect("coordinator");
    // The real server listens on `real` but is reached at `advertised`, where a camera with a
    // valid node certificate sits instead (as if it had taken over that address).
    let (real, advertised) = (free_port(), free_port());
    let impostor = peers::node_identity(&fleet, "cam-evil").expect("identity");
    let rt = tokio::runtime::Runtime::new().expect("rt");
    let (_endpoint, seen) = rt
        .block_on(async {
            peers::fake_server(&impostor, loopback(advertised), Fake::OffloadServer)
        })
        .expect("impostor");
    let advertise = format!("127.0.0.1:{advertised}");
    let _server = fleet
        .server_with(
            "edge-1",
            60.0,
            &format!("127.0.0.1:{real}"),
            200.0,
            &["--offload-advertise", &advertise],
        )
        .expect("server");
    fleet
        .wait_for("the server to join", Duration::from_secs(20), |s| {
            s.nodes.iter().any(|n| n.id == "edge-1")
        })
        .expect("server up");
    peers::approve_server(&fleet, "edge-1", true).expect("approve");
    let opts = NodeOpts {
        coordinator: None,
        energy_budget_j: Some(1000.0),
    };
    let extra = ["--policy", "cloud", "--cost-budget-usd", "100"];
    let mut victim = fleet
        .node_with("cam-victim", "laptop", 8.0, &opts, &extra)
        .expect("victim");
    let exit = victim.wait_exit(Duration::from_secs(60)).expect("exit");
    assert!(exit.success(), "{}", victim.log_text());
    assert_eq!(seen.frames(), 0, "no frame went to the impostor");
    assert!(
        victim.log_text().contains("plan names \"edge-1\""),
        "the victim tried the advertised address and refused who answered: {}",
        victim.log_text()
    );
    let s = fleet.summary("cam-victim").expect("summary");
    let acc = s.apps.get("garment").expect("garment").accuracy;
    assert!(acc > 50.0, "victim accuracy held: {acc}");
}

#[test]
fn an_unapproved_server_is_never_a_target_and_an_approved_one_is_used() {
    let fleet = Fleet::new().expect("fleet");
    let _coord = fleet.coordinator(&[]).expect("coordinator");
    let listen = format!("127.0.0.1:{}", free_port());
    let _server = fleet
        .server("edge-1", 60.0, &listen, 200.0)
        .expect("server");
    let opts = NodeOpts {
        coordinator: None,
        energy_budget_j: Some(1000.0),
    };
    let extra = ["--policy", "cloud", "--cost-budget-usd", "100"];
    let _device = fleet
        .node_with("cam-a", "laptop", 30.0, &opts, &extra)
        .expect("device");
    let offloads = |s: &mcdnn_coordinator::fleet::status::FleetStatus| {
        s.plan
            .mixes
            .values()
            .flat_map(|apps| apps.values().flatten())
            .any(|m| m.contains("@Server"))
    };
    let status = fleet
        .wait_for("plans for the device", Duration::from_secs(20), |s| {
            s.plan.epoch >= 3 && s.nodes.iter().any(|n| n.id == "edge-1")
        })
        .expect("planned");
    assert!(!offloads(&status), "unapproved: nothing offloaded");
    let edge = status
        .nodes
        .iter()
        .find(|n| n.id == "edge-1")
        .expect("edge");
    assert!(
        edge.excluded
            .as_deref()
            .is_some_and(|w| w.contains("approval")),
        "{:?}",
        edge.excluded
    );
    assert!(metric(&fleet.metrics().expect("metrics"), "mcdnn_nodes_excluded") >= Some(1.0));

    peers::approve_server(&fleet, "edge-1", true).expect("approve");
    let status = fleet
        .wait_for_node(
            "the approved server to serve",
            Duration::from_secs(20),
            "edge-1",
            |n| n.served_offload > 0 && n.excluded.is_none(),
        )
        .expect("approved server used");
    assert!(offloads(&status));
}

#[test]
fn a_raft_peer_is_matched_on_its_full_name() {
    let fleet = Fleet::new().expect("fleet");
    let _coord = fleet.coordinator(&[]).expect("coordinator");
    // Same ordinal as the real replica coord-0, another name.
    Ca::load(&fleet.ca)
        .and_then(|ca| ca.enroll(Kind::Coordinator, "evil-0", &fleet.ca, &[], 30))
        .expect("enroll");
    let identity = Identity::load(&fleet.ca, "evil-0").expect("identity");
    let rt = tokio::runtime::Runtime::new().expect("rt");
    let reason = rt
        .block_on(async {
            let endpoint = peers::client(&identity)?;
            let raft = loopback(fleet.port + 2);
            let conn = endpoint.connect(raft, "localhost")?.await?;
            let reason = tokio::time::timeout(Duration::from_secs(5), conn.closed()).await?;
            anyhow::Ok(reason.to_string())
        })
        .expect("the replica must close the connection");
    assert!(reason.contains("not a member"), "{reason}");
}

#[test]
fn invalid_hellos_are_left_out_and_the_fleet_is_still_planned() {
    let fleet = Fleet::new().expect("fleet");
    let _coord = fleet.coordinator(&[]).expect("coordinator");
    let mut good = fleet.node("cam-good", "laptop", 12.0, &[]).expect("node");
    let status = fleet
        .wait_for_node(
            "the good node's first plan",
            Duration::from_secs(20),
            "cam-good",
            |n| n.acked_epoch >= 1,
        )
        .expect("planned");
    let digest = status.catalog_digest.clone();
    let rt = tokio::runtime::Runtime::new().expect("rt");
    let mut sessions = Vec::new();
    let unknown_app = peers::hello("cam-app", "laptop", &digest, &["no-such-app"]);
    let mut infinite = peers::hello("cam-inf", "laptop", &digest, &["garment"]);
    infinite.battery.energy_left_j = f64::INFINITY;
    let mut negative = peers::hello("cam-neg", "laptop", &digest, &["garment"]);
    negative.role = Role::Server { capacity_rps: -5.0 };
    for h in [unknown_app, infinite, negative] {
        let identity = peers::node_identity(&fleet, &h.node_id).expect("identity");
        let s = rt
            .block_on(peers::join(&fleet.quic(), &identity, h))
            .expect("session");
        assert!(
            matches!(s.answer, Some(CoordMsg::Welcome { .. })),
            "{:?}",
            s.answer
        );
        sessions.push(s);
    }
    // A catalog the fleet does not use is refused outright.
    let identity = peers::node_identity(&fleet, "cam-old").expect("identity");
    let old = peers::hello("cam-old", "laptop", "0000", &["garment"]);
    let s = rt
        .block_on(peers::join(&fleet.quic(), &identity, old))
        .expect("answer");
    assert!(
        matches!(
            s.answer,
            Some(CoordMsg::Error {
                code: ErrorCode::CatalogMismatch,
                ..
            })
        ),
        "{:?}",
        s.answer
    );
    let epoch = fleet.status().expect("status").plan.epoch;
    let after = fleet
        .wait_for_node(
            "the good node to keep getting plans",
            Duration::from_secs(20),
            "cam-good",
            |n| n.acked_epoch > epoch + 2,
        )
        .expect("the fleet is still planned");
    for id in ["cam-app", "cam-inf", "cam-neg"] {
        let n = after.nodes.iter().find(|n| n.id == id).expect("listed");
        assert!(n.excluded.is_some(), "{id} must be shown as excluded");
        assert!(!after.plan.mixes.contains_key(id), "{id} was planned");
    }
    let m = fleet.metrics().expect("metrics");
    assert_eq!(metric(&m, "mcdnn_nodes_excluded"), Some(3.0), "{m}");
    assert!(
        metric(&m, "mcdnn_catalog_mismatch_total") >= Some(1.0),
        "{m}"
    );
    drop(sessions);
    assert!(
        good.wait_exit(Duration::from_secs(30))
            .expect("exit")
            .success()
    );
}

#[test]
fn half_sent_frames_do_not_make_the_coordinator_allocate() {
    let fleet = Fleet::new().expect("fleet");
    let coord = fleet.coordinator(&[]).expect("coordinator");
    let pid = coord.child.id();
    let digest = fleet.status().expect("status").catalog_digest;
    let identity = peers::node_identity(&fleet, "cam-hog").expect("identity");
    let rt = tokio::runtime::Runtime::new().expect("rt");
    std::thread::sleep(Duration::from_millis(500));
    let before = peers::rss_bytes(pid).expect("rss");
    // 60 streams each announcing a 4 MiB frame and sending 1 MiB of it, from one certificate,
    // over as many connections as it takes.
    let (mut attempted, mut held, mut sessions) = (0usize, 0usize, Vec::new());
    while attempted < 60 {
        let h = peers::hello("cam-hog", "laptop", &digest, &["garment"]);
        let s = rt
            .block_on(peers::join(&fleet.quic(), &identity, h))
            .expect("session");
        let want = (60 - attempted).min(16);
        let open = rt.block_on(peers::half_sent_frames(&s.conn, want, 1 << 20));
        attempted += want;
        held += open.len();
        sessions.push((s, open));
    }
    std::thread::sleep(Duration::from_millis(500));
    let after = peers::rss_bytes(pid).expect("rss");
    let grown = after.saturating_sub(before);
    eprintln!(
        "coordinator RSS {} MiB -> {} MiB after 60 half-sent 4 MiB frames ({held} streams accepted)",
        before >> 20,
        after >> 20
    );
    assert!(
        grown < 48 << 20,
        "the coordinator grew by {} MiB (240 MiB if it allocated every announced frame)",
        grown >> 20
    );
    assert!(held < 60, "the stream cap refused some streams");
    let m = fleet.metrics().expect("metrics");
    assert!(
        metric(&m, "mcdnn_sessions_replaced_total") >= Some(1.0),
        "{m}"
    );
}

#[test]
fn a_second_session_of_the_same_identity_replaces_the_first() {
    let fleet = Fleet::new().expect("fleet");
    let _coord = fleet.coordinator(&[]).expect("coordinator");
    let digest = fleet.status().expect("status").catalog_digest;
    let identity = peers::node_identity(&fleet, "cam-twice").expect("identity");
    let rt = tokio::runtime::Runtime::new().expect("rt");
    let hello = || peers::hello("cam-twice", "laptop", &digest, &["garment"]);
    let first = rt
        .block_on(peers::join(&fleet.quic(), &identity, hello()))
        .expect("first");
    let second = rt
        .block_on(peers::join(&fleet.quic(), &identity, hello()))
        .expect("second");
    assert!(matches!(second.answer, Some(CoordMsg::Welcome { .. })));
    let reason = rt
        .block_on(async { tokio::time::timeout(Duration::from_secs(5), first.conn.closed()).await })
        .expect("the first connection is closed");
    assert!(reason.to_string().contains("replaced"), "{reason}");
    assert!(
        second.conn.close_reason().is_none(),
        "the newer session lives"
    );
    let status = fleet.status().expect("status");
    assert_eq!(
        status.nodes.iter().filter(|n| n.id == "cam-twice").count(),
        1
    );
}

#[test]
fn only_an_admin_operator_may_approve_a_server_and_bad_names_change_nothing() {
    let fleet = Fleet::new().expect("fleet");
    let _coord = fleet.coordinator(&[]).expect("coordinator");
    Ca::load(&fleet.ca)
        .and_then(|ca| {
            ca.enroll_operator(
                "auditor",
                &fleet.ca,
                net::identity::OperatorRole::ReadOnly,
                30,
            )
        })
        .expect("enroll");
    let auditor = mcdnn_coordinator::ctl::http::Client::load(&fleet.ca, "auditor").expect("client");
    let body = r#"{"approved":true}"#;
    let r = auditor
        .post_json(
            &fleet.admin(),
            "/v1/nodes/edge-1/server",
            body,
            Duration::from_secs(5),
        )
        .expect("answer");
    assert_eq!(r.status, 403, "{}", r.body);
    for bad in ["Edge%201", "a.b", &"x".repeat(300)] {
        let r = fleet
            .ops
            .post_json(
                &fleet.admin(),
                &format!("/v1/nodes/{bad}/server"),
                body,
                Duration::from_secs(5),
            )
            .expect("answer");
        assert_eq!(r.status, 400, "{bad}: {}", r.body);
    }
    peers::approve_server(&fleet, "edge-1", true).expect("an admin may");
    let policy = fleet
        .ops
        .get(&fleet.admin(), "/policy", Duration::from_secs(5))
        .expect("get");
    assert!(!policy.contains("edge-1"), "approvals are not policies");
}

#[test]
fn a_telemetry_flood_is_dropped_over_the_rate_and_counted() {
    let fleet = Fleet::new().expect("fleet");
    let _coord = fleet.coordinator(&[]).expect("coordinator");
    let digest = fleet.status().expect("status").catalog_digest;
    let identity = peers::node_identity(&fleet, "cam-flood").expect("identity");
    let rt = tokio::runtime::Runtime::new().expect("rt");
    let h = peers::hello("cam-flood", "laptop", &digest, &["garment"]);
    let mut s = rt
        .block_on(peers::join(&fleet.quic(), &identity, h))
        .expect("session");
    assert!(matches!(s.answer, Some(CoordMsg::Welcome { .. })));
    rt.block_on(async {
        for seq in 1..=500 {
            let t = mcdnn_coordinator::ctl::bench::telemetry(seq);
            net::framing::write_frame(&mut s.send, &wire::msg::NodeMsg::Telemetry(t))
                .await
                .expect("send");
        }
    });
    let status = fleet
        .wait_for_node(
            "the flood to be read",
            Duration::from_secs(10),
            "cam-flood",
            |n| n.telemetry_seq > 0,
        )
        .expect("read");
    let seq = status
        .nodes
        .iter()
        .find(|n| n.id == "cam-flood")
        .map(|n| n.telemetry_seq);
    assert!(
        seq < Some(500),
        "the reports over the rate were dropped: {seq:?}"
    );
    // 500 reports at once against a burst of 40 and 20/s. The session's reader paces itself:
    // after each report over the rate (dropped, counted) it waits for the next token, so the
    // rest of the flood is held back by QUIC flow control and read at about twice the rate.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut m = fleet.metrics().expect("metrics");
    while metric(&m, "mcdnn_rate_limited_total") < Some(100.0)
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(100));
        m = fleet.metrics().expect("metrics");
    }
    assert!(metric(&m, "mcdnn_rate_limited_total") >= Some(100.0), "{m}");
    assert!(
        s.conn.close_reason().is_none(),
        "dropping is not disconnecting"
    );
}
