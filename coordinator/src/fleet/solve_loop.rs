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
use wire::msg::Assignment;

use super::Replan;
use super::catalog::FleetCatalog;
use super::metrics::Metrics;
use super::plan;
use super::plan_delta;
use super::plan_view::{PlanBoard, PlanInfo};
use super::policies::Policies;
use super::prom::Histograms;
use super::push;
use super::registry::Nodes;
use super::specialiser::ActiveHeads;
use super::validate;
use crate::cluster::leader::LeaderWatch;
use crate::raft::ReplicaHandle;

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

/// One plan: solve (warm-started from the last plan's prices), commit what changed since the
/// committed plan through Raft (a delta; a full plan when none is committed), then queue the
/// assignments that changed since each session was last sent one. Nodes whose queue is full
/// are skipped (they get theirs after the next commit). An epoch is committed every solve,
/// even when nothing changed (a few dozen bytes), so every node can tell a new leader's plan.
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
    let warm = hub.plans.last_plan().prices;
    let solved = match scheduler::fleet::solve_warm(&problem, &warm) {
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
    let mut fresh = plan::assignments(
        &solved,
        catalogs,
        &problem,
        epoch,
        target.as_ref(),
        hub.clock.unix_ms(),
    );
    hub.heads.attach(&mut fresh);
    // Compared with the plan committed now; if another epoch lands before this one, the
    // delta's base no longer matches and the state machine refuses it.
    let change = hub
        .raft
        .with_state(|s| plan_delta::plan_change(s.plan(), fresh, epoch));
    let change = match change {
        Ok(c) => c,
        Err(e) => {
            Metrics::inc(&hub.metrics.plan_failures_total);
            tracing::error!(error = %e, "cannot encode the plan");
            return;
        }
    };
    // What the log entry carries (the command's encoding), for the Raft bytes per solve.
    let raft_bytes = change.command.encode().map_or(0, |b| b.len());
    let proposed = hub.clock.now();
    if let Err(e) = hub.raft.propose(change.command).await {
        Metrics::inc(&hub.metrics.plan_failures_total);
        Metrics::inc(&hub.metrics.proposals_failed_total);
        tracing::warn!(epoch, error = %e, "plan not committed; nothing pushed");
        return;
    }
    Metrics::inc(&hub.metrics.proposals_committed_total);
    hub.metrics
        .plan_raft_bytes_total
        .fetch_add(raft_bytes as u64, Ordering::Relaxed);
    let committed_at = hub.clock.now();
    hub.histograms
        .observe_commit(committed_at.saturating_duration_since(proposed));
    let mixes = mix_view(&change.holds);
    let sent = push::push_changed(&mut hub.nodes.lock(), &change.holds, epoch, committed_at);
    hub.metrics
        .assignments_sent_total
        .fetch_add(sent, Ordering::Relaxed);
    Metrics::inc(&hub.metrics.plans_total);
    Metrics::set_f64(&hub.metrics.plan_solve_seconds, solve_s);
    Metrics::set_f64(&hub.metrics.plan_gap, solved.gap);
    hub.metrics.plan_epoch.store(epoch, Ordering::Relaxed);
    tracing::debug!(
        epoch,
        nodes = problem.nodes.len(),
        gap = solved.gap,
        solve_ms = solve_s * 1e3,
        changed = change.changed,
        removed = change.removed,
        full = change.full,
        raft_bytes,
        pushed = sent,
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
        changed: change.changed,
        raft_bytes,
        prices: solved.prices,
    });
}
