//! A real serving loop in-process for the input-side tests: the catalog's models on ONNX
//! Runtime, the Fashion-MNIST test split, a real spool, fed only by an intake (no replay).

#![allow(dead_code)]

pub mod face;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::thread::JoinHandle;
use std::time::Duration;

use mcdnn_node::agent::serve::{Results, ServeConfig, ServeHandles, Server};
use mcdnn_node::battery::EnergyAccount;
use mcdnn_node::cache::ModelCache;
use mcdnn_node::catalog;
use mcdnn_node::dataset::Dataset;
use mcdnn_node::engine::EngineError;
use mcdnn_node::frames::{ClassMix, FrameSource};
use mcdnn_node::request::{self, IntakeSender};
use mcdnn_node::spool::Spool;
use mcdnn_node::store::NodeStore;
use rand::SeedableRng;
use scheduler::catalog::Catalog;
use scheduler::state::Budgets;
use wire::manifest::Manifest;
use wire::summary::Summary;

pub struct Running {
    pub manifest: Manifest,
    pub dir: PathBuf,
    pub handles: ServeHandles,
    pub spool: Spool,
    pub stop: Arc<AtomicBool>,
    pub intake: Option<IntakeSender>,
    pub thread: Option<JoinHandle<Summary>>,
    _tmp: tempfile::TempDir,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as u64
}

pub fn catalog() -> (Manifest, PathBuf) {
    catalog_at("catalog.json")
}

/// The catalog at `models/NAME` and the folder of its files.
pub fn catalog_at(name: &str) -> (Manifest, PathBuf) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../models")
        .join(name);
    catalog::load(&path).unwrap_or_else(|e| panic!("models/{name}: {e:#}"))
}

/// What a test's serving loop runs besides its apps.
pub struct Setup {
    /// The catalog under `models/`.
    pub catalog: &'static str,
    pub capacity: usize,
    /// Face apps' audit period (0: off).
    pub face_audit_every: u64,
    /// The per-request policy (`best-device` unless a test is about the scheduler's choice).
    pub policy: &'static str,
}

/// Starts the serving loop on its own thread for `apps`, fed by an intake of `capacity`. The
/// policy is `best-device`, which runs every request on the device from the first one (`mcdnn`
/// drops a cold start's first requests while it waits to amortise the load): these tests are
/// about the input side, and an answer must come back.
pub fn start(apps: &[(&str, f64)], capacity: usize) -> Running {
    start_with(
        apps,
        Setup {
            catalog: "catalog.json",
            capacity,
            face_audit_every: 0,
            policy: "best-device",
        },
    )
}

/// [`start`] on `setup`'s catalog.
pub fn start_with(apps: &[(&str, f64)], setup: Setup) -> Running {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("warn"))
        .with_test_writer()
        .try_init();
    let capacity = setup.capacity;
    let (manifest, dir) = catalog_at(setup.catalog);
    let tmp = tempfile::tempdir().expect("tmp");
    let store = NodeStore::open(tmp.path()).expect("store");
    let spool = Spool::open(&store).expect("spool");
    let (tx, rx) = request::intake(capacity);
    let handles = ServeHandles::default();
    let stop = Arc::new(AtomicBool::new(false));
    let apps: Vec<(String, f64)> = apps.iter().map(|(a, r)| (a.to_string(), *r)).collect();
    let thread = {
        let (manifest, dir, handles, spool, stop) = (
            manifest.clone(),
            dir.clone(),
            handles.clone(),
            spool.clone(),
            stop.clone(),
        );
        std::thread::spawn(move || {
            let data = Dataset::test_split().expect("Fashion-MNIST test split");
            let catalog = Arc::new(Catalog::from_manifest(&manifest, "laptop").expect("catalog"));
            let budgets = Budgets {
                energy_j: 1e6,
                cost_usd: 0.0,
                horizon_s: 3600.0,
                memory_mb: 64.0,
            };
            let mut policy =
                scheduler::policy::by_name(setup.policy, &catalog, &budgets).expect("policy");
            // As `agent::run` does: the apps' configured rates until arrivals say otherwise.
            for (app, rate) in &apps {
                policy.declare_rate(app, *rate);
            }
            let fetch: mcdnn_node::cache::Fetch = Box::new(move |f| {
                std::fs::read(dir.join(&f.file)).map_err(|source| EngineError::Read {
                    path: f.file.clone(),
                    source,
                })
            });
            let cfg = ServeConfig {
                apps,
                budgets,
                replay: false,
                duration: Some(Duration::from_secs(300)),
                publish_every: Duration::ZERO,
                face_audit_every: setup.face_audit_every,
            };
            Server {
                manifest: &manifest,
                catalog,
                data: &data,
                cache: ModelCache::new(manifest.clone(), fetch, 64_000_000),
                policy,
                frames: FrameSource::new(
                    &data,
                    ClassMix::Uniform,
                    rand::rngs::StdRng::seed_from_u64(1),
                ),
                intake: Some(rx),
                energy: EnergyAccount::new(1e6, 1e6, now_ms() + 3_600_000, false),
                handles,
                results: Results::new(Some(spool)),
                offloader: None,
                stop,
                clock: net::clock::SystemClock::shared(),
                learning: Default::default(),
                follower: Default::default(),
                faces: Default::default(),
            }
            .run(&cfg)
            .expect("serve")
        })
    };
    Running {
        manifest,
        dir,
        handles,
        spool,
        stop,
        intake: Some(tx),
        thread: Some(thread),
        _tmp: tmp,
    }
}

impl Running {
    /// Requests the loop has seen per app, and results spooled.
    pub fn counts(&self) -> (Vec<(String, u64, u64)>, usize) {
        let apps = self
            .handles
            .telemetry
            .get()
            .apps
            .iter()
            .map(|a| (a.app.clone(), a.requests, a.dropped))
            .collect();
        let spooled = self
            .spool
            .batch_after(0, 100_000)
            .expect("spool")
            .results
            .len();
        (apps, spooled)
    }

    /// Ends the loop (its intake closes once every sender is gone) and returns its summary.
    pub fn finish(mut self) -> Summary {
        self.intake = None;
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread
            .take()
            .expect("running")
            .join()
            .expect("serving thread")
    }
}
