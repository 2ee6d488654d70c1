//! Test helpers for device identity: a node's control session held by the test itself (so the
//! moment a coordinator closes it can be timed), and a check that a replica refuses an identity
//! at the TLS handshake.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use net::identity::Identity;
use wire::codec;
use wire::msg::{CoordMsg, Hello, NodeMsg};

/// A node session the test holds open: the coordinator's view of `name` being connected.
pub struct HeldSession {
    pub endpoint: quinn::Endpoint,
    pub conn: quinn::Connection,
    _streams: (quinn::SendStream, quinn::RecvStream),
}

impl HeldSession {
    /// Waits until the coordinator closes the session; `None` if it is still open at `timeout`.
    pub async fn closed_within(&self, timeout: Duration) -> Option<Duration> {
        let start = Instant::now();
        tokio::time::timeout(timeout, self.conn.closed())
            .await
            .ok()
            .map(|_| start.elapsed())
    }

    /// Whether the coordinator still keeps the session open.
    pub fn is_open(&self) -> bool {
        self.conn.close_reason().is_none()
    }
}

fn endpoint(ca_dir: &Path, name: &str) -> anyhow::Result<quinn::Endpoint> {
    let identity = Identity::load(ca_dir, name)?;
    let mut endpoint = quinn::Endpoint::client(SocketAddr::from(([127, 0, 0, 1], 0)))?;
    endpoint.set_default_client_config(net::tls::client_config(&identity)?);
    Ok(endpoint)
}

/// Joins the leader at `addr` as node `name` (certificate from `ca_dir`) and keeps the session.
pub async fn hold_session(ca_dir: &Path, name: &str, addr: &str) -> anyhow::Result<HeldSession> {
    let endpoint = endpoint(ca_dir, name)?;
    let sock: SocketAddr = addr.parse().context("replica address")?;
    let digest = crate::catalog_digest()?;
    let (conn, send, recv) =
        mcdnn_coordinator::ctl::bench::join(&endpoint, sock, name, &digest).await?;
    Ok(HeldSession {
        endpoint,
        conn,
        _streams: (send, recv),
    })
}

/// Whether the replica at `addr` refuses node `name` at the TLS handshake: no message of any
/// kind (welcome, redirect, error) comes back, the connection is closed instead. A replica that
/// answers at all (even with a redirect) has accepted the certificate.
pub async fn refused_at_handshake(ca_dir: &Path, name: &str, addr: &str) -> anyhow::Result<bool> {
    let endpoint = endpoint(ca_dir, name)?;
    let sock: SocketAddr = addr.parse().context("replica address")?;
    let attempt = async {
        let conn = endpoint.connect(sock, "localhost")?.await?;
        let (mut send, mut recv) = conn.open_bi().await?;
        let hello = Hello {
            node_id: name.to_owned(),
            device_class: "phone-2016".into(),
            role: wire::msg::Role::Device,
            protocol_version: wire::msg::PROTOCOL_VERSION,
            catalog_digests: vec![],
            offload_addr: None,
            battery: wire::msg::Battery::unreported(),
            apps: vec![],
            watchlist_version: 0,
        };
        net::framing::write_frame(&mut send, &NodeMsg::Hello(hello)).await?;
        let reply =
            net::framing::read_frame::<_, CoordMsg>(&mut recv, codec::MAX_FRAME_BYTES).await?;
        anyhow::Ok(reply)
    };
    let outcome = tokio::time::timeout(Duration::from_secs(3), attempt).await;
    endpoint.close(0u32.into(), b"done");
    Ok(match outcome {
        Ok(Ok(Some(_))) => false,
        Ok(Ok(None) | Err(_)) => true,
        // No answer at all in 3 s: a dead replica, not a refusal.
        Err(_) => anyhow::bail!("{addr} did not answer within 3 s"),
    })
}

/// POSTs JSON to replica `i`'s operator API as the harness's admin operator; the answer's body
/// as JSON if it is 200, else an error with the status and reason.
pub fn admin_post(
    cluster: &crate::cluster::Cluster,
    i: usize,
    path: &str,
    body: &serde_json::Value,
) -> anyhow::Result<serde_json::Value> {
    let r = cluster.ops.post_json(
        &cluster.admin(i),
        path,
        &body.to_string(),
        Duration::from_secs(5),
    )?;
    anyhow::ensure!(
        r.status == 200,
        "{path}: HTTP {}: {}",
        r.status,
        r.body.trim()
    );
    Ok(serde_json::from_str(&r.body)?)
}

/// GETs JSON from replica `i`'s operator API as the harness's admin operator.
pub fn admin_get(
    cluster: &crate::cluster::Cluster,
    i: usize,
    path: &str,
) -> anyhow::Result<serde_json::Value> {
    let body = cluster
        .ops
        .get(&cluster.admin(i), path, Duration::from_secs(3))?;
    Ok(serde_json::from_str(&body)?)
}
