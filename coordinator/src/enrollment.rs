//! Enrollment without moving private keys, and revocation, as operations the operator API calls:
//! an admin makes a one-time token for a name (only its hash is replicated); a device sends a
//! certificate request with the token and gets a short-lived certificate from the issuing CA once
//! the token is consumed through Raft; an admin revokes a name. The HTTP glue lives in
//! `admin::identity`; everything here is independent of it.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use net::clock::SharedClock;
use net::identity::{CertificateRequest, IssuingCa, Kind, PeerId, RevokedSet, Validity};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::raft::{ProposeError, ReplicaHandle};
use crate::rate::TokenBucket;
use crate::state::{Command, constant_time_eq};

/// Largest enrollment request body: a request (at most 8 KiB of PEM), a name and a token.
pub const MAX_ENROLL_BODY_BYTES: usize = 16 * 1024;
/// Enrollment attempts per second this replica accepts (burst [`ENROLL_BURST`]). The route is
/// open without a client certificate, so it must not let anyone spend the leader's Raft log or
/// CPU: beyond this, attempts get 429 at once.
pub const ENROLL_PER_S: f64 = 5.0;
/// Attempts accepted at once before the rate applies.
pub const ENROLL_BURST: f64 = 20.0;
/// Shortest and longest token lifetime an operator may ask for.
pub const TOKEN_TTL_RANGE: (Duration, Duration) =
    (Duration::from_secs(1), Duration::from_secs(30 * 86_400));
/// Default token lifetime.
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(3_600);

/// Why an identity operation was refused.
#[derive(Debug)]
pub enum Refusal {
    /// The request is malformed or names something invalid (400).
    BadRequest(String),
    /// The token or name is not acceptable (403).
    Forbidden(String),
    /// Too many attempts; retry later (429).
    TooMany(String),
    /// This replica cannot do it (no issuing CA) (503).
    Unavailable(String),
    /// Raft did not commit it (follower, rejected by the state machine, no quorum).
    Propose(ProposeError),
}

/// `POST /v1/tokens` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenRequest {
    pub name: String,
    /// Lifetime in seconds (default one hour).
    #[serde(default)]
    pub ttl_s: Option<f64>,
}

/// `POST /v1/tokens` answer: the secret, shown once.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenIssued {
    pub name: String,
    pub token: String,
    pub expires_unix_ms: u64,
}

/// `POST /v1/enroll` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EnrollRequest {
    pub name: String,
    pub token: String,
    pub csr_pem: String,
}

/// `POST /v1/enroll` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Enrolled {
    /// Leaf then issuing CA, PEM.
    pub chain_pem: String,
}

/// A token bucket shared by the enrollment route's handlers.
#[derive(Debug)]
pub struct RateLimit(Mutex<TokenBucket>);

impl RateLimit {
    pub fn new(per_s: f64, burst: f64, now: Instant) -> Self {
        RateLimit(Mutex::new(TokenBucket::new(per_s, burst, now)))
    }

    /// Takes one attempt at `now` if one is available.
    pub fn try_take(&self, now: Instant) -> bool {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .try_take_at(now)
    }
}

/// The issuing CA this replica holds and the lifetime of what it signs.
#[derive(Debug)]
pub struct Issuer {
    pub ca: IssuingCa,
    pub leaf_lifetime: Duration,
    /// Bounds enrollment attempts (the route is open without a client certificate).
    pub enroll_limit: RateLimit,
}

impl Issuer {
    /// Checks a request without signing it (so a bad one is refused before a token is spent).
    pub fn check_request(&self, request: &CertificateRequest) -> Result<(), String> {
        request.check().map_err(|e| e.to_string())
    }

    /// Signs a certificate for node `name` over the request's key. The name is the caller's
    /// decision (the token's name, or the renewing session's certificate), never the request's.
    pub fn sign_node(&self, name: &str, csr_pem: String) -> Result<String, String> {
        let peer = PeerId::new(Kind::Node, name).map_err(|e| e.to_string())?;
        let request = CertificateRequest::from_pem(csr_pem).map_err(|e| e.to_string())?;
        let validity = Validity::lifetime(self.leaf_lifetime).map_err(|e| e.to_string())?;
        self.ca
            .sign(&request, &peer, validity)
            .map_err(|e| e.to_string())
    }
}

/// Loads the issuing CA from `dir`, if there is one, with the leaf lifetime.
pub fn load_issuer(
    dir: &Path,
    leaf_lifetime: Duration,
    now: Instant,
) -> anyhow::Result<Option<Arc<Issuer>>> {
    let Some(ca) = IssuingCa::load(dir)
        .with_context(|| format!("loading the issuing CA from {}", dir.display()))?
    else {
        tracing::info!(dir = %dir.display(), "no issuing CA here: node enrollment and renewal are off on this replica");
        return Ok(None);
    };
    Ok(Some(Arc::new(Issuer {
        ca,
        leaf_lifetime,
        enroll_limit: RateLimit::new(ENROLL_PER_S, ENROLL_BURST, now),
    })))
}

/// What the identity operations use: Raft, the issuing CA if this replica holds one, the live
/// revoked set and the clock.
#[derive(Clone)]
pub struct Enrollment {
    pub raft: ReplicaHandle,
    pub issuer: Option<Arc<Issuer>>,
    pub revoked: RevokedSet,
    pub clock: SharedClock,
}

/// Parses `--leaf-lifetime-s`: positive, finite, at most ten years.
pub fn leaf_lifetime(seconds: f64) -> anyhow::Result<Duration> {
    anyhow::ensure!(
        (1.0..=3_650.0 * 86_400.0).contains(&seconds),
        "--leaf-lifetime-s must be between 1 s and 10 years, not {seconds}"
    );
    Ok(Duration::from_secs_f64(seconds))
}

fn node_name(name: &str) -> Result<PeerId, Refusal> {
    PeerId::new(Kind::Node, name).map_err(|e| Refusal::BadRequest(e.to_string()))
}

fn token_sha256(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Makes a one-time token for node `req.name`, replicates its hash, returns the secret.
pub async fn issue_token(
    hub: &Enrollment,
    req: TokenRequest,
    by: &str,
) -> Result<TokenIssued, Refusal> {
    node_name(&req.name)?;
    let ttl = match req.ttl_s {
        None => DEFAULT_TOKEN_TTL,
        Some(s) => Duration::try_from_secs_f64(s)
            .ok()
            .filter(|d| (TOKEN_TTL_RANGE.0..=TOKEN_TTL_RANGE.1).contains(d))
            .ok_or_else(|| {
                Refusal::BadRequest(format!(
                    "ttl_s {s} is out of range; choose {:?} to {:?}",
                    TOKEN_TTL_RANGE.0, TOKEN_TTL_RANGE.1
                ))
            })?,
    };
    let mut secret = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut secret);
    let token = hex::encode(secret);
    let now = hub.clock.unix_ms();
    let expires_unix_ms = now.saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX));
    let cmd = Command::IssueToken {
        name: req.name.clone(),
        sha256: token_sha256(&token),
        expires_unix_ms,
        now_unix_ms: now,
        by: by.to_owned(),
    };
    hub.raft.propose(cmd).await.map_err(Refusal::Propose)?;
    tracing::info!(node = %req.name, by, ttl_s = ttl.as_secs_f64(), "issued an enrollment token");
    Ok(TokenIssued {
        name: req.name,
        token,
        expires_unix_ms,
    })
}

/// Checks the request, consumes the token through Raft, then signs. Everything that can fail
/// without the token is checked first, so a malformed request does not burn a good token.
pub async fn enroll(hub: &Enrollment, req: EnrollRequest) -> Result<Enrolled, Refusal> {
    let Some(issuer) = hub.issuer.as_deref() else {
        return Err(Refusal::Unavailable(
            "this coordinator holds no issuing CA; enroll offline with `mcdnnctl enroll node`"
                .to_owned(),
        ));
    };
    if !issuer.enroll_limit.try_take(hub.clock.now()) {
        return Err(Refusal::TooMany(
            "too many enrollment attempts; retry in a few seconds".to_owned(),
        ));
    }
    node_name(&req.name)?;
    if req.token.len() > 128 {
        return Err(Refusal::BadRequest("the token is too long".to_owned()));
    }
    if hub.revoked.contains(&req.name) {
        return Err(Refusal::Forbidden(format!("{} is revoked", req.name)));
    }
    let request = CertificateRequest::from_pem(req.csr_pem.clone())
        .map_err(|e| Refusal::BadRequest(e.to_string()))?;
    issuer
        .check_request(&request)
        .map_err(Refusal::BadRequest)?;
    // A guess that cannot match is refused here, without a Raft entry: floods of wrong tokens
    // must not fill the log. The replicated redeem below stays the authority.
    let sha256 = token_sha256(&req.token);
    let plausible = hub.raft.with_state(|s| {
        s.identity()
            .tokens()
            .get(&req.name)
            .is_some_and(|t| constant_time_eq(&t.sha256, &sha256))
    });
    if !plausible {
        return Err(Refusal::Forbidden(format!(
            "wrong enrollment token for {} (or none is outstanding: never issued, used or replaced)",
            req.name
        )));
    }
    let cmd = Command::RedeemToken {
        name: req.name.clone(),
        sha256,
        now_unix_ms: hub.clock.unix_ms(),
    };
    match hub.raft.propose(cmd).await {
        Ok(_) => {}
        Err(ProposeError::Rejected { reason, .. }) => return Err(Refusal::Forbidden(reason)),
        Err(e) => return Err(Refusal::Propose(e)),
    }
    let chain_pem = issuer
        .sign_node(&req.name, req.csr_pem)
        .map_err(Refusal::BadRequest)?;
    tracing::info!(node = %req.name, "enrolled a node with a token");
    Ok(Enrolled { chain_pem })
}

/// Revokes node `name` through Raft.
pub async fn revoke(hub: &Enrollment, name: &str, by: &str) -> Result<u64, Refusal> {
    node_name(name)?;
    let index = hub
        .raft
        .propose(Command::Revoke {
            name: name.to_owned(),
            by: by.to_owned(),
        })
        .await
        .map_err(Refusal::Propose)?;
    tracing::warn!(node = name, by, "revoked a node");
    Ok(index)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_limit_allows_a_burst_then_refuses() {
        let now = Instant::now();
        let limit = RateLimit::new(0.001, 3.0, now);
        assert!((0..3).all(|_| limit.try_take(now)));
        assert!(!limit.try_take(now));
    }

    #[test]
    fn leaf_lifetimes_are_bounded() {
        assert!(leaf_lifetime(30.0).is_ok());
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, 1e12] {
            assert!(leaf_lifetime(bad).is_err(), "{bad}");
        }
    }
}
