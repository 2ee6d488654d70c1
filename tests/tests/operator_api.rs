//! The operator API attacked across processes, against the real coordinator binary: who may use
//! it (no certificate, a node's, a read-only operator's, an admin's), what the health port gives
//! away, bad and oversized writes, a membership change that would leave one voter, half-sent
//! requests by the thousand, and the admin-flood chaos scenario (shortened). Each attack must
//! fail and change nothing while a legitimate operator still gets through.

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use mcdnn_coordinator::ctl::http::{self, Client};
use mcdnn_tests::Fleet;
use mcdnn_tests::admin_flood::{self, FloodOptions};
use mcdnn_tests::cluster::Cluster;
use net::identity::{Ca, Kind, OperatorRole};

const T: Duration = Duration::from_secs(5);
const KEY: &str = "fleet.cost_budget_usd";
/// A write that is valid in every way but who sends it.
const GOOD_WRITE: &str = r#"{"key": "fleet.cost_budget_usd", "value": 0.5, "write_id": 1}"#;

/// One request per operator route (what an admin could send).
const ROUTES: [(&str, &str, Option<&str>); 5] = [
    ("GET", "/status", None),
    ("GET", "/cluster", None),
    ("GET", "/policy", None),
    ("POST", "/policy", Some(GOOD_WRITE)),
    ("POST", "/members", Some(r#"{"add": 1}"#)),
];

/// Starts the coordinator and waits (bounded) until it leads, so writes can commit.
fn ready_coordinator(f: &Fleet) -> mcdnn_tests::Proc {
    let p = f.coordinator(&[]).expect("coordinator");
    let deadline = Instant::now() + Duration::from_secs(20);
    while http::health_status(&f.health(), "/readyz", T).ok() != Some(200) {
        assert!(Instant::now() < deadline, "no leader: {}", p.log_text());
        std::thread::sleep(Duration::from_millis(100));
    }
    p
}

fn policy(f: &Fleet) -> serde_json::Value {
    let body = f.ops.get(&f.admin(), "/policy", T).expect("policy");
    serde_json::from_str(&body).expect("policy JSON")
}

fn status_of(client: &Client, f: &Fleet, method: &str, path: &str, body: Option<&str>) -> u16 {
    client
        .request(method, &f.admin(), path, body, T)
        .unwrap_or_else(|e| panic!("{method} {path}: {e:#}"))
        .status
}

#[test]
fn operator_routes_need_an_operator_certificate_and_writes_need_admin() {
    let f = Fleet::new().expect("fleet");
    let _coordinator = ready_coordinator(&f);
    let ca_pem = std::fs::read(f.ca.join("ca.pem")).expect("ca.pem");
    let anonymous = Client::anonymous(&ca_pem).expect("anonymous client");
    f.enroll(Kind::Node, "cam-1").expect("enroll node");
    let node = Client::load(&f.ca, "cam-1").expect("node client");
    Ca::load(&f.ca)
        .and_then(|ca| ca.enroll_operator("viewer", &f.ca, OperatorRole::ReadOnly, 30))
        .expect("enroll read-only operator");
    let viewer = Client::load(&f.ca, "viewer").expect("viewer client");
    let before = policy(&f);

    for (method, path, body) in ROUTES {
        assert_eq!(
            status_of(&anonymous, &f, method, path, body),
            401,
            "{method} {path} without a certificate"
        );
        assert_eq!(
            status_of(&node, &f, method, path, body),
            403,
            "{method} {path} with a node certificate"
        );
        let want = if method == "GET" { 200 } else { 403 };
        assert_eq!(
            status_of(&viewer, &f, method, path, body),
            want,
            "{method} {path} as a read-only operator"
        );
    }
    assert_eq!(policy(&f), before, "refused requests changed the policy");
    let cluster: serde_json::Value =
        serde_json::from_str(&f.ops.get(&f.admin(), "/cluster", T).expect("cluster"))
            .expect("json");
    assert_eq!(cluster["voters"], serde_json::json!([1]));

    // An admin's write lands, and the audit log names its certificate whatever the body claims.
    let claimed =
        r#"{"key": "fleet.cost_budget_usd", "value": 0.25, "writer": "mallory", "write_id": 7}"#;
    let r = f
        .ops
        .post_json(&f.admin(), "/policy", claimed, T)
        .expect("write");
    assert_eq!(r.status, 200, "{}", r.body);
    let after = policy(&f);
    assert_eq!(after["policies"][KEY]["Number"], 0.25);
    let log = after["log"].as_array().expect("log");
    assert_eq!(log.len(), 1);
    assert_eq!(log[0]["writer"], "ops/mallory", "{after:#}");
}

#[test]
fn the_health_port_names_no_node_and_takes_no_writes() {
    let f = Fleet::new().expect("fleet");
    let _coordinator = ready_coordinator(&f);
    let _node = f.node("cam-secret", "phone-2016", 30.0, &[]).expect("node");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f
        .status()
        .is_ok_and(|s| s.nodes.iter().any(|n| n.id == "cam-secret"))
    {
        assert!(Instant::now() < deadline, "node never joined");
        std::thread::sleep(Duration::from_millis(200));
    }
    for path in ["/livez", "/readyz", "/metrics"] {
        let body = http::health_get(&f.health(), path, T).expect(path);
        assert!(!body.contains("cam-secret"), "{path} names a node:\n{body}");
    }
    for path in ["/status", "/cluster", "/policy", "/members"] {
        let r = http::health_request(&f.health(), path, T).expect(path);
        assert_eq!(r.status, 404, "{path} on the health port: {}", r.body);
    }
    // A write sent to the health port in plain HTTP is not routed anywhere.
    let mut s = TcpStream::connect(f.health()).expect("connect");
    s.set_read_timeout(Some(T)).expect("timeout");
    write!(
        s,
        "POST /policy HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{GOOD_WRITE}",
        GOOD_WRITE.len()
    )
    .expect("send");
    let mut answer = String::new();
    let _ = std::io::Read::read_to_string(&mut s, &mut answer);
    assert!(
        answer.starts_with("HTTP/1.1 404") || answer.starts_with("HTTP/1.1 405"),
        "{answer}"
    );
    assert!(policy(&f)["log"].as_array().is_some_and(Vec::is_empty));
}

#[test]
fn bad_policy_writes_are_refused_with_a_reason_and_change_nothing() {
    let f = Fleet::new().expect("fleet");
    let _coordinator = ready_coordinator(&f);
    let before = policy(&f);
    let post = |body: &str| f.ops.post_json(&f.admin(), "/policy", body, T);
    let oversized = format!(
        r#"{{"key": "{KEY}", "value": "{}", "write_id": 1}}"#,
        "x".repeat(100_000)
    );
    // The server may close the connection while the body is still arriving: also a refusal.
    if let Ok(r) = post(&oversized) {
        assert_eq!(r.status, 413, "{}", r.body);
    }
    let cases = [
        (
            r#"{"key": "fleet.cost_budgt_usd", "value": 0.05, "write_id": 2}"#,
            KEY,
        ),
        (
            r#"{"key": "fleet.cost_budget_usd", "value": 1e300, "write_id": 3}"#,
            "finite number in [0, 1000000]",
        ),
        (
            r#"{"key": "fleet.cost_budget_usd", "value": -1, "write_id": 4}"#,
            "finite number in [0, 1000000]",
        ),
        (
            r#"{"key": "fleet.cost_budget_usd", "value": "cheap", "write_id": 5}"#,
            "takes a number",
        ),
        (
            r#"{"key": "fleet.cost_budget_usd", "value": [1], "write_id": 6}"#,
            "finite number, a string or null",
        ),
    ];
    for (body, reason) in cases {
        let r = post(body).expect("post");
        assert_eq!(r.status, 400, "{body}: {}", r.body);
        assert!(r.body.contains(reason), "{body}: {}", r.body);
    }
    // NaN is not JSON: refused by the parser.
    let r = post(r#"{"key": "fleet.cost_budget_usd", "value": NaN, "write_id": 8}"#).expect("post");
    assert!(
        r.status == 400 || r.status == 422,
        "NaN: {} {}",
        r.status,
        r.body
    );
    let long_key = format!(
        r#"{{"key": "{}", "value": 1, "write_id": 9}}"#,
        "k".repeat(300)
    );
    assert_eq!(post(&long_key).expect("post").status, 400);
    assert_eq!(policy(&f), before, "a refused write changed the policy");

    let r =
        post(r#"{"key": "fleet.cost_budget_usd", "value": 0.05, "write_id": 10}"#).expect("post");
    assert_eq!(r.status, 200, "{}", r.body);
}

#[test]
fn removing_a_voter_that_would_leave_one_is_refused() {
    let mut c = Cluster::new(3).expect("cluster");
    c.start_all().expect("start");
    let leader = c
        .wait_leader(Duration::from_secs(30), None)
        .expect("leader");
    let followers: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    let id = |i: usize| serde_json::json!(i as u64 + 1);

    let r = c
        .change_members(leader, serde_json::json!({"remove": 9}))
        .expect("post");
    assert_eq!(r.status, 409, "unknown id: {}", r.body);
    assert!(r.body.contains("not a member"), "{}", r.body);
    let r = c
        .change_members(leader, serde_json::json!({"remove": id(leader)}))
        .expect("post");
    assert_eq!(r.status, 409, "the leader: {}", r.body);

    let r = c
        .change_members(leader, serde_json::json!({"remove": id(followers[0])}))
        .expect("post");
    assert_eq!(r.status, 200, "3 -> 2 voters is allowed: {}", r.body);
    let r = c
        .change_members(leader, serde_json::json!({"remove": id(followers[1])}))
        .expect("post");
    assert_eq!(r.status, 409, "2 -> 1 voter: {}", r.body);
    assert!(r.body.contains("force"), "{}", r.body);
    let leader = c
        .wait_leader(Duration::from_secs(30), None)
        .expect("leader");
    assert_eq!(c.status(leader).expect("status").voters.len(), 2);
    c.write_policy(KEY, 0.5, "op", 1)
        .expect("the two voters still commit");
}

/// Opens `count` connections from `source` to `addr` and sends each only the start of a request.
fn half_sent(source: &str, addr: &str, count: usize, start: &[u8]) -> Vec<std::net::TcpStream> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let addr: std::net::SocketAddr = addr.parse().expect("addr");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut open = Vec::with_capacity(count);
    for _ in 0..count {
        if Instant::now() > deadline {
            break;
        }
        let connected = rt.block_on(async {
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.bind(
                format!("{source}:0")
                    .parse()
                    .map_err(std::io::Error::other)?,
            )?;
            tokio::time::timeout(Duration::from_secs(1), socket.connect(addr))
                .await
                .map_err(std::io::Error::other)?
        });
        if let Ok(stream) = connected.and_then(|s| s.into_std()) {
            let mut stream = stream;
            let _ = stream.set_nonblocking(false);
            let _ = stream.write_all(start);
            open.push(stream);
        }
    }
    open
}

#[test]
fn thousands_of_half_sent_requests_do_not_stop_health_or_the_operator_api() {
    let f = Fleet::new().expect("fleet");
    let _coordinator = ready_coordinator(&f);
    // The attacker comes from another loopback address than the operator (127.0.0.1).
    let attacker = "127.0.0.9";
    let mut held = half_sent(
        attacker,
        &f.health(),
        1100,
        b"GET /livez HTTP/1.1\r\nHost: x\r\n",
    );
    // The start of a TLS ClientHello, never finished.
    held.extend(half_sent(
        attacker,
        &f.admin(),
        1100,
        &[0x16, 0x03, 0x01, 0x02, 0x00],
    ));
    assert!(held.len() >= 1100, "only {} connections opened", held.len());
    // While they are held (and after the header deadline passed), legitimate clients get answers.
    let deadline = Instant::now() + Duration::from_secs(8);
    let mut rounds = 0;
    while Instant::now() < deadline {
        let livez = http::health_get(&f.health(), "/livez", Duration::from_secs(3));
        assert!(livez.is_ok(), "/livez: {livez:?}");
        let cluster = f.ops.get(&f.admin(), "/cluster", Duration::from_secs(3));
        assert!(cluster.is_ok(), "/cluster: {cluster:?}");
        rounds += 1;
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(rounds >= 5, "{rounds}");
    drop(held);
}

#[test]
fn half_sent_requests_from_many_addresses_do_not_lock_out_an_operator() {
    let f = Fleet::new().expect("fleet");
    let _coordinator = ready_coordinator(&f);
    // 40 addresses, each under the per-address cap, together far over the listener's cap: the
    // listener must make room by closing the oldest half-open connections.
    let mut held = Vec::new();
    for last in 10..50 {
        let source = format!("127.0.0.{last}");
        held.extend(half_sent(
            &source,
            &f.health(),
            28,
            b"GET /livez HTTP/1.1\r\n",
        ));
        held.extend(half_sent(
            &source,
            &f.admin(),
            28,
            &[0x16, 0x03, 0x01, 0x02, 0x00],
        ));
    }
    assert!(held.len() >= 2000, "only {} connections opened", held.len());
    for _ in 0..5 {
        let livez = http::health_get(&f.health(), "/livez", Duration::from_secs(3));
        assert!(livez.is_ok(), "/livez: {livez:?}");
        let cluster = f.ops.get(&f.admin(), "/cluster", Duration::from_secs(3));
        assert!(cluster.is_ok(), "/cluster: {cluster:?}");
        std::thread::sleep(Duration::from_millis(300));
    }
    drop(held);
}

#[test]
fn admin_flood_refuses_oversized_writes_and_every_replica_restarts() {
    let r = admin_flood::run(&FloodOptions {
        oversized: 8,
        invalid: 60,
        writes: 1050,
        writers: 4,
    })
    .expect("scenario ran");
    assert_eq!(r["ok"], true, "{r:#}");
    assert_eq!(r["lost"], 0, "{r:#}");
    assert_eq!(r["duplicated"], 0, "{r:#}");
    assert_eq!(r["refused"], 68, "{r:#}");
    assert_eq!(r["restarted_ok"], 3, "{r:#}");
    assert_eq!(r["snapshot_taken"], true, "{r:#}");
}
