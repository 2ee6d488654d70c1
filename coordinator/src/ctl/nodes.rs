//! `mcdnnctl node approve-server NAME [--revoke]`: the operator's approval of a node for the
//! offload-server role (replicated; only approved nodes are planned as offload targets).

use std::io::Write;

use clap::Subcommand;

use super::cluster::{Target, post_write};
use crate::admin::ServerApprovalRequest;

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// Approve NAME for the offload-server role (other devices will send it their frames).
    ApproveServer {
        /// The node's certificate name.
        name: String,
        /// Withdraw the approval instead.
        #[arg(long)]
        revoke: bool,
        #[command(flatten)]
        target: Target,
    },
}

pub fn node(cmd: &NodeCommand, out: &mut dyn Write) -> anyhow::Result<()> {
    match cmd {
        NodeCommand::ApproveServer {
            name,
            revoke,
            target,
        } => {
            protocol::identity::validate_name(name)?;
            let body = serde_json::to_string(&ServerApprovalRequest { approved: !revoke })?;
            let ack = post_write(target, &format!("/v1/nodes/{name}/server"), &body)?;
            let what = if *revoke { "withdrawn" } else { "approved" };
            writeln!(
                out,
                "server role of {name} {what}, committed at index {}",
                ack.index
            )?;
        }
    }
    Ok(())
}
