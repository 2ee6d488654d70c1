//! Device-identity routes of the operator API: `POST /v1/tokens` (admin: a one-time enrollment
//! token, shown once), `POST /v1/enroll` (open without a client certificate: a device trades its
//! token and certificate request for a certificate; size- and rate-bounded), `POST
//! /v1/nodes/{name}/revoke` (admin) and `GET /v1/revocations` (any operator).

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};

use super::auth::Caller;
use super::state::AdminState;
use crate::enrollment::{self, EnrollRequest, MAX_ENROLL_BODY_BYTES, Refusal, TokenRequest};

pub fn routes() -> Router<Arc<AdminState>> {
    Router::new()
        .route("/v1/tokens", post(issue_token))
        .route(
            "/v1/enroll",
            post(enroll).layer(DefaultBodyLimit::max(MAX_ENROLL_BODY_BYTES)),
        )
        .route("/v1/nodes/{name}/revoke", post(revoke))
        .route("/v1/revocations", get(revocations))
}

fn refusal(hub: &AdminState, path: &str, r: Refusal) -> Response {
    let (status, text) = match r {
        Refusal::BadRequest(t) => (StatusCode::BAD_REQUEST, t),
        Refusal::Forbidden(t) => (StatusCode::FORBIDDEN, t),
        Refusal::TooMany(t) => (StatusCode::TOO_MANY_REQUESTS, t),
        Refusal::Unavailable(t) => (StatusCode::SERVICE_UNAVAILABLE, t),
        Refusal::Propose(e) => return super::writes::propose_error(hub, path, e),
    };
    (status, format!("{text}\n")).into_response()
}

async fn issue_token(
    State(hub): State<Arc<AdminState>>,
    caller: Caller,
    Json(req): Json<TokenRequest>,
) -> Response {
    if let Err(denied) = caller.require_admin() {
        return denied.into_response();
    }
    match enrollment::issue_token(&hub.enrollment, req, &caller.name).await {
        Ok(issued) => Json(issued).into_response(),
        Err(r) => refusal(&hub, "/v1/tokens", r),
    }
}

async fn enroll(State(hub): State<Arc<AdminState>>, Json(req): Json<EnrollRequest>) -> Response {
    match enrollment::enroll(&hub.enrollment, req).await {
        Ok(done) => Json(done).into_response(),
        Err(r) => refusal(&hub, "/v1/enroll", r),
    }
}

async fn revoke(
    State(hub): State<Arc<AdminState>>,
    caller: Caller,
    Path(name): Path<String>,
) -> Response {
    if let Err(denied) = caller.require_admin() {
        return denied.into_response();
    }
    let path = format!("/v1/nodes/{name}/revoke");
    match enrollment::revoke(&hub.enrollment, &name, &caller.name).await {
        Ok(index) => Json(serde_json::json!({ "revoked": name, "index": index })).into_response(),
        Err(r) => refusal(&hub, &path, r),
    }
}

async fn revocations(
    State(hub): State<Arc<AdminState>>,
    _caller: Caller,
) -> Json<serde_json::Value> {
    let list: Vec<serde_json::Value> = hub.raft.with_state(|s| {
        s.identity()
            .revoked()
            .iter()
            .map(|(name, r)| serde_json::json!({ "name": name, "by": r.by, "index": r.index }))
            .collect()
    });
    Json(serde_json::json!({ "revoked": list }))
}
