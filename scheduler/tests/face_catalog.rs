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

/// The fleet catalog (`models/fleet.json`) plans Fashion-MNIST and face apps together: they share
/// each node's energy budget, so a busy face app leaves the garment app less to spend.
#[test]
fn both_catalogs_apps_share_one_nodes_budget_in_the_fleet_plan() {
    use mcdnn_scheduler::fleet::{FleetProblem, NodeState, solve};
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../models/fleet.json");
    let (manifest, _, _) = wire::manifest::load(std::path::Path::new(path)).expect("fleet");
    let catalog = Catalog::from_manifest(&manifest, "bodycam-lite").expect("profiles");
    let apps: Vec<&str> = catalog.apps.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(apps, ["garment", "category", "face-id"]);
    let face = &catalog.apps[2];
    assert_eq!(
        face.variants.len(),
        3,
        "face-id is planned over the face variants only"
    );
    assert!(
        face.variants
            .iter()
            .all(|v| v.trunk.is_some_and(|t| t >= 6))
    );
    // Energy for one hour of garment at 5/s on the full variant: enough alone, not beside faces
    // (a face request costs about fifty garment ones on this class).
    let garment_full = &catalog.apps[0].variants[0];
    let energy = garment_full.device_energy_j * 5.0 * 3600.0;
    let garment_energy = |face_rate: f64| {
        let mut rates = vec![("garment".to_string(), 5.0)];
        if face_rate > 0.0 {
            rates.push(("face-id".to_string(), face_rate));
        }
        let problem = FleetProblem {
            catalogs: vec![catalog.clone()],
            nodes: vec![NodeState {
                id: "cam-1".into(),
                device_class: "bodycam-lite".into(),
                energy_left_j: energy,
                remaining_s: 3600.0,
                rates,
                connected: true,
            }],
            cost_budget_usd: 0.0,
            server_capacity_rps: 0.0,
            tolerance: 1e-3,
        };
        let plan = solve(&problem).expect("solves");
        let node = &plan.nodes[0];
        if face_rate > 0.0 {
            let face = node
                .apps
                .iter()
                .find(|a| &*a.app == "face-id")
                .expect("face planned");
            let served: f64 = face.mix.iter().map(|m| m.fraction).sum();
            assert!(served > 0.0, "the face app gets a share of the budget");
            assert!(face.mix.iter().all(|m| m.variant.ends_with("-150")));
        }
        let garment = node
            .apps
            .iter()
            .find(|a| &*a.app == "garment")
            .expect("garment");
        garment.energy_per_request_j
    };
    let alone = garment_energy(0.0);
    let beside_faces = garment_energy(1.0);
    assert!(
        beside_faces < alone * 0.9,
        "garment spends {alone:.4} J a request alone, {beside_faces:.4} J beside a face app"
    );
}

/// Face requests stay on the device (the offload protocol carries grey inputs): with a server
/// that would be free and fast, the fleet plan still runs face-id on the device, while the
/// grey app of the same node may go to the server.
#[test]
fn the_fleet_plan_never_offloads_a_face_app() {
    use mcdnn_scheduler::catalog::Place;
    use mcdnn_scheduler::fleet::{FleetProblem, NodeState, solve};
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../models/fleet.json");
    let (manifest, _, _) = wire::manifest::load(std::path::Path::new(path)).expect("fleet");
    let catalog = Catalog::from_manifest(&manifest, "bodycam-lite").expect("profiles");
    assert!(catalog.apps[2].device_only && !catalog.apps[0].device_only);
    let problem = FleetProblem {
        catalogs: vec![catalog],
        nodes: vec![NodeState {
            id: "cam-1".into(),
            device_class: "bodycam-lite".into(),
            // Too little energy to run much of anything on the device.
            energy_left_j: 50.0,
            remaining_s: 3600.0,
            rates: vec![("garment".into(), 5.0), ("face-id".into(), 1.0)],
            connected: true,
        }],
        cost_budget_usd: f64::INFINITY,
        server_capacity_rps: f64::INFINITY,
        tolerance: 1e-3,
    };
    let plan = solve(&problem).expect("solves");
    let app = |name: &str| {
        plan.nodes[0]
            .apps
            .iter()
            .find(|a| &*a.app == name)
            .expect(name)
    };
    assert!(app("face-id").mix.iter().all(|m| m.place == Place::Device));
    assert!(
        app("garment").mix.iter().any(|m| m.place == Place::Server),
        "the grey app uses the free server: {:?}",
        app("garment").mix
    );
}
