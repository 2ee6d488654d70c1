//! Starting a node agent: identity, store, catalog, data, policy; the serving thread (device
//! role) or the offload server (server role); the link and model fetcher tasks; and an orderly
//! stop on SIGINT/SIGTERM or at the end of `--duration-s`, after spooled results are delivered.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use net::clock::{SharedClock, SystemClock};
use net::identity::Identity;
use rand::SeedableRng;
use scheduler::catalog::Catalog;
use scheduler::state::Budgets;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;
use wire::manifest::Manifest;
use wire::msg::Role;
use wire::summary::Summary;

use super::link::{self, LinkConfig, LinkHandles};
use super::serve::{self, ServeConfig, ServeHandles, Server};
use crate::battery::EnergyAccount;
use crate::cache::{Fetch, ModelCache};
use crate::config::RunArgs;
use crate::credentials::{self, Credentials};
use crate::dataset::{self, Dataset};
use crate::engine::EngineError;
use crate::frames::FrameSource;
use crate::handles::{
    AssignmentCell, CoordinatorLink, HeadCell, ModelAvailability, OffloadCounters, TelemetryCell,
    WatchlistCell,
};
use crate::models::ShardStore;
use crate::models::fetch::{FetchConfig, Want};
use crate::offload::Offloader;
use crate::spool::Spool;
use crate::store::NodeStore;
use crate::{catalog, runtime};

/// The catalog from `--catalog` (or the usual places), else the copy the store kept, so a node
/// restarted offline without a model folder still knows its catalog.
fn load_catalog(
    args: &RunArgs,
    store: &NodeStore,
) -> anyhow::Result<(Manifest, Vec<u8>, std::path::PathBuf)> {
    match catalog::locate(args.catalog.as_deref()).and_then(|path| {
        wire::manifest::load(&path).with_context(|| format!("catalog {}", path.display()))
    }) {
        Ok(loaded) => {
            store.save_catalog(&loaded.1)?;
            Ok(loaded)
        }
        Err(e) => {
            let bytes = store
                .load_catalog()?
                .ok_or(e)
                .context("no catalog file and none in the node store")?;
            let text = std::str::from_utf8(&bytes).context("stored catalog is not UTF-8")?;
            let manifest = Manifest::from_json(text).context("stored catalog")?;
            tracing::info!("using the catalog kept in the node store");
            Ok((manifest, bytes, std::path::PathBuf::new()))
        }
    }
}

/// The handles the node's tasks share, each given only to the tasks that use it.
struct Handles {
    assignment: AssignmentCell,
    models: ModelAvailability,
    telemetry: TelemetryCell,
    offload: OffloadCounters,
    coordinator: CoordinatorLink,
    heads: HeadCell,
    /// The pushed watchlist, for the face app's matcher.
    watchlist: WatchlistCell,
    clock: SharedClock,
}

pub async fn run(args: RunArgs) -> anyhow::Result<Summary> {
    let identity = Identity::load(&args.identity_dir, &args.name).with_context(|| {
        format!(
            "loading node identity {} from {}",
            args.name,
            args.identity_dir.display()
        )
    })?;
    let clock = SystemClock::shared();
    let credentials = Credentials::with_clock(
        args.identity_dir.clone(),
        args.name.clone(),
        identity,
        clock.clone(),
    );
    // Fail at start, not at the first connection, if the identity cannot make a TLS config.
    credentials.client_config()?;
    let store = NodeStore::open(&args.store)?;
    let (manifest, catalog_bytes, model_dir) = load_catalog(&args, &store)?;
    let sched_catalog = Arc::new(
        Catalog::from_manifest(&manifest, &args.device_class)
            .with_context(|| format!("device class {}", args.device_class))?,
    );
    runtime::environment()?;
    let server_role = args.role == "server";
    let apps = if server_role {
        Vec::new()
    } else {
        args.app_rates()?
    };
    for (app, _) in &apps {
        anyhow::ensure!(
            manifest.app(app).is_some(),
            "app {app} is not in the catalog"
        );
    }
    anyhow::ensure!(
        args.watchlist_threshold.is_finite() && args.watchlist_threshold > 0.0,
        "--watchlist-threshold must be a positive distance, not {}",
        args.watchlist_threshold
    );
    let handles = Handles {
        assignment: AssignmentCell::default(),
        models: ModelAvailability::default(),
        telemetry: TelemetryCell::default(),
        offload: OffloadCounters::default(),
        coordinator: CoordinatorLink::default(),
        heads: HeadCell::default(),
        watchlist: WatchlistCell::new(args.watchlist_threshold),
        clock,
    };
    let spool = Spool::open(&store)?;
    match store.load_assignment() {
        Ok(Some(a)) => {
            tracing::info!(epoch = a.epoch, "resuming on the persisted assignment");
            handles.assignment.offer(a);
        }
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e, "ignoring the persisted assignment"),
    }
    let cancel = CancellationToken::new();
    let (fetch, shards) = if args.models == "coordinator" {
        let shards = ShardStore::open_with_clock(
            &store,
            (args.model_disk_mb * 1e6) as u64,
            handles.clock.clone(),
        )?;
        let reader = shards.clone();
        let fetch: Fetch = Box::new(move |file| reader.read_file(file));
        let cfg = FetchConfig {
            want: if server_role || args.prefetch == "all" {
                Want::All
            } else {
                Want::Assigned
            },
            max_bytes_per_s: args.fetch_max_mbps.map(|m| m * 1e6),
        };
        tokio::spawn(crate::models::fetch::run(
            cfg,
            manifest.clone(),
            shards.clone(),
            crate::models::fetch::FetchHandles {
                assignment: handles.assignment.clone(),
                models: handles.models.clone(),
                coordinator: handles.coordinator.clone(),
                clock: handles.clock.clone(),
            },
            cancel.clone(),
        ));
        (fetch, Some(shards))
    } else {
        let dir = model_dir.clone();
        let fetch: Fetch = Box::new(move |file| {
            let path = dir.join(&file.file);
            std::fs::read(&path).map_err(|source| EngineError::Read {
                path: path.display().to_string(),
                source,
            })
        });
        (fetch, None)
    };
    let cache = ModelCache::new(manifest.clone(), fetch, (args.model_memory_mb * 1e6) as u64);
    let offload_addr = args
        .offload_advertise
        .clone()
        .unwrap_or_else(|| args.offload_listen.to_string());
    let link_cfg = LinkConfig {
        node_id: args.name.clone(),
        device_class: args.device_class.clone(),
        role: if server_role {
            Role::Server {
                capacity_rps: args.capacity_rps,
            }
        } else {
            Role::Device
        },
        offload_addr: server_role.then_some(offload_addr),
        apps: apps.iter().map(|(a, _)| a.clone()).collect(),
        catalog_digest: hex::encode(Sha256::digest(&catalog_bytes)),
        coordinators: args.coordinators.clone(),
        telemetry_interval: Duration::from_millis(args.telemetry_ms.max(50)),
    };
    let link_task = tokio::spawn(link::run(
        link_cfg,
        credentials.clone(),
        LinkHandles {
            assignment: handles.assignment.clone(),
            telemetry: handles.telemetry.clone(),
            offload: handles.offload.clone(),
            coordinator: handles.coordinator.clone(),
            spool: Some(spool.clone()),
            store: store.clone(),
            clock: handles.clock.clone(),
            watchlist: handles.watchlist.clone(),
        },
        cancel.clone(),
    ));
    if !args.no_specialise && !server_role {
        tokio::spawn(crate::models::heads::run(
            handles.assignment.clone(),
            handles.coordinator.clone(),
            handles.heads.clone(),
            cancel.clone(),
        ));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let signal_stop = stop.clone();
    tokio::spawn(async move {
        net::shutdown::signal().await;
        tracing::info!("stopping on signal");
        signal_stop.store(true, Ordering::Relaxed);
    });
    let mut summary = if server_role {
        serve_offloads(&args, &credentials, cache, &handles, &stop, &cancel).await?
    } else {
        let device = Device {
            manifest,
            catalog: sched_catalog,
            cache,
            credentials: credentials.clone(),
            spool: spool.clone(),
        };
        serve_device(&args, device, &handles, &stop, &cancel).await?
    };
    drain(
        &spool,
        handles.clock.as_ref(),
        Duration::from_secs_f64(args.drain_timeout_s.max(0.0)),
    )
    .await;
    // Give the link one more telemetry interval so the coordinator sees the final counters.
    tokio::time::sleep(Duration::from_millis(args.telemetry_ms.min(1500))).await;
    cancel.cancel();
    let _ = link_task.await;
    summary.results_accepted = spool.accepted();
    summary.results_pending = spool.pending() as u64;
    summary.served_offload = handles.offload.served();
    summary.models = shards.map(|s| s.snapshot());
    if let Some(path) = &args.summary {
        std::fs::write(path, serde_json::to_vec_pretty(&summary)?)
            .with_context(|| format!("writing summary {}", path.display()))?;
    }
    Ok(summary)
}

/// Waits until every spooled result is acknowledged or `timeout` passes. Whatever is left stays
/// spooled and is sent on the next run.
async fn drain(spool: &Spool, clock: &dyn net::clock::Clock, timeout: Duration) {
    let started = clock.now();
    while spool.pending() > 0 && clock.now().duration_since(started) < timeout {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if spool.pending() > 0 {
        tracing::warn!(
            pending = spool.pending(),
            "stopping with results still spooled; they are sent on the next run"
        );
    }
}

/// What the device role serves with.
struct Device {
    manifest: Manifest,
    catalog: Arc<Catalog>,
    cache: ModelCache,
    credentials: Arc<Credentials>,
    spool: Spool,
}

async fn serve_device(
    args: &RunArgs,
    device: Device,
    handles: &Handles,
    stop: &Arc<AtomicBool>,
    cancel: &CancellationToken,
) -> anyhow::Result<Summary> {
    let Device {
        manifest,
        catalog: sched_catalog,
        cache,
        credentials,
        spool,
    } = device;
    let apps = args.app_rates()?;
    let data = Dataset::load(&args.data.clone().unwrap_or_else(dataset::data_dir), "t10k")?;
    let budgets = Budgets {
        energy_j: args.energy_budget_j,
        cost_usd: args.cost_budget_usd,
        horizon_s: args.shift_s,
        memory_mb: args.model_memory_mb,
    };
    let mut policy = scheduler::policy::by_name(&args.policy, &sched_catalog, &budgets)?;
    // `paper` budgets by each app's declared frequency, as the authors' scheduler does.
    for (app, rate) in &apps {
        policy.declare_rate(app, *rate);
    }
    let now_ms = handles.clock.unix_ms();
    let energy = EnergyAccount::new(
        args.battery_wh * 3600.0,
        args.energy_budget_j,
        now_ms + (args.shift_s * 1000.0) as u64,
        !args.battery_model,
    );
    let dims = (
        u16::try_from(manifest.input.height).context("input height")?,
        u16::try_from(manifest.input.width).context("input width")?,
    );
    let offloader: Box<dyn Offloader> = Box::new(crate::offload::client::QuicOffloader::new(
        tokio::runtime::Handle::current(),
        credentials,
        handles.assignment.clone(),
        handles.clock.clone(),
        args.offload_server.clone(),
        Duration::from_millis(args.offload_timeout_ms.max(1)),
        dims,
    )?);
    let (inputs, intake) =
        super::inputs::start(args, &apps, &manifest, &handles.assignment, stop, cancel).await?;
    let serve_cfg = ServeConfig {
        apps,
        budgets,
        replay: inputs.replay,
        duration: args.duration_s.map(Duration::from_secs_f64),
        publish_every: Duration::from_millis(250),
        face_audit_every: args.face_audit_every,
    };
    let frames = FrameSource::new(
        &data,
        args.class_mix()?,
        rand::rngs::StdRng::seed_from_u64(args.seed),
    );
    let serve_stop = stop.clone();
    let serve_handles = ServeHandles {
        assignment: handles.assignment.clone(),
        models: handles.models.clone(),
        telemetry: handles.telemetry.clone(),
        heads: handles.heads.clone(),
        watchlist: handles.watchlist.clone(),
    };
    let clock = handles.clock.clone();
    let serving = tokio::task::spawn_blocking(move || {
        Server {
            manifest: &manifest,
            catalog: sched_catalog,
            data: &data,
            cache,
            policy,
            frames,
            intake,
            energy,
            handles: serve_handles,
            results: serve::Results::new(Some(spool)),
            offloader: Some(offloader),
            stop: serve_stop,
            clock,
            learning: Default::default(),
            follower: Default::default(),
            faces: Default::default(),
        }
        .run(&serve_cfg)
    });
    let mut summary = serving.await.context("serving thread panicked")??;
    summary.input = inputs.summary();
    Ok(summary)
}

/// Server role: serve offloads until the duration ends or a signal arrives.
async fn serve_offloads(
    args: &RunArgs,
    credentials: &Credentials,
    cache: ModelCache,
    handles: &Handles,
    stop: &AtomicBool,
    cancel: &CancellationToken,
) -> anyhow::Result<Summary> {
    // Revoked peers are refused at the handshake; a renewed certificate is served from then on.
    let config = net::tls::server_config_revoking(&credentials.current(), &credentials.revoked)
        .context("building the offload server config")?;
    let endpoint = quinn::Endpoint::server(config, args.offload_listen)
        .with_context(|| format!("binding the offload endpoint on {}", args.offload_listen))?;
    credentials::follow_server(
        endpoint.clone(),
        credentials.subscribe(),
        credentials.revoked.clone(),
    );
    // Requests beyond about a second of work would miss any app's latency limit: refuse them.
    let max_queue = args.capacity_rps.ceil().clamp(1.0, 10_000.0) as u32;
    let worker = crate::offload::server::Worker::start(cache, max_queue)
        .context("starting the offload worker")?;
    tracing::info!(listen = %args.offload_listen, capacity_rps = args.capacity_rps, "offload server up");
    let server_cancel = cancel.child_token();
    let server = tokio::spawn(crate::offload::server::serve(
        endpoint,
        worker,
        handles.offload.clone(),
        credentials.revoked.clone(),
        server_cancel.clone(),
    ));
    let clock = handles.clock.as_ref();
    let started = clock.now();
    let duration = args.duration_s.map(Duration::from_secs_f64);
    while !stop.load(Ordering::Relaxed)
        && duration.is_none_or(|d| clock.now().duration_since(started) < d)
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    server_cancel.cancel();
    let _ = server.await;
    let mut summary = serve::offload_server_summary(args.energy_budget_j);
    summary.served_offload = handles.offload.served();
    Ok(summary)
}
