//! The face catalog (`models/face/catalog.json`) in the manifest format, and what makes a face
//! manifest invalid.

use mcdnn_wire::manifest::{InputKind, Manifest};

fn face_catalog() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../models/face/catalog.json");
    std::fs::read_to_string(path).expect("models/face/catalog.json is in the repo")
}

#[test]
fn the_face_catalog_parses_with_a_detector_and_headless_variants() {
    let m = Manifest::from_json(&face_catalog()).expect("valid");
    assert_eq!(m.input.kind, InputKind::Face);
    assert!(m.detector.as_ref().is_some_and(|d| d.ops > 0));
    for v in &m.variants {
        assert!(v.heads.is_empty());
        assert!(v.app_accuracy("face-id").is_some(), "{}", v.name);
    }
    // The Fashion-MNIST catalog still parses and defaults to grey input.
    let fashion = concat!(env!("CARGO_MANIFEST_DIR"), "/../models/catalog.json");
    let m = Manifest::from_json(&std::fs::read_to_string(fashion).expect("file")).expect("valid");
    assert_eq!(m.input.kind, InputKind::Gray);
    assert!(m.detector.is_none());
}

#[test]
fn a_face_catalog_without_detector_accuracy_or_with_heads_is_refused() {
    let base: serde_json::Value = serde_json::from_str(&face_catalog()).expect("json");
    let refused = |edit: &dyn Fn(&mut serde_json::Value), needle: &str| {
        let mut v = base.clone();
        edit(&mut v);
        let err = Manifest::from_json(&v.to_string()).expect_err("refused");
        assert!(err.to_string().contains(needle), "{err}");
    };
    refused(
        &|v| v["detector"] = serde_json::Value::Null,
        "needs a detector",
    );
    refused(
        &|v| v["variants"][0]["accuracy"] = serde_json::json!({}),
        "no accuracy for app",
    );
    refused(
        &|v| {
            v["variants"][1]["heads"] = serde_json::json!([{
                "app": "face-id", "file": "x.onnx", "sha256": "00", "bytes": 1, "ops": 1, "accuracy": 1.0
            }])
        },
        "have no heads",
    );
    refused(
        &|v| v["variants"][0]["accuracy"]["garment"] = serde_json::json!(90.0),
        "app garment, which is unknown or takes another input kind",
    );
    refused(
        &|v| v["input"]["kind"] = serde_json::json!("thermal"),
        "not valid JSON",
    );
}
