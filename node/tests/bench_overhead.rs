//! `bench overhead` on the real catalog and test images: both paths run, on the same frames,
//! and the node path must answer every one (a path that drops requests would look cheap).
//! Needs `scripts/setup.sh` (ONNX Runtime library and dataset-fashion-mnist).

use std::path::PathBuf;

use mcdnn_node::catalog;
use mcdnn_node::dataset::Dataset;

#[test]
fn overhead_runs_both_paths_and_the_node_path_answers_every_frame() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/catalog.json");
    let (manifest, dir) = catalog::load(&path).expect("models/catalog.json");
    let test = Dataset::test_split().expect("Fashion-MNIST test split");
    let r = mcdnn_node::bench::overhead(&manifest, &dir, &test, "quarter", 20, 2).expect("bench");
    assert_eq!(r.node_answered, 40, "{r:?}");
    assert!(
        r.direct_us_per_frame > 0.0 && r.node_us_per_frame > 0.0,
        "{r:?}"
    );
}

#[test]
fn zero_frames_is_an_error_not_a_ratio_of_nothing() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/catalog.json");
    let (manifest, dir) = catalog::load(&path).expect("models/catalog.json");
    let test = Dataset::test_split().expect("Fashion-MNIST test split");
    assert!(mcdnn_node::bench::overhead(&manifest, &dir, &test, "quarter", 0, 2).is_err());
}
