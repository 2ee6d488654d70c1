//! The admin HTTP API: health (`/livez`, `/readyz`: not ready without a known leader), metrics
//! (Prometheus), fleet status, cluster status, operator policy writes and membership changes.
//! Writes go to the leader: a follower answers 307 with the leader's admin address.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::Context;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

mod servers;

pub use servers::ServerApprovalRequest;

use crate::fleet::hub::Hub;
use crate::fleet::status;
use crate::raft::ProposeError;
use crate::state::{Command, PolicyValue};

pub async fn serve(
    addr: SocketAddr,
    hub: Arc<Hub>,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let app = Router::new()
        .route("/livez", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/status", get(status_json))
        .route("/cluster", get(cluster))
        .route("/policy", get(policies).post(write_policy))
        .route("/members", post(members))
        .merge(servers::routes())
        .with_state(hub);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the admin API on {addr}"))?;
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { cancel.cancelled().await })
        .await
        .context("admin API")
}

async fn readyz(State(hub): State<Arc<Hub>>) -> impl IntoResponse {
    match hub.leader.leader_id() {
        Some(id) => (StatusCode::OK, format!("ready: leader is replica {id}\n")),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: no known leader\n".to_string(),
        ),
    }
}

async fn metrics(State(hub): State<Arc<Hub>>) -> impl IntoResponse {
    let mut text = hub.metrics.render();
    let l = &hub.leader;
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
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}

async fn status_json(State(hub): State<Arc<Hub>>) -> Json<status::FleetStatus> {
    Json(status::fleet_status(&hub))
}

/// `mcdnnctl cluster status`: members, leader, term, commit/applied index and lag.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterStatus {
    pub replica: String,
    pub id: u64,
    pub role: String,
    pub leader_id: Option<u64>,
    pub leader_name: Option<String>,
    pub term: u64,
    pub commit: u64,
    pub applied: u64,
    pub first_index: u64,
    pub last_index: u64,
    pub voters: Vec<u64>,
    pub learners: Vec<u64>,
    /// Per peer id: (matched index, lag); only on the leader.
    pub lag: std::collections::BTreeMap<u64, u64>,
    pub plan_epoch: u64,
    pub policy_writes: usize,
    pub registered_nodes: usize,
    /// Content digests of the catalog the fleet runs (replicated).
    pub catalog_index: usize,
}

async fn cluster(State(hub): State<Arc<Hub>>) -> Response {
    match hub.raft.status().await {
        Ok(s) => {
            let (plan_epoch, policy_writes, registered_nodes, catalog_index) =
                hub.raft.with_state(|st| {
                    (
                        st.plan_epoch(),
                        st.policy_log().len(),
                        st.nodes().len(),
                        st.catalog_digests().len(),
                    )
                });
            Json(ClusterStatus {
                replica: hub.name.clone(),
                id: s.id,
                role: format!("{:?}", s.role),
                leader_id: s.leader_id,
                leader_name: s
                    .leader_id
                    .and_then(|id| hub.peers.get(id))
                    .map(|p| p.name.clone()),
                term: s.term,
                commit: s.commit,
                applied: s.applied,
                first_index: s.first_index,
                last_index: s.last_index,
                voters: s.voters,
                learners: s.learners,
                lag: s.progress.iter().map(|(id, p)| (*id, p.lag)).collect(),
                plan_epoch,
                policy_writes,
                registered_nodes,
                catalog_index,
            })
            .into_response()
        }
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("raft unavailable: {e}\n"),
        )
            .into_response(),
    }
}

/// Replicated policies and their write log (in commit order).
async fn policies(State(hub): State<Arc<Hub>>) -> Json<serde_json::Value> {
    let (current, log) = hub
        .raft
        .with_state(|s| (s.policies().clone(), s.policy_log().to_vec()));
    Json(serde_json::json!({ "policies": current, "log": log }))
}

/// An operator's write: `{"key": ..., "value": number|string|null, "writer": ..., "write_id": n}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PolicyWriteRequest {
    pub key: String,
    pub value: serde_json::Value,
    pub writer: String,
    pub write_id: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WriteAck {
    /// Raft index the write was applied at.
    pub index: u64,
}

/// A follower sends writers to the leader's admin API. (Writes are proposed without checking the
/// cached leader view first: Raft itself answers NotLeader, so a just-elected leader whose view
/// lags by a poll interval still accepts them.)
fn to_leader(hub: &Hub, path: &str, hint: Option<u64>) -> Response {
    match hint
        .or(hub.leader.leader_id())
        .and_then(|id| hub.peers.get(id))
    {
        Some(p) if p.id != hub.self_id => {
            let mut headers = HeaderMap::new();
            if let Ok(v) = format!("http://{}{path}", p.admin_addr).parse() {
                headers.insert(header::LOCATION, v);
            }
            (
                StatusCode::TEMPORARY_REDIRECT,
                headers,
                format!(
                    "not the leader; the leader is {} at {}\n",
                    p.name, p.admin_addr
                ),
            )
                .into_response()
        }
        _ => (
            StatusCode::SERVICE_UNAVAILABLE,
            "no leader known; retry shortly\n",
        )
            .into_response(),
    }
}

fn propose_error(hub: &Hub, path: &str, e: ProposeError) -> Response {
    hub.metrics
        .proposals_failed_total
        .fetch_add(1, Ordering::Relaxed);
    match e {
        ProposeError::NotLeader { leader_hint } => to_leader(hub, path, leader_hint),
        ProposeError::Rejected { reason, .. } => {
            (StatusCode::CONFLICT, format!("rejected: {reason}\n")).into_response()
        }
        other => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not committed: {other}\n"),
        )
            .into_response(),
    }
}

async fn write_policy(
    State(hub): State<Arc<Hub>>,
    Json(req): Json<PolicyWriteRequest>,
) -> Response {
    let value = match req.value {
        serde_json::Value::Number(n) => match n.as_f64() {
            Some(v) if v.is_finite() => PolicyValue::Number(v),
            _ => {
                return (
                    StatusCode::BAD_REQUEST,
                    "value must be a finite number, a string or null\n",
                )
                    .into_response();
            }
        },
        serde_json::Value::String(s) => PolicyValue::Text(s),
        serde_json::Value::Null => PolicyValue::Unset,
        _ => {
            return (
                StatusCode::BAD_REQUEST,
                "value must be a finite number, a string or null\n",
            )
                .into_response();
        }
    };
    if req.key.is_empty() || req.key.len() > 256 || req.writer.is_empty() {
        return (
            StatusCode::BAD_REQUEST,
            "key (1..=256 bytes) and writer are required\n",
        )
            .into_response();
    }
    let cmd = Command::SetPolicy {
        key: req.key,
        value,
        writer: req.writer,
        write_id: req.write_id,
    };
    match hub.raft.propose(cmd).await {
        Ok(index) => {
            hub.metrics
                .proposals_committed_total
                .fetch_add(1, Ordering::Relaxed);
            hub.replan.notify_one();
            Json(WriteAck { index }).into_response()
        }
        Err(e) => propose_error(&hub, "/policy", e),
    }
}

/// `{"add": id}` or `{"remove": id}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MemberChange {
    #[serde(default)]
    pub add: Option<u64>,
    #[serde(default)]
    pub remove: Option<u64>,
}

async fn members(State(hub): State<Arc<Hub>>, Json(req): Json<MemberChange>) -> Response {
    let result = match (req.add, req.remove) {
        (Some(id), None) if hub.peers.get(id).is_some() => hub.raft.add_member(id).await,
        (None, Some(id)) => hub.raft.remove_member(id).await,
        (Some(id), None) => {
            return (
                StatusCode::BAD_REQUEST,
                format!(
                    "replica {id} is not in --peers; every replica must know its peers' addresses\n"
                ),
            )
                .into_response();
        }
        _ => {
            return (
                StatusCode::BAD_REQUEST,
                "give exactly one of add or remove\n",
            )
                .into_response();
        }
    };
    match result {
        Ok(index) => {
            hub.metrics
                .proposals_committed_total
                .fetch_add(1, Ordering::Relaxed);
            Json(WriteAck { index }).into_response()
        }
        Err(e) => propose_error(&hub, "/members", e),
    }
}
