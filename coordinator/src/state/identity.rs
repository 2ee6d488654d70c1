//! Replicated device-identity state: one-time enrollment tokens (only their hashes) and the
//! revocation list. Both live in [`super::FleetState`], so they survive failover and snapshots;
//! both are bounded so no operator mistake or flood can grow every replica without limit.
//! Times come inside the commands (the proposing leader's clock), never from the applying
//! replica's, so every replica reaches the same decision.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::outcome::ApplyOutcome;

/// Most outstanding (unused, unexpired) tokens; issuing more is refused until some are used or
/// expire. A fleet enrolls devices in batches far below this.
pub const MAX_TOKENS: usize = 10_000;
/// Most revoked names kept (the same bound nodes apply to the pushed list).
pub const MAX_REVOKED: usize = net::identity::MAX_REVOKED;

/// An outstanding enrollment token for one name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// sha256 of the secret; the secret itself is never replicated or stored.
    pub sha256: [u8; 32],
    /// Unix milliseconds after which it is refused.
    pub expires_unix_ms: u64,
    /// Operator who issued it (from the operator's certificate).
    pub issued_by: String,
    /// Raft index it was issued at.
    pub index: u64,
}

/// One revoked node name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    /// Operator who revoked it.
    pub by: String,
    /// Raft index of the revocation.
    pub index: u64,
}

/// Tokens by node name (one outstanding per name: a new token replaces the old) and revoked
/// node names.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IdentityState {
    tokens: BTreeMap<String, TokenRecord>,
    revoked: BTreeMap<String, Revocation>,
}

impl IdentityState {
    /// Records a token for `name`, replacing any earlier one; expired tokens are dropped first.
    pub fn issue(
        &mut self,
        index: u64,
        name: &str,
        token: TokenRecord,
        now_unix_ms: u64,
    ) -> ApplyOutcome {
        if self.revoked.contains_key(name) {
            return ApplyOutcome::Rejected(format!(
                "node {name} is revoked; a revoked name cannot be enrolled again"
            ));
        }
        if token.expires_unix_ms <= now_unix_ms {
            return ApplyOutcome::Rejected("the token would already be expired".to_owned());
        }
        self.tokens.retain(|_, t| t.expires_unix_ms > now_unix_ms);
        if self.tokens.len() >= MAX_TOKENS && !self.tokens.contains_key(name) {
            return ApplyOutcome::Rejected(format!(
                "{MAX_TOKENS} enrollment tokens are outstanding; wait until some are used or expire"
            ));
        }
        self.tokens
            .insert(name.to_owned(), TokenRecord { index, ..token });
        ApplyOutcome::Applied
    }

    /// Consumes `name`'s token if `sha256` matches and it has not expired. A wrong secret leaves
    /// the token in place (guessing must not let anyone burn another device's token).
    pub fn redeem(&mut self, name: &str, sha256: &[u8; 32], now_unix_ms: u64) -> ApplyOutcome {
        if self.revoked.contains_key(name) {
            return ApplyOutcome::Rejected(format!("node {name} is revoked"));
        }
        let Some(token) = self.tokens.get(name) else {
            return ApplyOutcome::Rejected(format!(
                "no enrollment token is outstanding for {name} (never issued, already used, or \
                 replaced); ask an operator for a new one"
            ));
        };
        if !constant_time_eq(&token.sha256, sha256) {
            return ApplyOutcome::Rejected(format!("wrong enrollment token for {name}"));
        }
        if token.expires_unix_ms <= now_unix_ms {
            self.tokens.remove(name);
            return ApplyOutcome::Rejected(format!(
                "the enrollment token for {name} has expired; ask an operator for a new one"
            ));
        }
        self.tokens.remove(name);
        ApplyOutcome::Applied
    }

    /// Revokes `name` (and drops any token for it). Revoking twice changes nothing.
    pub fn revoke(&mut self, index: u64, name: &str, by: &str) -> ApplyOutcome {
        if self.revoked.contains_key(name) {
            return ApplyOutcome::Duplicate;
        }
        if self.revoked.len() >= MAX_REVOKED {
            return ApplyOutcome::Rejected(format!(
                "the revocation list is full ({MAX_REVOKED} names); rotate the fleet CA"
            ));
        }
        self.tokens.remove(name);
        self.revoked.insert(
            name.to_owned(),
            Revocation {
                by: by.to_owned(),
                index,
            },
        );
        ApplyOutcome::Applied
    }

    /// Revoked node names with who revoked them.
    pub fn revoked(&self) -> &BTreeMap<String, Revocation> {
        &self.revoked
    }

    /// Outstanding tokens by name (hashes only).
    pub fn tokens(&self) -> &BTreeMap<String, TokenRecord> {
        &self.tokens
    }
}

/// Compares without an early exit, so the time taken does not tell how many bytes matched.
pub fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(secret: u8, expires: u64) -> TokenRecord {
        TokenRecord {
            sha256: [secret; 32],
            expires_unix_ms: expires,
            issued_by: "ops".into(),
            index: 0,
        }
    }

    #[test]
    fn a_token_is_used_once_by_its_name_before_it_expires() {
        let mut s = IdentityState::default();
        assert_eq!(
            s.issue(1, "cam-1", token(7, 1_000), 0),
            ApplyOutcome::Applied
        );
        assert!(matches!(
            s.redeem("cam-2", &[7; 32], 10),
            ApplyOutcome::Rejected(_)
        ));
        assert!(matches!(
            s.redeem("cam-1", &[8; 32], 10),
            ApplyOutcome::Rejected(_)
        ));
        assert_eq!(s.redeem("cam-1", &[7; 32], 10), ApplyOutcome::Applied);
        assert!(matches!(
            s.redeem("cam-1", &[7; 32], 11),
            ApplyOutcome::Rejected(_)
        ));
        s.issue(2, "cam-1", token(7, 1_000), 0);
        let ApplyOutcome::Rejected(why) = s.redeem("cam-1", &[7; 32], 1_000) else {
            panic!("expired token accepted");
        };
        assert!(why.contains("expired"), "{why}");
    }

    #[test]
    fn revoked_names_get_no_tokens_and_lose_theirs() {
        let mut s = IdentityState::default();
        s.issue(1, "cam-1", token(1, 100), 0);
        assert_eq!(s.revoke(2, "cam-1", "ops"), ApplyOutcome::Applied);
        assert_eq!(s.revoke(3, "cam-1", "ops"), ApplyOutcome::Duplicate);
        assert!(s.tokens().is_empty());
        assert!(matches!(
            s.issue(4, "cam-1", token(1, 100), 0),
            ApplyOutcome::Rejected(_)
        ));
        assert!(matches!(
            s.redeem("cam-1", &[1; 32], 0),
            ApplyOutcome::Rejected(_)
        ));
        assert_eq!(s.revoked()["cam-1"].by, "ops");
    }

    #[test]
    fn revocations_and_tokens_survive_a_snapshot() {
        use crate::state::{Command, FleetState};
        let mut s = FleetState::default();
        let issue = Command::IssueToken {
            name: "cam-1".into(),
            sha256: [3; 32],
            expires_unix_ms: 1_000,
            now_unix_ms: 0,
            by: "ops".into(),
        };
        assert_eq!(s.apply(1, &issue), ApplyOutcome::Applied);
        let revoke = Command::Revoke {
            name: "cam-2".into(),
            by: "ops".into(),
        };
        assert_eq!(s.apply(2, &revoke), ApplyOutcome::Applied);
        let restored = FleetState::from_snapshot_bytes(&s.to_snapshot_bytes().expect("encode"))
            .expect("decode");
        assert_eq!(restored.identity(), s.identity());
        assert!(restored.identity().revoked().contains_key("cam-2"));
        assert_eq!(restored.identity().tokens()["cam-1"].sha256, [3; 32]);
    }

    #[test]
    fn outstanding_tokens_are_bounded_and_expired_ones_pruned() {
        let mut s = IdentityState::default();
        for i in 0..MAX_TOKENS {
            assert_eq!(
                s.issue(1, &format!("n{i}"), token(1, 100), 0),
                ApplyOutcome::Applied
            );
        }
        assert!(matches!(
            s.issue(2, "extra", token(1, 100), 0),
            ApplyOutcome::Rejected(_)
        ));
        // Once the others expire they make room.
        assert_eq!(
            s.issue(3, "extra", token(1, 500), 200),
            ApplyOutcome::Applied
        );
        assert_eq!(s.tokens().len(), 1);
    }
}
