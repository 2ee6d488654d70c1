//! TLS for the coordinator's operator API (HTTPS over TCP), from the same fleet identity as QUIC.
//!
//! The server asks every client for a certificate chaining to the fleet CA but lets a client
//! without one finish the handshake: the API itself then decides per route (only enrolment, which
//! authenticates with a one-time token, is open to a device that has no certificate yet). A
//! client that presents a certificate from another CA, or an expired one, fails the handshake.

use std::sync::Arc;

use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;

use crate::identity::Identity;
use crate::tls::TlsError;

/// ALPN for the operator API.
pub const HTTP1_ALPN: &[u8] = b"http/1.1";

/// The operator API's TLS server config: presents `identity`, requests (does not require) a
/// fleet client certificate. TLS 1.3 only.
pub fn server_config(identity: &Identity) -> Result<rustls::ServerConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for ca in identity.ca_certs() {
        roots
            .add(ca.clone())
            .map_err(|e| TlsError::BadCa(e.to_string()))?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()?;
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(identity.cert_chain().to_vec(), identity.private_key())?;
    tls.alpn_protocols = vec![HTTP1_ALPN.to_vec()];
    Ok(tls)
}
