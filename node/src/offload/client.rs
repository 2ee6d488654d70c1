//! The device side of offloading: a blocking [`Offloader`] for the serving thread that sends the
//! request over QUIC to the assignment's offload target and waits at most `timeout` (kept inside
//! the app's latency limit, so a local fallback still answers in time). After a failure the server
//! is left alone for a short back-off, so a dead server costs one timeout, not one per request.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use net::clock::SharedClock;

use anyhow::{Context, bail};
use net::identity::Kind;
use net::tls;
use wire::codec::MAX_FRAME_BYTES;
use wire::msg::{OffloadReply, OffloadRequest};

use super::Offloader;
use crate::credentials::Credentials;
use crate::engine::Prediction;
use crate::handles::AssignmentCell;

/// How long a failed server is skipped before it is tried again.
const BACKOFF: Duration = Duration::from_secs(1);

struct Session {
    addr: String,
    /// The certificate name checked at connect (if the plan gave one).
    server: Option<String>,
    conn: quinn::Connection,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
}

pub struct QuicOffloader {
    handle: tokio::runtime::Handle,
    endpoint: quinn::Endpoint,
    /// Each new connection presents the current (possibly renewed) certificate.
    credentials: Arc<Credentials>,
    /// The assignment names each app's offload server.
    assignment: AssignmentCell,
    clock: SharedClock,
    /// A target fixed at start (`--offload-server`); otherwise the assignment's.
    fixed_target: Option<String>,
    timeout: Duration,
    height: u16,
    width: u16,
    session: Option<Session>,
    down_until: Option<Instant>,
    next_id: u64,
}

impl QuicOffloader {
    /// Must be called inside the tokio runtime whose `handle` is given.
    pub fn new(
        handle: tokio::runtime::Handle,
        credentials: Arc<Credentials>,
        assignment: AssignmentCell,
        clock: SharedClock,
        fixed_target: Option<String>,
        timeout: Duration,
        (height, width): (u16, u16),
    ) -> anyhow::Result<Self> {
        let endpoint = quinn::Endpoint::client(SocketAddr::from(([0, 0, 0, 0], 0)))
            .context("binding the offload client socket")?;
        Ok(Self {
            handle,
            endpoint,
            credentials,
            assignment,
            clock,
            fixed_target,
            timeout,
            height,
            width,
            session: None,
            down_until: None,
            next_id: 0,
        })
    }

    /// The server for `app`: its address and, from the assignment, the certificate name that
    /// must answer there (`None` only for an operator-fixed `--offload-server`).
    fn target(&self, app: &str) -> Option<(String, Option<String>)> {
        if let Some(t) = &self.fixed_target {
            return Some((t.clone(), None));
        }
        self.assignment.read(|a| {
            let a = a?.apps.iter().find(|a| a.app == app)?;
            // A plan naming an address without the server's identity cannot be checked: not used.
            Some((a.offload_target.clone()?, Some(a.offload_server.clone()?)))
        })
    }
}

/// Connects to the offload server at `addr`; `expected` is the node name the plan gave for it.
/// Any other node answering there (a device posing as the server) is refused.
async fn connect(
    endpoint: &quinn::Endpoint,
    client: quinn::ClientConfig,
    addr: &str,
    expected: Option<&str>,
) -> anyhow::Result<Session> {
    let sock = tokio::net::lookup_host(addr)
        .await
        .with_context(|| format!("resolving {addr}"))?
        .next()
        .with_context(|| format!("{addr} resolves to nothing"))?;
    let conn = endpoint
        .connect_with(client, sock, &tls::server_name_for(addr))?
        .await
        .with_context(|| format!("handshake with {addr}"))?;
    let peer = tls::peer(&conn)?;
    if peer.kind != Kind::Node {
        conn.close(1u32.into(), b"not an offload server");
        bail!("{addr} is {}, not an offload server node", peer.dns_name());
    }
    if let Some(expected) = expected
        && peer.name != expected
    {
        conn.close(1u32.into(), b"not the server the plan names");
        bail!(
            "{addr} answered as node {:?}, but the plan names {expected:?} as the server there; refusing it",
            peer.name
        );
    }
    let (send, recv) = conn.open_bi().await?;
    Ok(Session {
        addr: addr.to_string(),
        server: expected.map(str::to_string),
        conn,
        send,
        recv,
    })
}

async fn exchange(session: &mut Session, req: &OffloadRequest) -> anyhow::Result<OffloadReply> {
    net::framing::write_frame(&mut session.send, req).await?;
    net::framing::read_frame::<_, OffloadReply>(&mut session.recv, MAX_FRAME_BYTES)
        .await?
        .context("the offload server closed the stream")
}

impl Offloader for QuicOffloader {
    fn has_fixed_target(&self) -> bool {
        self.fixed_target.is_some()
    }

    fn offload(
        &mut self,
        app: &str,
        variant: &str,
        pixels: &[u8],
    ) -> Result<(Prediction, f64), String> {
        let (target, server_name) = self.target(app).ok_or("no offload target")?;
        if self.down_until.is_some_and(|t| self.clock.now() < t) {
            return Err(format!("offload server {target} failed recently"));
        }
        if self.session.as_ref().is_some_and(|s| {
            s.addr != target || s.server != server_name || s.conn.close_reason().is_some()
        }) {
            self.session = None;
        }
        self.next_id += 1;
        let req = OffloadRequest {
            id: self.next_id,
            app: app.to_string(),
            variant: variant.to_string(),
            pixels: pixels.to_vec(),
            height: self.height,
            width: self.width,
        };
        let (endpoint, timeout) = (self.endpoint.clone(), self.timeout);
        let credentials = self.credentials.clone();
        let mut session = self.session.take();
        let outcome = self.handle.block_on(async {
            tokio::time::timeout(timeout, async {
                let mut s = match session.take() {
                    Some(s) => s,
                    None => {
                        let client = credentials.client_config()?;
                        connect(&endpoint, client, &target, server_name.as_deref()).await?
                    }
                };
                let reply = exchange(&mut s, &req).await;
                Ok::<_, anyhow::Error>((s, reply?))
            })
            .await
        });
        let reply = match outcome {
            Ok(Ok((s, reply))) => {
                self.session = Some(s);
                reply
            }
            // A timed-out stream may still deliver the late reply: never reuse it.
            Ok(Err(e)) => {
                self.down_until = Some(self.clock.now() + BACKOFF);
                return Err(format!("offload to {target} failed: {e:#}"));
            }
            Err(_) => {
                self.down_until = Some(self.clock.now() + BACKOFF);
                return Err(format!("offload to {target} took longer than {timeout:?}"));
            }
        };
        if reply.id != req.id {
            self.session = None;
            return Err(format!(
                "offload server answered request {} for {}",
                reply.id, req.id
            ));
        }
        let (label, score, server_ms) = reply
            .result
            .map_err(|e| format!("offload server refused: {e}"))?;
        Ok((Prediction { label, score }, server_ms))
    }
}
