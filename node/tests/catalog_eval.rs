//! Real ONNX inference on the real test set: the accuracy Rust measures must agree with what
//! training measured, and the catalog's approximations must cost accuracy.
//! Needs `scripts/setup.sh` (ONNX Runtime library and dataset-fashion-mnist).

use std::path::PathBuf;

use mcdnn_node::catalog;
use mcdnn_node::dataset::Dataset;

fn repo_catalog() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/catalog.json")
}

#[test]
fn rust_accuracy_matches_the_manifest_and_full_beats_quarter() {
    let (manifest, dir) = catalog::load(&repo_catalog()).expect("models/catalog.json");
    let test = Dataset::test_split().expect("Fashion-MNIST test split");
    assert_eq!(test.len(), 10_000);
    let only = vec![
        "full".to_string(),
        "quarter".to_string(),
        "int8".to_string(),
    ];
    let eval = catalog::eval::run(&manifest, &dir, &test, &only, None).expect("eval");
    assert_eq!(eval.variants.len(), 3);
    for v in &eval.variants {
        // ONNX Runtime's int8 kernels round differently by CPU: on AVX2 without VNNI the u8 x s8
        // products can saturate (int8 garment 90.75 % on an AVX2-only EPYC, 91.12 % where it was
        // trained); fp32 variants agree within evaluation noise everywhere.
        let tolerance = if v.name.contains("int8") { 1.0 } else { 0.3 };
        for (app, measured) in &v.accuracy {
            let trained = v.manifest_accuracy[app];
            assert!(
                (measured - trained).abs() <= tolerance,
                "{} {app}: Rust measured {measured}, training measured {trained}",
                v.name
            );
        }
    }
    let acc = |name: &str, app: &str| {
        eval.variants
            .iter()
            .find(|v| v.name == name)
            .expect("variant")
            .accuracy[app]
    };
    assert!(acc("full", "garment") > acc("quarter", "garment") + 1.0);
    assert!(acc("full", "category") > acc("quarter", "category"));
}

#[test]
fn eval_json_has_the_documented_shape() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mcdnn-node"))
        .args(["catalog", "eval", "--json", "--limit", "200", "--catalog"])
        .arg(repo_catalog())
        .output()
        .expect("run mcdnn-node");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let variants = v["variants"].as_array().expect("variants array");
    assert!(variants.len() >= 6);
    for variant in variants {
        assert!(variant["name"].is_string());
        assert!(variant["ops"].as_u64().expect("ops") > 0);
        assert!(variant["bytes"].as_u64().expect("bytes") > 0);
        for app in ["garment", "category"] {
            let a = variant["accuracy"][app].as_f64().expect("accuracy");
            assert!((0.0..=100.0).contains(&a));
        }
        assert!(variant["latency_ms"]["p50"].as_f64().expect("p50") > 0.0);
        assert!(
            variant["latency_ms"]["p99"].as_f64().expect("p99")
                >= variant["latency_ms"]["p50"].as_f64().expect("p50")
        );
    }
    let ops: Vec<u64> = variants
        .iter()
        .map(|v| v["ops"].as_u64().unwrap_or(0))
        .collect();
    let (min, max) = (
        ops.iter().min().copied().unwrap_or(0),
        ops.iter().max().copied().unwrap_or(0),
    );
    assert!(max >= 10 * min, "catalog must span 10x in compute: {ops:?}");
}

#[test]
fn a_missing_library_is_a_clear_error_not_a_panic() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mcdnn-node"))
        .args(["catalog", "eval", "--limit", "1", "--catalog"])
        .arg(repo_catalog())
        .env("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so")
        .output()
        .expect("run mcdnn-node");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("ONNX Runtime library not found"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn a_corrupt_model_file_is_refused() {
    let (manifest, dir) = catalog::load(&repo_catalog()).expect("catalog");
    let tmp = std::env::temp_dir().join(format!("mcdnn-corrupt-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).expect("tmp");
    let spec = manifest.variant("quarter").expect("quarter");
    for f in std::iter::once(&spec.trunk).chain(spec.heads.iter().map(|h| &h.file)) {
        std::fs::copy(dir.join(&f.file), tmp.join(&f.file)).expect("copy");
    }
    let trunk = tmp.join(&spec.trunk.file);
    let mut bytes = std::fs::read(&trunk).expect("read");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xFF;
    std::fs::write(&trunk, bytes).expect("write");
    let err = match mcdnn_node::engine::LoadedVariant::load_dir(&tmp, spec, &manifest.input) {
        Ok(_) => panic!("a corrupt trunk was loaded"),
        Err(e) => e,
    };
    assert!(err.to_string().contains("corrupt"), "{err}");
    std::fs::remove_dir_all(&tmp).ok();
}
