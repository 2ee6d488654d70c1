//! `mcdnn-coordinator run`: the node endpoint (QUIC, mutual TLS), the solve loop and the admin
//! API, stopped together by one cancellation token on SIGINT/SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use protocol::identity::Identity;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::fleet::epochs::EpochStore;
use crate::fleet::hub::Hub;
use crate::fleet::plan::FleetPolicy;
use crate::fleet::{sessions, solve_loop};

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// This replica's name; must be the name in its coordinator certificate.
    #[arg(long, env = "MCDNN_COORDINATOR_NAME", default_value = "coord-0")]
    pub name: String,
    /// Folder with `<name>.pem`, `<name>.key` and `ca.pem`.
    #[arg(long, env = "MCDNN_IDENTITY_DIR", default_value = "fleet-ca")]
    pub identity_dir: PathBuf,
    /// QUIC address nodes connect to.
    #[arg(long, env = "MCDNN_LISTEN", default_value = "127.0.0.1:7400")]
    pub listen: SocketAddr,
    /// Address nodes are told to use for this replica (default: --listen).
    #[arg(long, env = "MCDNN_ADVERTISE")]
    pub advertise: Option<String>,
    /// Admin HTTP address (/livez, /readyz, /metrics, /status).
    #[arg(long, env = "MCDNN_ADMIN", default_value = "127.0.0.1:7480")]
    pub admin: SocketAddr,
    /// Folder for the coordinator's durable state.
    #[arg(long, env = "MCDNN_DATA_DIR", default_value = "coordinator-data")]
    pub data_dir: PathBuf,
    /// Catalog manifest (default: models/catalog.json or MCDNN_CATALOG).
    #[arg(long)]
    pub catalog: Option<PathBuf>,
    /// Solve the fleet plan this often (and early when nodes join or leave).
    #[arg(long, env = "MCDNN_SOLVE_INTERVAL_MS", default_value_t = 2000)]
    pub solve_interval_ms: u64,
    /// Forget a node not heard from for this long.
    #[arg(long, env = "MCDNN_NODE_TIMEOUT_S", default_value_t = 30.0)]
    pub node_timeout_s: f64,
    /// The fleet's cloud budget over the shift, USD.
    #[arg(long, env = "MCDNN_FLEET_COST_BUDGET_USD", default_value_t = 1.0)]
    pub fleet_cost_budget_usd: f64,
    /// Log as JSON lines.
    #[arg(long, env = "MCDNN_LOG_JSON")]
    pub log_json: bool,
}

pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let identity = Identity::load(&args.identity_dir, &args.name).with_context(|| {
        format!(
            "loading coordinator identity {} from {}",
            args.name,
            args.identity_dir.display()
        )
    })?;
    let server_config =
        protocol::tls::server_config(&identity).context("building the QUIC server config")?;
    let catalog_path = protocol::manifest::locate(args.catalog.as_deref())?;
    let (manifest, bytes, _) = protocol::manifest::load(&catalog_path)
        .with_context(|| format!("catalog {}", catalog_path.display()))?;
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating {}", args.data_dir.display()))?;
    let epochs = EpochStore::open(&args.data_dir.join("epochs"))?;
    let endpoint = quinn::Endpoint::server(server_config, args.listen)
        .with_context(|| format!("binding the node endpoint on {}", args.listen))?;
    let node_addr = args
        .advertise
        .clone()
        .unwrap_or_else(|| args.listen.to_string());
    let hub = Arc::new(Hub::new(
        args.name.clone(),
        manifest,
        hex::encode(Sha256::digest(&bytes)),
        FleetPolicy {
            cost_budget_usd: args.fleet_cost_budget_usd,
        },
        epochs,
        node_addr,
    ));
    let cancel = CancellationToken::new();
    tracing::info!(name = %args.name, listen = %args.listen, admin = %args.admin, "coordinator up");
    let sessions = tokio::spawn(sessions::serve(endpoint, hub.clone(), cancel.clone()));
    let solver = tokio::spawn(solve_loop::run(
        hub.clone(),
        Duration::from_millis(args.solve_interval_ms.max(50)),
        Duration::from_secs_f64(args.node_timeout_s.max(1.0)),
        cancel.clone(),
    ));
    let admin = tokio::spawn(crate::admin::serve(args.admin, hub.clone(), cancel.clone()));
    let stop = cancel.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("stopping on signal");
        stop.cancel();
    });
    let admin_result = admin.await.context("admin task")?;
    cancel.cancel();
    let _ = sessions.await;
    let _ = solver.await;
    admin_result
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
