//! Fleet identity: one CA signs every node, coordinator and operator certificate, and the
//! certificate (not a message field) says who a peer is.
//!
//! The identity lives in the certificate as a DNS subject-alternative name
//! `<name>.<kind>.mcdnn` (also the common name), e.g. `cam-1.node.mcdnn`. Names are DNS labels, so
//! the SAN is a valid DNS name that TLS libraries check like any other.

mod ca;
mod csr;
mod files;
mod issuing;
mod load;
mod revoked;
mod role;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

pub use ca::{CA_CERT_FILE, CA_KEY_FILE, Ca, Enrolled, Validity};
pub use csr::{CertificateRequest, MAX_CSR_PEM_BYTES, store_issued};
pub use files::replace_atomically;
pub use issuing::{ISSUING_CERT_FILE, ISSUING_KEY_FILE, IssuingCa};
pub use load::Identity;
pub use revoked::{MAX_REVOKED, RevokedSet};
pub use role::OperatorRole;

/// DNS suffix of every fleet identity SAN.
pub const IDENTITY_DOMAIN: &str = "mcdnn";

/// What a certificate's holder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// A device or server node agent.
    Node,
    /// A coordinator replica.
    Coordinator,
    /// A human or tool using the admin API.
    Operator,
}

impl Kind {
    /// All kinds, for parsing and help texts.
    pub const ALL: [Kind; 3] = [Kind::Node, Kind::Coordinator, Kind::Operator];

    /// The label used in SANs and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Node => "node",
            Kind::Coordinator => "coordinator",
            Kind::Operator => "operator",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Kind {
    type Err = IdentityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Kind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| IdentityError::UnknownKind { kind: s.to_owned() })
    }
}

/// Who a peer is, as its certificate says.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId {
    pub kind: Kind,
    pub name: String,
}

impl PeerId {
    /// Builds an id after checking the name (see [`validate_name`]).
    pub fn new(kind: Kind, name: &str) -> Result<Self, IdentityError> {
        validate_name(name)?;
        Ok(PeerId {
            kind,
            name: name.to_owned(),
        })
    }

    /// The SAN DNS name carrying this identity, e.g. `cam-1.node.mcdnn`. Also the TLS server name
    /// to use when connecting to this peer by identity.
    pub fn dns_name(&self) -> String {
        format!("{}.{}.{IDENTITY_DOMAIN}", self.name, self.kind)
    }

    /// Parses `<name>.<kind>.mcdnn`; `None` if the string is not a fleet identity.
    pub fn from_dns_name(dns: &str) -> Option<Self> {
        let rest = dns.strip_suffix(IDENTITY_DOMAIN)?.strip_suffix('.')?;
        let (name, kind) = rest.rsplit_once('.')?;
        let kind = kind.parse().ok()?;
        PeerId::new(kind, name).ok()
    }

    /// Reads the identity from a DER certificate's SANs. Exactly one SAN must be a fleet identity.
    pub fn from_cert_der(der: &[u8]) -> Result<Self, IdentityError> {
        let bad = |reason: String| IdentityError::BadCertificate { reason };
        let (_, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| bad(format!("not a valid X.509 certificate: {e}")))?;
        let san = cert
            .subject_alternative_name()
            .map_err(|e| bad(format!("malformed subjectAltName extension: {e}")))?
            .ok_or(IdentityError::NoIdentity)?;
        let mut ids = san.value.general_names.iter().filter_map(|n| match n {
            x509_parser::extensions::GeneralName::DNSName(d) => PeerId::from_dns_name(d),
            _ => None,
        });
        let first = ids.next().ok_or(IdentityError::NoIdentity)?;
        if let Some(second) = ids.next() {
            return Err(IdentityError::AmbiguousIdentity {
                first: first.dns_name(),
                second: second.dns_name(),
            });
        }
        Ok(first)
    }
}

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind, self.name)
    }
}

/// Checks a node/coordinator/operator name: 1..=63 characters of `[a-z0-9-]`, not starting or
/// ending with `-` (a DNS label, so the identity SAN is a valid DNS name). `ca` is reserved
/// because `ca.key`/`ca.pem` are the CA's own files.
pub fn validate_name(name: &str) -> Result<(), IdentityError> {
    let invalid = |reason: &str| {
        Err(IdentityError::InvalidName {
            name: name.to_owned(),
            reason: reason.to_owned(),
        })
    };
    if name.is_empty() || name.len() > 63 {
        return invalid("must be 1 to 63 characters long");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return invalid("may only contain lowercase letters a-z, digits 0-9 and '-'");
    }
    if name.starts_with('-') || name.ends_with('-') {
        return invalid("must not start or end with '-'");
    }
    if name == "ca" {
        return invalid("'ca' is reserved for the fleet CA's own files");
    }
    Ok(())
}

/// What went wrong creating, loading or reading fleet identities.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("invalid name {name:?}: {reason}")]
    InvalidName { name: String, reason: String },
    #[error("unknown identity kind {kind:?}; expected node, coordinator or operator")]
    UnknownKind { kind: String },
    #[error("unknown operator role {role:?}; expected read-only or admin")]
    UnknownRole { role: String },
    #[error("invalid extra SAN {san:?}: {reason}")]
    InvalidSan { san: String, reason: String },
    #[error("invalid validity period: {reason}")]
    InvalidValidity { reason: String },
    #[error(
        "a fleet CA already exists in {dir}; refusing to overwrite it (load it instead, or choose \
         another directory)"
    )]
    CaExists { dir: PathBuf },
    #[error("{path} already exists; refusing to overwrite it (remove it first to re-enroll)")]
    FileExists { path: PathBuf },
    // The I/O error is part of the message rather than a `source`, so `{:#}` chains in
    // binaries do not print it twice.
    #[error("cannot read {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("cannot write {path}: {error}")]
    Write {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{path}: {reason}")]
    BadFile { path: PathBuf, reason: String },
    #[error(
        "{path} is readable by other users (mode {mode:o}); a private key must be private: run \
         `chmod 600 {path}` (and make its folder 0700), then start again"
    )]
    KeyExposed { path: PathBuf, mode: u32 },
    #[error("{key} does not belong to the certificate in {cert}; the CA files are mixed up")]
    KeyMismatch { key: PathBuf, cert: PathBuf },
    #[error("{path} holds a different fleet CA than the one signing; use a fresh output directory")]
    CaMismatch { path: PathBuf },
    #[error("{file} identifies {found}, not {expected:?}; is the name right?")]
    NameMismatch {
        file: PathBuf,
        found: String,
        expected: String,
    },
    #[error("bad certificate: {reason}")]
    BadCertificate { reason: String },
    #[error(
        "certificate carries no fleet identity (no SAN like <name>.node.mcdnn); it was not \
         issued by `mcdnnctl enroll`"
    )]
    NoIdentity,
    #[error("certificate carries two fleet identities ({first}, {second}); refusing to guess")]
    AmbiguousIdentity { first: String, second: String },
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_dns_labels() {
        for ok in ["cam-1", "a", "coord0", &"x".repeat(63)] {
            validate_name(ok).expect(ok);
        }
        for bad in [
            "",
            "Cam",
            "cam_1",
            "-a",
            "a-",
            "a.b",
            "ca",
            &"x".repeat(64),
            "é",
        ] {
            assert!(validate_name(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn dns_names_round_trip() {
        let id = PeerId::new(Kind::Coordinator, "coord-0").expect("valid");
        assert_eq!(id.dns_name(), "coord-0.coordinator.mcdnn");
        assert_eq!(PeerId::from_dns_name(&id.dns_name()), Some(id));
        for not_id in [
            "localhost",
            "x.mcdnn",
            "a.b.node.mcdnn",
            "a.robot.mcdnn",
            "A.node.mcdnn",
        ] {
            assert_eq!(PeerId::from_dns_name(not_id), None, "{not_id}");
        }
    }
}
