//! A client-certificate verifier that refuses revoked nodes at the handshake: the usual WebPKI
//! path check against the fleet CA, then a look-up in the live [`RevokedSet`]. Every endpoint
//! that accepts nodes (a coordinator's node endpoint, a node's offload server) builds its TLS
//! config with it, so a revocation applies to the next handshake without a restart.

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};
use rustls_pki_types::{CertificateDer, UnixTime};

use crate::identity::{Kind, PeerId, RevokedSet};

/// Wraps a (WebPKI) verifier and refuses node certificates whose name is revoked.
#[derive(Debug)]
pub struct RevocationChecking {
    inner: Arc<dyn ClientCertVerifier>,
    revoked: RevokedSet,
}

impl RevocationChecking {
    pub fn new(inner: Arc<dyn ClientCertVerifier>, revoked: RevokedSet) -> Self {
        RevocationChecking { inner, revoked }
    }
}

impl ClientCertVerifier for RevocationChecking {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        // The chain first: a name read from an unverified certificate means nothing.
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        if let Ok(peer) = PeerId::from_cert_der(end_entity)
            && peer.kind == Kind::Node
            && self.revoked.contains(&peer.name)
        {
            return Err(rustls::Error::InvalidCertificate(CertificateError::Revoked));
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use rustls::server::WebPkiClientVerifier;
    use rustls_pki_types::pem::PemObject;

    use super::*;
    use crate::identity::{Ca, CertificateRequest, IssuingCa, Validity};

    /// A root, an issuing CA, and a chain for node `cam-1` signed from a request.
    fn issued() -> (
        tempfile::TempDir,
        Vec<CertificateDer<'static>>,
        RevocationChecking,
    ) {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = Ca::init(&tmp.path().join("root")).expect("root");
        IssuingCa::create(&root, &tmp.path().join("coord")).expect("issuing");
        let issuing = IssuingCa::load(&tmp.path().join("coord"))
            .expect("load")
            .expect("present");
        let (_key, request) = CertificateRequest::generate().expect("request");
        let peer = PeerId::new(Kind::Node, "cam-1").expect("name");
        let validity = Validity::lifetime(std::time::Duration::from_secs(30)).expect("validity");
        let chain_pem = issuing.sign(&request, &peer, validity).expect("signed");
        let chain = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .expect("pem");
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(root.cert_pem().as_bytes()).expect("root pem"))
            .expect("anchor");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let webpki = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .expect("verifier");
        (
            tmp,
            chain,
            RevocationChecking::new(webpki, RevokedSet::default()),
        )
    }

    #[test]
    fn leaves_from_the_issuing_ca_chain_to_the_root_until_revoked() {
        let (_tmp, chain, verifier) = issued();
        assert_eq!(chain.len(), 2, "leaf then issuing CA");
        assert_eq!(
            PeerId::from_cert_der(&chain[0])
                .expect("identity")
                .dns_name(),
            "cam-1.node.mcdnn"
        );
        let now = UnixTime::now();
        verifier
            .verify_client_cert(&chain[0], &chain[1..], now)
            .expect("valid chain");
        // Without the intermediate the leaf does not chain to the root.
        assert!(verifier.verify_client_cert(&chain[0], &[], now).is_err());
        verifier.revoked.replace(["cam-1".to_owned()]);
        let err = verifier
            .verify_client_cert(&chain[0], &chain[1..], now)
            .expect_err("revoked node accepted");
        assert!(matches!(
            err,
            rustls::Error::InvalidCertificate(CertificateError::Revoked)
        ));
    }

    #[test]
    fn a_request_cannot_pick_its_name_or_be_forged() {
        let (_tmp, chain, _) = issued();
        // The request carried no name; the leaf names only what the signer chose.
        let der = chain[0].clone();
        let (_, cert) = x509_parser::parse_x509_certificate(&der).expect("x509");
        let sans = cert
            .subject_alternative_name()
            .expect("san")
            .expect("present")
            .value
            .general_names
            .len();
        assert_eq!(sans, 1);
        let tampered = CertificateRequest::from_pem(
            "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"
                .to_owned(),
        )
        .expect("small");
        assert!(tampered.check().is_err());
        assert!(CertificateRequest::from_pem("x".repeat(9000)).is_err());
    }
}
