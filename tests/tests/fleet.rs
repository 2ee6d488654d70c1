//! The fleet across processes over loopback QUIC with mutual TLS: real coordinator and node
//! binaries, real ONNX inference on Fashion-MNIST.

use std::net::SocketAddr;
use std::time::Duration;

use mcdnn_coordinator::fleet::status::FleetStatus;
use mcdnn_tests::{Fleet, metric};
use net::identity::{Ca, Identity, Kind};

#[test]
fn nodes_receive_assignments_and_serve_real_inference() {
    let fleet = Fleet::new().expect("fleet");
    let _coord = fleet.coordinator(&[]).expect("coordinator");
    let mut a = fleet
        .node("cam-a", "bodycam-lite", 6.0, &[])
        .expect("node a");
    let mut b = fleet.node("cam-b", "laptop", 6.0, &[]).expect("node b");
    let status = fleet
        .wait_for(
            "both nodes to ack an assignment",
            Duration::from_secs(20),
            |s| s.nodes.len() == 2 && s.nodes.iter().all(|n| n.acked_epoch >= 1 && n.requests > 0),
        )
        .expect("assignments acked");
    assert!(status.plan.epoch >= 1);
    assert!(status.plan.gap < 0.01, "plan gap {}", status.plan.gap);
    for node in [&mut a, &mut b] {
        let exit = node.wait_exit(Duration::from_secs(30)).expect("exit");
        assert!(exit.success(), "{}", node.log_text());
    }
    for name in ["cam-a", "cam-b"] {
        let s = fleet.summary(name).expect("summary");
        let requests = s.requests;
        assert!(requests >= 20, "{name} served {requests}");
        // Real inference checked against labels: far above chance (10 %) on garment.
        let acc = s.apps.get("garment").expect("garment").accuracy;
        assert!(acc > 50.0, "{name} garment accuracy {acc}");
        assert!(s.assignments_applied >= 1);
        assert!(s.energy_used_j <= s.energy_budget_j + 1e-9);
    }
}

#[test]
fn a_client_without_a_fleet_certificate_is_refused() {
    let fleet = Fleet::new().expect("fleet");
    let _coord = fleet.coordinator(&[]).expect("coordinator");
    // A node enrolled by a foreign CA with the same name as a fleet member.
    let foreign = tempfile::tempdir().expect("tmp");
    let ca = Ca::init(foreign.path()).expect("foreign ca");
    ca.enroll(Kind::Node, "intruder", foreign.path(), &[], 30)
        .expect("enroll");
    let identity = Identity::load(foreign.path(), "intruder").expect("identity");
    let rt = tokio::runtime::Runtime::new().expect("rt");
    let result = rt.block_on(connect(&fleet.quic(), &identity));
    assert!(
        result.is_err(),
        "a foreign certificate must not complete the handshake"
    );
    // The server counts the refusal as it sends it; the client may see it first.
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    let mut m = fleet.metrics().expect("metrics");
    while metric(&m, "mcdnn_handshakes_refused_total") < Some(1.0)
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(50));
        m = fleet.metrics().expect("metrics");
    }
    assert!(
        metric(&m, "mcdnn_handshakes_refused_total").unwrap_or(0.0) >= 1.0,
        "{m}"
    );
    assert!(
        fleet.status().expect("status").nodes.is_empty(),
        "nothing registered"
    );
}

/// A QUIC connection to `addr` from a fresh loopback endpoint presenting `config`.
async fn dial(addr: &str, config: quinn::ClientConfig) -> anyhow::Result<quinn::Connection> {
    let mut endpoint = quinn::Endpoint::client(SocketAddr::from(([127, 0, 0, 1], 0)))?;
    endpoint.set_default_client_config(config);
    Ok(endpoint.connect(addr.parse()?, "localhost")?.await?)
}

/// The well-behaved node of the abuse tests: started, and reporting telemetry.
fn good_node(fleet: &Fleet) -> mcdnn_tests::Proc {
    let good = fleet
        .node("cam-good", "phone-2016", 10.0, &[])
        .expect("good node");
    fleet
        .wait_for("the good node's telemetry", Duration::from_secs(20), |s| {
            good_seq(s) > 0
        })
        .expect("good node up");
    good
}

/// The telemetry sequence the good node last reported (0 before any).
fn good_seq(s: &FleetStatus) -> u64 {
    s.nodes
        .iter()
        .find(|n| n.id == "cam-good")
        .map_or(0, |n| n.telemetry_seq)
}

/// Waits until the good node, connected, has reported more than three times after `seq`
/// (whatever a bad peer did meanwhile changed nothing for it), and lets it finish its run.
fn good_node_keeps_reporting(fleet: &Fleet, mut good: mcdnn_tests::Proc, seq: u64) -> FleetStatus {
    let after = fleet
        .wait_for_node(
            "the good node to keep reporting",
            Duration::from_secs(10),
            "cam-good",
            |n| n.connected && n.telemetry_seq > seq + 3,
        )
        .expect("good node unaffected");
    assert!(
        good.wait_exit(Duration::from_secs(30))
            .expect("exit")
            .success()
    );
    after
}

async fn connect(addr: &str, identity: &Identity) -> anyhow::Result<quinn::Connection> {
    let conn = dial(addr, net::tls::client_config(identity)?).await?;
    // The server verifies the client certificate after the client considers the handshake done;
    // a refused client sees its connection closed on first use.
    let (mut send, mut recv) = conn.open_bi().await?;
    send.write_all(&[0, 0, 0, 0]).await?;
    let mut buf = [0u8; 1];
    tokio::time::timeout(Duration::from_secs(3), recv.read(&mut buf)).await??;
    Ok(conn)
}

#[test]
fn malformed_and_oversized_frames_close_only_that_connection() {
    let fleet = Fleet::new().expect("fleet");
    let _coord = fleet.coordinator(&[]).expect("coordinator");
    let good = good_node(&fleet);
    fleet.enroll(Kind::Node, "cam-bad").expect("enroll");
    let identity = Identity::load(&fleet.ca, "cam-bad").expect("identity");
    let rt = tokio::runtime::Runtime::new().expect("rt");
    let payloads: Vec<Vec<u8>> = vec![
        // A length prefix of 4 GiB: refused before any allocation.
        vec![0xFF, 0xFF, 0xFF, 0xFF, 1, 2, 3],
        // A well-sized frame of garbage.
        [&8u32.to_be_bytes()[..], b"NOTMCDNN"].concat(),
        // A valid header with a body that is no message.
        [
            &10u32.to_be_bytes()[..],
            b"MCDN",
            &1u16.to_be_bytes()[..],
            &[0xFF, 0xFF, 0xFF, 0xFF][..],
        ]
        .concat(),
    ];
    for bytes in payloads {
        let closed = rt.block_on(async {
            let conn = dial(&fleet.quic(), net::tls::client_config(&identity)?).await?;
            let (mut send, _recv) = conn.open_bi().await?;
            send.write_all(&bytes).await?;
            let reason = tokio::time::timeout(Duration::from_secs(5), conn.closed()).await?;
            anyhow::Ok(reason.to_string())
        });
        let reason = closed.expect("the coordinator must close the bad connection");
        assert!(reason.contains("closed by peer"), "{reason}");
    }
    let seq_before = good_seq(&fleet.status().expect("status"));
    let after = good_node_keeps_reporting(&fleet, good, seq_before);
    assert!(
        after.nodes.iter().all(|n| n.id != "cam-bad"),
        "a bad peer never registers"
    );
    let m = fleet.metrics().expect("metrics");
    assert!(
        metric(&m, "mcdnn_frames_rejected_total").unwrap_or(0.0) >= 3.0,
        "{m}"
    );
}

#[test]
fn a_node_may_only_report_for_itself() {
    let fleet = Fleet::new().expect("fleet");
    let _coord = fleet.coordinator(&[]).expect("coordinator");
    fleet.enroll(Kind::Node, "cam-x").expect("enroll");
    let identity = Identity::load(&fleet.ca, "cam-x").expect("identity");
    let rt = tokio::runtime::Runtime::new().expect("rt");
    let answer = rt
        .block_on(async {
            let mut endpoint = quinn::Endpoint::client(SocketAddr::from(([127, 0, 0, 1], 0)))?;
            endpoint.set_default_client_config(net::tls::client_config(&identity)?);
            let conn = endpoint
                .connect(fleet.quic().parse()?, "localhost")?
                .await?;
            let (mut send, mut recv) = conn.open_bi().await?;
            let hello = wire::msg::Hello {
                node_id: "cam-someone-else".into(),
                device_class: "laptop".into(),
                role: wire::msg::Role::Device,
                protocol_version: wire::msg::PROTOCOL_VERSION,
                catalog_digests: vec![],
                offload_addr: None,
                battery: wire::msg::Battery {
                    capacity_j: 1.0,
                    energy_left_j: 1.0,
                    drain_w: 0.0,
                    shift_end_unix_ms: 0,
                    source: wire::msg::BatterySource::Model,
                },
                apps: vec!["garment".into()],
                watchlist_version: 0,
            };
            net::framing::write_frame(&mut send, &wire::msg::NodeMsg::Hello(hello)).await?;
            let reply: Option<wire::msg::CoordMsg> =
                net::framing::read_frame(&mut recv, wire::codec::MAX_FRAME_BYTES).await?;
            anyhow::Ok(reply)
        })
        .expect("an answer");
    match answer {
        Some(wire::msg::CoordMsg::Error { code, message }) => {
            assert_eq!(code, wire::msg::ErrorCode::IdentityMismatch);
            assert!(message.contains("cam-x"), "{message}");
        }
        other => panic!("expected an identity error, got {other:?}"),
    }
    assert!(fleet.status().expect("status").nodes.is_empty());
}

#[test]
fn a_coordinator_restart_is_survived() {
    let fleet = Fleet::new().expect("fleet");
    let mut coord = fleet.coordinator(&[]).expect("coordinator");
    let mut node = fleet.node("cam-r", "phone-2016", 14.0, &[]).expect("node");
    let before = fleet
        .wait_for("an acked assignment", Duration::from_secs(20), |s| {
            s.nodes.iter().any(|n| n.acked_epoch >= 1)
        })
        .expect("first plan");
    let epoch_before = before.plan.epoch;
    coord.kill(); // crash, not an orderly stop
    std::thread::sleep(Duration::from_secs(2));
    let _coord = fleet.coordinator(&[]).expect("coordinator restarted");
    let after = fleet
        .wait_for_node(
            "the node to reconnect and ack a newer epoch",
            Duration::from_secs(20),
            "cam-r",
            |n| n.connected && n.acked_epoch > epoch_before,
        )
        .expect("reconnected");
    assert!(
        after.plan.epoch > epoch_before,
        "plan epochs never go back across a restart"
    );
    assert!(
        node.wait_exit(Duration::from_secs(30))
            .expect("exit")
            .success(),
        "{}",
        node.log_text()
    );
    let s = fleet.summary("cam-r").expect("summary");
    // Serving never stopped: 12 requests/s for 14 s is about 168; an outage that stopped serving
    // for the ~3 s without a coordinator would lose about 36 of them.
    let requests = s.requests;
    assert!(requests >= 130, "node served only {requests} requests");
    assert!(s.last_epoch > epoch_before);
}

#[test]
fn ping_datagrams_are_bounded_and_a_flood_of_them_changes_nothing() {
    let fleet = Fleet::new().expect("fleet");
    let _coord = fleet.coordinator(&[]).expect("coordinator");
    let good = good_node(&fleet);
    let seq_before = good_seq(&fleet.status().expect("status"));
    // A stolen device with a valid certificate floods the leader with datagrams.
    fleet.enroll(Kind::Node, "cam-rogue").expect("enroll");
    let identity = Identity::load(&fleet.ca, "cam-rogue").expect("identity");
    let rt = tokio::runtime::Runtime::new().expect("rt");
    let (max, sent, after_flood, after_large) = rt
        .block_on(async {
            let config = net::tls::coordinator_client_config(&identity)?;
            let conn = dial(&fleet.quic(), config).await?;
            // The leader advertises room for small datagrams only.
            let max = conn.max_datagram_size().unwrap_or(0);
            let mut sent = 0usize;
            let flood_until = std::time::Instant::now() + Duration::from_secs(3);
            while std::time::Instant::now() < flood_until {
                for _ in 0..64 {
                    if conn
                        .send_datagram(bytes::Bytes::from(vec![7u8; 64]))
                        .is_ok()
                    {
                        sent += 1;
                    }
                }
                tokio::task::yield_now().await;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
            // The leader dropped what it could not hold; the connection itself is intact.
            let after_flood = conn.close_reason().map(|r| r.to_string());
            // A datagram larger than the leader holds closes that connection.
            let _ = conn.send_datagram(bytes::Bytes::from(vec![7u8; max]));
            let after_large = tokio::time::timeout(Duration::from_secs(3), conn.closed())
                .await
                .map(|r| r.to_string())
                .ok();
            anyhow::Ok((max, sent, after_flood, after_large))
        })
        .expect("flood");
    assert!(max > 0 && max <= 256, "advertised datagram room {max}");
    assert!(sent > 1000, "the flood sent {sent} datagrams");
    assert_eq!(
        after_flood, None,
        "datagrams within the bound do not end the connection"
    );
    let closed = after_large.expect("a datagram over the bound must close the connection");
    assert!(closed.contains("oversized datagram"), "{closed}");
    good_node_keeps_reporting(&fleet, good, seq_before);
}
