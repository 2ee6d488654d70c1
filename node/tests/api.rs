//! The local inference API against the real serving loop (ONNX Runtime, spool) over real
//! loopback HTTP and a real Unix socket: a PNG of a Fashion-MNIST test image answered with its
//! label; every refusal (400, 404, 413, 429) answered with its status and changing nothing.
//! Needs `scripts/setup.sh` (ONNX Runtime and the data set).

mod common;

use std::io::{Cursor, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::Duration;

use mcdnn_node::api::{self, Api, ApiLimits};
use mcdnn_node::dataset::Dataset;
use mcdnn_node::engine::LoadedVariant;
use mcdnn_node::handles::AssignmentCell;

/// One HTTP/1.1 call on `stream`: status, headers (lower-case names), body.
fn call(
    mut stream: impl Read + Write,
    method: &str,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> (u16, Vec<(String, String)>, serde_json::Value) {
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).expect("write head");
    // A server may answer (413) before reading the whole body and close.
    let _ = stream.write_all(body);
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").expect("a response");
    let mut lines = head.lines();
    let status = lines.next().expect("status line")[9..12]
        .parse()
        .expect("status");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_lowercase(), v.trim().to_string()))
        .collect();
    let json = serde_json::from_str(body).unwrap_or(serde_json::Value::Null);
    (status, headers, json)
}

/// The first test images every variant labels right for `garment`, as (index, label).
fn agreed_images(n: usize) -> Vec<(usize, u32)> {
    let (manifest, dir) = common::catalog();
    let data = Dataset::test_split().expect("test split");
    let app = manifest.app("garment").expect("garment app");
    let mut models: Vec<LoadedVariant> = manifest
        .variants
        .iter()
        .map(|v| LoadedVariant::load_dir(&dir, v, &manifest.input).expect("variant"))
        .collect();
    let mut out = Vec::new();
    for i in 0..data.len() {
        let truth = app.label_map[data.label(i) as usize] as u32;
        if models
            .iter_mut()
            .all(|m| m.infer(data.image(i), &["garment"]).expect("infer")[0].label == truth)
        {
            out.push((i, truth));
            if out.len() == n {
                break;
            }
        }
    }
    out
}

fn png_of(data: &Dataset, i: usize) -> Vec<u8> {
    let img =
        image::GrayImage::from_raw(data.cols as u32, data.rows as u32, data.image(i).to_vec())
            .expect("28x28");
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png)
        .expect("png");
    out.into_inner()
}

#[test]
fn the_api_answers_real_images_and_refusals_change_nothing() {
    let images = agreed_images(3);
    let data = Dataset::test_split().expect("test split");
    // garment: burst 2; category at 0.5/s: burst 1, so its second call is over the rate.
    let node = common::start(&[("garment", 4.0), ("category", 0.5)], 8);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let tmp = tempfile::tempdir().expect("tmp");
    let socket = tmp.path().join("api.sock");
    // A stale socket from a node that is gone is replaced.
    drop(std::os::unix::net::UnixListener::bind(&socket).expect("stale socket"));
    let cancel = tokio_util::sync::CancellationToken::new();
    let limits = ApiLimits {
        max_body_bytes: 64 * 1024,
        ..ApiLimits::default()
    };
    let api = Api::new(
        vec![("garment".into(), 4.0), ("category".into(), 0.5)],
        Arc::new(node.manifest.clone()),
        node.intake.clone().expect("intake"),
        AssignmentCell::default(),
        limits,
    );
    let addr = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(api::serve_tcp(api.clone(), listener, cancel.clone()));
        let unix = api::bind_socket(&socket).expect("socket");
        tokio::spawn(api::serve_unix(api.clone(), unix, cancel.clone()));
        addr
    });
    let tcp = || std::net::TcpStream::connect(addr).expect("connect");

    // A real PNG answered with the image's label.
    let (i, truth) = images[0];
    let (status, _, answer) = call(
        tcp(),
        "POST",
        "/v1/apps/garment/infer",
        "image/png",
        &png_of(&data, i),
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["label"], truth, "{answer}");
    let class = &node.manifest.app("garment").expect("app").classes[truth as usize];
    assert_eq!(answer["class"], class.as_str());
    assert_eq!(answer["place"], "device");
    assert!(answer["variant"].is_string() && answer["latency_ms"].as_f64().expect("latency") > 0.0);
    assert_eq!(answer["plan_epoch"], 0);
    std::thread::sleep(Duration::from_millis(200));
    let before = node.counts();
    assert_eq!(before.1, 1, "one answer spooled");

    // Refusals: each with its status, none reaching the serving loop.
    let (s, _, e) = call(
        tcp(),
        "POST",
        "/v1/apps/garment/infer",
        "image/png",
        b"\x89PNG not really",
    );
    assert_eq!(s, 400, "{e}");
    assert!(e["error"].as_str().expect("reason").contains("PNG"), "{e}");
    let (s, _, e) = call(
        tcp(),
        "POST",
        "/v1/apps/garment/infer?width=28&height=28",
        "application/octet-stream",
        &[0; 700],
    );
    assert_eq!(s, 400, "{e}");
    let (s, _, _) = call(
        tcp(),
        "POST",
        "/v1/apps/weather/infer",
        "image/png",
        &png_of(&data, i),
    );
    assert_eq!(s, 404);
    let (s, _, _) = call(
        tcp(),
        "POST",
        "/v1/apps/garment/infer",
        "image/png",
        &vec![0u8; 100_000],
    );
    assert_eq!(s, 413);
    let (s, _, e) = call(
        tcp(),
        "POST",
        "/v1/apps/category/infer",
        "image/png",
        &png_of(&data, images[1].0),
    );
    assert_eq!(s, 200, "{e}");
    let (s, headers, _) = call(
        tcp(),
        "POST",
        "/v1/apps/category/infer",
        "image/png",
        &png_of(&data, images[1].0),
    );
    assert_eq!(s, 429);
    let retry: u64 = headers
        .iter()
        .find(|(k, _)| k == "retry-after")
        .expect("Retry-After")
        .1
        .parse()
        .expect("seconds");
    assert!((1..=2).contains(&retry), "{retry}");
    std::thread::sleep(Duration::from_millis(200));
    let after = node.counts();
    // Only the admitted category call reached the loop.
    assert_eq!(after.1, before.1 + 1, "{before:?} -> {after:?}");
    let requests = |c: &(Vec<(String, u64, u64)>, usize), app: &str| {
        c.0.iter().find(|a| a.0 == app).map_or(0, |a| a.1)
    };
    assert_eq!(requests(&after, "garment"), requests(&before, "garment"));
    assert_eq!(
        requests(&after, "category"),
        requests(&before, "category") + 1
    );

    // The Unix socket: mode 0600, and it serves.
    let mode = std::fs::metadata(&socket)
        .expect("socket")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let unix = std::os::unix::net::UnixStream::connect(&socket).expect("connect");
    let (i2, truth2) = images[2];
    let (s, _, a) = call(
        unix,
        "POST",
        "/v1/apps/garment/infer?width=28&height=28&format=gray8",
        "application/octet-stream",
        data.image(i2),
    );
    assert_eq!(s, 200, "{a}");
    assert_eq!(a["label"], truth2);

    // A batch of two raw images, and the app list.
    std::thread::sleep(Duration::from_millis(600));
    let mut two = data.image(images[0].0).to_vec();
    two.extend_from_slice(data.image(images[1].0));
    let (s, _, b) = call(
        tcp(),
        "POST",
        "/v1/apps/garment/infer?width=28&height=28&count=2",
        "application/octet-stream",
        &two,
    );
    assert_eq!(s, 200, "{b}");
    let labels: Vec<u64> = b["answers"]
        .as_array()
        .expect("answers")
        .iter()
        .map(|a| a["label"].as_u64().expect("label"))
        .collect();
    assert_eq!(labels, [u64::from(images[0].1), u64::from(images[1].1)]);
    let (s, _, list) = call(tcp(), "GET", "/v1/apps", "text/plain", b"");
    assert_eq!(s, 200);
    assert_eq!(list["apps"][0]["app"], "garment");
    assert_eq!(list["apps"][1]["rate_per_s"], 0.5);

    cancel.cancel();
    drop(api);
    drop(runtime);
    let summary = node.finish();
    assert_eq!(summary.requests, 5, "{summary:?}");
    assert_eq!(summary.dropped, 0);
    assert_eq!(summary.apps["garment"].unlabelled, 4);
}

#[test]
fn a_non_loopback_address_and_a_live_socket_are_refused() {
    let err = api::check_loopback("0.0.0.0:8080".parse().expect("addr")).expect_err("refused");
    assert!(err.to_string().contains("loopback"), "{err}");
    assert!(api::check_loopback("127.0.0.1:8080".parse().expect("addr")).is_ok());
    let tmp = tempfile::tempdir().expect("tmp");
    let path = tmp.path().join("live.sock");
    let _live = std::os::unix::net::UnixListener::bind(&path).expect("live");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let _guard = runtime.enter();
    let err = api::bind_socket(&path).expect_err("live socket kept");
    assert!(err.to_string().contains("another process"), "{err}");
    let file = tmp.path().join("file");
    std::fs::write(&file, b"keep me").expect("file");
    assert!(api::bind_socket(&file).is_err());
    assert_eq!(std::fs::read(&file).expect("kept"), b"keep me");
}
