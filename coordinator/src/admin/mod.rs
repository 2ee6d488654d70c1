//! The coordinator's HTTP surfaces, on two listeners:
//!
//! - the **health port** (plain HTTP: `/livez`, `/readyz`, `/metrics`) for the kubelet and
//!   Prometheus; it names no node and accepts no writes;
//! - the **operator API** (HTTPS with the fleet CA): every route needs an operator certificate
//!   except enrolment ([`auth::PUBLIC_PATHS`]); writes need the admin role. Writes go to the
//!   leader: a follower answers 307 with the leader's operator address.
//!
//! Both run behind [`listener`]'s caps and deadlines; every request also has a deadline and a
//! body limit here.

pub mod auth;
pub mod backup;
mod fleet;
mod health;
mod identity;
pub mod leader;
pub mod listener;
mod members;
pub mod policy;
mod servers;
mod slots;
pub mod state;
pub mod watchlist;
pub mod writes;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tokio_util::sync::CancellationToken;

pub use fleet::{ClusterStatus, Member};
pub use members::MemberChange;
pub use policy::PolicyWriteRequest;
pub use servers::ServerApprovalRequest;
pub use writes::WriteAck;

pub use state::AdminState;

/// A request (head, body and handler) must be done within this; a commit takes milliseconds.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request body accepted; operator writes are small JSON documents.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Where and how the coordinator serves HTTP.
pub struct AdminConfig {
    pub health: SocketAddr,
    pub operator: SocketAddr,
    /// The operator API's TLS config ([`net::https::server_config`]).
    pub tls: Arc<rustls::ServerConfig>,
    pub limits: listener::Limits,
}

/// The operator API's routes, behind the operator check.
pub fn operator_router(hub: Arc<AdminState>) -> Router {
    Router::new()
        .merge(fleet::routes())
        .merge(policy::routes())
        .merge(members::routes())
        .merge(identity::routes())
        .merge(backup::routes())
        .merge(servers::routes())
        .merge(leader::routes())
        .merge(watchlist::routes())
        .layer(middleware::from_fn(auth::require_operator))
        .layer(middleware::from_fn(deadline))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(hub)
}

fn health_router(hub: Arc<AdminState>) -> Router {
    health::routes()
        .layer(middleware::from_fn(deadline))
        .with_state(hub)
}

async fn deadline(req: Request, next: Next) -> Response {
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(req)).await {
        Ok(response) => response,
        Err(_) => (
            StatusCode::REQUEST_TIMEOUT,
            "request took too long; retry\n",
        )
            .into_response(),
    }
}

/// Binds both listeners and serves until `cancel`.
pub async fn serve(
    config: AdminConfig,
    hub: Arc<AdminState>,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let health = tokio::net::TcpListener::bind(config.health)
        .await
        .with_context(|| format!("binding the health port on {}", config.health))?;
    let operator = tokio::net::TcpListener::bind(config.operator)
        .await
        .with_context(|| format!("binding the operator API on {}", config.operator))?;
    let acceptor = tokio_rustls::TlsAcceptor::from(config.tls);
    tokio::join!(
        listener::serve(
            health,
            None,
            health_router(hub.clone()),
            config.limits.clone(),
            cancel.clone(),
        ),
        listener::serve(
            operator,
            Some(acceptor),
            operator_router(hub),
            config.limits,
            cancel,
        ),
    );
    Ok(())
}
