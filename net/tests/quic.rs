//! Mutual TLS over loopback QUIC with fleet certificates: who gets in, who does not, and frames
//! on a real stream.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use mcdnn_net::identity::{Ca, Identity, Kind, PeerId, Validity};
use mcdnn_net::tls;
use tokio::time::timeout;
use wire::codec::{CodecError, MAX_FRAME_BYTES};
use wire::msg::{ALPN, Battery, BatterySource, CoordMsg, Hello, NodeMsg, PROTOCOL_VERSION, Role};

const WAIT: Duration = Duration::from_secs(10);
const DAYS: u32 = 30;

fn enroll(ca: &Ca, dir: &Path, kind: Kind, name: &str) -> Identity {
    ca.enroll(kind, name, dir, &[], DAYS).expect("enroll");
    Identity::load(dir, name).expect("load identity")
}

/// A fleet CA (loaded back from disk, as `mcdnnctl` does) with a coordinator identity.
fn fleet(dir: &Path) -> (Ca, Identity) {
    Ca::init(&dir.join("ca")).expect("init CA");
    let ca = Ca::load(&dir.join("ca")).expect("load CA");
    let coord = enroll(&ca, &dir.join("coord"), Kind::Coordinator, "coord-0");
    (ca, coord)
}

fn server(identity: &Identity) -> (quinn::Endpoint, SocketAddr) {
    let config = tls::server_config(identity).expect("server config");
    let endpoint =
        quinn::Endpoint::server(config, "127.0.0.1:0".parse().expect("addr")).expect("bind");
    let addr = endpoint.local_addr().expect("local addr");
    (endpoint, addr)
}

fn client_endpoint() -> quinn::Endpoint {
    quinn::Endpoint::client("127.0.0.1:0".parse().expect("addr")).expect("bind client")
}

/// Runs one handshake; returns the server's and the client's view. A client may think it is
/// connected before the server has checked its certificate, so a refused client is one whose
/// connection fails or closes shortly after.
async fn handshake(
    server_ep: &quinn::Endpoint,
    addr: SocketAddr,
    client: quinn::ClientConfig,
) -> (
    Result<quinn::Connection, quinn::ConnectionError>,
    Result<quinn::Connection, String>,
) {
    let client_ep = client_endpoint();
    let connecting = client_ep
        .connect_with(client, addr, &tls::server_name_for(&addr.to_string()))
        .expect("start connect");
    let server_side = async {
        let incoming = server_ep.accept().await.expect("endpoint open");
        incoming.await
    };
    let (server_res, client_res) =
        tokio::join!(timeout(WAIT, server_side), timeout(WAIT, connecting));
    let server_res = server_res.expect("server handshake timed out");
    let client_res = match client_res.expect("client handshake timed out") {
        Ok(conn) => Ok(conn),
        Err(e) => Err(e.to_string()),
    };
    (server_res, client_res)
}

async fn assert_refused(
    server_ep: &quinn::Endpoint,
    addr: SocketAddr,
    client: quinn::ClientConfig,
) -> String {
    let (server_res, client_res) = handshake(server_ep, addr, client).await;
    let err = match server_res {
        Ok(conn) => panic!("server accepted {:?}", tls::peer(&conn)),
        Err(e) => e.to_string(),
    };
    if let Ok(conn) = client_res {
        // The client finished its half; the server's close must reach it.
        let reason = timeout(WAIT, conn.closed())
            .await
            .expect("client never saw the refusal");
        assert!(!reason.to_string().is_empty());
    }
    err
}

fn hello(node_id: &str) -> NodeMsg {
    NodeMsg::Hello(Hello {
        node_id: node_id.to_owned(),
        device_class: "phone".to_owned(),
        role: Role::Device,
        protocol_version: PROTOCOL_VERSION,
        catalog_digests: vec!["ab".repeat(32)],
        offload_addr: None,
        battery: Battery {
            capacity_j: 36_000.0,
            energy_left_j: 20_000.0,
            drain_w: 1.5,
            shift_end_unix_ms: 1_700_000_000_000,
            source: BatterySource::Model,
        },
        apps: vec!["digits".to_owned()],
        watchlist_version: 0,
    })
}

#[tokio::test]
async fn fleet_node_is_identified_and_frames_round_trip() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (ca, coord) = fleet(tmp.path());
    let node = enroll(&ca, &tmp.path().join("node"), Kind::Node, "cam-1");
    let (server_ep, addr) = server(&coord);

    let client = tls::client_config(&node).expect("client config");
    let (server_res, client_res) = handshake(&server_ep, addr, client).await;
    let server_conn = server_res.expect("server accepts a fleet node");
    let client_conn = client_res.expect("node reaches the coordinator");
    assert_eq!(
        tls::peer(&server_conn).expect("peer"),
        PeerId::new(Kind::Node, "cam-1").expect("id")
    );
    assert_eq!(
        tls::peer(&client_conn).expect("peer"),
        PeerId::new(Kind::Coordinator, "coord-0").expect("id")
    );
    assert_eq!(
        server_conn.handshake_data().and_then(|d| d
            .downcast::<quinn::crypto::rustls::HandshakeData>()
            .ok()
            .and_then(|d| d.protocol)),
        Some(ALPN.to_vec())
    );

    let server_task = tokio::spawn(async move {
        let (mut send, mut recv) = server_conn.accept_bi().await.expect("accept stream");
        let got: NodeMsg = mcdnn_net::framing::read_frame(&mut recv, MAX_FRAME_BYTES)
            .await
            .expect("read")
            .expect("one frame");
        let peer = tls::peer(&server_conn).expect("peer");
        let reply = CoordMsg::Welcome {
            node_id: peer.name,
            leader: "coord-0".to_owned(),
            epoch: 7,
        };
        mcdnn_net::framing::write_frame(&mut send, &reply)
            .await
            .expect("write");
        send.finish().expect("finish");
        let end: Option<NodeMsg> = mcdnn_net::framing::read_frame(&mut recv, MAX_FRAME_BYTES)
            .await
            .expect("eof");
        assert_eq!(end, None);
        // Keep the connection alive until the client has read everything.
        server_conn.closed().await;
        got
    });

    let (mut send, mut recv) = client_conn.open_bi().await.expect("open stream");
    mcdnn_net::framing::write_frame(&mut send, &hello("cam-1"))
        .await
        .expect("write hello");
    send.finish().expect("finish");
    let welcome: Option<CoordMsg> = mcdnn_net::framing::read_frame(&mut recv, MAX_FRAME_BYTES)
        .await
        .expect("read");
    assert_eq!(
        welcome,
        Some(CoordMsg::Welcome {
            node_id: "cam-1".to_owned(),
            leader: "coord-0".to_owned(),
            epoch: 7
        })
    );
    let end: Option<CoordMsg> = mcdnn_net::framing::read_frame(&mut recv, MAX_FRAME_BYTES)
        .await
        .expect("eof");
    assert_eq!(end, None);
    client_conn.close(0u32.into(), b"done");
    let got = timeout(WAIT, server_task)
        .await
        .expect("server task")
        .expect("join");
    assert_eq!(got, hello("cam-1"));
}

#[tokio::test]
async fn certificate_from_a_foreign_ca_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (_ca, coord) = fleet(tmp.path());
    let foreign = Ca::init(&tmp.path().join("foreign-ca")).expect("foreign CA");
    let intruder = enroll(&foreign, &tmp.path().join("intruder"), Kind::Node, "cam-1");
    let (server_ep, addr) = server(&coord);

    // The intruder trusts the fleet CA for the server, but its own cert is foreign.
    let fleet_ca_pem = std::fs::read(tmp.path().join("ca/ca.pem")).expect("ca.pem");
    let intruder_with_fleet_roots = Identity::from_pem(
        &std::fs::read(tmp.path().join("intruder/cam-1.pem")).expect("pem"),
        &std::fs::read(tmp.path().join("intruder/cam-1.key")).expect("key"),
        &fleet_ca_pem,
    )
    .expect("intruder identity");
    assert_eq!(intruder_with_fleet_roots.peer(), intruder.peer());
    let intruder = intruder_with_fleet_roots;
    let err = assert_refused(
        &server_ep,
        addr,
        tls::client_config(&intruder).expect("config"),
    )
    .await;
    assert!(
        err.contains("UnknownIssuer") || err.contains("unknown issuer"),
        "{err}"
    );
}

#[tokio::test]
async fn client_without_certificate_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (_ca, coord) = fleet(tmp.path());
    let (server_ep, addr) = server(&coord);

    let mut roots = rustls::RootCertStore::empty();
    for ca in coord.ca_certs() {
        roots.add(ca.clone()).expect("root");
    }
    let mut tls_cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .expect("tls13")
    .with_root_certificates(roots)
    .with_no_client_auth();
    tls_cfg.alpn_protocols = vec![ALPN.to_vec()];
    let client = quinn::ClientConfig::new(Arc::new(
        quinn::crypto::rustls::QuicClientConfig::try_from(tls_cfg).expect("quic"),
    ));
    let err = assert_refused(&server_ep, addr, client).await;
    assert!(err.to_lowercase().contains("certificate"), "{err}");
}

#[tokio::test]
async fn expired_certificate_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (ca, coord) = fleet(tmp.path());
    let now = SystemTime::now();
    let day = Duration::from_secs(86_400);
    let expired = Validity {
        not_before: now - 2 * day,
        not_after: now - day,
    };
    let dir = tmp.path().join("old");
    ca.enroll_with(Kind::Node, "cam-old", &dir, &[], expired)
        .expect("enroll expired");
    let node = Identity::load(&dir, "cam-old").expect("load");
    let (server_ep, addr) = server(&coord);
    let err = assert_refused(&server_ep, addr, tls::client_config(&node).expect("config")).await;
    assert!(err.contains("Expired") || err.contains("expired"), "{err}");
}

#[tokio::test]
async fn server_with_a_foreign_certificate_is_refused_by_the_node() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (ca, _coord) = fleet(tmp.path());
    let node = enroll(&ca, &tmp.path().join("node"), Kind::Node, "cam-1");
    let foreign = Ca::init(&tmp.path().join("foreign-ca")).expect("foreign CA");
    let fake = enroll(
        &foreign,
        &tmp.path().join("fake"),
        Kind::Coordinator,
        "coord-0",
    );
    let (server_ep, addr) = server(&fake);

    let (server_res, client_res) =
        handshake(&server_ep, addr, tls::client_config(&node).expect("config")).await;
    let err = client_res.expect_err("node must not trust a foreign coordinator");
    assert!(
        err.contains("UnknownIssuer") || err.contains("unknown issuer"),
        "{err}"
    );
    assert!(server_res.is_err());
}

#[tokio::test]
async fn oversized_length_prefix_on_a_stream_is_rejected_before_allocating() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (ca, coord) = fleet(tmp.path());
    let node = enroll(&ca, &tmp.path().join("node"), Kind::Node, "cam-1");
    let (server_ep, addr) = server(&coord);
    let (server_res, client_res) =
        handshake(&server_ep, addr, tls::client_config(&node).expect("config")).await;
    let server_conn = server_res.expect("accept");
    let client_conn = client_res.expect("connect");

    let (mut send, _recv) = client_conn.open_bi().await.expect("open");
    // Claims ~4 GiB and sends nothing more; the stream stays open, so a reader that trusted the
    // prefix would allocate and then wait forever instead of failing at once.
    send.write_all(&u32::MAX.to_be_bytes())
        .await
        .expect("write");
    let (_send, mut recv) = timeout(WAIT, server_conn.accept_bi())
        .await
        .expect("timely")
        .expect("accept");
    let err = timeout(
        WAIT,
        mcdnn_net::framing::read_frame::<_, NodeMsg>(&mut recv, MAX_FRAME_BYTES),
    )
    .await
    .expect("rejected without waiting for the body")
    .expect_err("oversized");
    assert!(
        matches!(err, CodecError::FrameTooLarge { len, max } if len == u32::MAX as usize && max == MAX_FRAME_BYTES),
        "{err}"
    );
    assert!(err.to_string().contains("4294967295"), "{err}");
}
