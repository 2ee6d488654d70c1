//! The fleet CA: creating it, and signing node/coordinator/operator certificates with it.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, Ia5String,
    IsCa, KeyPair, KeyUsagePurpose, SanType,
};
use rustls_pki_types::pem::PemObject;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use super::files::{CERT_MODE, KEY_MODE, ensure_dir, read_text, write_new};
use super::{IDENTITY_DOMAIN, IdentityError, Kind, OperatorRole, PeerId};

/// File name of the CA's private key inside the CA directory.
pub const CA_KEY_FILE: &str = "ca.key";
/// File name of the CA certificate (also copied next to every enrolled identity).
pub const CA_CERT_FILE: &str = "ca.pem";

const DAY: Duration = Duration::from_secs(86_400);
/// Backdating of `not_before`, so a peer whose clock is a little behind accepts a fresh cert.
const CLOCK_SKEW: Duration = Duration::from_secs(3_600);
/// Lifetime of the fleet CA.
const CA_VALIDITY_DAYS: u32 = 3_650;
/// Longest validity accepted, far below where date encodings run out.
const MAX_VALIDITY_DAYS: u32 = 36_500;
/// Organisation in every subject, so certificates are recognisable in other tools.
const ORGANISATION: &str = "MCDNN fleet";

/// When a certificate is valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

impl Validity {
    /// From an hour ago (clock skew) until `days` from now.
    pub fn days(days: u32) -> Result<Self, IdentityError> {
        if days == 0 || days > MAX_VALIDITY_DAYS {
            return Err(IdentityError::InvalidValidity {
                reason: format!("{days} days; choose 1 to {MAX_VALIDITY_DAYS} days"),
            });
        }
        let now = SystemTime::now();
        let not_after =
            now.checked_add(DAY * days)
                .ok_or_else(|| IdentityError::InvalidValidity {
                    reason: format!("now + {days} days is not representable"),
                })?;
        Ok(Validity {
            not_before: now.checked_sub(CLOCK_SKEW).unwrap_or(now),
            not_after,
        })
    }

    fn check(&self) -> Result<(OffsetDateTime, OffsetDateTime), IdentityError> {
        if self.not_after <= self.not_before {
            return Err(IdentityError::InvalidValidity {
                reason: "not_after must be later than not_before".to_owned(),
            });
        }
        Ok((to_offset(self.not_before)?, to_offset(self.not_after)?))
    }
}

fn to_offset(t: SystemTime) -> Result<OffsetDateTime, IdentityError> {
    let secs = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).ok(),
        Err(e) => i64::try_from(e.duration().as_secs()).ok().map(|s| -s),
    };
    secs.and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
        .ok_or_else(|| IdentityError::InvalidValidity {
            reason: format!("{t:?} is outside the range a certificate can express"),
        })
}

/// A loaded fleet CA, able to sign certificates.
pub struct Ca {
    dir: PathBuf,
    /// The CA certificate as issuer (rebuilt from `ca.pem`, so leaves name it exactly).
    cert: Certificate,
    key: KeyPair,
    /// `ca.pem` verbatim, copied next to enrolled identities.
    pem: String,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.debug_struct("Ca")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// Paths and identity of a freshly enrolled certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enrolled {
    pub peer: PeerId,
    pub key_path: PathBuf,
    pub cert_path: PathBuf,
    pub ca_path: PathBuf,
    /// Every SAN written into the certificate.
    pub sans: Vec<String>,
    pub not_after: SystemTime,
}

impl Ca {
    /// Creates a new fleet CA in `dir` (`ca.key` mode 0600, `ca.pem`, self-signed, 10 years).
    /// Refuses if either file already exists: replacing a CA orphans every certificate it signed.
    pub fn init(dir: &Path) -> Result<Ca, IdentityError> {
        let key_path = dir.join(CA_KEY_FILE);
        let cert_path = dir.join(CA_CERT_FILE);
        if key_path.exists() || cert_path.exists() {
            return Err(IdentityError::CaExists {
                dir: dir.to_owned(),
            });
        }
        ensure_dir(dir)?;
        let key = KeyPair::generate()?;
        let (not_before, not_after) = Validity::days(CA_VALIDITY_DAYS)?.check()?;
        let mut params = CertificateParams::default();
        // A per-CA tag in the name: peers look issuers up by name, so two fleets' CAs with one
        // name would fail as "bad signature" instead of the clearer "unknown issuer".
        let digest = Sha256::digest(key.public_key_der());
        let tag = hex::encode(digest.get(..4).unwrap_or_default());
        params
            .distinguished_name
            .push(DnType::CommonName, format!("MCDNN fleet CA {tag}"));
        params
            .distinguished_name
            .push(DnType::OrganizationName, ORGANISATION);
        // Path length 0: the CA signs leaves only, never intermediate CAs.
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = not_before;
        params.not_after = not_after;
        let cert = params.self_signed(&key)?;
        let pem = cert.pem();
        write_new(&key_path, key.serialize_pem().as_bytes(), KEY_MODE)?;
        write_new(&cert_path, pem.as_bytes(), CERT_MODE)?;
        Ok(Ca {
            dir: dir.to_owned(),
            cert,
            key,
            pem,
        })
    }

    /// Loads the CA from `dir` and checks that key and certificate belong together.
    pub fn load(dir: &Path) -> Result<Ca, IdentityError> {
        let key_path = dir.join(CA_KEY_FILE);
        let cert_path = dir.join(CA_CERT_FILE);
        let key_pem = read_text(&key_path)?;
        let pem = read_text(&cert_path)?;
        let key = KeyPair::from_pem(&key_pem).map_err(|e| IdentityError::BadFile {
            path: key_path.clone(),
            reason: format!("not a PEM private key: {e}"),
        })?;
        let bad_cert = |reason: String| IdentityError::BadFile {
            path: cert_path.clone(),
            reason,
        };
        let der = rustls_pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
            .map_err(|e| bad_cert(format!("not a PEM certificate: {e}")))?;
        let (_, parsed) = x509_parser::parse_x509_certificate(&der)
            .map_err(|e| bad_cert(format!("not an X.509 certificate: {e}")))?;
        if parsed.public_key().raw != key.public_key_der().as_slice() {
            return Err(IdentityError::KeyMismatch {
                key: key_path,
                cert: cert_path,
            });
        }
        let params = CertificateParams::from_ca_cert_der(&der)
            .map_err(|e| bad_cert(format!("cannot use as a CA: {e}")))?;
        // Re-signing yields an issuer with the same subject and key identifier as `ca.pem`,
        // which is all rcgen needs to sign leaves; `ca.pem` itself stays the trusted copy.
        let cert = params.self_signed(&key)?;
        Ok(Ca {
            dir: dir.to_owned(),
            cert,
            key,
            pem,
        })
    }

    /// The CA directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The CA certificate in PEM, as stored in `ca.pem`.
    pub fn cert_pem(&self) -> &str {
        &self.pem
    }

    /// Signs a certificate valid for `validity_days` from now; see [`Ca::enroll_with`].
    pub fn enroll(
        &self,
        kind: Kind,
        name: &str,
        out_dir: &Path,
        extra_sans: &[String],
        validity_days: u32,
    ) -> Result<Enrolled, IdentityError> {
        self.enroll_with(
            kind,
            name,
            out_dir,
            extra_sans,
            Validity::days(validity_days)?,
        )
    }

    /// Creates `<name>.key` (0600) and `<name>.pem` in `out_dir`, signed by this CA, and copies
    /// `ca.pem` there. The certificate names `<name>.<kind>.mcdnn` (SAN and CN) and allows both
    /// server and client authentication (nodes also serve offload). Coordinators also get
    /// `localhost` and `127.0.0.1`; `extra_sans` (DNS names or IP addresses, e.g. Kubernetes pod
    /// hostnames) are added for any kind. Refuses to overwrite existing files.
    pub fn enroll_with(
        &self,
        kind: Kind,
        name: &str,
        out_dir: &Path,
        extra_sans: &[String],
        validity: Validity,
    ) -> Result<Enrolled, IdentityError> {
        self.issue(kind, name, out_dir, extra_sans, validity, None)
    }

    /// Signs an operator certificate carrying `role` (see [`OperatorRole`]), valid for
    /// `validity_days`; otherwise like [`Ca::enroll_with`].
    pub fn enroll_operator(
        &self,
        name: &str,
        out_dir: &Path,
        role: OperatorRole,
        validity_days: u32,
    ) -> Result<Enrolled, IdentityError> {
        let validity = Validity::days(validity_days)?;
        self.issue(Kind::Operator, name, out_dir, &[], validity, Some(role))
    }

    fn issue(
        &self,
        kind: Kind,
        name: &str,
        out_dir: &Path,
        extra_sans: &[String],
        validity: Validity,
        role: Option<OperatorRole>,
    ) -> Result<Enrolled, IdentityError> {
        let peer = PeerId::new(kind, name)?;
        let (not_before, not_after) = validity.check()?;
        let mut sans = vec![peer.dns_name()];
        if kind == Kind::Coordinator {
            sans.extend(["localhost".to_owned(), "127.0.0.1".to_owned()]);
        }
        for san in extra_sans {
            check_extra_san(san)?;
            if !sans.contains(san) {
                sans.push(san.clone());
            }
        }
        // Added after the check: the role SAN is under .mcdnn, which users may not pass.
        sans.extend(role.map(OperatorRole::san));
        let san_types = sans
            .iter()
            .map(|s| to_san_type(s))
            .collect::<Result<Vec<_>, _>>()?;

        ensure_dir(out_dir)?;
        let key_path = out_dir.join(format!("{name}.key"));
        let cert_path = out_dir.join(format!("{name}.pem"));
        let ca_path = out_dir.join(CA_CERT_FILE);
        for path in [&key_path, &cert_path] {
            if path.exists() {
                return Err(IdentityError::FileExists { path: path.clone() });
            }
        }
        let copy_ca = match std::fs::read_to_string(&ca_path) {
            Ok(existing) if existing == self.pem => false,
            Ok(_) => return Err(IdentityError::CaMismatch { path: ca_path }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
            Err(error) => {
                return Err(IdentityError::Read {
                    path: ca_path,
                    error,
                });
            }
        };

        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params.subject_alt_names = san_types;
        params
            .distinguished_name
            .push(DnType::CommonName, peer.dns_name());
        params
            .distinguished_name
            .push(DnType::OrganizationName, ORGANISATION);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        params.not_before = not_before;
        params.not_after = not_after;
        let cert = params.signed_by(&key, &self.cert, &self.key)?;

        write_new(&key_path, key.serialize_pem().as_bytes(), KEY_MODE)?;
        write_new(&cert_path, cert.pem().as_bytes(), CERT_MODE)?;
        if copy_ca {
            write_new(&ca_path, self.pem.as_bytes(), CERT_MODE)?;
        }
        Ok(Enrolled {
            peer,
            key_path,
            cert_path,
            ca_path,
            sans,
            not_after: validity.not_after,
        })
    }
}

/// Extra SANs may not look like fleet identities: the identity SAN must be unique and come only
/// from the kind and name the operator enrolled.
fn check_extra_san(san: &str) -> Result<(), IdentityError> {
    let lower = san.to_ascii_lowercase();
    if lower == IDENTITY_DOMAIN || lower.ends_with(&format!(".{IDENTITY_DOMAIN}")) {
        return Err(IdentityError::InvalidSan {
            san: san.to_owned(),
            reason: format!(
                "names under .{IDENTITY_DOMAIN} are reserved for fleet identities; pass the \
                 identity as kind and name instead"
            ),
        });
    }
    Ok(())
}

fn to_san_type(san: &str) -> Result<SanType, IdentityError> {
    if let Ok(ip) = san.parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    let valid = !san.is_empty()
        && san.len() <= 253
        && san.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    if !valid {
        return Err(IdentityError::InvalidSan {
            san: san.to_owned(),
            reason: "not an IP address or a DNS name of letters, digits, '-' and '.'".to_owned(),
        });
    }
    let ia5 = Ia5String::try_from(san.to_owned()).map_err(|e| IdentityError::InvalidSan {
        san: san.to_owned(),
        reason: e.to_string(),
    })?;
    Ok(SanType::DnsName(ia5))
}
