//! `mcdnn-coordinator run`: one replica of the coordinator. The Raft replica (sled log, QUIC to
//! its peers), the node endpoint (QUIC, mutual TLS), the leader-only solve loop and the admin
//! API, stopped together by one cancellation token. On SIGTERM a leader hands leadership to the
//! most up-to-date peer before it exits.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use net::identity::Identity;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::cluster::peers::{Peers, id_of};
use crate::cluster::transport;
use crate::fleet::catalog::FleetCatalog;
use crate::fleet::plan::FleetPolicy;
use crate::fleet::specialiser;
use crate::fleet::{sessions, solve_loop};
use crate::raft::{Replica, ReplicaConfig, ReplicaHandle};
use crate::supervisor::Supervisor;
use crate::wiring::{Inputs, Wiring};

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// A TOML file of settings named like these flags (`solve-interval-ms = 500`); flags and
    /// `MCDNN_*` variables override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// This replica's name, `<prefix>-<ordinal>`; must be the name in its coordinator
    /// certificate. Its Raft id is ordinal + 1.
    #[arg(long, env = "MCDNN_COORDINATOR_NAME", default_value = "coord-0")]
    pub name: String,
    /// Folder with `<name>.pem`, `<name>.key` and `ca.pem`.
    #[arg(long, env = "MCDNN_IDENTITY_DIR", default_value = "fleet-ca")]
    pub identity_dir: PathBuf,
    /// QUIC address nodes connect to.
    #[arg(long, env = "MCDNN_LISTEN", default_value = "127.0.0.1:7400")]
    pub listen: SocketAddr,
    /// QUIC address other replicas send Raft messages to.
    #[arg(long, env = "MCDNN_RAFT_LISTEN", default_value = "127.0.0.1:7500")]
    pub raft_listen: SocketAddr,
    /// Operator API address: HTTPS, operator certificates only (/status, /cluster, /policy,
    /// /members, ...). Every replica uses the same port.
    #[arg(long, env = "MCDNN_ADMIN", default_value = "127.0.0.1:7480")]
    pub admin: SocketAddr,
    /// Health port: plain HTTP /livez, /readyz and /metrics for the kubelet and Prometheus.
    #[arg(long, env = "MCDNN_HEALTH_LISTEN", default_value = "127.0.0.1:7481")]
    pub health_listen: SocketAddr,
    /// The replica set, `coord-0=HOST,coord-1=HOST,...` (every replica uses this replica's
    /// ports on its own host). Default: this replica alone, on its --listen host.
    #[arg(long, env = "MCDNN_PEERS", default_value = "")]
    pub peers: String,
    /// Where cameras and operators outside the cluster reach each replica, for redirects to
    /// the leader: `coord-0=HOST[:NODE_PORT[:ADMIN_PORT]],...` (default: the --peers hosts and
    /// this replica's ports). The same on every replica; each HOST must be in that replica's
    /// certificate (`mcdnnctl enroll coordinator NAME --san HOST`).
    #[arg(long, env = "MCDNN_ADVERTISE", default_value = "")]
    pub advertise: String,
    /// Deprecated and ignored: a replica with an empty disk asks its --peers and forms a new
    /// cluster (a majority of them new) or rejoins the existing one by itself. Still accepted
    /// so old manifests start.
    #[arg(long, env = "MCDNN_BOOTSTRAP", hide = true)]
    pub bootstrap: bool,
    /// Cluster name; its hash is the cluster id stored with the Raft log. Replicas of
    /// differently named clusters refuse each other, and a replica refuses to start on another
    /// cluster's data folder.
    #[arg(long, env = "MCDNN_CLUSTER_NAME", default_value = crate::raft::cluster_id::DEFAULT_CLUSTER_NAME)]
    pub cluster_name: String,
    /// Folder for the Raft log and snapshots.
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
    /// The fleet's cloud budget over the shift, USD, until an operator writes the
    /// `fleet.cost_budget_usd` policy.
    #[arg(long, env = "MCDNN_FLEET_COST_BUDGET_USD", default_value_t = 1.0)]
    pub fleet_cost_budget_usd: f64,
    /// Raft tick length; a follower campaigns after 10-15 ticks without a leader (0.5-0.75 s at
    /// the default, a LAN cluster), the leader sends Raft heartbeats every 2. Raise it for
    /// replicas spread over slow links.
    #[arg(long, env = "MCDNN_RAFT_TICK_MS", default_value_t = 50)]
    pub raft_tick_ms: u64,
    /// Folder with `issuing.pem` and `issuing.key` (`mcdnnctl ca issuing`); default: the
    /// identity folder. Without them this replica cannot enroll or renew node certificates.
    #[arg(long, env = "MCDNN_ISSUING_DIR")]
    pub issuing_dir: Option<PathBuf>,
    /// Lifetime of node certificates the issuing CA signs (enrollment and renewal), seconds.
    /// Nodes renew after two thirds of it. Default 7 days.
    #[arg(long, env = "MCDNN_LEAF_LIFETIME_S", default_value_t = 604_800.0)]
    pub leaf_lifetime_s: f64,
    /// Log as JSON lines.
    #[arg(long, env = "MCDNN_LOG_JSON")]
    pub log_json: bool,
    /// Folder of the face models (`models/face`: detector and descriptor network) the leader
    /// computes watchlist descriptors with; without it `mcdnnctl watchlist add` is refused.
    #[arg(long, env = "MCDNN_FACE_MODELS")]
    pub face_models: Option<PathBuf>,
    #[command(flatten)]
    pub specialise: SpecialiseArgs,
}

impl RunArgs {
    fn face_models_service(&self) -> anyhow::Result<Option<Arc<crate::faces::FaceService>>> {
        match &self.face_models {
            Some(dir) => Ok(Some(crate::faces::load(dir)?)),
            None => Ok(None),
        }
    }
}

/// Run-time specialisation (off unless a corpus is given).
#[derive(Debug, Clone, clap::Args)]
pub struct SpecialiseArgs {
    /// Embedding corpus (`mcdnn-node corpus`) to train specialised heads on; without it the
    /// leader never specialises.
    #[arg(long, env = "MCDNN_SPECIALISE_CORPUS")]
    pub specialise_corpus: Option<PathBuf>,
    /// Share of a node's recent requests its dominant classes must hold to specialise for them.
    #[arg(long, env = "MCDNN_SPECIALISE_TRIGGER", default_value_t = 0.6)]
    pub specialise_trigger: f64,
    /// Retire a specialised variant no node has run for this long, seconds.
    #[arg(long, env = "MCDNN_SPECIALISE_COLLECT_S", default_value_t = 60.0)]
    pub specialise_collect_s: f64,
}

impl SpecialiseArgs {
    fn settings(&self, catalog: &FleetCatalog) -> anyhow::Result<specialiser::Settings> {
        anyhow::ensure!(
            self.specialise_trigger > 0.0 && self.specialise_trigger <= 1.0,
            "--specialise-trigger must be in (0, 1], not {}",
            self.specialise_trigger
        );
        anyhow::ensure!(
            self.specialise_collect_s.is_finite() && self.specialise_collect_s >= 0.0,
            "--specialise-collect-s must be a non-negative number of seconds"
        );
        let corpus = match &self.specialise_corpus {
            Some(path) => Some(Arc::new(specialiser::load_corpus(path, catalog)?)),
            None => None,
        };
        Ok(specialiser::Settings {
            corpus,
            rules: crate::special::trigger::Rules {
                trigger: self.specialise_trigger,
                ..Default::default()
            },
            collect_after: Duration::from_secs_f64(self.specialise_collect_s),
        })
    }
}

fn peers_of(args: &RunArgs) -> anyhow::Result<Peers> {
    let spec = if args.peers.trim().is_empty() {
        format!("{}={}", args.name, args.listen.ip())
    } else {
        args.peers.clone()
    };
    Peers::parse(
        &spec,
        &args.listen.to_string(),
        &args.raft_listen.to_string(),
        &args.admin.to_string(),
    )?
    .with_advertised(&args.advertise)
}

pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let identity = Identity::load(&args.identity_dir, &args.name).with_context(|| {
        format!(
            "loading coordinator identity {} from {}",
            args.name,
            args.identity_dir.display()
        )
    })?;
    let raft_server =
        net::tls::server_config(&identity).context("building the raft endpoint's TLS config")?;
    let raft_client =
        net::tls::client_config(&identity).context("building the raft client TLS config")?;
    let catalog_path = wire::manifest::locate(args.catalog.as_deref())?;
    let (manifest, bytes, _) = wire::manifest::load(&catalog_path)
        .with_context(|| format!("catalog {}", catalog_path.display()))?;
    let self_id = id_of(&args.name)?;
    let peers = peers_of(&args)?;
    anyhow::ensure!(
        peers.get(self_id).is_some(),
        "--peers does not list this replica ({})",
        args.name
    );
    if args.bootstrap {
        tracing::warn!(
            "--bootstrap / MCDNN_BOOTSTRAP is deprecated and ignored: an empty disk forms or rejoins the cluster by itself"
        );
    }
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating {}", args.data_dir.display()))?;
    let cancel = CancellationToken::new();
    let raft_runtime = RaftRuntime::start()?;
    // Everything Raft runs (the driver, the peer endpoint and its connections, the senders)
    // spawns its tasks on the Raft runtime from here.
    let inside_raft = raft_runtime.handle.enter();
    let raft_endpoint = quinn::Endpoint::server(raft_server, args.raft_listen)
        .with_context(|| format!("binding the raft endpoint on {}", args.raft_listen))?;
    let net = transport::QuicTransport::start(
        self_id,
        &peers,
        args.raft_listen.ip(),
        raft_client,
        cancel.child_token(),
    )?;
    let config = ReplicaConfig {
        tick_interval: Duration::from_millis(args.raft_tick_ms.max(10)),
        cluster_name: args.cluster_name.clone(),
        ..ReplicaConfig::default()
    };
    let raft = Replica::start_with_shutdown(
        self_id,
        &peers.ids(),
        args.data_dir.join("raft"),
        net,
        config,
        cancel.child_token(),
    )
    .context("starting the raft replica")?;
    drop(inside_raft);
    let clock = net::clock::SystemClock::shared();
    let issuer = crate::enrollment::load_issuer(
        args.issuing_dir.as_deref().unwrap_or(&args.identity_dir),
        crate::enrollment::leaf_lifetime(args.leaf_lifetime_s)?,
        clock.now(),
    )?;
    // Model shards for nodes (the durable result ledger is in the replicated state).
    let blobs = crate::blobs::load(&catalog_path)?;
    let raft_peers = peers.clone();
    let mut wiring = Wiring::new(
        raft.clone(),
        Inputs {
            peers,
            self_id,
            catalog: FleetCatalog::new(manifest, hex::encode(Sha256::digest(&bytes))),
            policy: FleetPolicy {
                cost_budget_usd: args.fleet_cost_budget_usd,
            },
            issuer,
            blobs: Some(blobs),
            clock,
            faces: args.face_models_service()?,
        },
    );
    // The node endpoint's verifier consults the live revoked set at every handshake.
    let node_server = net::tls::server_config_revoking(&identity, &wiring.revoked)
        .context("building the node endpoint's TLS config")?;
    let endpoint = crate::fleet::node_endpoint::bind(node_server, args.listen)?;
    tracing::info!(name = %args.name, id = self_id, listen = %args.listen, raft = %args.raft_listen, admin = %args.admin, "coordinator replica up");
    let admin_config = crate::admin::AdminConfig {
        health: args.health_listen,
        operator: args.admin,
        tls: Arc::new(
            net::https::server_config(&identity)
                .context("building the operator API's TLS config")?,
        ),
        limits: crate::admin::listener::Limits::default(),
    };
    let mut workers = Supervisor::new(cancel.clone(), wiring.health.clone());
    workers.spawn("raft-driver", raft_driver(raft.clone(), cancel.clone()));
    let serving = raft_runtime.handle.spawn(transport::serve(
        raft_endpoint,
        raft.clone(),
        raft_peers,
        cancel.clone(),
    ));
    workers.spawn(
        "raft-transport",
        until_done(async move {
            if let Err(e) = serving.await {
                tracing::error!(error = %e, "the raft transport task failed");
            }
        }),
    );
    workers.spawn(
        "leader-watch",
        until_done(wiring.leader_watch(cancel.clone())),
    );
    workers.spawn(
        "result-sink",
        until_done(wiring.result_sink(cancel.clone())?),
    );
    workers.spawn(
        "node-sessions",
        until_done(sessions::serve(endpoint, wiring.sessions(), cancel.clone())),
    );
    workers.spawn(
        "revocations",
        until_done(crate::fleet::identity::sync_revocations(
            raft.clone(),
            wiring.revoked.clone(),
            wiring.nodes.clone(),
            cancel.clone(),
        )),
    );
    workers.spawn(
        "watchlist",
        until_done(crate::fleet::watchlist_push::sync(
            raft.clone(),
            wiring.watchlist.clone(),
            cancel.clone(),
        )),
    );
    workers.spawn(
        "solver",
        until_done(solve_loop::run(
            wiring.solver(),
            Duration::from_millis(args.solve_interval_ms.max(50)),
            Duration::from_secs_f64(args.node_timeout_s.max(1.0)),
            cancel.clone(),
        )),
    );
    let settings = args.specialise.settings(&wiring.catalog)?;
    workers.spawn(
        "specialiser",
        until_done(specialiser::run(
            wiring.specialiser(settings),
            cancel.clone(),
        )),
    );
    workers.spawn(
        "operator-api",
        crate::admin::serve(admin_config, wiring.admin(), cancel.clone()),
    );
    workers.spawn("signals", on_signal(raft.clone(), cancel.clone()));
    let outcome = workers.run().await;
    if let Err(e) = raft.shutdown().await {
        tracing::warn!(error = %e, "the raft replica stopped with an error");
    }
    outcome
}

/// The runtime Raft runs on: one thread of its own, so a leader serving thousands of node
/// connections still ticks, heartbeats and answers its peers on time. On the shared runtime the
/// driver's tick waited in the run queue behind every connection's task; measured with `mcdnnctl
/// bench fleet --nodes 10000` on 2 loaded cores, the leader lost its quorum (check-quorum) at
/// 5300 connected nodes and the followers elected another. Dropped without blocking (it may be
/// dropped inside the main runtime), after the driver has ended.
struct RaftRuntime {
    handle: tokio::runtime::Handle,
    /// Taken only by `drop`.
    runtime: Option<tokio::runtime::Runtime>,
}

impl RaftRuntime {
    fn start() -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("raft")
            .enable_all()
            .build()
            .context("starting the raft runtime")?;
        Ok(RaftRuntime {
            handle: runtime.handle().clone(),
            runtime: Some(runtime),
        })
    }
}

impl Drop for RaftRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// A worker that returns nothing ends only when cancelled; if it returns while the daemon runs,
/// the supervisor treats that as a failure.
async fn until_done(worker: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
    worker.await;
    Ok(())
}

/// Watches the Raft driver task: if it stops on its own (a storage error), this worker fails
/// with the driver's error and the supervisor stops the replica.
pub async fn raft_driver(raft: ReplicaHandle, cancel: CancellationToken) -> anyhow::Result<()> {
    // The driver publishes its view on this channel; the channel closes when the driver ends.
    let mut view = raft.raft_view();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            changed = view.changed() => if changed.is_err() {
                raft.shutdown().await.context("the raft driver stopped")?;
                anyhow::bail!("the raft driver stopped");
            },
        }
    }
}

/// On SIGTERM/SIGINT a leader hands over first, so the fleet sees one short election-free
/// handoff; then every worker is cancelled.
async fn on_signal(raft: ReplicaHandle, cancel: CancellationToken) -> anyhow::Result<()> {
    tokio::select! {
        _ = cancel.cancelled() => return Ok(()),
        _ = net::shutdown::signal() => {}
    }
    match raft.step_down(Duration::from_secs(3)).await {
        Ok(Some(to)) => tracing::info!(to, "handed leadership over before exiting"),
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e, "could not hand leadership over; exiting anyway"),
    }
    tracing::info!("stopping on signal");
    cancel.cancel();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Raft driver ending on its own (a storage error, say) must make the replica unready
    /// and end the daemon with an error that names it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stopped_raft_driver_fails_readiness_and_the_daemon() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/catalog.json");
        let (manifest, _, _) = wire::manifest::load(&path).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let hub =
            crate::wiring::standalone("coord-0", manifest, dir.path(), CancellationToken::new())
                .await
                .unwrap();
        let cancel = CancellationToken::new();
        let mut workers = Supervisor::new(cancel.clone(), hub.health.clone());
        workers.spawn("raft-driver", raft_driver(hub.raft.clone(), cancel.clone()));
        let steady = cancel.clone();
        workers.spawn("solver", async move {
            steady.cancelled().await;
            Ok(())
        });
        let supervised = tokio::spawn(workers.run());
        assert!(hub.health.is_healthy());
        // Stopped from outside the supervisor: to it, the driver ended on its own.
        hub.raft.shutdown().await.unwrap();
        let outcome = tokio::time::timeout(Duration::from_secs(10), supervised)
            .await
            .unwrap()
            .unwrap();
        let err = outcome.expect_err("the daemon must fail");
        assert!(format!("{err:#}").contains("raft-driver"), "{err:#}");
        assert!(!hub.health.is_healthy(), "readiness fails");
        assert!(cancel.is_cancelled(), "the other workers are stopped");
    }
}
