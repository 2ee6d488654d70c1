//! Device identity on the coordinator's node side: keeping the live revoked set (consulted by
//! every handshake's verifier) in step with the replicated list, pushing the list to nodes,
//! closing revoked sessions, and renewing certificates over an authenticated session.

use std::time::Duration;

use net::identity::RevokedSet;
use tokio_util::sync::CancellationToken;
use wire::msg::CoordMsg;

use super::registry::Nodes;
use crate::enrollment::Issuer;
use crate::raft::ReplicaHandle;

/// How often the replicated revoked list is copied into the live set. Revocation must close a
/// session within 1 s of its commit; 100 ms leaves most of that for the close itself.
const SYNC_INTERVAL: Duration = Duration::from_millis(100);
/// Default lifetime of certificates the issuing CA signs (enrollment and renewal).
pub const DEFAULT_LEAF_LIFETIME: Duration = Duration::from_secs(7 * 86_400);

/// The message telling nodes the current revoked list.
pub fn revocations_msg(revoked: &RevokedSet) -> CoordMsg {
    CoordMsg::Revocations {
        names: revoked.snapshot().iter().cloned().collect(),
    }
}

/// Copies the replicated revoked list into the live `revoked` set until `cancel`, and on every change
/// pushes it to the connected nodes. Runs on every replica: followers' handshakes refuse
/// revoked nodes too, so a revoked node cannot slip in through a replica during a failover.
pub async fn sync_revocations(
    raft: ReplicaHandle,
    revoked: RevokedSet,
    nodes: Nodes,
    cancel: CancellationToken,
) {
    let mut known = usize::MAX;
    loop {
        // Revocations only ever add names, so the count tells whether the list changed.
        let count = raft.with_state(|s| s.identity().revoked().len());
        if count != known {
            let names: Vec<String> =
                raft.with_state(|s| s.identity().revoked().keys().cloned().collect());
            revoked.replace(names);
            known = count;
            let msg = revocations_msg(&revoked);
            let senders: Vec<_> = nodes
                .lock()
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

/// What renewing over a session needs: the issuing CA (if this replica holds one) and the live
/// revoked set.
#[derive(Clone)]
pub struct Renewals {
    pub issuer: Option<std::sync::Arc<Issuer>>,
    pub revoked: RevokedSet,
}

/// Answers a node's renewal request: a new chain for the session's own name, or a refusal
/// (revoked, no issuing CA here, bad request). The session stays open either way; how often a
/// session may renew is its state machine's call ([`super::session_core`]).
pub fn renew(signer: &Renewals, node: &str, csr_pem: String) -> CoordMsg {
    let refuse = |reason: String| {
        tracing::warn!(node, %reason, "renewal refused");
        CoordMsg::RenewRefused { reason }
    };
    if signer.revoked.contains(node) {
        return refuse(format!("{node} is revoked; it cannot renew"));
    }
    let Some(issuer) = signer.issuer.as_deref() else {
        return refuse(
            "this coordinator holds no issuing CA (`mcdnnctl ca issuing`); renew offline"
                .to_owned(),
        );
    };
    match issuer.sign_node(node, csr_pem) {
        Ok(chain_pem) => {
            tracing::info!(node, "renewed a node certificate");
            CoordMsg::Renewed { chain_pem }
        }
        Err(e) => refuse(e),
    }
}
