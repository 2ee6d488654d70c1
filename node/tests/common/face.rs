//! Real frames of Megamind.avi (Debian's opencv-doc, decoded by ffmpeg) for the face tests.

use std::time::{Duration, Instant};

use mcdnn_node::picture::Picture;
use mcdnn_node::request::{AppSet, IntakeSender, Reply, Request, Served};
use mcdnn_node::video::{DecodeOptions, Decoder, VideoSource};
use vision::face::FacePipeline;
use wire::msg::WatchlistEntry;

pub const MEGAMIND: &str = "/usr/share/doc/opencv-doc/examples/data/Megamind.avi";

/// Frames `wanted` (ascending) of Megamind.avi.
pub fn frames(wanted: &[u64]) -> Vec<Picture> {
    let mut decoder = Decoder::open(
        &VideoSource::File(MEGAMIND.into()),
        DecodeOptions::default(),
    )
    .expect("Megamind.avi opens (install opencv-doc)");
    let mut out = Vec::new();
    while let Some(f) = decoder.next_frame().expect("decodes") {
        if wanted.contains(&f.index) {
            out.push(f.picture);
        }
        if out.len() == wanted.len() {
            break;
        }
    }
    out
}

/// Roxanne's descriptors from frames 30 and 90, by the fp32 reference (one face each).
pub fn roxanne() -> WatchlistEntry {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/face");
    let mut reference = FacePipeline::from_files(
        &dir.join("blazeface_front_128.onnx"),
        &dir.join("face_recognition_150.onnx"),
        1,
    )
    .expect("face models");
    let descriptors = frames(&[30, 90])
        .iter()
        .map(|p| {
            let faces = reference.faces(p).expect("detects");
            assert_eq!(faces.len(), 1, "one face in an enrolment frame");
            reference.describe(p, &faces).expect("describes").remove(0)
        })
        .collect();
    WatchlistEntry {
        name: "Roxanne".into(),
        descriptors,
    }
}

/// Serves `picture` as one request of app 0 and waits for its answer.
pub fn ask(intake: &IntakeSender, picture: Picture) -> Served {
    match offer(intake, picture) {
        Reply::Served(s) => s,
        other => panic!("not served: {other:?}"),
    }
}

/// Offers `picture` as one request of app 0 and waits for whatever the loop replies.
pub fn offer(intake: &IntakeSender, picture: Picture) -> Reply {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let now = Instant::now();
    intake
        .offer(Request {
            picture,
            apps: AppSet::one(0),
            truth: None,
            skewed: false,
            arrived: now,
            deadline: now + Duration::from_secs(60),
            reply: Some(tx),
        })
        .expect("intake has room");
    rx.blocking_recv().expect("answered")
}
