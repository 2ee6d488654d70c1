//! A hardened HTTP/1.1 accept loop shared by the health port (plain) and the operator API (TLS):
//! a cap on connections overall and per source address ([`super::slots`]: a full table makes
//! room by closing its oldest connection that serves no request), deadlines on the TLS handshake, on the
//! request head, on each request and on a connection's whole life, so half-sent requests cannot
//! hold sockets or file descriptors for long. Each request carries the client's certificate
//! identity ([`ClientIdentity`]) as an extension, which the auth middleware reads.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use net::identity::{Kind, OperatorRole, PeerId};
use rustls_pki_types::CertificateDer;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use super::slots::{BusyMarker, Slots};

/// What bounds one listener. The defaults suit an operator API used by a few people and tools,
/// and a health port scraped by a kubelet and Prometheus.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Connections open at once; more are closed as soon as they are accepted.
    pub max_connections: usize,
    /// Connections open at once from one source address, so one client cannot take them all.
    pub max_per_address: usize,
    pub handshake_timeout: Duration,
    /// The whole request head must arrive within this.
    pub header_timeout: Duration,
    /// A connection is closed after this, whatever it is doing.
    pub connection_lifetime: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 256,
            max_per_address: 32,
            handshake_timeout: Duration::from_secs(5),
            header_timeout: Duration::from_secs(5),
            connection_lifetime: Duration::from_secs(30),
        }
    }
}

/// Who is on the other end of a request, from the TLS client certificate (none on the health
/// port, or when the client presented none).
#[derive(Debug, Clone, Default)]
pub struct ClientIdentity {
    pub peer: Option<PeerId>,
    /// The operator role, for operator certificates only.
    pub role: Option<OperatorRole>,
}

impl ClientIdentity {
    fn from_certs(certs: Option<&[CertificateDer<'static>]>) -> Self {
        let Some(leaf) = certs.and_then(|c| c.first()) else {
            return Self::default();
        };
        // The chain was verified in the handshake; an unreadable identity is just "nobody".
        let peer = PeerId::from_cert_der(leaf).ok();
        let role = match &peer {
            Some(p) if p.kind == Kind::Operator => OperatorRole::from_cert_der(leaf).ok(),
            _ => None,
        };
        Self { peer, role }
    }
}

/// Serves `router` on `listener` until `cancel`; TLS when `tls` is given.
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    router: Router,
    limits: Limits,
    cancel: CancellationToken,
) {
    let slots = Slots::default();
    loop {
        let (stream, remote) = tokio::select! {
            _ = cancel.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accepting an HTTP connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Some(slot) = slots.take(remote.ip(), limits.max_connections, limits.max_per_address)
        else {
            tracing::debug!(%remote, "HTTP connection refused: connection cap reached");
            drop(stream);
            continue;
        };
        let (tls, router, limits, cancel) =
            (tls.clone(), router.clone(), limits.clone(), cancel.clone());
        tokio::spawn(async move {
            let marker = slot.marker();
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = slot.evicted.cancelled() => {}
                _ = tokio::time::sleep(limits.connection_lifetime) => {}
                _ = connection(stream, remote, tls, router, &limits, marker) => {}
            }
        });
    }
}

async fn connection(
    stream: tokio::net::TcpStream,
    remote: SocketAddr,
    tls: Option<TlsAcceptor>,
    router: Router,
    limits: &Limits,
    marker: BusyMarker,
) {
    let _ = stream.set_nodelay(true);
    match tls {
        None => {
            let io = TokioIo::new(stream);
            http1(io, ClientIdentity::default(), router, limits, marker).await;
        }
        Some(acceptor) => {
            let tls_stream =
                match tokio::time::timeout(limits.handshake_timeout, acceptor.accept(stream)).await
                {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        tracing::info!(%remote, error = %e, "operator API TLS handshake refused");
                        return;
                    }
                    Err(_) => return,
                };
            let who = ClientIdentity::from_certs(tls_stream.get_ref().1.peer_certificates());
            http1(TokioIo::new(tls_stream), who, router, limits, marker).await;
        }
    }
}

async fn http1<IO>(
    io: TokioIo<IO>,
    who: ClientIdentity,
    router: Router,
    limits: &Limits,
    marker: BusyMarker,
) where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service =
        hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(who.clone());
            // While a request is served its connection is never evicted to make room.
            let busy = marker.busy();
            let router = router.clone();
            async move {
                let response = router.oneshot(req).await;
                drop(busy);
                response
            }
        });
    let served = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .serve_connection(io, service)
        .await;
    if let Err(e) = served {
        tracing::debug!(error = %e, "HTTP connection ended with an error");
    }
}
