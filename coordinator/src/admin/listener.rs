//! A hardened HTTP/1.1 accept loop shared by the health port (plain) and the operator API (TLS):
//! a cap on connections overall and per source address, deadlines on the TLS handshake, on the
//! request head, on each request and on a connection's whole life, so half-sent requests cannot
//! hold sockets or file descriptors for long. Each request carries the client's certificate
//! identity ([`ClientIdentity`]) as an extension, which [`super::auth`] reads.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use protocol::identity::{Kind, OperatorRole, PeerId};
use rustls_pki_types::CertificateDer;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

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

/// Counts open connections overall and per address; a slot is released when dropped.
#[derive(Clone, Default)]
struct Slots(Arc<Mutex<(usize, HashMap<IpAddr, usize>)>>);

struct Slot(Slots, IpAddr);

impl Slots {
    fn take(&self, ip: IpAddr, limits: &Limits) -> Option<Slot> {
        let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let per = g.1.get(&ip).copied().unwrap_or(0);
        if g.0 >= limits.max_connections || per >= limits.max_per_address {
            return None;
        }
        g.0 += 1;
        g.1.insert(ip, per + 1);
        Some(Slot(self.clone(), ip))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut g = (self.0).0.lock().unwrap_or_else(|p| p.into_inner());
        g.0 = g.0.saturating_sub(1);
        if let Some(n) = g.1.get_mut(&self.1) {
            *n -= 1;
            if *n == 0 {
                g.1.remove(&self.1);
            }
        }
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
        let Some(slot) = slots.take(remote.ip(), &limits) else {
            tracing::debug!(%remote, "HTTP connection refused: connection cap reached");
            drop(stream);
            continue;
        };
        let (tls, router, limits, cancel) =
            (tls.clone(), router.clone(), limits.clone(), cancel.clone());
        tokio::spawn(async move {
            let _slot = slot;
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = tokio::time::sleep(limits.connection_lifetime) => {}
                _ = connection(stream, remote, tls, router, &limits) => {}
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
) {
    let _ = stream.set_nodelay(true);
    match tls {
        None => {
            http1(
                TokioIo::new(stream),
                ClientIdentity::default(),
                router,
                limits,
            )
            .await
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
            http1(TokioIo::new(tls_stream), who, router, limits).await;
        }
    }
}

async fn http1<IO>(io: TokioIo<IO>, who: ClientIdentity, router: Router, limits: &Limits)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service =
        hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(who.clone());
            router.clone().oneshot(req)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_slots_cap_overall_and_per_address_and_free_on_drop() {
        let limits = Limits {
            max_connections: 3,
            max_per_address: 2,
            ..Limits::default()
        };
        let slots = Slots::default();
        let a: IpAddr = [127, 0, 0, 5].into();
        let b: IpAddr = [127, 0, 0, 6].into();
        let a1 = slots.take(a, &limits).expect("first from a");
        let _a2 = slots.take(a, &limits).expect("second from a");
        assert!(slots.take(a, &limits).is_none(), "a third from one address");
        let _b1 = slots
            .take(b, &limits)
            .expect("another address still gets in");
        assert!(slots.take(b, &limits).is_none(), "the overall cap holds");
        drop(a1);
        assert!(
            slots.take(b, &limits).is_some(),
            "a closed slot is free again"
        );
    }
}
