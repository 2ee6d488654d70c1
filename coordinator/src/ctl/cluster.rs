//! `mcdnnctl cluster status`, `mcdnnctl policy set|get` and `mcdnnctl members add|remove`: the
//! operator's view of the replica set and its replicated writes, over the admin API.

use std::io::Write;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};

use super::http;
use crate::admin::{ClusterStatus, PolicyWriteRequest, WriteAck};

const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Args)]
pub struct Target {
    /// Admin API addresses of the replicas (host:port), comma-separated.
    #[arg(
        long = "coordinator",
        env = "MCDNN_ADMIN_ADDRS",
        value_delimiter = ',',
        default_value = "127.0.0.1:7480"
    )]
    pub admins: Vec<String>,
    #[command(flatten)]
    pub identity: OperatorIdentity,
    #[arg(long)]
    pub json: bool,
}

/// The operator certificate `mcdnnctl` presents to the operator API.
#[derive(Debug, Clone, Args)]
pub struct OperatorIdentity {
    /// Folder with `<name>.pem`, `<name>.key` and `ca.pem` of an operator certificate
    /// (`mcdnnctl enroll operator NAME --role admin|read-only`).
    #[arg(long, env = "MCDNN_IDENTITY_DIR", default_value = "fleet-ca")]
    pub identity_dir: std::path::PathBuf,
    /// The operator certificate's name.
    #[arg(long = "identity", env = "MCDNN_OPERATOR", default_value = "operator")]
    pub name: String,
}

impl OperatorIdentity {
    pub fn client(&self) -> anyhow::Result<http::Client> {
        http::Client::load(&self.identity_dir, &self.name)
    }
}

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Members, leader, term, commit index and lag, as every reachable replica sees it.
    Status(Target),
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Write a policy through the leader (followers redirect). A number, a string, or `unset`.
    Set {
        key: String,
        value: String,
        /// A label for this writer's idempotency ids; the audit trail records it under the
        /// certificate's name (`NAME/LABEL`).
        #[arg(long)]
        writer: Option<String>,
        /// Idempotency id: a retried write with the same writer and id is applied once.
        #[arg(long)]
        write_id: Option<u64>,
        #[command(flatten)]
        target: Target,
    },
    /// Current policies and the write log.
    Get(Target),
}

#[derive(Debug, Subcommand)]
pub enum MembersCommand {
    /// Add replica ID (ordinal + 1) as a voter; it must be in every replica's --peers.
    Add {
        id: u64,
        #[command(flatten)]
        target: Target,
    },
    /// Remove replica ID.
    Remove {
        id: u64,
        #[command(flatten)]
        target: Target,
    },
}

pub fn status(t: &Target, out: &mut dyn Write) -> anyhow::Result<()> {
    let client = t.identity.client()?;
    let mut rows = Vec::new();
    for admin in &t.admins {
        match client
            .get(admin, "/cluster", TIMEOUT)
            .and_then(|b| serde_json::from_str::<ClusterStatus>(&b).context("parsing /cluster"))
        {
            Ok(s) => rows.push((admin.clone(), Ok(s))),
            Err(e) => rows.push((admin.clone(), Err(format!("{e:#}")))),
        }
    }
    if t.json {
        let v: Vec<serde_json::Value> = rows
            .iter()
            .map(|(a, r)| match r {
                Ok(s) => serde_json::json!({"admin": a, "status": s}),
                Err(e) => serde_json::json!({"admin": a, "error": e}),
            })
            .collect();
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
        return Ok(());
    }
    writeln!(
        out,
        "{:<22} {:<10} {:>3} {:<10} {:<10} {:>6} {:>8} {:>8} {:>6}  lag (leader only)",
        "admin", "replica", "id", "role", "leader", "term", "commit", "applied", "epoch"
    )?;
    for (admin, r) in rows {
        match r {
            Ok(s) => writeln!(
                out,
                "{:<22} {:<10} {:>3} {:<10} {:<10} {:>6} {:>8} {:>8} {:>6}  {}",
                admin,
                s.replica,
                s.id,
                s.role,
                s.leader_name.clone().unwrap_or_else(|| "-".into()),
                s.term,
                s.commit,
                s.applied,
                s.plan_epoch,
                s.lag
                    .iter()
                    .map(|(id, l)| format!("{id}:{l}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            )?,
            Err(e) => writeln!(out, "{admin:<22} unreachable: {e}")?,
        }
    }
    Ok(())
}

/// Posts to the first replica that answers; followers redirect to the leader.
fn post(t: &Target, path: &str, body: &str) -> anyhow::Result<WriteAck> {
    let client = t.identity.client()?;
    let mut last = None;
    for admin in &t.admins {
        match client.post_json(admin, path, body, TIMEOUT) {
            Ok(r) if r.status == 200 => {
                return serde_json::from_str(&r.body).context("parsing the acknowledgement");
            }
            Ok(r) => last = Some(format!("{admin}: HTTP {}: {}", r.status, r.body.trim())),
            Err(e) => last = Some(format!("{admin}: {e:#}")),
        }
    }
    bail!(
        "write not acknowledged: {}",
        last.unwrap_or_else(|| "no coordinator given".into())
    )
}

pub fn policy(cmd: &PolicyCommand, out: &mut dyn Write) -> anyhow::Result<()> {
    match cmd {
        PolicyCommand::Set {
            key,
            value,
            writer,
            write_id,
            target,
        } => {
            let value = if value == "unset" {
                serde_json::Value::Null
            } else if let Ok(n) = value.parse::<f64>() {
                serde_json::json!(n)
            } else {
                serde_json::Value::String(value.clone())
            };
            let req = PolicyWriteRequest {
                key: key.clone(),
                value,
                writer: writer.clone(),
                write_id: write_id.unwrap_or_else(|| {
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_nanos() as u64)
                }),
            };
            let ack = post(target, "/policy", &serde_json::to_string(&req)?)?;
            writeln!(out, "committed at index {}", ack.index)?;
        }
        PolicyCommand::Get(t) => {
            let admin = t.admins.first().context("no coordinator given")?;
            writeln!(
                out,
                "{}",
                t.identity.client()?.get(admin, "/policy", TIMEOUT)?
            )?;
        }
    }
    Ok(())
}

pub fn members(cmd: &MembersCommand, out: &mut dyn Write) -> anyhow::Result<()> {
    let (body, target) = match cmd {
        MembersCommand::Add { id, target } => (serde_json::json!({ "add": id }), target),
        MembersCommand::Remove { id, target } => (serde_json::json!({ "remove": id }), target),
    };
    let ack = post(target, "/members", &body.to_string())?;
    writeln!(out, "membership change committed at index {}", ack.index)?;
    Ok(())
}
