//! Device identity on the coordinator's node side: keeping the live revoked set (consulted by
//! every handshake's verifier) in step with the replicated list, pushing the list to nodes,
//! closing revoked sessions, and renewing certificates over an authenticated session.

use std::sync::Arc;
use std::time::{Duration, Instant};

use net::identity::{CertificateRequest, IssuingCa, Kind, PeerId, Validity};
use tokio_util::sync::CancellationToken;
use wire::msg::CoordMsg;

use super::hub::Hub;

/// How often the replicated revoked list is copied into the live set. Revocation must close a
/// session within 1 s of its commit; 100 ms leaves most of that for the close itself.
const SYNC_INTERVAL: Duration = Duration::from_millis(100);
/// Default lifetime of certificates the issuing CA signs (enrollment and renewal).
pub const DEFAULT_LEAF_LIFETIME: Duration = Duration::from_secs(7 * 86_400);
/// Shortest gap between two renewals of one session: a node renews at 2/3 of a lifetime, so
/// more often than this is a misbehaving node, not a schedule.
const MIN_RENEW_GAP: Duration = Duration::from_secs(5);

/// The issuing CA this replica holds and the lifetime of what it signs.
#[derive(Debug)]
pub struct Issuer {
    pub ca: IssuingCa,
    pub leaf_lifetime: Duration,
    /// Bounds enrollment attempts (the route is open without a client certificate).
    pub enroll_limit: crate::enrollment::RateLimit,
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

/// The message telling nodes the current revoked list.
pub fn revocations_msg(hub: &Hub) -> CoordMsg {
    CoordMsg::Revocations {
        names: hub.revoked.snapshot().iter().cloned().collect(),
    }
}

/// Copies the replicated revoked list into [`Hub::revoked`] until `cancel`, and on every change
/// pushes it to the connected nodes. Runs on every replica: followers' handshakes refuse
/// revoked nodes too, so a revoked node cannot slip in through a replica during a failover.
pub async fn sync_revocations(hub: Arc<Hub>, cancel: CancellationToken) {
    let mut known = usize::MAX;
    loop {
        // Revocations only ever add names, so the count tells whether the list changed.
        let count = hub.raft.with_state(|s| s.identity().revoked().len());
        if count != known {
            let names: Vec<String> = hub
                .raft
                .with_state(|s| s.identity().revoked().keys().cloned().collect());
            hub.revoked.replace(names);
            known = count;
            let msg = revocations_msg(&hub);
            let senders: Vec<_> = hub
                .registry()
                .iter()
                .filter_map(|(_, e)| e.tx.clone())
                .collect();
            for tx in senders {
                // A full queue means a stuck node; it gets the list on its next session.
                let _ = tx.try_send(msg.clone());
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(SYNC_INTERVAL) => {}
        }
    }
}

/// Per-session renewal state: when it last renewed.
#[derive(Debug, Default)]
pub struct RenewGate {
    last: Option<Instant>,
}

/// Answers a node's renewal request: a new chain for the session's own name, or a refusal
/// (revoked, no issuing CA here, too frequent, bad request). The session stays open either way.
pub fn renew(hub: &Hub, node: &str, csr_pem: String, gate: &mut RenewGate) -> CoordMsg {
    let refuse = |reason: String| {
        tracing::warn!(node, %reason, "renewal refused");
        CoordMsg::RenewRefused { reason }
    };
    if hub.revoked.contains(node) {
        return refuse(format!("{node} is revoked; it cannot renew"));
    }
    if gate.last.is_some_and(|t| t.elapsed() < MIN_RENEW_GAP) {
        return refuse(format!(
            "renewals are limited to one per {MIN_RENEW_GAP:?} per session"
        ));
    }
    let Some(issuer) = hub.issuer.get() else {
        return refuse(
            "this coordinator holds no issuing CA (`mcdnnctl ca issuing`); renew offline"
                .to_owned(),
        );
    };
    gate.last = Some(Instant::now());
    match issuer.sign_node(node, csr_pem) {
        Ok(chain_pem) => {
            tracing::info!(node, "renewed a node certificate");
            CoordMsg::Renewed { chain_pem }
        }
        Err(e) => refuse(e),
    }
}
