//! QUIC + mutual TLS configuration from a fleet [`Identity`], and reading who the peer is.
//!
//! Every config is built with the ring crypto provider passed explicitly, so nothing depends on
//! a process-wide default provider being installed (or on two crates disagreeing about it).

use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::{NoInitialCipherSuite, QuicClientConfig, QuicServerConfig};
use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::CertificateDer;

use crate::identity::{Identity, IdentityError, PeerId, RevokedSet};
use crate::revocation::RevocationChecking;
use wire::msg::ALPN;

/// Interval of QUIC keep-alive pings: keeps NAT bindings open and detects dead peers early.
pub const KEEP_ALIVE: Duration = Duration::from_millis(300);
/// A connection with no traffic for this long is dead (five missed keep-alives). A node finds a
/// dead leader sooner from the silence of its connection (`wire::msg::LIVENESS_PING_INTERVAL`);
/// this is the backstop for every connection, long enough that a loaded machine does not drop
/// live ones.
pub const IDLE_TIMEOUT: Duration = Duration::from_millis(1500);

/// The idle timeout of a node's session with its coordinator. A node leaves a silent
/// coordinator itself after three of its ping intervals (at most 3 s, see
/// `wire::msg::MAX_LIVENESS_PING_INTERVAL`), so this only ends sessions whose peer is gone for
/// good; longer than [`IDLE_TIMEOUT`] because the largest fleets ping once a second.
pub const NODE_IDLE_TIMEOUT: Duration = Duration::from_millis(5000);

const _: () =
    assert!(NODE_IDLE_TIMEOUT.as_millis() > 3 * wire::msg::MAX_LIVENESS_PING_INTERVAL.as_millis());

/// Streams of each direction a peer may have open at once on one connection. A node needs its
/// control stream and one blob or offload stream at a time; a replica one Raft stream. The cap
/// bounds what one certificate can make a server hold (each open stream may buffer a frame).
pub const MAX_STREAMS_PER_CONNECTION: u32 = 8;

/// Server name used when the address gives no host (see [`server_name_for`]).
pub const DEFAULT_SERVER_NAME: &str = "localhost";

/// What went wrong building a TLS config or identifying a peer.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("TLS configuration rejected: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("cannot build the client-certificate verifier from the fleet CA: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    #[error("the fleet CA certificate is unusable as a trust anchor: {0}")]
    BadCa(String),
    #[error("TLS config cannot carry QUIC: {0}")]
    Quic(#[from] NoInitialCipherSuite),
    #[error(
        "the peer presented no certificate; every fleet connection must use mutual TLS with a \
         certificate from `mcdnnctl enroll`"
    )]
    NoPeerCertificate,
    #[error("the peer's certificate has no usable fleet identity: {0}")]
    PeerIdentity(#[from] IdentityError),
}

/// The ring provider, built fresh each time rather than fetched from a global default.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(identity: &Identity) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for ca in identity.ca_certs() {
        roots
            .add(ca.clone())
            .map_err(|e| TlsError::BadCa(e.to_string()))?;
    }
    Ok(roots)
}

/// The QUIC transport every fleet endpoint uses (keep-alive, idle timeout, stream caps); a
/// server may adjust it (the coordinator's node endpoint narrows its receive windows).
pub fn transport() -> quinn::TransportConfig {
    let mut t = quinn::TransportConfig::default();
    t.keep_alive_interval(Some(KEEP_ALIVE));
    t.max_idle_timeout(Some(idle_timeout(IDLE_TIMEOUT)));
    t.max_concurrent_bidi_streams(quinn::VarInt::from_u32(MAX_STREAMS_PER_CONNECTION));
    t.max_concurrent_uni_streams(quinn::VarInt::from_u32(MAX_STREAMS_PER_CONNECTION));
    t
}

/// Address validation for a server's accept loop: a connection attempt from an address that has
/// not proven it can receive packets there gets a stateless retry first (no state is kept for
/// it), so a spoofed source cannot make the server do handshake work or amplify traffic.
/// Returns the attempt to accept, or `None` when a retry was sent instead.
pub fn validated(incoming: quinn::Incoming) -> Option<quinn::Incoming> {
    if incoming.remote_address_validated() || !incoming.may_retry() {
        return Some(incoming);
    }
    // A retry can only fail if the attempt was already retried, which `may_retry` excludes.
    let _ = incoming.retry();
    None
}

/// A QUIC server config that presents `identity` and requires every client to present a
/// certificate chaining to the fleet CA (expired, foreign or missing certificates fail the
/// handshake). ALPN `mcdnn/1`, TLS 1.3 only (QUIC requires it).
pub fn server_config(identity: &Identity) -> Result<quinn::ServerConfig, TlsError> {
    server_config_revoking(identity, &RevokedSet::default())
}

/// [`server_config`] that also refuses, at every handshake, node certificates whose name is in
/// `revoked` (a live set: later changes apply to later handshakes).
pub fn server_config_revoking(
    identity: &Identity,
    revoked: &RevokedSet,
) -> Result<quinn::ServerConfig, TlsError> {
    let provider = provider();
    let webpki =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots(identity)?), provider.clone())
            .build()?;
    let verifier = Arc::new(RevocationChecking::new(webpki, revoked.clone()));
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(identity.cert_chain().to_vec(), identity.private_key())?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(QuicServerConfig::try_from(tls)?));
    config.transport_config(Arc::new(transport()));
    Ok(config)
}

/// A QUIC client config that presents `identity` and accepts only servers whose certificate
/// chains to the fleet CA and names the server name passed to `connect`.
pub fn client_config(identity: &Identity) -> Result<quinn::ClientConfig, TlsError> {
    client_config_with(identity, transport())
}

/// [`client_config`] for a node's session with its coordinator. The node pings the leader
/// itself (empty QUIC datagrams at the interval the leader sets, `wire::msg::CoordMsg::Liveness`),
/// so the transport's own keep-alive is off; the coordinator's keep-alive keeps a client that
/// does not ping alive. The idle timeout is [`NODE_IDLE_TIMEOUT`].
pub fn coordinator_client_config(identity: &Identity) -> Result<quinn::ClientConfig, TlsError> {
    client_config_with(identity, node_session_transport(None))
}

/// The transport of a node's session with its coordinator (both ends): [`transport`] with the
/// [`NODE_IDLE_TIMEOUT`] and the given keep-alive.
pub fn node_session_transport(keep_alive: Option<Duration>) -> quinn::TransportConfig {
    let mut t = transport();
    t.keep_alive_interval(keep_alive);
    t.max_idle_timeout(Some(idle_timeout(NODE_IDLE_TIMEOUT)));
    t
}

/// IdleTimeout is milliseconds as a QUIC varint; the timeouts here are seconds, which always
/// fit, so it is built infallibly.
fn idle_timeout(d: Duration) -> quinn::IdleTimeout {
    quinn::IdleTimeout::from(quinn::VarInt::from_u32(d.as_millis() as u32))
}

fn client_config_with(
    identity: &Identity,
    transport: quinn::TransportConfig,
) -> Result<quinn::ClientConfig, TlsError> {
    let mut tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots(identity)?)
        .with_client_auth_cert(identity.cert_chain().to_vec(), identity.private_key())?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let mut config = quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(tls)?));
    config.transport_config(Arc::new(transport));
    Ok(config)
}

/// The TLS server name to pass to `quinn::Endpoint::connect` for an address like `host:port`,
/// `[v6]:port`, `host` or an IP: the host part, or `localhost` if there is none.
///
/// Coordinator certificates carry `localhost`, `127.0.0.1`, their identity and any extra SANs
/// given at enrolment (e.g. Kubernetes pod hostnames). To reach a peer by an address its
/// certificate does not list, connect with its identity instead ([`PeerId::dns_name`]).
pub fn server_name_for(addr: &str) -> String {
    let addr = addr.trim();
    let host = if let Some(rest) = addr.strip_prefix('[') {
        // "[::1]:4433" or "[::1]"
        rest.split_once(']').map_or(rest, |(h, _)| h)
    } else if addr.matches(':').count() == 1 {
        addr.split_once(':').map_or(addr, |(h, _)| h)
    } else {
        // No port, or a bare IPv6 address.
        addr
    };
    if host.is_empty() {
        DEFAULT_SERVER_NAME.to_owned()
    } else {
        host.to_owned()
    }
}

/// Who is on the other end of an established connection, from its verified leaf certificate.
/// Servers use this (never a message field) to know which node or operator they talk to;
/// clients use it to check they reached the kind of peer they wanted.
pub fn peer(conn: &quinn::Connection) -> Result<PeerId, TlsError> {
    let certs = conn
        .peer_identity()
        .and_then(|any| any.downcast::<Vec<CertificateDer<'static>>>().ok())
        .ok_or(TlsError::NoPeerCertificate)?;
    let leaf = certs.first().ok_or(TlsError::NoPeerCertificate)?;
    Ok(PeerId::from_cert_der(leaf)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names_from_addresses() {
        assert_eq!(server_name_for("localhost:4433"), "localhost");
        assert_eq!(
            server_name_for("coord-0.mcdnn.svc:4433"),
            "coord-0.mcdnn.svc"
        );
        assert_eq!(server_name_for("127.0.0.1:4433"), "127.0.0.1");
        assert_eq!(server_name_for("[::1]:4433"), "::1");
        assert_eq!(server_name_for("::1"), "::1");
        assert_eq!(server_name_for("coord-1"), "coord-1");
        assert_eq!(server_name_for(":4433"), "localhost");
        assert_eq!(server_name_for(""), "localhost");
    }
}
