//! The health port: liveness, readiness and Prometheus metrics, in plain HTTP for the kubelet
//! and Prometheus. It names no node and accepts no writes.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use super::state::AdminState;

pub fn routes() -> Router<Arc<AdminState>> {
    Router::new()
        .route("/livez", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

async fn readyz(State(hub): State<Arc<AdminState>>) -> impl IntoResponse {
    if !hub.health.is_healthy() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: a worker of this replica failed; it is stopping\n".to_string(),
        );
    }
    match hub.leader.leader_id() {
        Some(id) => (StatusCode::OK, format!("ready: leader is replica {id}\n")),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: no known leader\n".to_string(),
        ),
    }
}

async fn metrics(State(hub): State<Arc<AdminState>>) -> impl IntoResponse {
    let mut text = hub.metrics.render();
    let l = hub.leader.view();
    let gauges = [
        (
            "mcdnn_has_leader",
            "Whether this replica knows a leader",
            "gauge",
            u64::from(l.leader_id().is_some()),
        ),
        (
            "mcdnn_is_leader",
            "Whether this replica is the leader",
            "gauge",
            u64::from(l.is_leader()),
        ),
        (
            "mcdnn_raft_term",
            "Current Raft term",
            "gauge",
            l.term.load(Ordering::Relaxed),
        ),
        (
            "mcdnn_raft_commit_index",
            "Raft commit index",
            "gauge",
            l.commit.load(Ordering::Relaxed),
        ),
        (
            "mcdnn_raft_applied_index",
            "Raft applied index",
            "gauge",
            l.applied.load(Ordering::Relaxed),
        ),
        (
            "mcdnn_leader_changes_total",
            "Leaders observed by this replica",
            "counter",
            l.leader_changes_total.load(Ordering::Relaxed),
        ),
        (
            "mcdnn_proposals_committed_total",
            "Proposals from this replica committed and applied",
            "counter",
            hub.metrics
                .proposals_committed_total
                .load(Ordering::Relaxed),
        ),
        (
            "mcdnn_proposals_failed_total",
            "Proposals from this replica that failed",
            "counter",
            hub.metrics.proposals_failed_total.load(Ordering::Relaxed),
        ),
    ];
    for (name, help, kind, v) in gauges {
        text += &format!("# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}\n");
    }
    text += &hub.histograms.render();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}
