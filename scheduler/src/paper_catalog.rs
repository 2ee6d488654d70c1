//! The built-in `paper` catalog: variant profiles the MCDNN authors measured (MobiSys 2016),
//! transcribed from their public repository (haneul/mcdnn) into
//! `scheduler/data/mcdnn-paper-profiles.json` and embedded so the project runs without
//! `../shared`.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::catalog::{
    App, Catalog, CatalogError, Constants, EvalModel, SpecialisedPoint, Trunk, Variant,
};

const PROFILES: &str = include_str!("../data/mcdnn-paper-profiles.json");

/// Apps in the order the catalog lists them, and which JSON catalogs feed each one.
const APPS: &[(&str, &[&str])] = &[
    ("deepface", &["deepface", "specialized_face"]),
    ("object_alexnet", &["object_alexnet"]),
    ("scene_places", &["scene_places"]),
    ("object_vgg", &["object_vgg"]),
    ("age", &["sharing_age"]),
    ("gender", &["sharing_gender"]),
    ("race", &["sharing_race"]),
];

/// Apps whose variants share one face trunk per variant name.
const SHARING_APPS: &[&str] = &["age", "gender", "race"];

/// Megabytes per millisecond of device load time, from the deepface variants that give both
/// (D0: 394 MB in 2531 ms). Used only where the authors gave no model size.
const MB_PER_LOAD_MS: f64 = 394.0 / 2531.0;

#[derive(Deserialize)]
struct PaperFile {
    constants_used_by_the_authors: PaperConstants,
    catalogs: BTreeMap<String, PaperApp>,
}

#[derive(Deserialize)]
struct PaperConstants {
    latency_limit_ms: f64,
    rtt_ms: f64,
    server_cost_usd_per_ms: f64,
    send_energy_j_per_request: f64,
    horizon_s: f64,
    energy_budget_j_typical: f64,
    cloud_budget_usd_per_day_typical: f64,
    skew_window_s: f64,
    skew_trigger_share: f64,
}

#[derive(Deserialize)]
struct PaperApp {
    variants: Vec<PaperVariant>,
}

#[derive(Deserialize)]
struct PaperVariant {
    name: String,
    memory: Option<String>,
    device_load_ms: f64,
    device_compute_ms: f64,
    device_compute_j: f64,
    device_load_j: f64,
    server_load_ms: f64,
    server_compute_ms: f64,
    accuracy: Option<f64>,
    specialized: Option<Vec<SpecialisedPoint>>,
}

/// "394M" -> 394.0, "8.3M" -> 8.3, "1.2G" -> 1200.0.
fn parse_mb(text: &str) -> Option<f64> {
    let t = text.trim();
    let (num, scale) = match t.chars().last()? {
        'M' | 'm' => (&t[..t.len() - 1], 1.0),
        'G' | 'g' => (&t[..t.len() - 1], 1000.0),
        'K' | 'k' => (&t[..t.len() - 1], 0.001),
        _ => (t, 1.0),
    };
    num.parse::<f64>().ok().map(|x| x * scale)
}

impl Catalog {
    /// The authors' catalog with their constants as defaults.
    pub fn paper() -> Catalog {
        // The embedded file is part of the build and covered by tests; a parse failure here is
        // a programming error, not user input.
        #[allow(clippy::expect_used)]
        parse_paper(PROFILES).expect("embedded paper profiles are valid")
    }
}

fn parse_paper(text: &str) -> Result<Catalog, CatalogError> {
    let file: PaperFile =
        serde_json::from_str(text).map_err(|e| CatalogError::Parse(e.to_string()))?;
    let c = &file.constants_used_by_the_authors;
    let constants = Constants {
        latency_limit_ms: c.latency_limit_ms,
        rtt_ms: c.rtt_ms,
        server_cost_usd_per_ms: c.server_cost_usd_per_ms,
        send_energy_j: c.send_energy_j_per_request,
        horizon_s: c.horizon_s,
        energy_budget_j: c.energy_budget_j_typical,
        // The authors' "per day" budget is what the 10 h runs spend at most.
        cost_budget_usd: c.cloud_budget_usd_per_day_typical,
        skew_window_s: c.skew_window_s,
        skew_trigger_share: c.skew_trigger_share,
        model: EvalModel::Authors,
        ..Constants::default()
    };
    let mut trunks: Vec<Trunk> = Vec::new();
    let mut apps = Vec::new();
    for (app_name, sources) in APPS {
        let mut variants = Vec::new();
        for source in *sources {
            let Some(entry) = file.catalogs.get(*source) else {
                return Err(CatalogError::Invalid(format!("missing catalog {source}")));
            };
            for pv in &entry.variants {
                let memory_mb = match &pv.memory {
                    Some(m) => parse_mb(m).ok_or_else(|| {
                        CatalogError::Parse(format!("{source}/{}: memory {m:?}", pv.name))
                    })?,
                    None => pv.device_load_ms * MB_PER_LOAD_MS,
                };
                let trunk = if SHARING_APPS.contains(app_name) {
                    Some(trunk_index(&mut trunks, pv))
                } else {
                    None
                };
                let specialised = pv.specialized.clone().unwrap_or_default();
                variants.push(Variant {
                    name: pv.name.clone(),
                    accuracy: if specialised.is_empty() {
                        pv.accuracy.unwrap_or(0.0)
                    } else {
                        0.0
                    },
                    memory_mb,
                    device_energy_j: pv.device_compute_j,
                    device_latency_ms: pv.device_compute_ms,
                    load_energy_j: pv.device_load_j,
                    load_latency_ms: pv.device_load_ms,
                    server_ms: pv.server_compute_ms,
                    server_load_ms: pv.server_load_ms,
                    trunk,
                    specialised,
                    recent_set: false,
                });
            }
        }
        apps.push(App {
            name: (*app_name).to_string(),
            variants,
            device_only: false,
        });
    }
    let catalog = Catalog {
        name: "paper".into(),
        device_class: "paper-phone".into(),
        apps,
        trunks,
        constants,
    };
    catalog.validate()?;
    Ok(catalog)
}

/// The face trunk of a sharing variant. The authors give the same figures for the age, gender
/// and race heads as for the whole network: the heads are negligible, so the trunk carries all
/// of the cost and a second head on the same frame is free.
fn trunk_index(trunks: &mut Vec<Trunk>, pv: &PaperVariant) -> usize {
    let id = format!("face:{}", pv.name);
    if let Some(i) = trunks.iter().position(|t| t.id == id) {
        return i;
    }
    trunks.push(Trunk {
        id,
        device_energy_j: pv.device_compute_j,
        device_latency_ms: pv.device_compute_ms,
        server_ms: pv.server_compute_ms,
    });
    trunks.len() - 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paper_catalog_has_the_apps_and_variants() {
        let c = Catalog::paper();
        let names: Vec<_> = c.apps.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "deepface",
                "object_alexnet",
                "scene_places",
                "object_vgg",
                "age",
                "gender",
                "race"
            ]
        );
        let face = &c.apps[0];
        assert_eq!(
            face.variants.iter().filter(|v| !v.is_specialised()).count(),
            13
        );
        assert_eq!(
            face.variants.iter().filter(|v| v.is_specialised()).count(),
            5
        );
        assert!(c.key("deepface", "D12").is_some());
        assert!(c.key("deepface", "C4").is_some());
        assert_eq!(c.trunks.len(), 3);
        let age = c.key("age", "D6").map(|k| c.variant(k).trunk);
        let race = c.key("race", "D6").map(|k| c.variant(k).trunk);
        assert_eq!(age, race);
        assert_eq!(c.constants.rtt_ms, 100.0);
    }

    #[test]
    fn parses_sizes() {
        assert_eq!(parse_mb("394M"), Some(394.0));
        assert_eq!(parse_mb("8.3M"), Some(8.3));
        assert_eq!(parse_mb("1.5G"), Some(1500.0));
        assert_eq!(parse_mb("x"), None);
    }

    #[test]
    fn bad_json_is_an_error() {
        assert!(parse_paper("{").is_err());
    }
}
