//! Certificate requests: the device side of enrollment and renewal. The device makes its key
//! locally and sends only a request (public key, signed with the key to prove possession); the
//! private key never leaves the device.

use std::path::Path;

use rcgen::{CertificateParams, CertificateSigningRequestParams, KeyPair};

use super::files::{CERT_MODE, KEY_MODE, ensure_dir, replace_atomically};
use super::{CA_CERT_FILE, IdentityError, PeerId};

/// Largest request accepted: a P-256 request is well under 1 KiB; anything near this bound is
/// not a request this fleet makes.
pub const MAX_CSR_PEM_BYTES: usize = 8 * 1024;

/// A PEM certificate request, bounded in size (checked before any parsing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateRequest {
    pem: String,
}

impl CertificateRequest {
    /// A new key pair and a request for it. The request names nobody: whoever signs it decides
    /// the identity (from the enrollment token, or from the renewing session's certificate).
    pub fn generate() -> Result<(String, CertificateRequest), IdentityError> {
        let key = KeyPair::generate()?;
        let csr = CertificateParams::default().serialize_request(&key)?;
        Ok((key.serialize_pem(), CertificateRequest { pem: csr.pem()? }))
    }

    /// Wraps received PEM text after checking its size.
    pub fn from_pem(pem: String) -> Result<CertificateRequest, IdentityError> {
        if pem.len() > MAX_CSR_PEM_BYTES {
            return Err(IdentityError::BadCertificate {
                reason: format!(
                    "certificate request of {} bytes; at most {MAX_CSR_PEM_BYTES} are accepted",
                    pem.len()
                ),
            });
        }
        Ok(CertificateRequest { pem })
    }

    /// The PEM text, to send.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// Checks that the request parses and is signed by the key it carries.
    pub fn check(&self) -> Result<(), IdentityError> {
        self.params().map(|_| ())
    }

    /// Parses the request and checks its self-signature (proof that the sender holds the key).
    pub(super) fn params(&self) -> Result<CertificateSigningRequestParams, IdentityError> {
        CertificateSigningRequestParams::from_pem(&self.pem).map_err(|e| {
            IdentityError::BadCertificate {
                reason: format!("not a valid, self-signed certificate request: {e}"),
            }
        })
    }
}

/// Stores a key and the chain signed for it as `<dir>/<name>.key` (0600) and `<dir>/<name>.pem`,
/// each replaced atomically, after checking that the chain's leaf is `name`'s and belongs to the
/// key. The key is written first: a crash between the two leaves the old certificate with a new
/// key, which fails loudly at load (`KeyMismatch`-style TLS error) rather than silently.
pub fn store_issued(
    dir: &Path,
    name: &str,
    key_pem: &str,
    chain_pem: &str,
) -> Result<(), IdentityError> {
    let identity = super::Identity::from_pem(
        chain_pem.as_bytes(),
        key_pem.as_bytes(),
        chain_pem.as_bytes(),
    )?;
    let peer: &PeerId = identity.peer();
    if peer.name != name {
        return Err(IdentityError::NameMismatch {
            file: dir.join(format!("{name}.pem")),
            found: peer.dns_name(),
            expected: name.to_owned(),
        });
    }
    let key = KeyPair::from_pem(key_pem).map_err(|e| IdentityError::BadCertificate {
        reason: format!("the new key is not a PEM private key: {e}"),
    })?;
    let leaf = identity
        .cert_chain()
        .first()
        .ok_or(IdentityError::NoIdentity)?;
    let (_, parsed) =
        x509_parser::parse_x509_certificate(leaf).map_err(|e| IdentityError::BadCertificate {
            reason: format!("the issued certificate is not X.509: {e}"),
        })?;
    if parsed.public_key().raw != key.public_key_der().as_slice() {
        return Err(IdentityError::BadCertificate {
            reason: "the issued certificate is for another key than the one requested".to_owned(),
        });
    }
    if !dir.join(CA_CERT_FILE).exists() {
        return Err(IdentityError::BadFile {
            path: dir.join(CA_CERT_FILE),
            reason: "missing: the fleet CA certificate must be given to the device out of band"
                .to_owned(),
        });
    }
    ensure_dir(dir)?;
    replace_atomically(
        &dir.join(format!("{name}.key")),
        key_pem.as_bytes(),
        KEY_MODE,
    )?;
    replace_atomically(
        &dir.join(format!("{name}.pem")),
        chain_pem.as_bytes(),
        CERT_MODE,
    )?;
    Ok(())
}
