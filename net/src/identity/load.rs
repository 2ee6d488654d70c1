//! Loading an enrolled identity (certificate, key, fleet CA) for TLS.

use std::path::Path;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::ca::CA_CERT_FILE;
use super::files::{read_private_key, read_text};
use super::{IdentityError, PeerId};

/// A process's own fleet identity: what it presents in TLS and which CA it trusts.
pub struct Identity {
    peer: PeerId,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    ca_certs: Vec<CertificateDer<'static>>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.debug_struct("Identity")
            .field("peer", &self.peer)
            .field("chain_len", &self.chain.len())
            .field("ca_certs", &self.ca_certs.len())
            .finish_non_exhaustive()
    }
}

impl Clone for Identity {
    fn clone(&self) -> Self {
        Identity {
            peer: self.peer.clone(),
            chain: self.chain.clone(),
            key: self.key.clone_key(),
            ca_certs: self.ca_certs.clone(),
        }
    }
}

impl Identity {
    /// Loads `<dir>/<name>.pem`, `<dir>/<name>.key` and `<dir>/ca.pem` as written by
    /// `mcdnnctl enroll`, and checks that the certificate is really `name`'s.
    pub fn load(dir: &Path, name: &str) -> Result<Identity, IdentityError> {
        let cert_path = dir.join(format!("{name}.pem"));
        let key_path = dir.join(format!("{name}.key"));
        let ca_path = dir.join(CA_CERT_FILE);
        let identity = Identity::parse(
            (read_text(&cert_path)?.as_bytes(), &cert_path),
            (read_private_key(&key_path)?.as_bytes(), &key_path),
            (read_text(&ca_path)?.as_bytes(), &ca_path),
        )?;
        if identity.peer.name != name {
            return Err(IdentityError::NameMismatch {
                file: cert_path,
                found: identity.peer.dns_name(),
                expected: name.to_owned(),
            });
        }
        Ok(identity)
    }

    /// Builds an identity from PEM text (e.g. mounted Kubernetes secrets): the certificate
    /// (leaf first, then any intermediates), its private key, and the fleet CA certificate(s).
    pub fn from_pem(
        cert_pem: &[u8],
        key_pem: &[u8],
        ca_pem: &[u8],
    ) -> Result<Identity, IdentityError> {
        Identity::parse(
            (cert_pem, Path::new("<certificate PEM>")),
            (key_pem, Path::new("<key PEM>")),
            (ca_pem, Path::new("<CA PEM>")),
        )
    }

    /// Parses the three PEM inputs; each comes with where it was read from, for error messages.
    fn parse(
        (cert_pem, cert_src): (&[u8], &Path),
        (key_pem, key_src): (&[u8], &Path),
        (ca_pem, ca_src): (&[u8], &Path),
    ) -> Result<Identity, IdentityError> {
        let bad = |path: &Path, reason: String| IdentityError::BadFile {
            path: path.to_owned(),
            reason,
        };
        let chain = CertificateDer::pem_slice_iter(cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(cert_src, format!("malformed PEM certificate: {e}")))?;
        let leaf = chain
            .first()
            .ok_or_else(|| bad(cert_src, "no certificate in the file".to_owned()))?;
        let peer = PeerId::from_cert_der(leaf)?;
        let key = PrivateKeyDer::from_pem_slice(key_pem)
            .map_err(|e| bad(key_src, format!("not a PEM private key: {e}")))?;
        let ca_certs = CertificateDer::pem_slice_iter(ca_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(ca_src, format!("malformed PEM certificate: {e}")))?;
        if ca_certs.is_empty() {
            return Err(bad(ca_src, "no CA certificate in the file".to_owned()));
        }
        Ok(Identity {
            peer,
            chain,
            key,
            ca_certs,
        })
    }

    /// Who this identity is.
    pub fn peer(&self) -> &PeerId {
        &self.peer
    }

    /// The certificate chain to present, leaf first.
    pub fn cert_chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }

    /// A copy of the private key (rustls configs take ownership).
    pub fn private_key(&self) -> PrivateKeyDer<'static> {
        self.key.clone_key()
    }

    /// When the leaf certificate is valid (`not_before`, `not_after`), for renewal schedules.
    pub fn validity(
        &self,
    ) -> Result<(std::time::SystemTime, std::time::SystemTime), IdentityError> {
        let leaf = self.chain.first().ok_or(IdentityError::NoIdentity)?;
        let (_, cert) = x509_parser::parse_x509_certificate(leaf).map_err(|e| {
            IdentityError::BadCertificate {
                reason: format!("not a valid X.509 certificate: {e}"),
            }
        })?;
        let at = |t: x509_parser::time::ASN1Time| {
            let secs = t.timestamp();
            let since = std::time::Duration::from_secs(secs.unsigned_abs());
            if secs >= 0 {
                std::time::UNIX_EPOCH + since
            } else {
                std::time::UNIX_EPOCH - since
            }
        };
        let v = cert.validity();
        Ok((at(v.not_before), at(v.not_after)))
    }

    /// The fleet CA certificate(s) peers must chain to.
    pub fn ca_certs(&self) -> &[CertificateDer<'static>] {
        &self.ca_certs
    }
}
