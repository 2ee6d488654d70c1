//! The fleet catalog (`models/fleet.json`): the Fashion-MNIST and face catalogs merged into one
//! manifest, and the fleet files that merging refuses.

use std::path::{Path, PathBuf};

use mcdnn_wire::manifest::{self, InputKind};

fn models() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models")
}

#[test]
fn the_fleet_catalog_holds_both_catalogs_apps_with_their_input_kinds() {
    let (m, bytes, dir) = manifest::load(&models().join("fleet.json")).expect("loads");
    let names: Vec<&str> = m.apps.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["garment", "category", "face-id"]);
    assert_eq!(m.app_kind("garment"), Some(InputKind::Gray));
    assert_eq!(m.app_kind("face-id"), Some(InputKind::Face));
    assert_eq!(m.app_kind("nobody"), None);
    let face: Vec<&str> = m.variants_for("face-id").map(|v| v.name.as_str()).collect();
    assert_eq!(face, ["fp32-150", "int8-150", "recent-116"]);
    assert_eq!(m.variants_for("garment").count(), 6);
    // Paths are relative to the fleet file's folder, and every one of them exists with its size.
    for v in &m.variants {
        for f in m.variant_files(v) {
            let len = std::fs::metadata(dir.join(&f.file)).map(|md| md.len());
            assert_eq!(len.ok(), Some(f.bytes), "{}", f.file);
        }
    }
    let int8 = m.variant("int8-150").expect("int8");
    assert_eq!(m.variant_kind(int8), InputKind::Face);
    assert_eq!(m.variant_files(int8).len(), 2, "descriptor net + detector");
    let quarter = m.variant("quarter").expect("quarter");
    assert_eq!(m.variant_kind(quarter), InputKind::Gray);
    assert_eq!(m.variant_files(quarter).len(), 3, "trunk + two heads");
    // The bytes are the merged manifest's own encoding: the same files give the same digest.
    let again = manifest::load(&models().join("fleet.json"))
        .expect("loads")
        .1;
    assert_eq!(bytes, again);
    let reread = manifest::Manifest::from_json(std::str::from_utf8(&bytes).expect("utf8"));
    assert_eq!(reread.expect("its encoding is a valid manifest"), m);
}

/// Writes `fleet` into a fresh folder holding copies of both catalogs' manifests.
fn fleet_dir(name: &str, fleet: &serde_json::Value) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mcdnn-fleet-{name}-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("face")).expect("dir");
    for rel in ["catalog.json", "face/catalog.json"] {
        std::fs::copy(models().join(rel), dir.join(rel)).expect("copy");
    }
    std::fs::write(dir.join("fleet.json"), fleet.to_string()).expect("write");
    dir
}

fn refused(name: &str, fleet: serde_json::Value, needle: &str) {
    let dir = fleet_dir(name, &fleet);
    let err = manifest::load(&dir.join("fleet.json")).expect_err("refused");
    assert!(err.to_string().contains(needle), "{name}: {err}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn bad_fleet_catalogs_are_refused_with_the_reason() {
    use serde_json::json;
    let fleet = |include: serde_json::Value| json!({"source": "t", "include": include});
    refused("empty", fleet(json!([])), "1 to 16 catalogs");
    refused(
        "twice",
        fleet(json!(["catalog.json", "catalog.json"])),
        "app garment is already",
    );
    refused(
        "escape",
        fleet(json!(["../catalog.json"])),
        "below the fleet catalog's folder",
    );
    refused(
        "absolute",
        fleet(json!(["/etc/passwd"])),
        "below the fleet catalog's folder",
    );
    refused(
        "missing",
        fleet(json!(["nope.json"])),
        "cannot read catalog",
    );
    refused(
        "nested",
        fleet(json!(["catalog.json", "fleet.json"])),
        "included catalog fleet.json",
    );
    refused(
        "unknown-field",
        json!({"source": "t", "include": ["catalog.json"], "extra": 1}),
        "unknown field",
    );
}

#[test]
fn device_classes_that_disagree_between_catalogs_are_refused() {
    let dir = fleet_dir(
        "classes",
        &serde_json::json!({"source": "t", "include": ["catalog.json", "face/catalog.json"]}),
    );
    let face = dir.join("face/catalog.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&face).expect("read")).expect("json");
    v["device_classes"][0]["joules_per_gop"] = serde_json::json!(99.0);
    std::fs::write(&face, v.to_string()).expect("write");
    let err = manifest::load(&dir.join("fleet.json")).expect_err("refused");
    assert!(err.to_string().contains("differs from an earlier"), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}
