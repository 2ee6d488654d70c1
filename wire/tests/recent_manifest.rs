//! A recent-gallery face variant's settings are checked when the catalog is read: a bad one is
//! refused with the reason, and only face variants may have one.

use mcdnn_wire::manifest::Manifest;
use serde_json::Value;

fn catalog(path: &str) -> Value {
    let path = format!("{}/../models/{path}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).expect("catalog")).expect("json")
}

fn refused(v: &Value) -> String {
    Manifest::from_json(&v.to_string())
        .expect_err("must be refused")
        .to_string()
}

fn recent_variant(v: &mut Value) -> &mut Value {
    v["variants"]
        .as_array_mut()
        .expect("variants")
        .iter_mut()
        .find(|x| x.get("recent").is_some())
        .expect("the face catalog has a recent-gallery variant")
}

#[test]
fn the_face_catalog_has_a_valid_recent_gallery_variant() {
    let m = Manifest::from_json(&catalog("face/catalog.json").to_string()).expect("valid");
    let r = m
        .variants
        .iter()
        .find_map(|v| v.recent.as_ref())
        .expect("recent");
    assert!(r.identities >= 1 && r.threshold > 0.0 && r.hit_rate > 0.0);
}

#[test]
fn bad_recent_settings_are_refused_with_the_reason() {
    let cases: [(&str, Value, &str); 5] = [
        ("identities", 0.into(), "identities"),
        ("identities", 17.into(), "identities"),
        ("threshold", (-0.5).into(), "threshold"),
        ("window_s", 1e9.into(), "window"),
        ("hit_rate", 101.0.into(), "percentages"),
    ];
    for (field, value, reason) in cases {
        let mut v = catalog("face/catalog.json");
        recent_variant(&mut v)["recent"][field] = value.clone();
        let e = refused(&v);
        assert!(e.contains(reason), "{field}={value}: {e}");
    }
    let mut v = catalog("face/catalog.json");
    recent_variant(&mut v)["recent"]["share"] = 1.into();
    assert!(refused(&v).contains("unknown field"));
}

#[test]
fn a_gray_variant_cannot_keep_a_recent_gallery() {
    let mut v = catalog("catalog.json");
    let face = recent_variant(&mut catalog("face/catalog.json"))["recent"].clone();
    v["variants"][0]["recent"] = face;
    assert!(
        refused(&v).contains("only face variants"),
        "{}",
        refused(&v)
    );
}
