//! Face specialisation in the real serving loop: the `mcdnn` policy on the face catalog, a
//! watchlist with Roxanne, and Megamind.avi's frames in order as face-id requests. Once the
//! skew window holds enough requests from the two people on screen, the policy runs the
//! recent-gallery cascade (`recent-116`): the gallery answers most frames, the misses go to a
//! general variant, whose answers the gallery learns. Every request is audited against the
//! fp32 reference, so the cascade's answers are checked frame by frame. Needs
//! `scripts/setup.sh` (ffmpeg, opencv-doc, ONNX Runtime).

mod common;

use common::face::{frames, offer, roxanne};
use mcdnn_node::request::Reply;

#[test]
fn the_recent_gallery_answers_the_people_on_screen_as_the_reference_does() {
    let mut node = common::start_with(
        &[("face-id", 4.0)],
        common::Setup {
            catalog: "face/catalog.json",
            capacity: 4,
            face_audit_every: 1,
            policy: "mcdnn",
        },
    );
    node.handles.watchlist.install(1, vec![roxanne()]);
    let intake = node.intake.take().expect("intake");
    let wanted: Vec<u64> = (0..270).step_by(2).collect();
    let pictures = frames(&wanted);
    let reference = reference_answers(&pictures);
    let (mut served, mut named, mut hits_agreeing) = (0, 0, 0);
    for (picture, truth) in pictures.into_iter().zip(&reference) {
        if let Reply::Served(s) = offer(&intake, picture) {
            served += 1;
            named += usize::from(s.class == "Roxanne");
            if s.variant == "recent-116" {
                hits_agreeing += usize::from(&s.class == truth);
            }
        }
    }
    drop(intake);
    let summary = node.finish();
    let app = &summary.apps["face-id"];
    let face = app.face.as_ref().expect("a face app's figures");
    eprintln!("{app:#?}");
    let recent = face.recent;
    let cheap_answers = app.by_variant.get("recent-116").copied().unwrap_or(0);
    eprintln!(
        "recent-116 answered {} requests, {hits_agreeing} as fp32 does",
        recent.hits
    );
    assert!(served >= 100, "{served} of {} served", wanted.len());
    assert!(named >= 10, "Roxanne is on screen for many frames: {named}");
    assert!(
        recent.hits >= 20,
        "the gallery answers frames once two people fill the window: {recent:?}"
    );
    assert!(recent.misses >= 1, "the gallery starts empty: {recent:?}");
    assert_eq!(cheap_answers, recent.hits, "a hit is recent-116's answer");
    assert_eq!(
        face.timing["recent-116"].runs,
        recent.hits + recent.misses,
        "the first stage ran for every cascade request"
    );
    assert_eq!(
        face.timing["int8-150 after recent-116"].runs, recent.misses,
        "the fallback described the faces of every miss"
    );
    assert!(
        hits_agreeing as u64 * 100 >= recent.hits * 97,
        "the gallery's answers are the reference's: {hits_agreeing} of {}",
        recent.hits
    );
    // The general variant (int8) itself flips with fp32 on the man who sits on the 0.6 line;
    // the audit covers every answer.
    assert_eq!(face.audited, served as u64, "every answer audited");
    assert!(face.agreed * 100 >= face.audited * 90, "{face:?}");
}

/// What the fp32 reference answers for each frame: "Roxanne" if any face is within the
/// watchlist threshold of her descriptors, else "unknown".
fn reference_answers(pictures: &[mcdnn_node::picture::Picture]) -> Vec<String> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/face");
    let mut fp32 = vision::face::FacePipeline::from_files(
        &dir.join("blazeface_front_128.onnx"),
        &dir.join("face_recognition_150.onnx"),
        1,
    )
    .expect("face models");
    let mut watchlist = vision::face::Gallery::new(vision::face::gallery::DEFAULT_THRESHOLD);
    for d in roxanne().descriptors {
        watchlist.add("Roxanne", d);
    }
    pictures
        .iter()
        .map(|p| {
            let faces = fp32.faces(p).expect("detects");
            let named = (fp32.describe(p, &faces).expect("describes").iter())
                .any(|d| watchlist.identify(d).is_some());
            if named { "Roxanne" } else { "unknown" }.to_string()
        })
        .collect()
}
