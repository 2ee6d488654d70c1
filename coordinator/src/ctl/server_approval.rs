//! `mcdnnctl node approve-server NAME [--revoke]`: the operator's approval of a node for the
//! offload-server role (replicated; only approved nodes are planned as offload targets).

use std::io::Write;

use super::cluster::{Target, post_write};
use crate::admin::ServerApprovalRequest;

/// Approves NAME for the offload-server role, or withdraws the approval.
pub fn approve(
    name: &str,
    revoke: bool,
    target: &Target,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    net::identity::validate_name(name)?;
    let body = serde_json::to_string(&ServerApprovalRequest { approved: !revoke })?;
    let ack = post_write(target, &format!("/v1/nodes/{name}/server"), &body)?;
    let what = if revoke { "withdrawn" } else { "approved" };
    writeln!(
        out,
        "server role of {name} {what}, committed at index {}",
        ack.index
    )?;
    Ok(())
}
