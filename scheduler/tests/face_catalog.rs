//! The face catalog becomes a scheduler catalog like the Fashion-MNIST one: the detector's cost
//! and bytes are part of every variant, int8 variants run faster, accuracy is the measured one.

use mcdnn_scheduler::catalog::Catalog;
use wire::manifest::Manifest;

#[test]
fn face_variants_get_profiles_that_include_the_detector() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../models/face/catalog.json");
    let manifest =
        Manifest::from_json(&std::fs::read_to_string(path).expect("file")).expect("valid");
    let c = Catalog::from_manifest(&manifest, "phone-2016").expect("profiles");
    let detector = manifest.detector.as_ref().expect("detector");
    let app = &c.apps[0];
    assert_eq!(app.name, "face-id");
    assert_eq!(app.variants.len(), manifest.variants.len());
    let fp32 = &app.variants[0];
    let spec = &manifest.variants[0];
    // phone-2016: 167 ms/GOP + 1 ms per request; fp32 runs at speed 1.
    let gop = (spec.trunk_ops + detector.ops) as f64 / 1e9;
    assert!((fp32.device_latency_ms - (1.0 + 167.0 * gop)).abs() < 1e-6);
    let mb = (spec.trunk.bytes + detector.file.bytes) as f64 / 1e6;
    assert!((fp32.memory_mb - mb).abs() < 1e-9);
    assert_eq!(fp32.accuracy, spec.accuracy["face-id"]);
    // int8 runs the same operations faster (the class's int8 speed-up).
    let int8 = app
        .variants
        .iter()
        .find(|v| v.name == "int8-150")
        .expect("int8 variant");
    assert!(int8.device_latency_ms < fp32.device_latency_ms);
}
