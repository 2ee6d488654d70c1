//! The issuing CA: an intermediate signed by the offline root, held by the coordinators, that
//! signs short-lived node certificates from certificate requests (token enrollment, renewal).
//! Leaves it signs are presented as `[leaf, issuing]`; every verifier still anchors at the
//! root `ca.pem`, so taking the root key offline changes nothing for peers.

use std::path::{Path, PathBuf};

use rcgen::{Certificate, KeyPair};

use super::ca::{Validity, ca_params, key_tag, leaf_params, load_signer, to_san_type};
use super::csr::CertificateRequest;
use super::files::{CERT_MODE, KEY_MODE, ensure_dir, write_new};
use super::{CA_CERT_FILE, Ca, IdentityError, PeerId};

/// File name of the issuing CA's private key.
pub const ISSUING_KEY_FILE: &str = "issuing.key";
/// File name of the issuing CA's certificate (signed by the root).
pub const ISSUING_CERT_FILE: &str = "issuing.pem";
/// Lifetime of an issuing CA: long enough to outlive many leaf rotations, short enough that a
/// leaked coordinator disk stops mattering within a year.
const ISSUING_VALIDITY_DAYS: u32 = 365;

/// A loaded issuing CA, able to sign leaves from certificate requests.
pub struct IssuingCa {
    cert: Certificate,
    key: KeyPair,
    /// `issuing.pem` verbatim: appended to every leaf it signs, so peers can build the path.
    pem: String,
}

impl std::fmt::Debug for IssuingCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.debug_struct("IssuingCa").finish_non_exhaustive()
    }
}

impl IssuingCa {
    /// Signs a new issuing CA with `root` and writes `issuing.key` (0600), `issuing.pem` and
    /// `ca.pem` into `out_dir` (a coordinator's identity folder). Refuses to overwrite.
    pub fn create(root: &Ca, out_dir: &Path) -> Result<PathBuf, IdentityError> {
        ensure_dir(out_dir)?;
        let key_path = out_dir.join(ISSUING_KEY_FILE);
        let cert_path = out_dir.join(ISSUING_CERT_FILE);
        let ca_path = out_dir.join(CA_CERT_FILE);
        for path in [&key_path, &cert_path] {
            if path.exists() {
                return Err(IdentityError::FileExists { path: path.clone() });
            }
        }
        let copy_ca = root.needs_copy_at(&ca_path)?;
        let key = KeyPair::generate()?;
        // Path length 0: it signs leaves only.
        let mut params = ca_params(
            format!("MCDNN fleet issuing CA {}", key_tag(&key)),
            0,
            Validity::days(ISSUING_VALIDITY_DAYS)?,
        )?;
        params.use_authority_key_identifier_extension = true;
        let (root_cert, root_key) = root.signer();
        let cert = params.signed_by(&key, root_cert, root_key)?;
        write_new(&key_path, key.serialize_pem().as_bytes(), KEY_MODE)?;
        write_new(&cert_path, cert.pem().as_bytes(), CERT_MODE)?;
        if copy_ca {
            write_new(&ca_path, root.cert_pem().as_bytes(), CERT_MODE)?;
        }
        Ok(cert_path)
    }

    /// Loads `issuing.key` and `issuing.pem` from `dir`; `Ok(None)` if neither exists (this
    /// coordinator holds no issuing CA and cannot enroll or renew).
    pub fn load(dir: &Path) -> Result<Option<IssuingCa>, IdentityError> {
        let key_path = dir.join(ISSUING_KEY_FILE);
        let cert_path = dir.join(ISSUING_CERT_FILE);
        if !key_path.exists() && !cert_path.exists() {
            return Ok(None);
        }
        let (cert, key, pem) = load_signer(&key_path, &cert_path)?;
        Ok(Some(IssuingCa { cert, key, pem }))
    }

    /// Signs a leaf for `peer` over the request's public key, valid for `validity`, and returns
    /// the chain to present (`leaf` then `issuing`, PEM). Only the key comes from the request:
    /// names, usages and lifetime are the coordinator's, so a request cannot ask for more.
    pub fn sign(
        &self,
        request: &CertificateRequest,
        peer: &PeerId,
        validity: Validity,
    ) -> Result<String, IdentityError> {
        let sans = vec![to_san_type(&peer.dns_name())?];
        let mut csr = request.params()?;
        csr.params = leaf_params(peer, sans, validity.check()?);
        let leaf = csr.signed_by(&self.cert, &self.key)?;
        Ok(format!("{}{}", leaf.pem(), self.pem))
    }
}
