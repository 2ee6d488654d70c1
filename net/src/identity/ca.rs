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

use super::files::{CERT_MODE, KEY_MODE, ensure_dir, read_private_key, read_text, write_new};
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
pub(super) const ORGANISATION: &str = "MCDNN fleet";

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

    /// From now until `lifetime` from now, backdated by a tenth of the lifetime (at most the
    /// usual hour of clock skew), so a short-lived certificate keeps most of its life ahead.
    pub fn lifetime(lifetime: Duration) -> Result<Self, IdentityError> {
        if lifetime.is_zero() || lifetime > DAY * MAX_VALIDITY_DAYS {
            return Err(IdentityError::InvalidValidity {
                reason: format!(
                    "{lifetime:?}; choose a positive lifetime up to {MAX_VALIDITY_DAYS} days"
                ),
            });
        }
        let now = SystemTime::now();
        let not_after =
            now.checked_add(lifetime)
                .ok_or_else(|| IdentityError::InvalidValidity {
                    reason: format!("now + {lifetime:?} is not representable"),
                })?;
        let skew = CLOCK_SKEW.min(lifetime / 10);
        Ok(Validity {
            not_before: now.checked_sub(skew).unwrap_or(now),
            not_after,
        })
    }

    pub(super) fn check(&self) -> Result<(OffsetDateTime, OffsetDateTime), IdentityError> {
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
        // Path length 1: the root signs leaves (offline `enroll`) and issuing CAs for the
        // coordinators (`ca issuing`), which in turn sign leaves only.
        let params = ca_params(
            format!("MCDNN fleet CA {}", key_tag(&key)),
            1,
            Validity::days(CA_VALIDITY_DAYS)?,
        )?;
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
        let (cert, key, pem) = load_signer(&dir.join(CA_KEY_FILE), &dir.join(CA_CERT_FILE))?;
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

    /// The root certificate (as issuer) and key, for signing an issuing CA.
    pub(super) fn signer(&self) -> (&Certificate, &KeyPair) {
        (&self.cert, &self.key)
    }

    /// Whether `ca.pem` must be copied to `ca_path`: `false` if the same CA is already there;
    /// an error if another CA is (mixing fleets in one folder breaks every identity in it).
    pub(super) fn needs_copy_at(&self, ca_path: &Path) -> Result<bool, IdentityError> {
        match std::fs::read_to_string(ca_path) {
            Ok(existing) if existing == self.pem => Ok(false),
            Ok(_) => Err(IdentityError::CaMismatch {
                path: ca_path.to_owned(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
            Err(error) => Err(IdentityError::Read {
                path: ca_path.to_owned(),
                error,
            }),
        }
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
        let copy_ca = self.needs_copy_at(&ca_path)?;

        let key = KeyPair::generate()?;
        let params = leaf_params(&peer, san_types, (not_before, not_after));
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

/// Loads a signing CA (the root, or an issuing CA): its key (refused if others can read it) and
/// certificate, checked to belong together. Returns the CA as rcgen's issuer, its key, and the
/// certificate PEM verbatim.
pub(super) fn load_signer(
    key_path: &Path,
    cert_path: &Path,
) -> Result<(Certificate, KeyPair, String), IdentityError> {
    let key_pem = read_private_key(key_path)?;
    let pem = read_text(cert_path)?;
    let key = KeyPair::from_pem(&key_pem).map_err(|e| IdentityError::BadFile {
        path: key_path.to_owned(),
        reason: format!("not a PEM private key: {e}"),
    })?;
    let bad_cert = |reason: String| IdentityError::BadFile {
        path: cert_path.to_owned(),
        reason,
    };
    let der = rustls_pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| bad_cert(format!("not a PEM certificate: {e}")))?;
    let (_, parsed) = x509_parser::parse_x509_certificate(&der)
        .map_err(|e| bad_cert(format!("not an X.509 certificate: {e}")))?;
    if parsed.public_key().raw != key.public_key_der().as_slice() {
        return Err(IdentityError::KeyMismatch {
            key: key_path.to_owned(),
            cert: cert_path.to_owned(),
        });
    }
    let params = CertificateParams::from_ca_cert_der(&der)
        .map_err(|e| bad_cert(format!("cannot use as a CA: {e}")))?;
    // Re-signing yields an issuer with the same subject and key identifier as the file, which is
    // all rcgen needs to sign leaves; the file itself stays the copy peers see.
    let cert = params.self_signed(&key)?;
    Ok((cert, key, pem))
}

/// Parameters of every leaf certificate, whoever signs it (the root offline, or an issuing CA
/// from a certificate request): the identity SAN (and CN), both server and client
/// authentication (nodes also serve offload), never a CA.
pub(super) fn leaf_params(
    peer: &PeerId,
    sans: Vec<SanType>,
    (not_before, not_after): (OffsetDateTime, OffsetDateTime),
) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.subject_alt_names = sans;
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
    params
}

/// Parameters of a CA certificate: its name, how many CAs may sit below it, its lifetime.
pub(super) fn ca_params(
    common_name: String,
    path_len: u8,
    validity: Validity,
) -> Result<CertificateParams, IdentityError> {
    let (not_before, not_after) = validity.check()?;
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params
        .distinguished_name
        .push(DnType::OrganizationName, ORGANISATION);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(path_len));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = not_before;
    params.not_after = not_after;
    Ok(params)
}

/// A per-key tag for CA common names: peers look issuers up by name, so two CAs with one name
/// would fail as "bad signature" instead of the clearer "unknown issuer".
pub(super) fn key_tag(key: &KeyPair) -> String {
    let digest = Sha256::digest(key.public_key_der());
    hex::encode(digest.get(..4).unwrap_or_default())
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

pub(super) fn to_san_type(san: &str) -> Result<SanType, IdentityError> {
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
