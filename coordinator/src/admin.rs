//! The admin HTTP API: `/livez`, `/readyz`, `/metrics` (Prometheus) and `/status` (JSON).

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json};
use axum::routing::get;
use tokio_util::sync::CancellationToken;

use crate::fleet::hub::Hub;
use crate::fleet::status;

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
        .with_state(hub);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the admin API on {addr}"))?;
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { cancel.cancelled().await })
        .await
        .context("admin API")
}

async fn readyz(State(_hub): State<Arc<Hub>>) -> impl IntoResponse {
    (StatusCode::OK, "ready\n")
}

async fn metrics(State(hub): State<Arc<Hub>>) -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        hub.metrics.render(),
    )
}

async fn status_json(State(hub): State<Arc<Hub>>) -> Json<status::FleetStatus> {
    Json(status::fleet_status(&hub))
}
