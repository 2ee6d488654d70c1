//! The solve loop: every interval (and early when nodes join or leave) build the fleet problem
//! from soft state, solve it, commit a new epoch, and push each node its assignment.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use protocol::msg::CoordMsg;
use tokio_util::sync::CancellationToken;

use super::hub::{Hub, PlanInfo};
use super::metrics::Metrics;
use super::plan;

pub async fn run(
    hub: Arc<Hub>,
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
        let expired = hub.registry().expire(node_timeout);
        for id in expired {
            Metrics::inc(&hub.metrics.nodes_expired_total);
            tracing::info!(node = %id, "forgot a node after the node timeout");
        }
        solve_once(&hub);
    }
}

/// One plan: solve, commit the epoch, queue assignments. Nodes whose queue is full are skipped
/// (they get the next epoch).
pub fn solve_once(hub: &Hub) {
    let connected = hub.registry().connected() as u64;
    hub.metrics
        .nodes_connected
        .store(connected, Ordering::Relaxed);
    let (problem, target) = plan::problem(&hub.registry(), &hub.catalogs, &hub.policy());
    if problem.nodes.is_empty() {
        return;
    }
    let started = Instant::now();
    let solved = match scheduler::fleet::solve(&problem) {
        Ok(p) => p,
        Err(e) => {
            Metrics::inc(&hub.metrics.plan_failures_total);
            tracing::error!(error = %e, "fleet solve failed");
            return;
        }
    };
    let solve_s = started.elapsed().as_secs_f64();
    let epoch = match hub.epochs.next() {
        Ok(e) => e,
        Err(e) => {
            Metrics::inc(&hub.metrics.plan_failures_total);
            tracing::error!(error = %e, "could not commit the plan epoch; not pushing");
            return;
        }
    };
    let assignments = plan::assignments(&solved, &hub.catalogs, &problem, epoch, target.as_deref());
    let mut mixes = std::collections::BTreeMap::new();
    {
        let mut registry = hub.registry();
        for a in assignments {
            mixes.insert(
                a.node_id.clone(),
                a.apps
                    .iter()
                    .map(|app| {
                        let parts = app
                            .mix
                            .iter()
                            .map(|m| format!("{}@{:?}:{:.2}", m.variant, m.place, m.fraction))
                            .collect();
                        (app.app.clone(), parts)
                    })
                    .collect(),
            );
            let Some(entry) = registry.get_mut(&a.node_id) else {
                continue;
            };
            let Some(tx) = entry.tx.as_ref() else {
                continue;
            };
            if tx.try_send(CoordMsg::Assignment(a)).is_ok() {
                entry.sent_epoch = epoch;
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
        "plan pushed"
    );
    hub.set_last_plan(PlanInfo {
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
