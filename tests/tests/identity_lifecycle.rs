//! Device identity for its whole life, against the real binaries: token enrollment (one use,
//! its own name only, before it expires), renewal on a short lifetime without a restart,
//! revocation (live session closed within 1 s, refused on every replica, also after a leader
//! kill), offload servers refusing revoked peers, and world-readable keys refused at start.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use mcdnn_tests::{Fleet, NodeRun, bin, node_command, revoke_chaos, spawn_logged};
use net::identity::{Ca, Identity, IssuingCa, Kind};
use serde_json::json;
use wire::codec;
use wire::msg::{OffloadReply, OffloadRequest};

/// A coordinator holding an issuing CA, with node certificates of `leaf_s` seconds.
fn fleet_with_issuer(leaf_s: &str) -> (Fleet, mcdnn_tests::Proc) {
    let fleet = Fleet::new().expect("fleet");
    IssuingCa::create(&Ca::load(&fleet.ca).expect("ca"), &fleet.ca).expect("issuing CA");
    let coordinator = fleet
        .coordinator(&["--leaf-lifetime-s", leaf_s])
        .expect("coordinator");
    (fleet, coordinator)
}

fn token(fleet: &Fleet, name: &str, ttl_s: f64) -> String {
    let body = json!({ "name": name, "ttl_s": ttl_s }).to_string();
    let deadline = Instant::now() + Duration::from_secs(15);
    let r = loop {
        let r = fleet
            .ops
            .post_json(&fleet.admin(), "/v1/tokens", &body, Duration::from_secs(5))
            .expect("token request");
        // 503 until the fresh coordinator has elected itself.
        if r.status != 503 || Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(r.status, 200, "{}", r.body);
    let v: serde_json::Value = serde_json::from_str(&r.body).expect("json");
    v["token"].as_str().expect("token").to_owned()
}

/// A device folder holding only the fleet CA certificate, as given out of band.
fn device_dir(fleet: &Fleet, label: &str) -> std::path::PathBuf {
    let dir = fleet.path().join(label);
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::copy(fleet.ca.join("ca.pem"), dir.join("ca.pem")).expect("ca.pem");
    dir
}

/// Runs `mcdnn-node enroll`; Ok(stdout) on success, Err(stderr) on failure.
fn enroll(fleet: &Fleet, dir: &Path, name: &str, token: &str) -> Result<String, String> {
    let out = Command::new(bin("mcdnn-node").expect("built"))
        .args([
            "enroll",
            "--name",
            name,
            "--token",
            token,
            "--admin",
            &fleet.admin(),
        ])
        .arg("--identity-dir")
        .arg(dir)
        .output()
        .expect("ran");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    if out.status.success() {
        Ok(text(&out.stdout))
    } else {
        Err(text(&out.stderr))
    }
}

fn not_after(dir: &Path, name: &str) -> std::time::SystemTime {
    Identity::load(dir, name)
        .expect("identity")
        .validity()
        .expect("dates")
        .1
}

#[test]
fn token_enrollment_is_one_time_for_its_own_name_and_renewal_needs_no_restart() {
    let (fleet, mut coordinator) = fleet_with_issuer("30");
    let dev = device_dir(&fleet, "dev-a");
    // The operator's way: `mcdnnctl node token` prints the secret once.
    token(&fleet, "warm-up", 60.0); // waits out the fresh coordinator's election
    let out = Command::new(bin("mcdnnctl").expect("built"))
        .args([
            "node",
            "token",
            "cam-1",
            "--ttl",
            "10m",
            "--coordinator",
            &fleet.admin(),
        ])
        .args(["--identity", mcdnn_tests::OPERATOR, "--identity-dir"])
        .arg(&fleet.ca)
        .output()
        .expect("mcdnnctl ran");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8_lossy(&out.stdout).into_owned();
    let t1 = printed
        .lines()
        .next()
        .expect("token line")
        .trim()
        .to_owned();
    assert_eq!(t1.len(), 64, "{printed}");

    let wrong = enroll(&fleet, &dev, "cam-1", &"0".repeat(64)).expect_err("wrong token");
    assert!(wrong.contains("wrong enrollment token"), "{wrong}");
    let other = token(&fleet, "cam-2", 600.0);
    let cross = enroll(&fleet, &dev, "cam-1", &other).expect_err("token of another name");
    assert!(cross.contains("403"), "{cross}");
    // A wrong guess does not burn the real token.
    enroll(&fleet, &dev, "cam-1", &t1).expect("enrolled with its token");
    let key_mode = std::fs::metadata(dev.join("cam-1.key"))
        .expect("key")
        .permissions()
        .mode();
    assert_eq!(key_mode & 0o777, 0o600);
    let identity = Identity::load(&dev, "cam-1").expect("issued identity loads");
    assert_eq!(identity.cert_chain().len(), 2, "leaf and issuing CA");

    let again = enroll(&fleet, &device_dir(&fleet, "dev-b"), "cam-1", &t1).expect_err("reuse");
    assert!(again.contains("none is outstanding"), "{again}");
    let short = token(&fleet, "cam-3", 1.0);
    std::thread::sleep(Duration::from_millis(1500));
    let expired =
        enroll(&fleet, &device_dir(&fleet, "dev-c"), "cam-3", &short).expect_err("expired");
    assert!(expired.contains("expired"), "{expired}");

    // The enrolled device runs on its 30 s certificate, renews it over its session at about
    // 20 s, and is still let in after the first certificate expired.
    let first_expiry = not_after(&dev, "cam-1");
    let run = NodeRun {
        coordinators: &fleet.quic(),
        energy_budget_j: 5.0,
        apps: "garment=8,category=4",
        telemetry_ms: 200,
    };
    let cmd = node_command(&dev, fleet.path(), "cam-1", "phone-2016", 60.0, &run).expect("cmd");
    let mut node = spawn_logged(fleet.path(), "cam-1", cmd).expect("node");
    let deadline = Instant::now() + Duration::from_secs(40);
    while not_after(&dev, "cam-1") <= first_expiry {
        assert!(Instant::now() < deadline, "no renewal: {}", node.log_text());
        assert!(
            node.child.try_wait().expect("wait").is_none(),
            "node exited: {}",
            node.log_text()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let renewed = Identity::load(&dev, "cam-1").expect("renewed identity loads");
    assert_eq!(renewed.peer().name, "cam-1");
    // Past the first certificate's end, a new connection must use the renewed one: restart
    // the coordinator so the node has to reconnect.
    while std::time::SystemTime::now() < first_expiry {
        std::thread::sleep(Duration::from_millis(250));
    }
    coordinator.kill();
    let _coordinator = fleet
        .coordinator(&["--leaf-lifetime-s", "30"])
        .expect("restart");
    fleet
        .wait_for_node(
            "the renewed node to reconnect",
            Duration::from_secs(20),
            "cam-1",
            |n| n.connected,
        )
        .unwrap_or_else(|e| panic!("{e:#}\n{}", node.log_text()));
    assert!(
        node.child.try_wait().expect("wait").is_none(),
        "the node restarted"
    );
    node.kill();
}

#[test]
fn revoke_closes_the_live_session_in_a_second_and_every_replica_refuses_it() {
    let r = revoke_chaos::run(1).expect("scenario ran");
    assert_eq!(r["ok"], true, "{r:#}");
    assert_eq!(r["lost"], 0, "{r:#}");
    assert_eq!(r["duplicated"], 0, "{r:#}");
    assert_eq!(r["reconnect_refused"], 3, "{r:#}");
    assert_eq!(r["reconnect_refused_after_failover"], 3, "{r:#}");
    for key in ["disconnect_ms", "disconnect_ms_after_failover"] {
        assert!(
            r[key].as_f64().is_some_and(|ms| ms <= 1000.0),
            "{key}: {r:#}"
        );
    }
}

/// One offload round trip as `name` on a fresh connection; `Err` if the server refuses.
async fn offload_once(fleet: &Fleet, name: &str, addr: &str) -> anyhow::Result<quinn::Connection> {
    let identity = Identity::load(&fleet.ca, name)?;
    let mut endpoint = quinn::Endpoint::client(SocketAddr::from(([127, 0, 0, 1], 0)))?;
    endpoint.set_default_client_config(net::tls::client_config(&identity)?);
    let conn = endpoint.connect(addr.parse()?, "127.0.0.1")?.await?;
    let (mut send, mut recv) = conn.open_bi().await?;
    let req = OffloadRequest {
        id: 1,
        app: "garment".into(),
        variant: "full".into(),
        pixels: vec![0; 28 * 28],
        height: 28,
        width: 28,
    };
    net::framing::write_frame(&mut send, &req).await?;
    let reply = tokio::time::timeout(
        Duration::from_secs(3),
        net::framing::read_frame::<_, OffloadReply>(&mut recv, codec::MAX_FRAME_BYTES),
    )
    .await??;
    anyhow::ensure!(reply.is_some(), "no reply");
    Ok(conn)
}

#[test]
fn an_offload_server_refuses_and_cuts_off_a_revoked_peer() {
    let fleet = Fleet::new().expect("fleet");
    let _coordinator = fleet.coordinator(&[]).expect("coordinator");
    let listen = format!("127.0.0.1:{}", mcdnn_tests::free_port());
    let _server = fleet.server("edge-1", 60.0, &listen, 50.0).expect("server");
    fleet.enroll(Kind::Node, "cam-9").expect("enroll");
    fleet
        .wait_for_node(
            "the server to join",
            Duration::from_secs(20),
            "edge-1",
            |n| n.connected,
        )
        .expect("server joined");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let live = rt
        .block_on(offload_once(&fleet, "cam-9", &listen))
        .expect("served before revocation");
    let r = fleet
        .ops
        .post_json(
            &fleet.admin(),
            "/v1/nodes/cam-9/revoke",
            "{}",
            Duration::from_secs(5),
        )
        .expect("revoke");
    assert_eq!(r.status, 200, "{}", r.body);
    let closed =
        rt.block_on(async { tokio::time::timeout(Duration::from_secs(3), live.closed()).await });
    match closed {
        Ok(quinn::ConnectionError::ApplicationClosed(c)) => {
            assert_eq!(&c.reason[..], b"revoked", "{c:?}");
        }
        other => panic!("the revoked peer's live offload connection was not cut off: {other:?}"),
    }
    assert!(
        rt.block_on(offload_once(&fleet, "cam-9", &listen)).is_err(),
        "a revoked peer was served"
    );
}

#[test]
fn a_key_other_users_can_read_is_refused_at_start() {
    let fleet = Fleet::new().expect("fleet");
    fleet.enroll(Kind::Node, "cam-4").expect("enroll");
    let key = fleet.ca.join("cam-4.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let mut node = fleet
        .node("cam-4", "phone-2016", 5.0, &[])
        .expect("spawned");
    let status = node.wait_exit(Duration::from_secs(20)).expect("exited");
    assert!(!status.success());
    let log = node.log_text();
    assert!(log.contains("chmod 600"), "{log}");
}

#[test]
fn identity_routes_refuse_strangers_viewers_floods_and_oversized_requests() {
    use mcdnn_coordinator::ctl::http::Client;
    use net::identity::OperatorRole;

    let (fleet, _coordinator) = fleet_with_issuer("600");
    let good = token(&fleet, "cam-5", 600.0);
    let post = |client: &Client, path: &str, body: &str| {
        client
            .post_json(&fleet.admin(), path, body, Duration::from_secs(5))
            .expect("answered")
    };
    // Without a certificate only enrollment is reachable; a read-only operator cannot write.
    let stranger =
        Client::anonymous(&std::fs::read(fleet.ca.join("ca.pem")).expect("ca")).expect("client");
    Ca::load(&fleet.ca)
        .expect("ca")
        .enroll_operator("viewer", &fleet.ca, OperatorRole::ReadOnly, 30)
        .expect("viewer");
    let viewer = Client::load(&fleet.ca, "viewer").expect("viewer client");
    let token_body = json!({ "name": "cam-6" }).to_string();
    for (client, want) in [(&stranger, 401), (&viewer, 403)] {
        assert_eq!(post(client, "/v1/tokens", &token_body).status, want);
        assert_eq!(post(client, "/v1/nodes/cam-5/revoke", "{}").status, want);
    }
    // Bad input is refused with a reason and changes nothing.
    for body in [
        json!({ "name": "Not A Name" }),
        json!({ "name": "cam-6", "ttl_s": 0.0 }),
        json!({ "name": "cam-6", "ttl_s": 1e12 }),
    ] {
        let r = post(&fleet.ops, "/v1/tokens", &body.to_string());
        assert_eq!(r.status, 400, "{body}: {}", r.body);
    }
    let huge = json!({ "name": "cam-5", "token": good, "csr_pem": "x".repeat(20_000) });
    assert_eq!(post(&stranger, "/v1/enroll", &huge.to_string()).status, 413);
    // A flood of guesses is cut off at the rate limit, and does not burn the real token.
    let guess = |t: &str| json!({ "name": "cam-5", "token": t, "csr_pem": "-" }).to_string();
    let statuses: Vec<u16> = (0..40)
        .map(|i| post(&stranger, "/v1/enroll", &guess(&format!("{i:064}"))).status)
        .collect();
    assert!(statuses.contains(&429), "{statuses:?}");
    assert!(
        statuses.iter().all(|s| [400, 429].contains(s)),
        "{statuses:?}"
    );
    std::thread::sleep(Duration::from_secs(2));
    enroll(&fleet, &device_dir(&fleet, "dev-e"), "cam-5", &good).expect("the real token works");
}
