//! Face specialisation is the scheduler's decision: the per-request policy runs the recent
//! gallery cascade (`recent-116`, falling back to a general variant) only while a few people
//! fill the face app's stream, never drops its misses (the gallery learns from them), and not
//! for a crowd of strangers.

use std::collections::BTreeMap;

use mcdnn_scheduler::catalog::{Catalog, Place};
use mcdnn_scheduler::policy::{Decision, Outcome, by_name};
use mcdnn_scheduler::state::{Budgets, DeviceState};
use wire::manifest::Manifest;

fn face_catalog() -> Catalog {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../models/face/catalog.json");
    let manifest =
        Manifest::from_json(&std::fs::read_to_string(path).expect("file")).expect("valid");
    Catalog::from_manifest(&manifest, "bodycam-lite").expect("profiles")
}

/// Runs 2 face requests/s for 10 minutes on a budget that cannot pay the general int8 variant
/// for every request; `who(i)` is the identity request `i` shows. Returns how often each
/// variant was chosen after the first minute, and the cascades' fallbacks.
fn decisions(who: impl Fn(usize) -> String) -> (BTreeMap<String, usize>, Vec<(String, bool)>) {
    let catalog = face_catalog();
    let app = &catalog.apps[0];
    let energy = |name: &str| {
        app.variants
            .iter()
            .find(|v| v.name == name)
            .map(|v| v.device_energy_j)
            .expect("variant")
    };
    let requests = 1200;
    let budgets = Budgets {
        energy_j: 0.8 * energy("int8-150") * requests as f64,
        cost_usd: 0.0,
        horizon_s: 600.0,
        memory_mb: 1024.0,
    };
    let mut policy = by_name("mcdnn", &catalog, &budgets).expect("policy");
    let mut state = DeviceState::new(&budgets, 0.0);
    state.connected = false;
    let (mut chosen, mut cascades) = (BTreeMap::new(), Vec::new());
    for i in 0..requests {
        let now_s = i as f64 * 0.5;
        let identity = who(i);
        let outcome = match policy.decide(now_s, "face-id", &state) {
            Decision::Run(run) => {
                let spent = energy(&run.variant);
                state.energy_left_j -= spent;
                if now_s >= 60.0 {
                    *chosen.entry(run.variant.clone()).or_insert(0) += 1;
                    if let Some(c) = &run.cascade {
                        cascades.push((c.fallback.clone(), c.drop_other));
                    }
                }
                (Some(Place::Device), Some(run.variant), spent)
            }
            Decision::Drop => (None, None, 0.0),
        };
        policy.observe(
            now_s,
            "face-id",
            &Outcome {
                class: outcome.0.map(|_| identity.as_str()),
                place: outcome.0,
                variant: outcome.1.as_deref(),
                energy_j: outcome.2,
                cost_usd: 0.0,
                swapped_in: false,
            },
        );
    }
    (chosen, cascades)
}

#[test]
fn two_people_in_front_of_the_camera_make_the_policy_run_the_recent_gallery() {
    let (chosen, cascades) = decisions(|i| ["roxanne", "megamind"][i % 5 / 4].to_string());
    let recent = chosen.get("recent-116").copied().unwrap_or(0);
    let total: usize = chosen.values().sum();
    assert!(
        recent * 2 > total,
        "the cascade should carry most requests: {chosen:?}"
    );
    assert!(
        cascades
            .iter()
            .all(|(fallback, drop)| !drop && !fallback.is_empty()),
        "misses always go to a general variant: {cascades:?}"
    );
}

#[test]
fn a_crowd_of_strangers_never_gets_the_recent_gallery() {
    let (chosen, _) = decisions(|i| format!("stranger#{i}"));
    assert_eq!(chosen.get("recent-116"), None, "{chosen:?}");
    assert!(
        !chosen.is_empty(),
        "general variants still serve: {chosen:?}"
    );
}
