//! The solve loop, on the leader only: every interval (and early when nodes join or leave) build
//! the fleet problem from soft state, solve it, commit the plan's epoch through Raft, and only
//! then push each node its assignment. A replica that cannot commit (a deposed leader in a
//! minority) pushes nothing, so no stale plan is ever served as new; epochs never go back
//! because the replicated state rejects an epoch at or below the committed one.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use net::clock::SharedClock;
use tokio_util::sync::CancellationToken;
use wire::msg::{Assignment, CoordMsg};

use super::Replan;
use super::catalog::FleetCatalog;
use super::metrics::Metrics;
use super::plan;
use super::plan_view::{PlanBoard, PlanInfo};
use super::policies::Policies;
use super::prom::Histograms;
use super::registry::Nodes;
use super::specialiser::ActiveHeads;
use super::validate;
use crate::cluster::leader::LeaderWatch;
use crate::raft::ReplicaHandle;
use crate::state::Command;

/// What the solve loop reads and writes.
#[derive(Clone)]
pub struct Solver {
    pub nodes: Nodes,
    pub leader: LeaderWatch,
    pub raft: ReplicaHandle,
    pub catalog: Arc<FleetCatalog>,
    pub policies: Policies,
    pub plans: PlanBoard,
    pub metrics: Arc<Metrics>,
    pub histograms: Arc<Histograms>,
    pub replan: Replan,
    pub clock: SharedClock,
    /// Specialised heads to put in the nodes' assignments.
    pub heads: ActiveHeads,
}

pub async fn run(
    hub: Solver,
    interval: Duration,
    node_timeout: Duration,
    cancel: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
            _ = hub.replan.notified() => {
                // Let a burst of joins settle into one solve.
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        let expired = hub.nodes.lock().expire(node_timeout, hub.clock.now());
        for id in expired {
            Metrics::inc(&hub.metrics.nodes_expired_total);
            tracing::info!(node = %id, "forgot a node after the node timeout");
        }
        if hub.leader.is_leader() {
            solve_once(&hub).await;
        }
    }
}

/// Publishes the nodes left out of this plan (gauge and `/status`), logging each newcomer once.
fn note_exclusions(hub: &Solver, excluded: &std::collections::BTreeMap<String, String>) {
    hub.metrics
        .nodes_excluded
        .store(excluded.len() as u64, Ordering::Relaxed);
    let mut held = hub.plans.excluded();
    for (id, why) in excluded {
        if held.get(id) != Some(why) {
            tracing::warn!(node = %id, reason = %why, "node left out of the plan");
        }
    }
    *held = excluded.clone();
}

/// Per node, app -> "variant@place:fraction", for the status view.
fn mix_view(
    assignments: &[Assignment],
) -> std::collections::BTreeMap<String, std::collections::BTreeMap<String, Vec<String>>> {
    assignments
        .iter()
        .map(|a| {
            let apps = a
                .apps
                .iter()
                .map(|app| {
                    (
                        app.app.clone(),
                        app.mix
                            .iter()
                            .map(|m| format!("{}@{:?}:{:.2}", m.variant, m.place, m.fraction))
                            .collect(),
                    )
                })
                .collect();
            (a.node_id.clone(), apps)
        })
        .collect()
}

/// One plan: solve, commit the epoch through Raft, queue assignments. Nodes whose queue is full
/// are skipped (they get the next epoch).
pub async fn solve_once(hub: &Solver) {
    let connected = hub.nodes.lock().connected() as u64;
    hub.metrics
        .nodes_connected
        .store(connected, Ordering::Relaxed);
    let approvals = hub.raft.with_state(|s| s.servers().clone());
    let policy = hub.policies.effective();
    let catalogs = &hub.catalog.catalogs;
    let (problem, target) = {
        let registry = hub.nodes.lock();
        let excluded = validate::exclusions(&registry, catalogs, &approvals);
        note_exclusions(hub, &excluded);
        let (now, now_unix_ms) = (hub.clock.now(), hub.clock.unix_ms());
        plan::problem_at(&registry, catalogs, &policy, &excluded, now, now_unix_ms)
    };
    if problem.nodes.is_empty() {
        return;
    }
    let started = hub.clock.now();
    let solved = match scheduler::fleet::solve(&problem) {
        Ok(p) => p,
        Err(e) => {
            Metrics::inc(&hub.metrics.plan_failures_total);
            tracing::error!(error = %e, "fleet solve failed");
            return;
        }
    };
    let solve_time = hub.clock.now().saturating_duration_since(started);
    let solve_s = solve_time.as_secs_f64();
    hub.histograms.observe_solve(solve_time);
    let epoch = hub.raft.with_state(|s| s.plan_epoch()) + 1;
    let mut assignments = plan::assignments(
        &solved,
        catalogs,
        &problem,
        epoch,
        target.as_ref(),
        hub.clock.unix_ms(),
    );
    hub.heads.attach(&mut assignments);
    let encoded = match wire::codec::encode_with_limit(&assignments, 64 << 20) {
        Ok(b) => b,
        Err(e) => {
            Metrics::inc(&hub.metrics.plan_failures_total);
            tracing::error!(error = %e, "cannot encode the plan");
            return;
        }
    };
    let proposed = hub.clock.now();
    if let Err(e) = hub
        .raft
        .propose(Command::CommitPlan {
            epoch,
            plan: encoded,
        })
        .await
    {
        Metrics::inc(&hub.metrics.plan_failures_total);
        Metrics::inc(&hub.metrics.proposals_failed_total);
        tracing::warn!(epoch, error = %e, "plan not committed; nothing pushed");
        return;
    }
    Metrics::inc(&hub.metrics.proposals_committed_total);
    let committed_at = hub.clock.now();
    hub.histograms
        .observe_commit(committed_at.saturating_duration_since(proposed));
    let mixes = mix_view(&assignments);
    {
        let mut registry = hub.nodes.lock();
        for a in assignments {
            let Some(entry) = registry.get_mut(&a.node_id) else {
                continue;
            };
            let Some(tx) = entry.tx.as_ref() else {
                continue;
            };
            if tx.try_send(CoordMsg::Assignment(a)).is_ok() {
                entry.sent_epoch = epoch;
                entry.sent_at = Some(committed_at);
                Metrics::inc(&hub.metrics.assignments_sent_total);
            }
        }
    }
    Metrics::inc(&hub.metrics.plans_total);
    Metrics::set_f64(&hub.metrics.plan_solve_seconds, solve_s);
    Metrics::set_f64(&hub.metrics.plan_gap, solved.gap);
    hub.metrics.plan_epoch.store(epoch, Ordering::Relaxed);
    tracing::debug!(
        epoch,
        nodes = problem.nodes.len(),
        gap = solved.gap,
        solve_ms = solve_s * 1e3,
        "plan committed and pushed"
    );
    hub.plans.set_last_plan(PlanInfo {
        epoch,
        nodes: problem.nodes.len(),
        primal: solved.primal,
        dual: solved.dual,
        gap: solved.gap,
        solve_ms: solve_s * 1e3,
        cost_usd: solved.cost_usd,
        server_rps: solved.server_rps,
        mixes,
    });
}
