//! A face variant of models/face/catalog.json serving real Megamind.avi frames (opencv-doc and
//! ffmpeg, installed by scripts/setup.sh): a watchlist entry made from one frame is recognised
//! in the next, another person is unknown, and a file that does not match its digest is refused.

mod common;

use std::path::{Path, PathBuf};

use mcdnn_node::engine::EngineError;
use mcdnn_node::face_variant::{FaceVariant, UNKNOWN};
use vision::face::{FacePipeline, Gallery};
use wire::manifest::{FileSpec, Manifest};

fn face_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/face")
}

fn catalog() -> Manifest {
    let text = std::fs::read_to_string(face_dir().join("catalog.json")).expect("face catalog");
    Manifest::from_json(&text).expect("valid")
}

fn read(file: &FileSpec) -> Result<Vec<u8>, EngineError> {
    let path = face_dir().join(&file.file);
    std::fs::read(&path).map_err(|source| EngineError::Read {
        path: path.display().to_string(),
        source,
    })
}

#[test]
fn a_watchlisted_face_is_named_in_the_next_frame_and_another_person_is_unknown() {
    let manifest = catalog();
    let spec = manifest.variant("int8-150").expect("variant");
    let mut variant = FaceVariant::load_with(&manifest, spec, read).expect("loads");
    let pictures = common::face::frames(&[60, 61, 210]);
    // The watchlist descriptor is what the coordinator computes: the reference network.
    let mut reference = FacePipeline::from_files(
        &face_dir().join("blazeface_front_128.onnx"),
        &face_dir().join("face_recognition_150.onnx"),
        1,
    )
    .expect("loads");
    let faces = reference.faces(&pictures[0]).expect("detects");
    let mut watchlist = Gallery::new(0.6);
    watchlist.add(
        "roxanne",
        reference
            .describe(&pictures[0], &faces[..1])
            .expect("describes")
            .remove(0),
    );
    let next = variant.answer(&pictures[1], &watchlist).expect("answers");
    assert_eq!((next.label, next.faces), (0, 1), "{next:?}");
    let other = variant.answer(&pictures[2], &watchlist).expect("answers");
    assert_eq!(other.label, UNKNOWN, "{other:?}");
}

#[test]
fn a_file_that_does_not_match_its_digest_is_never_loaded() {
    let manifest = catalog();
    let spec = manifest.variant("int8-150").expect("variant");
    let tampered = |file: &FileSpec| {
        let mut bytes = read(file)?;
        bytes[1000] ^= 1;
        Ok(bytes)
    };
    let err = FaceVariant::load_with(&manifest, spec, tampered)
        .err()
        .expect("refused");
    assert!(err.to_string().contains("corrupt"), "{err}");
    let fashion = Manifest::from_json(
        &std::fs::read_to_string(face_dir().join("../catalog.json")).expect("file"),
    )
    .expect("valid");
    let err = FaceVariant::load_with(&fashion, &fashion.variants[0], read)
        .err()
        .expect("refused");
    assert!(err.to_string().contains("not a face variant"), "{err}");
}
