//! Operator reads of the fleet and the replica set: `/status` (every node, its battery and plan)
//! and `/cluster` (members, leader, term, indexes, lag).

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};

use super::auth::Caller;
use super::state::AdminState;
use crate::fleet::status;

pub fn routes() -> Router<Arc<AdminState>> {
    Router::new()
        .route("/status", get(status_json))
        .route("/cluster", get(cluster))
        .route("/v1/metrics/nodes", get(node_metrics))
}

async fn status_json(_: Caller, State(hub): State<Arc<AdminState>>) -> Json<status::FleetStatus> {
    Json(status::fleet_status(&hub.status))
}

/// Per-node gauges (they name nodes, so they are not on the health port).
async fn node_metrics(_: Caller, State(hub): State<Arc<AdminState>>) -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        crate::fleet::prom::render_nodes(&status::fleet_status(&hub.status)),
    )
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
    /// Back with an empty disk and not yet re-admitted: it does not vote, whatever the
    /// membership it restored says.
    #[serde(default)]
    pub rejoining: bool,
    /// Per peer id: (matched index, lag); only on the leader.
    pub lag: std::collections::BTreeMap<u64, u64>,
    pub plan_epoch: u64,
    pub policy_writes: usize,
    pub registered_nodes: usize,
    /// Content digests of the catalog the fleet runs (replicated).
    pub catalog_index: usize,
    /// Every member by name, as this replica's configuration has it.
    #[serde(default)]
    pub members: Vec<Member>,
}

/// One replica of the set.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Member {
    pub id: u64,
    pub name: String,
    /// `voter` or `learner`.
    pub role: String,
    /// Its operator API address.
    pub admin: String,
}

async fn cluster(_: Caller, State(hub): State<Arc<AdminState>>) -> Response {
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
            let member = |id: u64, role: &str| Member {
                id,
                name: hub
                    .leader
                    .peers()
                    .get(id)
                    .map_or_else(|| format!("replica-{id}"), |p| p.name.clone()),
                role: role.to_string(),
                admin: hub
                    .leader
                    .peers()
                    .get(id)
                    .map_or_else(String::new, |p| p.admin_addr.clone()),
            };
            let members = s
                .voters
                .iter()
                .map(|&id| member(id, "voter"))
                .chain(s.learners.iter().map(|&id| member(id, "learner")))
                .collect();
            Json(ClusterStatus {
                replica: hub.leader.self_name(),
                id: s.id,
                role: format!("{:?}", s.role),
                leader_id: s.leader_id,
                leader_name: s
                    .leader_id
                    .and_then(|id| hub.leader.peers().get(id))
                    .map(|p| p.name.clone()),
                term: s.term,
                commit: s.commit,
                applied: s.applied,
                first_index: s.first_index,
                last_index: s.last_index,
                voters: s.voters,
                learners: s.learners,
                rejoining: s.rejoining,
                lag: s.progress.iter().map(|(id, p)| (*id, p.lag)).collect(),
                plan_epoch,
                policy_writes,
                registered_nodes,
                catalog_index,
                members,
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
