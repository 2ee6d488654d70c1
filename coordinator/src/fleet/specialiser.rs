//! The specialiser, on the leader only: every second it reads the class histograms in the
//! nodes' latest telemetry (authenticated sessions; soft state), decides with
//! [`crate::special::round`] which node runs which specialised head, trains missing heads on the
//! embedding corpus (a blocking task, one at a time), registers them through Raft
//! (`AddSpecialisedVariant`, with the head's bytes) and retires heads no node has used for a
//! while (`RemoveSpecialisedVariant`). Which node runs which head is handed to the solve loop
//! through [`ActiveHeads`], which puts it in the node's next assignment.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use net::clock::SharedClock;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;
use wire::corpus::Corpus;
use wire::msg::{Assignment, SpecialisedRun};

use super::Replan;
use super::catalog::FleetCatalog;
use super::registry::Nodes;
use crate::cluster::leader::LeaderWatch;
use crate::raft::ReplicaHandle;
use crate::special::round::{self, Key, Observation, TrainJob};
use crate::special::trainer::{self, Task};
use crate::special::trigger::Rules;
use crate::state::{Command, SpecialisedVariant};

/// Which node runs which head (soft state on the leader; a new leader rebuilds it from
/// telemetry and the replicated variants, without retraining).
#[derive(Debug, Clone, Default)]
pub struct ActiveHeads(Arc<Mutex<BTreeMap<Key, SpecialisedRun>>>);

impl ActiveHeads {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<Key, SpecialisedRun>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets each app assignment's head from what its node should run now.
    pub fn attach(&self, assignments: &mut [Assignment]) {
        let active = self.lock();
        for a in assignments {
            for app in &mut a.apps {
                app.specialised = active.get(&(a.node_id.clone(), app.app.clone())).cloned();
            }
        }
    }

    /// Replaces the map; true when it changed.
    fn set(&self, next: BTreeMap<Key, SpecialisedRun>) -> bool {
        let mut active = self.lock();
        let changed = *active != next;
        *active = next;
        changed
    }

    fn get(&self) -> BTreeMap<Key, SpecialisedRun> {
        self.lock().clone()
    }
}

/// The specialiser's settings (`mcdnn-coordinator --specialise-*`).
#[derive(Debug, Clone)]
pub struct Settings {
    /// Embeddings to train on; `None` disables specialisation.
    pub corpus: Option<Arc<Corpus>>,
    pub rules: Rules,
    /// A head no node has run for this long is retired.
    pub collect_after: Duration,
}

/// What the specialiser reads and writes.
#[derive(Clone)]
pub struct Specialiser {
    pub nodes: Nodes,
    pub leader: LeaderWatch,
    pub raft: ReplicaHandle,
    pub catalog: Arc<FleetCatalog>,
    pub heads: ActiveHeads,
    pub replan: Replan,
    pub clock: SharedClock,
    pub settings: Settings,
}

/// Runs until `cancel`.
pub async fn run(sp: Specialiser, cancel: CancellationToken) {
    let Some(corpus) = sp.settings.corpus.clone() else {
        cancel.cancelled().await;
        return;
    };
    let mut idle = BTreeMap::new();
    let training = Arc::new(Mutex::new(None::<String>));
    let priors: BTreeMap<String, Vec<f64>> = sp
        .catalog
        .manifest
        .apps
        .iter()
        .map(|a| {
            let prior = crate::special::prior(&corpus, &a.label_map, a.classes.len());
            (a.name.clone(), prior)
        })
        .collect();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        if !sp.leader.is_leader() {
            sp.heads.set(BTreeMap::new());
            idle.clear();
            continue;
        }
        let observations = observe(&sp, &priors);
        let registered = sp.raft.with_state(|s| s.specialised().clone());
        let out = round::decide(
            &observations,
            &registered,
            &sp.heads.get(),
            &corpus.variant,
            &sp.settings.rules,
        );
        if sp.heads.set(out.active.clone()) {
            tracing::info!(heads = out.active.len(), "specialised heads reassigned");
            sp.replan.notify_one();
        }
        let now = sp.clock.now();
        for (app, variant) in round::collectable(
            &registered,
            &out.active,
            &mut idle,
            now,
            sp.settings.collect_after,
        ) {
            tracing::info!(%app, %variant, "retiring an unused specialised variant");
            let cmd = Command::RemoveSpecialisedVariant { app, variant };
            if let Err(e) = sp.raft.propose(cmd).await {
                tracing::warn!(error = %e, "could not retire a specialised variant");
            }
        }
        let busy = training.lock().unwrap_or_else(|p| p.into_inner()).is_some();
        if let Some(job) = out.train.into_iter().next().filter(|_| !busy) {
            start_training(&sp, corpus.clone(), job, training.clone());
        }
    }
}

/// Each connected node's histogram per app, if it fits the catalog's app.
fn observe(sp: &Specialiser, priors: &BTreeMap<String, Vec<f64>>) -> Vec<Observation> {
    let registry = sp.nodes.lock();
    registry
        .iter()
        .filter(|(_, e)| e.connected)
        .flat_map(|(id, e)| {
            e.telemetry
                .iter()
                .flat_map(|t| &t.apps)
                .filter(|a| {
                    sp.catalog
                        .manifest
                        .app(&a.app)
                        .is_some_and(|spec| spec.classes.len() == a.class_histogram.len())
                })
                .map(|a| Observation {
                    node: id.clone(),
                    app: a.app.clone(),
                    histogram: a.class_histogram.clone(),
                    prior: priors.get(&a.app).cloned().unwrap_or_default(),
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Trains `job` on a blocking thread and registers the head; one job at a time.
fn start_training(
    sp: &Specialiser,
    corpus: Arc<Corpus>,
    job: TrainJob,
    training: Arc<Mutex<Option<String>>>,
) {
    let Some(label_map) = sp
        .catalog
        .manifest
        .app(&job.app)
        .map(|a| a.label_map.clone())
    else {
        return;
    };
    *training.lock().unwrap_or_else(|p| p.into_inner()) = Some(job.variant.clone());
    let sp = sp.clone();
    tokio::spawn(async move {
        let started = Instant::now();
        let fit = {
            let (corpus, job, label_map) = (corpus.clone(), job.clone(), label_map);
            tokio::task::spawn_blocking(move || {
                let task = Task {
                    classes: &job.classes,
                    label_map: &label_map,
                    histogram: &job.histogram,
                };
                trainer::train(&corpus, &task)
            })
            .await
        };
        let train_s = started.elapsed().as_secs_f64();
        match fit {
            Ok(Ok(t)) => match t.head.encode() {
                Ok(head) => {
                    tracing::info!(
                        app = %job.app, variant = %job.variant, classes = ?job.classes,
                        accuracy = t.accuracy, in_set = t.in_set_accuracy, rows = t.rows,
                        train_s, "trained a specialised head"
                    );
                    let v = SpecialisedVariant {
                        app: job.app.clone(),
                        variant: job.variant.clone(),
                        base_variant: corpus.variant.clone(),
                        classes: job.classes.clone(),
                        digest: hex::encode(Sha256::digest(&head)),
                        head,
                        accuracy: t.accuracy,
                    };
                    if let Err(e) = sp.raft.propose(Command::AddSpecialisedVariant(v)).await {
                        tracing::warn!(error = %e, "could not register a specialised variant");
                    }
                }
                Err(e) => tracing::error!(error = %e, "trained head does not encode"),
            },
            Ok(Err(e)) => tracing::error!(error = %e, "training a specialised head failed"),
            Err(e) => tracing::error!(error = %e, "the training thread failed"),
        }
        *training.lock().unwrap_or_else(|p| p.into_inner()) = None;
    });
}

/// Loads the corpus and checks it was made by this catalog's trunk of that variant.
pub fn load_corpus(path: &std::path::Path, catalog: &FleetCatalog) -> anyhow::Result<Corpus> {
    use anyhow::Context;
    let bytes = std::fs::read(path)
        .with_context(|| format!("reading the embedding corpus {}", path.display()))?;
    let corpus = Corpus::decode(&bytes).with_context(|| path.display().to_string())?;
    let spec = catalog.manifest.variant(&corpus.variant).with_context(|| {
        format!(
            "corpus {} was made with variant {}, which the catalog lacks",
            path.display(),
            corpus.variant
        )
    })?;
    anyhow::ensure!(
        spec.trunk.sha256 == corpus.trunk_sha256,
        "corpus {} was made with another {} trunk; rebuild it with `mcdnn-node corpus`",
        path.display(),
        corpus.variant
    );
    Ok(corpus)
}

#[cfg(test)]
mod tests {
    use super::*;
    use wire::msg::AppAssignment;

    fn app(name: &str) -> AppAssignment {
        AppAssignment {
            app: name.into(),
            mix: Vec::new(),
            allowed_variants: vec!["full".into()],
            offload_target: None,
            offload_server: None,
            energy_budget_j_per_request: 1.0,
            cost_budget_usd_per_request: 0.0,
            specialised: None,
        }
    }

    #[test]
    fn only_the_node_and_app_it_was_chosen_for_get_the_head() {
        let heads = ActiveHeads::default();
        let run = crate::special::run_of(&crate::state::tests_support::variant("garment", "s"));
        assert!(heads.set(BTreeMap::from([(
            ("cam-a".to_string(), "garment".to_string()),
            run.clone()
        )])));
        let assignment = |node: &str| Assignment {
            epoch: 3,
            node_id: node.into(),
            issued_unix_ms: 0,
            apps: vec![app("garment"), app("category")],
            energy_price: 0.0,
            cost_price: 0.0,
            plan_gap: 0.0,
        };
        let mut plan = vec![assignment("cam-a"), assignment("cam-b")];
        heads.attach(&mut plan);
        assert_eq!(plan[0].apps[0].specialised, Some(run));
        assert_eq!(plan[0].apps[1].specialised, None);
        assert_eq!(plan[1].apps[0].specialised, None);
        assert!(!heads.set(heads.get()), "the same map is no change");
    }
}
