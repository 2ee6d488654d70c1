//! Starting a node agent: identity, store, catalog, data, policy; the serving thread and the link
//! task; and an orderly stop on SIGINT/SIGTERM or at the end of `--duration-s`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use protocol::identity::Identity;
use protocol::msg::Role;
use rand::SeedableRng;
use scheduler::catalog::Catalog;
use scheduler::state::Budgets;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use super::link::{self, LinkConfig};
use super::serve::{ServeConfig, Server, Summary};
use super::shared::Shared;
use crate::battery::EnergyAccount;
use crate::cache::ModelCache;
use crate::config::RunArgs;
use crate::dataset::{self, Dataset};
use crate::engine::EngineError;
use crate::frames::FrameSource;
use crate::store::NodeStore;
use crate::{catalog, runtime};

pub async fn run(args: RunArgs) -> anyhow::Result<Summary> {
    let identity = Identity::load(&args.identity_dir, &args.name).with_context(|| {
        format!(
            "loading node identity {} from {}",
            args.name,
            args.identity_dir.display()
        )
    })?;
    let client =
        protocol::tls::client_config(&identity).context("building the QUIC client config")?;
    let store = NodeStore::open(&args.store)?;
    let catalog_path = catalog::locate(args.catalog.as_deref())?;
    let (manifest, catalog_bytes, model_dir) = protocol::manifest::load(&catalog_path)
        .with_context(|| format!("catalog {}", catalog_path.display()))?;
    let sched_catalog = Arc::new(
        Catalog::from_manifest(&manifest, &args.device_class)
            .with_context(|| format!("device class {}", args.device_class))?,
    );
    let data = Dataset::load(&args.data.clone().unwrap_or_else(dataset::data_dir), "t10k")?;
    runtime::environment()?;
    let apps = args.app_rates()?;
    for (app, _) in &apps {
        anyhow::ensure!(
            manifest.app(app).is_some(),
            "app {app} is not in the catalog"
        );
    }
    let budgets = Budgets {
        energy_j: args.energy_budget_j,
        cost_usd: args.cost_budget_usd,
        horizon_s: args.shift_s,
        memory_mb: args.model_memory_mb,
    };
    let policy = scheduler::policy::by_name(&args.policy, &sched_catalog, &budgets)?;
    let shared = Shared::default();
    match store.load_assignment() {
        Ok(Some(a)) => {
            tracing::info!(epoch = a.epoch, "resuming on the persisted assignment");
            shared.offer_assignment(a);
        }
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e, "ignoring the persisted assignment"),
    }
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let energy = EnergyAccount::new(
        args.battery_wh * 3600.0,
        args.energy_budget_j,
        now_ms + (args.shift_s * 1000.0) as u64,
        !args.battery_model,
    );
    let dir = model_dir.clone();
    let fetch: crate::cache::Fetch = Box::new(move |file| {
        let path = dir.join(&file.file);
        std::fs::read(&path).map_err(|source| EngineError::Read {
            path: path.display().to_string(),
            source,
        })
    });
    let cache = ModelCache::new(manifest.clone(), fetch, (args.model_memory_mb * 1e6) as u64);
    let cancel = CancellationToken::new();
    let stop = Arc::new(AtomicBool::new(false));
    let link_cfg = LinkConfig {
        node_id: args.name.clone(),
        device_class: args.device_class.clone(),
        role: Role::Device,
        offload_addr: None,
        apps: apps.iter().map(|(a, _)| a.clone()).collect(),
        catalog_digest: hex::encode(Sha256::digest(&catalog_bytes)),
        coordinators: args.coordinators.clone(),
        telemetry_interval: Duration::from_millis(args.telemetry_ms.max(50)),
    };
    let link_task = tokio::spawn(link::run(
        link_cfg,
        client,
        shared.clone(),
        store.clone(),
        cancel.clone(),
    ));
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
    let serve_stop = stop.clone();
    let serve_shared = shared.clone();
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
            offloader: None,
            stop: serve_stop,
        }
        .run(&serve_cfg)
    });
    let signal_stop = stop.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("stopping on signal");
        signal_stop.store(true, Ordering::Relaxed);
    });
    let summary = serving.await.context("serving thread panicked")?;
    // Give the link one more telemetry interval so the coordinator sees the final counters.
    tokio::time::sleep(Duration::from_millis(args.telemetry_ms.min(1500))).await;
    cancel.cancel();
    let _ = link_task.await;
    let summary = summary?;
    if let Some(path) = &args.summary {
        std::fs::write(path, serde_json::to_vec_pretty(&summary)?)
            .with_context(|| format!("writing summary {}", path.display()))?;
    }
    Ok(summary)
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
