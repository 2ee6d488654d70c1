//! The project's own catalog: profiles derived from `models/catalog.json`
//! (`wire::manifest::Manifest`) for one device class.
//!
//! Training measures accuracy, not energy: device energy and latency are the class's
//! per-operation coefficients times the variant's operations (int8 variants run `int8_speedup`
//! times faster, and, doing less work, spend that much less energy per operation). A grey variant
//! is one trunk + one head per app, so the trunk's cost is shared by the apps on the same frame;
//! a face variant is the detector + a descriptor network serving the face apps. A fleet catalog
//! (`models/fleet.json`) holds both kinds: each app is planned over the variants that serve it.

use wire::manifest::{DeviceClassSpec, InputKind, Manifest, VariantSpec};

use crate::catalog::{App, Catalog, CatalogError, Constants, SpecialisedPoint, Trunk, Variant};

/// Server compute relative to the device when the manifest has no `server` device class: a
/// server GPU is roughly an order of magnitude faster than a phone-class device.
const SERVER_SPEEDUP_DEFAULT: f64 = 10.0;

impl Catalog {
    /// Builds the catalog for `device_class` from a models manifest. The server profile comes
    /// from a device class named `server` when the manifest has one.
    pub fn from_manifest(manifest: &Manifest, device_class: &str) -> Result<Catalog, CatalogError> {
        let dc = manifest
            .device_class(device_class)
            .ok_or_else(|| CatalogError::UnknownDeviceClass(device_class.to_string()))?;
        let server = manifest.device_class("server");
        let mut trunks = Vec::new();
        for v in &manifest.variants {
            let speed = speedup(&v.kind, dc);
            let trunk_ops = v.trunk_ops + detector_cost(manifest, v).0;
            let (trunk_j, trunk_ms) = per_request(dc, trunk_ops, speed, true);
            trunks.push(Trunk {
                id: v.name.clone(),
                device_energy_j: trunk_j,
                device_latency_ms: trunk_ms,
                server_ms: server_ms(server, &v.kind, trunk_ops, trunk_ms, true),
            });
        }
        let mut apps = Vec::new();
        for app in &manifest.apps {
            let mut variants = Vec::new();
            // A fleet catalog holds several catalogs: an app is planned over the variants that
            // answer it (a Fashion-MNIST head, or a face variant's measured accuracy) only.
            for (ti, v) in manifest.variants.iter().enumerate() {
                if !v.serves(&app.name) {
                    continue;
                }
                // A headless (face) app matches the trunk's descriptor: no head to run or load.
                let (head_ops, head_bytes) =
                    v.head(&app.name).map_or((0, 0), |h| (h.ops, h.file.bytes));
                let accuracy = v.app_accuracy(&app.name).ok_or_else(|| {
                    CatalogError::Invalid(format!(
                        "variant {} has no head or accuracy for {}",
                        v.name, app.name
                    ))
                })?;
                let speed = speedup(&v.kind, dc);
                let (head_j, head_ms) = per_request(dc, head_ops, speed, false);
                let trunk = &trunks[ti];
                let mb = (v.trunk.bytes + detector_cost(manifest, v).1 + head_bytes) as f64 / 1e6;
                variants.push(Variant {
                    name: v.name.clone(),
                    accuracy,
                    memory_mb: mb,
                    device_energy_j: trunk.device_energy_j + head_j,
                    device_latency_ms: trunk.device_latency_ms + head_ms,
                    load_energy_j: dc.load_joules_per_mb * mb,
                    load_latency_ms: dc.load_ms_per_mb * mb,
                    server_ms: trunk.server_ms
                        + server_ms(server, &v.kind, head_ops, head_ms, false),
                    server_load_ms: server
                        .map_or(dc.load_ms_per_mb * mb, |s| s.load_ms_per_mb * mb),
                    trunk: Some(ti),
                    // A recent-gallery face variant answers the people seen lately; the rest
                    // fall back (the per-request policy's cascade, at the window's share).
                    specialised: v
                        .recent
                        .iter()
                        .map(|r| SpecialisedPoint {
                            top_n: r.identities,
                            min_share: 0.0,
                            accuracy: r.hit_accuracy,
                        })
                        .collect(),
                    recent_set: v.recent.is_some(),
                });
            }
            apps.push(App {
                name: app.name.clone(),
                variants,
                device_only: manifest.app_kind(&app.name) == Some(InputKind::Face),
            });
        }
        let catalog = Catalog {
            name: "manifest".into(),
            device_class: device_class.to_string(),
            apps,
            trunks,
            constants: Constants::default(),
        };
        catalog.validate()?;
        Ok(catalog)
    }
}

/// Operations and bytes of the face detector that runs on every frame before a face variant's
/// descriptor network (one face per request); nothing for a grey variant.
fn detector_cost(manifest: &Manifest, variant: &VariantSpec) -> (u64, u64) {
    match &manifest.detector {
        Some(d) if manifest.variant_kind(variant) == InputKind::Face => (d.ops, d.file.bytes),
        _ => (0, 0),
    }
}

fn speedup(kind: &str, dc: &DeviceClassSpec) -> f64 {
    if kind == "int8" && dc.int8_speedup > 0.0 {
        dc.int8_speedup
    } else {
        1.0
    }
}

/// Energy (J) and latency (ms) of `ops` operations; the fixed per-request overhead belongs to
/// the trunk because it is paid once per frame.
fn per_request(dc: &DeviceClassSpec, ops: u64, speed: f64, with_fixed: bool) -> (f64, f64) {
    let gop = ops as f64 / 1e9 / speed;
    let (fj, fms) = if with_fixed {
        (dc.joules_per_request, dc.ms_per_request)
    } else {
        (0.0, 0.0)
    };
    (fj + dc.joules_per_gop * gop, fms + dc.ms_per_gop * gop)
}

fn server_ms(
    server: Option<&DeviceClassSpec>,
    kind: &str,
    ops: u64,
    device_ms: f64,
    with_fixed: bool,
) -> f64 {
    match server {
        Some(s) => per_request(s, ops, speedup(kind, s), with_fixed).1,
        None => device_ms / SERVER_SPEEDUP_DEFAULT,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use wire::manifest::{
        AppSpec, DeviceClassSpec, FileSpec, HeadSpec, InputSpec, Manifest, VariantSpec,
    };

    fn file(name: &str, bytes: u64) -> FileSpec {
        FileSpec {
            file: name.into(),
            sha256: "00".into(),
            bytes,
        }
    }

    /// A two-app, three-variant manifest like the one `models/train.py` writes.
    pub(crate) fn fixture() -> Manifest {
        let apps = ["digit", "parity"];
        let variant = |name: &str, kind: &str, trunk_ops: u64, acc: [f64; 2]| VariantSpec {
            name: name.into(),
            kind: kind.into(),
            description: String::new(),
            trunk: file(&format!("{name}.trunk.onnx"), trunk_ops / 10),
            trunk_ops,
            embedding_dim: 64,
            params: trunk_ops / 20,
            heads: apps
                .iter()
                .zip(acc)
                .map(|(a, accuracy)| HeadSpec {
                    app: (*a).into(),
                    file: file(&format!("{name}.{a}.onnx"), 10_000),
                    ops: 20_000,
                    accuracy,
                })
                .collect(),
            accuracy: Default::default(),
            recent: None,
        };
        Manifest {
            detector: None,
            source: "fixture".into(),
            input: InputSpec {
                height: 28,
                width: 28,
                mean: 0.1,
                std: 0.3,
                kind: Default::default(),
            },
            apps: vec![
                AppSpec {
                    name: "digit".into(),
                    classes: (0..10).map(|c| c.to_string()).collect(),
                    label_map: (0..10).collect(),
                    kind: None,
                },
                AppSpec {
                    name: "parity".into(),
                    classes: vec!["even".into(), "odd".into()],
                    label_map: (0..10).map(|c| c % 2).collect(),
                    kind: None,
                },
            ],
            variants: vec![
                variant("full", "full", 40_000_000, [98.0, 99.0]),
                variant("narrow", "narrow", 10_000_000, [96.0, 98.5]),
                variant("full-int8", "int8", 40_000_000, [97.5, 98.8]),
            ],
            device_classes: vec![
                DeviceClassSpec {
                    name: "phone".into(),
                    joules_per_gop: 2.0,
                    ms_per_gop: 100.0,
                    joules_per_request: 0.01,
                    ms_per_request: 2.0,
                    load_joules_per_mb: 0.5,
                    load_ms_per_mb: 20.0,
                    int8_speedup: 2.0,
                },
                DeviceClassSpec {
                    name: "server".into(),
                    joules_per_gop: 0.0,
                    ms_per_gop: 5.0,
                    joules_per_request: 0.0,
                    ms_per_request: 1.0,
                    load_joules_per_mb: 0.0,
                    load_ms_per_mb: 2.0,
                    int8_speedup: 1.0,
                },
            ],
        }
    }

    #[test]
    fn builds_profiles_from_coefficients() -> Result<(), CatalogError> {
        let c = Catalog::from_manifest(&fixture(), "phone")?;
        assert_eq!(c.apps.len(), 2);
        assert_eq!(c.trunks.len(), 3);
        let full = c.key("digit", "full").map(|k| c.variant(k).clone());
        let int8 = c.key("digit", "full-int8").map(|k| c.variant(k).clone());
        let (Some(full), Some(int8)) = (full, int8) else {
            panic!("variants missing");
        };
        // 40.02 MOPs at 2 J/GOP + 0.01 J fixed.
        assert!((full.device_energy_j - (0.01 + 2.0 * 0.04002)).abs() < 1e-9);
        assert!(int8.device_latency_ms < full.device_latency_ms);
        assert_eq!(full.trunk, Some(0));
        assert!(full.server_ms < full.device_latency_ms);
        Ok(())
    }

    #[test]
    fn unknown_device_class_is_an_error() {
        assert!(matches!(
            Catalog::from_manifest(&fixture(), "toaster"),
            Err(CatalogError::UnknownDeviceClass(_))
        ));
    }
}
