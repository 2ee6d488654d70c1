//! Starting a node agent: identity, store, catalog, data, policy; the serving thread (device
//! role) or the offload server (server role); the link and model fetcher tasks; and an orderly
//! stop on SIGINT/SIGTERM or at the end of `--duration-s`, after spooled results are delivered.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use net::identity::Identity;
use rand::SeedableRng;
use scheduler::catalog::Catalog;
use scheduler::state::Budgets;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;
use wire::manifest::Manifest;
use wire::msg::Role;

use super::link::{self, LinkConfig};
use super::serve::{Offloader, ServeConfig, Server, Summary};
use super::shared::Shared;
use crate::battery::EnergyAccount;
use crate::cache::{Fetch, ModelCache};
use crate::config::RunArgs;
use crate::dataset::{self, Dataset};
use crate::engine::EngineError;
use crate::frames::FrameSource;
use crate::models::ShardStore;
use crate::models::fetch::{FetchConfig, Want};
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

pub async fn run(args: RunArgs) -> anyhow::Result<Summary> {
    let identity = Identity::load(&args.identity_dir, &args.name).with_context(|| {
        format!(
            "loading node identity {} from {}",
            args.name,
            args.identity_dir.display()
        )
    })?;
    let credentials = super::credentials::Credentials::new(
        args.identity_dir.clone(),
        args.name.clone(),
        identity,
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
    let shared = Shared::default();
    let spool = Spool::open(&store)?;
    shared.lock().spool = Some(spool.clone());
    match store.load_assignment() {
        Ok(Some(a)) => {
            tracing::info!(epoch = a.epoch, "resuming on the persisted assignment");
            shared.offer_assignment(a);
        }
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e, "ignoring the persisted assignment"),
    }
    let cancel = CancellationToken::new();
    let (fetch, shards) = if args.models == "coordinator" {
        let shards = ShardStore::open(&store, (args.model_disk_mb * 1e6) as u64)?;
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
            shared.clone(),
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
        shared.clone(),
        store.clone(),
        cancel.clone(),
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let signal_stop = stop.clone();
    tokio::spawn(async move {
        net::shutdown::signal().await;
        tracing::info!("stopping on signal");
        signal_stop.store(true, Ordering::Relaxed);
    });
    let mut summary = if server_role {
        serve_offloads(&args, &credentials, cache, &shared, &stop, &cancel).await?
    } else {
        serve_device(
            &args,
            manifest,
            sched_catalog,
            cache,
            credentials.clone(),
            &shared,
            &stop,
        )
        .await?
    };
    drain(
        &spool,
        Duration::from_secs_f64(args.drain_timeout_s.max(0.0)),
    )
    .await;
    // Give the link one more telemetry interval so the coordinator sees the final counters.
    tokio::time::sleep(Duration::from_millis(args.telemetry_ms.min(1500))).await;
    cancel.cancel();
    let _ = link_task.await;
    summary.results_accepted = spool.accepted();
    summary.results_pending = spool.pending() as u64;
    summary.served_offload = shared.lock().served_offload;
    summary.models = shards.map(|s| s.snapshot());
    if let Some(path) = &args.summary {
        std::fs::write(path, serde_json::to_vec_pretty(&summary)?)
            .with_context(|| format!("writing summary {}", path.display()))?;
    }
    Ok(summary)
}

/// Waits until every spooled result is acknowledged or `timeout` passes. Whatever is left stays
/// spooled and is sent on the next run.
async fn drain(spool: &Spool, timeout: Duration) {
    let started = Instant::now();
    while spool.pending() > 0 && started.elapsed() < timeout {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if spool.pending() > 0 {
        tracing::warn!(
            pending = spool.pending(),
            "stopping with results still spooled; they are sent on the next run"
        );
    }
}

async fn serve_device(
    args: &RunArgs,
    manifest: Manifest,
    sched_catalog: Arc<Catalog>,
    cache: ModelCache,
    credentials: Arc<super::credentials::Credentials>,
    shared: &Shared,
    stop: &Arc<AtomicBool>,
) -> anyhow::Result<Summary> {
    let apps = args.app_rates()?;
    let data = Dataset::load(&args.data.clone().unwrap_or_else(dataset::data_dir), "t10k")?;
    let budgets = Budgets {
        energy_j: args.energy_budget_j,
        cost_usd: args.cost_budget_usd,
        horizon_s: args.shift_s,
        memory_mb: args.model_memory_mb,
    };
    let policy = scheduler::policy::by_name(&args.policy, &sched_catalog, &budgets)?;
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
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
        shared.clone(),
        args.offload_server.clone(),
        Duration::from_millis(args.offload_timeout_ms.max(1)),
        dims,
    )?);
    let serve_cfg = ServeConfig {
        apps,
        budgets,
        duration: args.duration_s.map(Duration::from_secs_f64),
        publish_every: Duration::from_millis(250),
    };
    let frames = FrameSource::new(
        &data,
        args.class_mix()?,
        rand::rngs::StdRng::seed_from_u64(args.seed),
    );
    let (serve_stop, serve_shared) = (stop.clone(), shared.clone());
    let serving = tokio::task::spawn_blocking(move || {
        Server {
            manifest: &manifest,
            catalog: sched_catalog,
            data: &data,
            cache,
            policy,
            frames,
            energy,
            shared: serve_shared,
            offloader: Some(offloader),
            stop: serve_stop,
            load_profiles: Default::default(),
        }
        .run(&serve_cfg)
    });
    serving.await.context("serving thread panicked")?
}

/// Server role: serve offloads until the duration ends or a signal arrives.
async fn serve_offloads(
    args: &RunArgs,
    credentials: &super::credentials::Credentials,
    cache: ModelCache,
    shared: &Shared,
    stop: &AtomicBool,
    cancel: &CancellationToken,
) -> anyhow::Result<Summary> {
    // Revoked peers are refused at the handshake; a renewed certificate is served from then on.
    let config = net::tls::server_config_revoking(&credentials.current(), &credentials.revoked)
        .context("building the offload server config")?;
    let endpoint = quinn::Endpoint::server(config, args.offload_listen)
        .with_context(|| format!("binding the offload endpoint on {}", args.offload_listen))?;
    super::credentials::follow_server(
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
        shared.clone(),
        credentials.revoked.clone(),
        server_cancel.clone(),
    ));
    let started = Instant::now();
    let duration = args.duration_s.map(Duration::from_secs_f64);
    while !stop.load(Ordering::Relaxed) && duration.is_none_or(|d| started.elapsed() < d) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    server_cancel.cancel();
    let _ = server.await;
    Ok(Summary {
        requests: 0,
        accuracy: 0.0,
        energy_used_j: 0.0,
        energy_budget_j: args.energy_budget_j,
        cost_used_usd: 0.0,
        model_loads: 0,
        assignments_applied: 0,
        last_epoch: 0,
        apps: Default::default(),
        results_accepted: 0,
        results_pending: 0,
        dropped: 0,
        spool_failures: 0,
        offload_fallbacks: 0,
        served_offload: shared.lock().served_offload,
        models: None,
    })
}
