//! The watchlist over the operator API (`mcdnnctl watchlist add|list|remove`).
//!
//! - `GET /v1/watchlist`: names, descriptor counts, who added them, and the list's version (any
//!   operator; never descriptors, which are biometric data the CLI has no use for);
//! - `POST /v1/watchlist/add` `{"name", "images": [base64 PNG/JPEG, ...]}` (admin role): the
//!   leader computes one descriptor per photo with its face models and proposes
//!   `AddWatchlistEntry` with the descriptors only; the photos are dropped with the request;
//! - `POST /v1/watchlist/remove` `{"name"}` (admin role): proposes `RemoveWatchlistEntry`.
//!
//! Bounds: the body at most [`MAX_UPLOAD_BYTES`], at most [`MAX_PHOTOS`] photos, each decoded
//! within `faces::MAX_PIXELS`; names and descriptors as `wire::msg::check_watchlist_entry`
//! (checked here for a 400 and again on apply). A follower redirects before doing any work.

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use base64::Engine;
use serde::{Deserialize, Serialize};
use wire::msg::{MAX_DESCRIPTORS_PER_NAME, WatchlistEntry, check_watchlist_entry};

use super::auth::Caller;
use super::state::AdminState;
use super::writes;
use crate::faces::DescribeError;
use crate::state::Command;

/// Largest upload body: a few phone photos, base64-encoded.
pub const MAX_UPLOAD_BYTES: usize = 8 * 1024 * 1024;
/// Photos per add.
pub const MAX_PHOTOS: usize = 8;

const _: () = assert!(MAX_PHOTOS <= MAX_DESCRIPTORS_PER_NAME);

/// Body of `POST /v1/watchlist/add`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WatchlistAddRequest {
    pub name: String,
    /// PNG or JPEG photos, standard base64, one face each.
    pub images: Vec<String>,
}

/// Body of `POST /v1/watchlist/remove`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WatchlistRemoveRequest {
    pub name: String,
}

/// One name as `GET /v1/watchlist` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WatchlistName {
    pub name: String,
    pub descriptors: usize,
    pub added_by: String,
    pub index: u64,
}

/// `GET /v1/watchlist`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WatchlistView {
    /// The version nodes hold when they are current (0: empty).
    pub version: u64,
    pub names: Vec<WatchlistName>,
}

pub fn routes() -> Router<Arc<AdminState>> {
    Router::new()
        .route("/v1/watchlist", get(list))
        .route(
            "/v1/watchlist/add",
            post(add).layer(DefaultBodyLimit::max(MAX_UPLOAD_BYTES)),
        )
        .route("/v1/watchlist/remove", post(remove))
}

fn bad_request(msg: impl std::fmt::Display) -> Response {
    (StatusCode::BAD_REQUEST, format!("{msg}\n")).into_response()
}

async fn list(_: Caller, State(hub): State<Arc<AdminState>>) -> Json<WatchlistView> {
    Json(hub.raft.with_state(|s| {
        let w = s.watchlist();
        WatchlistView {
            version: w.version(),
            names: w
                .entries()
                .iter()
                .map(|(name, r)| WatchlistName {
                    name: name.clone(),
                    descriptors: r.descriptors.len(),
                    added_by: r.by.clone(),
                    index: r.index,
                })
                .collect(),
        }
    }))
}

async fn add(
    caller: Caller,
    State(hub): State<Arc<AdminState>>,
    Json(req): Json<WatchlistAddRequest>,
) -> Response {
    const PATH: &str = "/v1/watchlist/add";
    if let Err(refusal) = caller.require_admin() {
        return refusal.into_response();
    }
    if let Err(e) = wire::msg::check_watchlist_name(&req.name) {
        return bad_request(e);
    }
    if req.images.is_empty() || req.images.len() > MAX_PHOTOS {
        return bad_request(format!(
            "send 1..={MAX_PHOTOS} photos, not {}",
            req.images.len()
        ));
    }
    // Describing is the expensive part: only the leader does it (its proposal commits).
    if !hub.leader.is_leader() {
        return writes::to_leader(&hub, PATH, None);
    }
    let Some(faces) = hub.faces.clone() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "this coordinator has no face models; start it with --face-models DIR (models/face)\n",
        )
            .into_response();
    };
    let mut photos = Vec::with_capacity(req.images.len());
    for (i, b64) in req.images.iter().enumerate() {
        match base64::engine::general_purpose::STANDARD.decode(b64) {
            Ok(bytes) => photos.push(bytes),
            Err(e) => return bad_request(format!("photo {}: not base64: {e}", i + 1)),
        }
    }
    let descriptors = match faces.one_per_photo(photos).await {
        Ok(d) => d,
        Err(DescribeError::BadPhoto(why)) => return bad_request(why),
        Err(DescribeError::Internal(why)) => {
            tracing::error!(%why, "computing watchlist descriptors failed");
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("computing descriptors failed: {why}\n"),
            )
                .into_response();
        }
    };
    let entry = WatchlistEntry {
        name: req.name,
        descriptors,
    };
    if let Err(e) = check_watchlist_entry(&entry) {
        return bad_request(e);
    }
    tracing::info!(name = %entry.name, by = %caller.name, photos = entry.descriptors.len(), "watchlist entry added");
    let cmd = Command::AddWatchlistEntry {
        entry,
        by: caller.name,
    };
    writes::committed(&hub, PATH, hub.raft.propose(cmd).await)
}

async fn remove(
    caller: Caller,
    State(hub): State<Arc<AdminState>>,
    Json(req): Json<WatchlistRemoveRequest>,
) -> Response {
    if let Err(refusal) = caller.require_admin() {
        return refusal.into_response();
    }
    if let Err(e) = wire::msg::check_watchlist_name(&req.name) {
        return bad_request(e);
    }
    let known = hub
        .raft
        .with_state(|s| s.watchlist().entries().contains_key(&req.name));
    if !known && hub.leader.is_leader() {
        return (
            StatusCode::NOT_FOUND,
            format!("{:?} is not on the watchlist\n", req.name),
        )
            .into_response();
    }
    let cmd = Command::RemoveWatchlistEntry {
        name: req.name,
        by: caller.name,
    };
    writes::committed(&hub, "/v1/watchlist/remove", hub.raft.propose(cmd).await)
}
