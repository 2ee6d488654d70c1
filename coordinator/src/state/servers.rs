//! Which nodes an operator approved for the offload-server role. A node's Hello may claim the
//! role, but only an approved identity is ever planned as an offload target: other devices send
//! it their frames, so the claim alone must not be enough.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::outcome::ApplyOutcome;

/// Longest operator name recorded as the approver.
const MAX_APPROVER_LEN: usize = 128;

/// One approval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerApproval {
    /// The operator (certificate name) who approved it.
    pub by: String,
    /// Raft index it was applied at.
    pub index: u64,
}

/// Approved offload servers by node name.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServerApprovals {
    approved: BTreeMap<String, ServerApproval>,
}

impl ServerApprovals {
    /// Applies `SetServerApproval`. Invalid names are refused and change nothing.
    pub fn apply(&mut self, index: u64, node_id: &str, approved: bool, by: &str) -> ApplyOutcome {
        if let Err(e) = net::identity::validate_name(node_id) {
            return ApplyOutcome::Rejected(format!("cannot approve a server: {e}"));
        }
        if by.is_empty() || by.len() > MAX_APPROVER_LEN {
            return ApplyOutcome::Rejected(format!(
                "the approver's name must be 1..={MAX_APPROVER_LEN} bytes"
            ));
        }
        if approved {
            self.approved.insert(
                node_id.to_string(),
                ServerApproval {
                    by: by.to_string(),
                    index,
                },
            );
            ApplyOutcome::Applied
        } else if self.approved.remove(node_id).is_some() {
            ApplyOutcome::Applied
        } else {
            ApplyOutcome::Duplicate
        }
    }

    /// Whether `node_id` may serve offloads.
    pub fn is_approved(&self, node_id: &str) -> bool {
        self.approved.contains_key(node_id)
    }

    /// Every approval by node name.
    pub fn all(&self) -> &BTreeMap<String, ServerApproval> {
        &self.approved
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn approve_revoke_and_refuse_bad_names() {
        let mut s = ServerApprovals::default();
        assert_eq!(s.apply(2, "srv-1", true, "ops"), ApplyOutcome::Applied);
        assert!(s.is_approved("srv-1"));
        assert_eq!(s.all()["srv-1"].by, "ops");
        assert!(!s.is_approved("srv-10"), "names match exactly");
        assert_eq!(s.apply(3, "srv-1", false, "ops"), ApplyOutcome::Applied);
        assert!(!s.is_approved("srv-1"));
        assert_eq!(s.apply(4, "srv-1", false, "ops"), ApplyOutcome::Duplicate);
        assert!(matches!(
            s.apply(5, "../etc", true, "ops"),
            ApplyOutcome::Rejected(_)
        ));
        assert!(matches!(
            s.apply(6, "srv-2", true, ""),
            ApplyOutcome::Rejected(_)
        ));
        assert!(s.all().is_empty(), "refused writes change nothing");
    }
}
