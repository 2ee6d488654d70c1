//! What an operator certificate allows: read-only or admin. The role travels in the certificate
//! as an extra DNS SAN `<role>.role.mcdnn`, set only at enrolment (extra SANs under `.mcdnn` are
//! refused from the command line), so a holder cannot raise its own role.

use std::fmt;
use std::str::FromStr;

use super::{IDENTITY_DOMAIN, IdentityError};

/// DNS label between the role and the fleet domain: `admin.role.mcdnn`.
const ROLE_LABEL: &str = "role";

/// An operator's permissions on the operator API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OperatorRole {
    /// May read every operator endpoint, write nothing. The default: least privilege.
    ReadOnly,
    /// May also write policies, change membership, revoke and approve nodes.
    Admin,
}

impl OperatorRole {
    pub const ALL: [OperatorRole; 2] = [OperatorRole::ReadOnly, OperatorRole::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            OperatorRole::ReadOnly => "read-only",
            OperatorRole::Admin => "admin",
        }
    }

    /// The SAN carrying this role.
    pub fn san(self) -> String {
        format!("{}.{ROLE_LABEL}.{IDENTITY_DOMAIN}", self.as_str())
    }

    /// Parses a role SAN; `None` if the name is not one.
    pub fn from_san(dns: &str) -> Option<Self> {
        let role = dns
            .strip_suffix(IDENTITY_DOMAIN)?
            .strip_suffix('.')?
            .strip_suffix(ROLE_LABEL)?
            .strip_suffix('.')?;
        role.parse().ok()
    }

    /// The role an operator certificate grants: the single role SAN it carries, read-only when it
    /// carries none. Two different role SANs are refused rather than guessed at.
    pub fn from_cert_der(der: &[u8]) -> Result<Self, IdentityError> {
        let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| {
            IdentityError::BadCertificate {
                reason: format!("not a valid X.509 certificate: {e}"),
            }
        })?;
        let Ok(Some(san)) = cert.subject_alternative_name() else {
            return Ok(OperatorRole::ReadOnly);
        };
        let mut roles = san.value.general_names.iter().filter_map(|n| match n {
            x509_parser::extensions::GeneralName::DNSName(d) => OperatorRole::from_san(d),
            _ => None,
        });
        let first = roles.next().unwrap_or(OperatorRole::ReadOnly);
        if roles.any(|r| r != first) {
            return Err(IdentityError::BadCertificate {
                reason: "certificate carries two different operator roles".to_owned(),
            });
        }
        Ok(first)
    }
}

impl fmt::Display for OperatorRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for OperatorRole {
    type Err = IdentityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        OperatorRole::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| IdentityError::UnknownRole { role: s.to_owned() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_sans_round_trip_and_others_are_not_roles() {
        for role in OperatorRole::ALL {
            assert_eq!(OperatorRole::from_san(&role.san()), Some(role));
        }
        for not_role in [
            "admin.mcdnn",
            "admin.node.mcdnn",
            "root.role.mcdnn",
            "admin.role.example",
        ] {
            assert_eq!(OperatorRole::from_san(not_role), None, "{not_role}");
        }
        assert!("superuser".parse::<OperatorRole>().is_err());
    }
}
