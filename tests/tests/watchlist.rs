//! The watchlist end to end, against three real coordinator processes and a real node agent:
//! an admin operator adds a name from two real photos (frames of `Megamind.avi` from Debian's
//! opencv-doc, one face each; BlazeFace's short-range model finds no face in the small one of
//! `messi5.jpg`), the descriptors replicate to all three replicas and is pushed to the connected node; a node's
//! certificate, a read-only operator, a garbage, faceless or oversized upload and a bad name are
//! refused and change nothing; the list survives a leader kill (the node, already current, is
//! not sent it again) and a replica restart; a removal reaches the node; a revoked node gets
//! no later list.
//!
//! Needs the face models (`models/face`) and ONNX Runtime (`ORT_DYLIB_PATH`), and
//! `cargo build -p mcdnn-coordinator -p mcdnn-node` first.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use base64::Engine;
use mcdnn_coordinator::admin::watchlist::WatchlistView;
use mcdnn_coordinator::ctl::http::Client;
use mcdnn_tests::cluster::Cluster;
use net::identity::{Ca, OperatorRole};

const T: Duration = Duration::from_secs(20);
const PHOTOS: &str = "/usr/share/doc/opencv-doc/examples/data";

fn face_models() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/face")
}

fn photo(name: &str) -> String {
    let bytes = std::fs::read(format!("{PHOTOS}/{name}"))
        .unwrap_or_else(|e| panic!("{PHOTOS}/{name}: {e} (apt-get install opencv-doc)"));
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Frame `n` of Megamind.avi as a PNG (ffmpeg, installed with opencv-doc by scripts/setup.sh).
fn megamind(n: u32) -> String {
    let out = std::process::Command::new("ffmpeg")
        .args([
            "-loglevel",
            "error",
            "-i",
            &format!("{PHOTOS}/Megamind.avi"),
            "-vf",
        ])
        .arg(format!("select=eq(n\\,{n})"))
        .args(["-frames:v", "1", "-f", "image2pipe", "-vcodec", "png", "-"])
        .output()
        .expect("ffmpeg runs (scripts/setup.sh installs it)");
    assert!(
        out.status.success() && !out.stdout.is_empty(),
        "ffmpeg made no PNG of frame {n}"
    );
    base64::engine::general_purpose::STANDARD.encode(out.stdout)
}

fn add_body(name: &str, images: &[String]) -> String {
    serde_json::json!({ "name": name, "images": images }).to_string()
}

fn view(c: &Cluster, i: usize) -> WatchlistView {
    let body = c
        .ops
        .get(&c.admin(i), "/v1/watchlist", T)
        .unwrap_or_else(|e| panic!("GET /v1/watchlist from replica {i}: {e:#}"));
    serde_json::from_str(&body).expect("watchlist JSON")
}

/// Adds `name` from `images` (base64) through replica `i`.
fn add(who: &str, c: &Cluster, i: usize, name: &str, images: &[String]) -> (u16, String) {
    post(who, c, i, "/v1/watchlist/add", &add_body(name, images))
}

/// POSTs as certificate `who`, on a connection of its own: the operator API closes a
/// keep-alive connection idle for its 5 s header deadline, and a client would otherwise reuse
/// it for the next POST (which it does not retry) while a long step ran.
fn post(who: &str, c: &Cluster, i: usize, path: &str, body: &str) -> (u16, String) {
    let r = Client::load(&c.ca, who)
        .expect("client")
        .post_json(&c.admin(i), path, body, T)
        .unwrap_or_else(|e| panic!("POST {path}: {e:#}"));
    (r.status, r.body)
}

/// Waits until the node's log has said `line` `times` times.
fn wait_log(p: &mcdnn_tests::Proc, line: &str, times: usize, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while p.log_text().matches(line).count() < times {
        assert!(
            Instant::now() < deadline,
            "{line:?} not logged {times} time(s) within {timeout:?}:\n{}",
            p.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_watchlist_entry_replicates_reaches_nodes_and_survives_failover() {
    let mut c = Cluster::new(3).expect("cluster");
    c.extra_args = vec!["--face-models".into(), face_models().display().to_string()];
    c.start_all().expect("start");
    let leader = c.wait_leader(T, None).expect("leader");
    let node = c.node("cam-1", "phone-2016", 120.0).expect("node");
    wait_log(&node, "connected to the coordinator", 1, T);

    // Real photos with one face each: descriptors only, replicated to every replica.
    let face = megamind(30);
    let (status, body) = add("ops", &c, leader, "Roxanne", &[face.clone(), megamind(90)]);
    assert_eq!(status, 200, "add: {body}");
    let index = serde_json::from_str::<serde_json::Value>(&body).expect("ack")["index"]
        .as_u64()
        .expect("index");
    c.wait_applied(index, T).expect("applied everywhere");
    let on_leader = view(&c, leader);
    assert_ne!(on_leader.version, 0);
    assert_eq!(on_leader.names.len(), 1);
    assert_eq!(on_leader.names[0].name, "Roxanne");
    assert_eq!(on_leader.names[0].descriptors, 2);
    assert_eq!(on_leader.names[0].added_by, "ops");
    for i in 0..3 {
        assert_eq!(view(&c, i).version, on_leader.version, "replica {i}");
    }
    let installed = format!("watchlist installed version={} names=1", on_leader.version);
    wait_log(&node, &installed, 1, T);

    // Refusals that change nothing.
    Ca::load(&c.ca)
        .and_then(|ca| ca.enroll_operator("viewer", &c.ca, OperatorRole::ReadOnly, 30))
        .expect("read-only operator");
    // Small bodies: the caller is refused before the body is read (a large one could be cut
    // off mid-send, which the client sees as a broken pipe instead of the 403).
    let other = add_body("Someone Else", &["iVBORw0KGgo=".to_string()]);
    assert_eq!(
        post("cam-1", &c, leader, "/v1/watchlist/add", &other).0,
        403
    );
    assert_eq!(
        post(
            "cam-1",
            &c,
            leader,
            "/v1/watchlist/remove",
            r#"{"name":"Roxanne"}"#
        )
        .0,
        403
    );
    assert_eq!(
        post("viewer", &c, leader, "/v1/watchlist/add", &other).0,
        403
    );
    let garbage = base64::engine::general_purpose::STANDARD.encode(b"\x89PNG\r\n\x1a\nnot really");
    let (status, why) = add("ops", &c, leader, "Garbage", &[garbage]);
    assert_eq!(status, 400, "{why}");
    for faceless in ["fruits.jpg", "messi5.jpg"] {
        let (status, why) = add("ops", &c, leader, "Fruit", &[face.clone(), photo(faceless)]);
        assert_eq!(status, 400, "a photo without a face: {why}");
        assert!(why.contains("photo 2: no face"), "{why}");
    }
    let nine = vec![face.clone(); 9];
    assert_eq!(add("ops", &c, leader, "Nine", &nine).0, 400);
    assert_eq!(
        add("ops", &c, leader, " padded", std::slice::from_ref(&face)).0,
        400
    );
    // Over the 8 MiB cap: 413 from the announced length, before the body is read (the
    // server may close while the client still sends, which the client sees as a broken pipe;
    // a client of its own, so the closed connection is not reused from the shared pool).
    let huge = add_body("Huge", &["A".repeat(9 * 1024 * 1024)]);
    let uploader = Client::load(&c.ca, "ops").expect("ops client");
    match uploader.post_json(&c.admin(leader), "/v1/watchlist/add", &huge, T) {
        Ok(r) => assert_eq!(r.status, 413, "{}", r.body),
        Err(e) => assert!(
            format!("{e:#}").contains("Broken pipe") || format!("{e:#}").contains("reset"),
            "{e:#}"
        ),
    }
    assert_eq!(
        post(
            "ops",
            &c,
            leader,
            "/v1/watchlist/remove",
            r#"{"name":"Nobody"}"#
        )
        .0,
        404
    );
    let after = view(&c, leader);
    assert_eq!(
        after.version, on_leader.version,
        "refusals changed the list"
    );
    assert_eq!(after.names.len(), 1);

    // The leader dies: the list is on the new leader, and the node, which reconnects holding
    // the current version, is not sent it again.
    c.kill(leader);
    let new_leader = c.wait_leader(T, Some(leader)).expect("new leader");
    assert_eq!(view(&c, new_leader).version, on_leader.version);
    wait_log(&node, "connected to the coordinator", 2, T);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        node.log_text().matches("watchlist installed").count(),
        1,
        "{}",
        node.log_text()
    );

    // A removal on the new leader reaches the node; the restarted replica catches up.
    let (status, body) = post(
        "ops",
        &c,
        new_leader,
        "/v1/watchlist/remove",
        r#"{"name":"Roxanne"}"#,
    );
    assert_eq!(status, 200, "remove: {body}");
    wait_log(&node, "watchlist installed version=0 names=0", 1, T);

    // A revoked node receives no later list.
    let (status, body) = post("ops", &c, new_leader, "/v1/nodes/cam-1/revoke", "{}");
    assert_eq!(status, 200, "revoke: {body}");
    // The revoked set is synced every 100 ms and closes the session when it sees the name.
    std::thread::sleep(Duration::from_secs(1));
    let (status, body) = add("ops", &c, new_leader, "Roxanne", &[face]);
    assert_eq!(status, 200, "add again: {body}");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        node.log_text().matches("watchlist installed").count(),
        2,
        "{}",
        node.log_text()
    );
    c.start(leader).expect("restart");
    let deadline = Instant::now() + T;
    let current = view(&c, new_leader).version;
    assert_ne!(current, 0);
    while c
        .ops
        .get(&c.admin(leader), "/v1/watchlist", T)
        .ok()
        .and_then(|b| serde_json::from_str::<WatchlistView>(&b).ok())
        .is_none_or(|v| v.version != current)
    {
        assert!(
            Instant::now() < deadline,
            "the restarted replica did not catch up"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // The operator's CLI: list (JSON) and remove, through any replica (followers redirect).
    let admins = (0..3).map(|i| c.admin(i)).collect::<Vec<_>>().join(",");
    let ctl = |args: &[&str]| {
        let out = std::process::Command::new(mcdnn_tests::bin("mcdnnctl").expect("mcdnnctl"))
            .arg("watchlist")
            .args(args)
            .args(["--admin", &admins, "--identity", "ops", "--identity-dir"])
            .arg(&c.ca)
            .output()
            .expect("mcdnnctl runs");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "mcdnnctl watchlist {args:?}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    };
    let listed: WatchlistView = serde_json::from_str(&ctl(&["list", "-o", "json"])).expect("JSON");
    assert_eq!(listed.version, current);
    assert!(ctl(&["remove", "Roxanne"]).contains("removed"));
    assert_eq!(view(&c, new_leader).version, 0);
}

#[test]
fn adding_without_face_models_is_refused_with_the_flag_to_use() {
    let mut c = Cluster::new(1).expect("cluster");
    c.start_all().expect("start");
    let leader = c.wait_leader(T, None).expect("leader");
    let (status, why) = add("ops", &c, leader, "Roxanne", &[photo("fruits.jpg")]);
    assert_eq!(status, 503, "{why}");
    assert!(why.contains("--face-models"), "{why}");
    assert_eq!(view(&c, leader).version, 0);
}

/// What the fleet answers for a face: the entry the coordinator enrolled from two frames of the
/// woman in Megamind.avi (Roxanne, frames 30 and 90), installed in a node's `WatchlistCell`,
/// names her in other frames (60, 61) and knows nobody in the man's (150, 210), with the node's
/// int8 descriptor network exactly where the fp32 reference does. There are no identity
/// labels; the reference is the fp32 network's answer.
#[tokio::test]
async fn a_pushed_entry_names_a_face_where_the_reference_does() {
    use mcdnn_coordinator::faces;
    use mcdnn_node::handles::WatchlistCell;
    use vision::face::FacePipeline;

    let service = faces::load(&face_models()).expect("face models");
    let png = |n: u32| {
        base64::engine::general_purpose::STANDARD
            .decode(megamind(n))
            .expect("base64")
    };
    let descriptors = service
        .one_per_photo(vec![png(30), png(90)])
        .await
        .expect("one face each");
    let cell = WatchlistCell::default();
    cell.install(
        1,
        vec![wire::msg::WatchlistEntry {
            name: "Roxanne".into(),
            descriptors,
        }],
    );
    let pipeline = |file: &str| {
        FacePipeline::from_files(
            &face_models().join(faces::DETECTOR_FILE),
            &face_models().join(file),
            1,
        )
        .expect("pipeline")
    };
    let mut reference = pipeline(faces::DESCRIBER_FILE);
    let mut node = pipeline("face_recognition_150_int8.onnx");
    for (frame, who) in [
        (60, Some("Roxanne")),
        (61, Some("Roxanne")),
        (150, None),
        (210, None),
    ] {
        let photo = faces::decode_photo(&png(frame)).expect("frame decodes");
        let picture = vision::picture::Picture::new(
            photo.width,
            photo.height,
            vision::picture::PixelFormat::Rgb8,
            photo.rgb,
        )
        .expect("picture");
        let answer = |p: &mut FacePipeline| {
            let found = p.faces(&picture).expect("detector");
            assert!(!found.is_empty(), "frame {frame}: no face");
            let d = p
                .describe(&picture, &found[..1])
                .expect("describe")
                .remove(0);
            cell.identify(&d)
        };
        let (by_reference, by_node) = (answer(&mut reference), answer(&mut node));
        println!("frame {frame}: reference {by_reference:?}, node {by_node:?}");
        assert_eq!(by_reference.name.as_deref(), who, "frame {frame}");
        assert_eq!(by_node.name, by_reference.name, "frame {frame}");
    }
}
