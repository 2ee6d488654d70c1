//! The composition root: the handles a replica's tasks share, built once in dependency order
//! (Raft first, then what reads it), and cut into what each task takes. Nothing here is passed
//! to a task whole: a task gets only its own handles ([`Wiring::sessions`],
//! [`Wiring::solver`], [`Wiring::admin`], [`Wiring::handoff`]).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use net::clock::{SharedClock, SystemClock};
use net::identity::RevokedSet;
use tokio_util::sync::CancellationToken;
use wire::manifest::Manifest;

use crate::admin::AdminState;
use crate::blobs::BlobStore;
use crate::cluster::leader::{self, LeaderWatch};
use crate::cluster::peers::{self, Peers};
use crate::enrollment::{Enrollment, Issuer};
use crate::faces::FaceService;
use crate::fleet::Replan;
use crate::fleet::blob_streams::BlobService;
use crate::fleet::catalog::FleetCatalog;
use crate::fleet::handoff::Handoff;
use crate::fleet::identity::Renewals;
use crate::fleet::limits::NodeLimits;
use crate::fleet::metrics::Metrics;
use crate::fleet::plan::FleetPolicy;
use crate::fleet::plan_view::PlanBoard;
use crate::fleet::policies::Policies;
use crate::fleet::prom::Histograms;
use crate::fleet::registrar::Registrar;
use crate::fleet::registry::Nodes;
use crate::fleet::result_sink::{self, ResultQueue, ResultSink};
use crate::fleet::sessions::Sessions;
use crate::fleet::solve_loop::Solver;
use crate::fleet::specialiser::{self, ActiveHeads, Specialiser};
use crate::fleet::status::StatusSources;
use crate::fleet::watchlist_push::WatchlistFeed;
use crate::raft::{InProcessNetwork, Replica, ReplicaConfig, ReplicaHandle};
use crate::supervisor::Health;

/// What a replica is built from, besides its Raft handle.
pub struct Inputs {
    pub peers: Peers,
    pub self_id: u64,
    pub catalog: FleetCatalog,
    pub policy: FleetPolicy,
    pub issuer: Option<Arc<Issuer>>,
    pub blobs: Option<Arc<BlobStore>>,
    pub clock: SharedClock,
    /// Face models for watchlist photos, if this replica has them.
    pub faces: Option<Arc<FaceService>>,
}

/// Every shared handle of one replica.
pub struct Wiring {
    pub raft: ReplicaHandle,
    pub leader: LeaderWatch,
    pub nodes: Nodes,
    pub plans: PlanBoard,
    pub catalog: Arc<FleetCatalog>,
    pub policies: Policies,
    pub metrics: Arc<Metrics>,
    pub histograms: Arc<Histograms>,
    pub limits: Arc<NodeLimits>,
    pub revoked: RevokedSet,
    pub issuer: Option<Arc<Issuer>>,
    pub blobs: Option<Arc<BlobStore>>,
    pub health: Health,
    pub replan: Replan,
    pub heads: ActiveHeads,
    pub results: ResultSink,
    /// Shared by every session, so joins in a burst share a Raft entry.
    pub registrar: Registrar,
    pub faces: Option<Arc<FaceService>>,
    pub watchlist: WatchlistFeed,
    /// The result sink's queue until its worker takes it ([`Wiring::result_sink`]).
    results_queue: Option<ResultQueue>,
    pub clock: SharedClock,
    pub started: Instant,
}

impl Wiring {
    pub fn new(raft: ReplicaHandle, inputs: Inputs) -> Self {
        let started = inputs.clock.now();
        let (results, results_queue) = result_sink::channel();
        Wiring {
            results,
            registrar: Registrar::new(raft.clone()),
            results_queue: Some(results_queue),
            policies: Policies::new(inputs.policy, raft.clone()),
            raft,
            leader: LeaderWatch::new(inputs.peers, inputs.self_id),
            nodes: Nodes::default(),
            plans: PlanBoard::default(),
            catalog: Arc::new(inputs.catalog),
            metrics: Arc::default(),
            histograms: Arc::default(),
            limits: Arc::default(),
            revoked: RevokedSet::default(),
            issuer: inputs.issuer,
            blobs: inputs.blobs,
            health: Health::default(),
            replan: Replan::default(),
            heads: ActiveHeads::default(),
            clock: inputs.clock,
            faces: inputs.faces,
            watchlist: WatchlistFeed::default(),
            started,
        }
    }

    pub fn sessions(&self) -> Sessions {
        Sessions {
            nodes: self.nodes.clone(),
            leader: self.leader.clone(),
            raft: self.raft.clone(),
            registrar: self.registrar.clone(),
            catalog_digest: self.catalog.digest.clone(),
            metrics: self.metrics.clone(),
            histograms: self.histograms.clone(),
            limits: self.limits.clone(),
            blobs: self.blobs.clone().map(|store| BlobService {
                store,
                limits: self.limits.clone(),
                metrics: self.metrics.clone(),
                clock: self.clock.clone(),
                raft: self.raft.clone(),
            }),
            revoked: self.revoked.clone(),
            renewals: Renewals {
                issuer: self.issuer.clone(),
                revoked: self.revoked.clone(),
            },
            results: self.results.clone(),
            replan: self.replan.clone(),
            clock: self.clock.clone(),
            watchlist: self.watchlist.clone(),
        }
    }

    pub fn solver(&self) -> Solver {
        Solver {
            nodes: self.nodes.clone(),
            leader: self.leader.clone(),
            raft: self.raft.clone(),
            catalog: self.catalog.clone(),
            policies: self.policies.clone(),
            plans: self.plans.clone(),
            metrics: self.metrics.clone(),
            histograms: self.histograms.clone(),
            replan: self.replan.clone(),
            clock: self.clock.clone(),
            heads: self.heads.clone(),
        }
    }

    /// The leader's specialiser with these settings.
    pub fn specialiser(&self, settings: specialiser::Settings) -> Specialiser {
        Specialiser {
            nodes: self.nodes.clone(),
            leader: self.leader.clone(),
            raft: self.raft.clone(),
            catalog: self.catalog.clone(),
            heads: self.heads.clone(),
            replan: self.replan.clone(),
            clock: self.clock.clone(),
            settings,
        }
    }

    pub fn admin(&self) -> Arc<AdminState> {
        Arc::new(AdminState {
            raft: self.raft.clone(),
            leader: self.leader.clone(),
            metrics: self.metrics.clone(),
            histograms: self.histograms.clone(),
            health: self.health.clone(),
            replan: self.replan.clone(),
            enrollment: Enrollment {
                raft: self.raft.clone(),
                issuer: self.issuer.clone(),
                revoked: self.revoked.clone(),
                clock: self.clock.clone(),
            },
            status: StatusSources {
                name: self.leader.self_name(),
                nodes: self.nodes.clone(),
                plans: self.plans.clone(),
                raft: self.raft.clone(),
                catalog: self.catalog.clone(),
                clock: self.clock.clone(),
                started: self.started,
            },
            faces: self.faces.clone(),
        })
    }

    /// What the leader watch tells when leadership changes here.
    pub fn handoff(&self) -> Handoff {
        Handoff {
            nodes: self.nodes.clone(),
            leader: self.leader.clone(),
            raft: self.raft.clone(),
            catalog: self.catalog.clone(),
        }
    }

    /// The result sink's worker: proposes the batches sessions hand it. Only the first call
    /// gets it (there is one queue).
    pub fn result_sink(
        &mut self,
        cancel: CancellationToken,
    ) -> anyhow::Result<impl Future<Output = ()> + use<>> {
        let queue = self
            .results_queue
            .take()
            .ok_or_else(|| anyhow::anyhow!("the result sink's worker was already started"))?;
        Ok(result_sink::run(queue, self.raft.clone(), cancel))
    }

    /// The leader watch as a future (a worker of the daemon).
    pub fn leader_watch(&self, cancel: CancellationToken) -> impl Future<Output = ()> + use<> {
        leader::watch(
            self.raft.clone(),
            self.leader.clone(),
            self.handoff(),
            cancel,
        )
    }
}

/// Hex sha256 of a manifest's JSON (a stand-in for the file's digest when only the parsed
/// manifest is at hand).
fn manifest_digest(manifest: &Manifest) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(
        serde_json::to_vec(manifest).unwrap_or_default(),
    ))
}

/// A one-replica coordinator (its own Raft group, bootstrapped in `data_dir`, its leader watch
/// running) that leads once this returns: for benchmarks and in-process tests.
pub async fn standalone(
    name: &str,
    manifest: Manifest,
    data_dir: &Path,
    cancel: CancellationToken,
) -> anyhow::Result<Wiring> {
    let id = peers::id_of(name)?;
    let raft = Replica::start_with_shutdown(
        id,
        &[id],
        data_dir,
        InProcessNetwork::new().transport(id),
        ReplicaConfig {
            tick_interval: Duration::from_millis(20),
            ..ReplicaConfig::default()
        },
        cancel.child_token(),
    )?;
    let peers = Peers::parse(
        &format!("{name}=127.0.0.1"),
        "127.0.0.1:1",
        "127.0.0.1:2",
        "127.0.0.1:3",
    )?;
    // What its virtual nodes announce: the digest of the manifest it runs.
    let digest = manifest_digest(&manifest);
    let mut wiring = Wiring::new(
        raft,
        Inputs {
            peers,
            self_id: id,
            catalog: FleetCatalog::new(manifest, digest),
            policy: FleetPolicy {
                cost_budget_usd: 1.0,
            },
            issuer: None,
            blobs: None,
            clock: SystemClock::shared(),
            faces: None,
        },
    );
    tokio::spawn(wiring.result_sink(cancel.clone())?);
    tokio::spawn(wiring.leader_watch(cancel));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !wiring.leader.is_leader() {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the single replica did not elect itself"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(wiring)
}
