//! The serving loop on an injected clock: a manual clock makes a run of simulated seconds finish
//! at once, with frames paced in clock time, every answer spooled with the clock's time, and the
//! same seed giving the same arrivals. Needs `scripts/setup.sh` (ONNX Runtime and the data set).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use mcdnn_node::agent::serve::{Results, ServeConfig, ServeHandles, Server};
use mcdnn_node::battery::EnergyAccount;
use mcdnn_node::cache::ModelCache;
use mcdnn_node::catalog;
use mcdnn_node::dataset::Dataset;
use mcdnn_node::engine::EngineError;
use mcdnn_node::frames::{ClassMix, FrameSource};
use mcdnn_node::spool::Spool;
use mcdnn_node::store::NodeStore;
use net::clock::{Clock, ManualClock};
use rand::SeedableRng;
use scheduler::catalog::Catalog;
use scheduler::state::Budgets;
use wire::summary::Summary;

const START_MS: u64 = 1_700_000_000_000;

/// Serves `secs` of simulated time at 4 frames/s; returns the summary, the spooled times and
/// the snapshot's battery.
fn serve(secs: f64, seed: u64) -> (Summary, Vec<u64>, bool) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/catalog.json");
    let (manifest, dir) = catalog::load(&path).expect("models/catalog.json");
    let data = Dataset::test_split().expect("Fashion-MNIST test split");
    let catalog = Arc::new(Catalog::from_manifest(&manifest, "laptop").expect("catalog"));
    let budgets = Budgets {
        energy_j: 1e6,
        cost_usd: 0.0,
        horizon_s: 3600.0,
        memory_mb: 64.0,
    };
    let policy = scheduler::policy::by_name("mcdnn", &catalog, &budgets).expect("policy");
    let fetch: mcdnn_node::cache::Fetch = Box::new(move |f| {
        std::fs::read(dir.join(&f.file)).map_err(|source| EngineError::Read {
            path: f.file.clone(),
            source,
        })
    });
    let tmp = tempfile::tempdir().expect("tmp");
    let store = NodeStore::open(tmp.path()).expect("store");
    let spool = Spool::open(&store).expect("spool");
    let clock = ManualClock::new(START_MS);
    let handles = ServeHandles::default();
    let cfg = ServeConfig {
        apps: vec![("garment".into(), 4.0)],
        budgets,
        replay: true,
        duration: Some(Duration::from_secs_f64(secs)),
        publish_every: Duration::from_millis(250),
        face_audit_every: 0,
    };
    let summary = Server {
        manifest: &manifest,
        catalog,
        data: &data,
        cache: ModelCache::new(manifest.clone(), fetch, 64_000_000),
        policy,
        intake: None,
        frames: FrameSource::new(
            &data,
            ClassMix::Uniform,
            rand::rngs::StdRng::seed_from_u64(seed),
        ),
        energy: EnergyAccount::new(1e6, 1e6, START_MS + 3_600_000, false),
        handles: handles.clone(),
        results: Results::new(Some(spool.clone())),
        offloader: None,
        stop: Arc::new(AtomicBool::new(false)),
        clock: Arc::new(clock.clone()),
        learning: Default::default(),
        follower: Default::default(),
        faces: Default::default(),
    }
    .run(&cfg)
    .expect("serve");
    // Only a paced wait moves a manual clock: the run's simulated seconds passed through it.
    assert!(clock.unix_ms() >= START_MS + (secs * 1000.0) as u64);
    let times = spool
        .batch_after(0, 10_000)
        .expect("batch")
        .results
        .iter()
        .map(|r| r.at_unix_ms)
        .collect();
    (summary, times, handles.telemetry.battery().is_some())
}

#[test]
fn a_manual_clock_paces_simulated_seconds_without_waiting_for_them() {
    let (summary, times, battery) = serve(60.0, 3);
    // 60 s at 4 frames/s, Poisson arrivals: about 240 requests.
    assert!(
        (150..=330).contains(&summary.requests),
        "{} requests",
        summary.requests
    );
    // Every request was dropped or spooled (the run's own summary leaves acceptance to the
    // caller, which reads it from the spool).
    assert_eq!(summary.spool_failures, 0);
    assert_eq!(summary.requests, summary.dropped + times.len() as u64);
    assert!(times.len() as u64 > summary.requests / 2, "{summary:?}");
    assert!(battery, "the telemetry snapshot was published");
    assert!(
        times.windows(2).all(|w| w[0] <= w[1])
            && times
                .iter()
                .all(|t| (START_MS..=START_MS + 60_000).contains(t)),
        "results stamped with the clock's time"
    );
    let (again, _, _) = serve(60.0, 3);
    assert_eq!(again.requests, summary.requests, "same seed, same arrivals");
}
