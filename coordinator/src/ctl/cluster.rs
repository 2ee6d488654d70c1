//! `mcdnnctl cluster status|move-leader`, `mcdnnctl policy set|get` and `mcdnnctl members
//! list|add|remove`: the operator's view of the replica set and its replicated writes, over the
//! operator API. Reads print `-o table|json|yaml`; `cluster status` exits non-zero when a replica
//! is unreachable or the replicas do not agree on a leader.

use std::io::Write;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde::Serialize;

use super::http;
use super::output::{self, Format};
use crate::admin::{ClusterStatus, PolicyWriteRequest, WriteAck};

const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Args)]
pub struct Target {
    /// Operator API addresses of the replicas (host:port, what their `--admin` listens on),
    /// comma-separated. (`--coordinator` is the old name.)
    #[arg(
        long = "admin",
        alias = "coordinator",
        env = "MCDNN_ADMIN_ADDRS",
        value_delimiter = ',',
        default_value = "127.0.0.1:7480"
    )]
    pub admins: Vec<String>,
    #[command(flatten)]
    pub identity: OperatorIdentity,
    /// Output format of reads.
    #[arg(short = 'o', long = "output", value_enum, default_value_t)]
    pub output: Format,
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
    pub operator: String,
}

impl OperatorIdentity {
    pub fn client(&self) -> anyhow::Result<http::Client> {
        http::Client::load(&self.identity_dir, &self.operator)
    }
}

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Members, leader, term, commit index and lag, as every listed replica sees it. Exits
    /// non-zero when a replica is unreachable or the replicas do not agree on one leader.
    Status(Target),
    /// Hand leadership to the named replica (e.g. before maintenance on the leader's host).
    MoveLeader {
        /// Replica name, e.g. coord-2.
        to: String,
        #[command(flatten)]
        target: Target,
    },
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Write a policy through the leader (followers redirect). A number, a string, or `unset`.
    Set {
        /// Policy key (`mcdnnctl policy get` lists the known ones).
        key: String,
        /// The value: a number, a string, or `unset` to remove the key.
        value: String,
        /// A label for this writer's idempotency ids; the audit trail records it under the
        /// certificate's name (`NAME/LABEL`).
        #[arg(long)]
        writer: Option<String>,
        /// Idempotency id: a retried write with the same writer and id is applied once
        /// (default: the current time in nanoseconds).
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
    /// Every replica by name, with its Raft id, role and operator address.
    List(Target),
    /// Add a replica as a voter; it must be in every replica's --peers.
    Add {
        /// The replica's name (coord-2) or Raft id (ordinal + 1).
        #[arg(value_parser = parse_member)]
        id: u64,
        #[command(flatten)]
        target: Target,
    },
    /// Remove a replica. Refused when it would leave the group unable to commit.
    Remove {
        /// The replica's name (coord-2) or Raft id (ordinal + 1).
        #[arg(value_parser = parse_member)]
        id: u64,
        /// Allow shrinking below three voters (the group then survives no failure).
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        target: Target,
    },
}

/// A replica named as `coord-2` or by its Raft id `3`.
fn parse_member(s: &str) -> Result<u64, String> {
    s.parse::<u64>()
        .or_else(|_| crate::cluster::peers::id_of(s))
        .map_err(|e| format!("{s:?} is neither a replica name nor a Raft id: {e:#}"))
}

/// One replica's answer to `/cluster`, or why it gave none.
#[derive(Debug, Serialize)]
pub struct ReplicaView {
    pub admin: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<ClusterStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `/cluster` from every listed replica.
pub fn views(t: &Target) -> anyhow::Result<Vec<ReplicaView>> {
    let client = t.identity.client()?;
    Ok(t.admins
        .iter()
        .map(|admin| {
            let got = client.get(admin, "/cluster", TIMEOUT).and_then(|b| {
                serde_json::from_str::<ClusterStatus>(&b).context("parsing /cluster")
            });
            match got {
                Ok(s) => ReplicaView {
                    admin: admin.clone(),
                    status: Some(s),
                    error: None,
                },
                Err(e) => ReplicaView {
                    admin: admin.clone(),
                    status: None,
                    error: Some(format!("{e:#}")),
                },
            }
        })
        .collect())
}

/// Why the replica set is unhealthy, if it is: an unreachable replica, or no leader all agree on.
pub fn health_problem(views: &[ReplicaView]) -> Option<String> {
    let down: Vec<&str> = views
        .iter()
        .filter(|v| v.status.is_none())
        .map(|v| v.admin.as_str())
        .collect();
    if !down.is_empty() {
        return Some(format!("unreachable: {}", down.join(", ")));
    }
    let leaders: Vec<Option<u64>> = views
        .iter()
        .filter_map(|v| v.status.as_ref().map(|s| s.leader_id))
        .collect();
    match leaders.first() {
        Some(Some(l)) if leaders.iter().all(|x| *x == Some(*l)) => None,
        Some(_) => Some(format!("no leader all replicas agree on: {leaders:?}")),
        None => Some("no replica given".into()),
    }
}

pub fn status(t: &Target, out: &mut dyn Write) -> anyhow::Result<()> {
    let rows = views(t)?;
    output::emit(t.output, &rows, out, status_table)?;
    match health_problem(&rows) {
        Some(problem) => bail!("cluster unhealthy: {problem}"),
        None => Ok(()),
    }
}

fn status_table(rows: &Vec<ReplicaView>, out: &mut dyn Write) -> anyhow::Result<()> {
    writeln!(
        out,
        "{:<22} {:<10} {:>3} {:<10} {:<10} {:>6} {:>8} {:>8} {:>6}  lag (leader only)",
        "admin", "replica", "id", "role", "leader", "term", "commit", "applied", "epoch"
    )?;
    for row in rows {
        match (&row.status, &row.error) {
            (Some(s), _) => writeln!(
                out,
                "{:<22} {:<10} {:>3} {:<10} {:<10} {:>6} {:>8} {:>8} {:>6}  {}",
                row.admin,
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
            (None, e) => writeln!(
                out,
                "{:<22} unreachable: {}",
                row.admin,
                e.as_deref().unwrap_or("")
            )?,
        }
    }
    Ok(())
}

/// `mcdnnctl api PATH`: the body of the first replica's 200 answer.
pub fn raw_get(path: &str, t: &Target, out: &mut dyn Write) -> anyhow::Result<()> {
    anyhow::ensure!(path.starts_with('/'), "the path must start with /");
    let client = t.identity.client()?;
    let mut errors = Vec::new();
    for admin in &t.admins {
        match client.get(admin, path, TIMEOUT) {
            Ok(body) => {
                write!(out, "{body}")?;
                return Ok(());
            }
            Err(e) => errors.push(format!("{e:#}")),
        }
    }
    bail!("{}", errors.join("; "))
}

/// Posts to the first replica that answers; followers redirect to the leader.
pub(super) fn post(t: &Target, path: &str, body: &str) -> anyhow::Result<http::Response> {
    let client = t.identity.client()?;
    let mut last = None;
    for admin in &t.admins {
        match client.post_json(admin, path, body, TIMEOUT) {
            Ok(r) if r.status == 200 => return Ok(r),
            Ok(r) => last = Some(format!("{admin}: HTTP {}: {}", r.status, r.body.trim())),
            Err(e) => last = Some(format!("{admin}: {e:#}")),
        }
    }
    bail!(
        "not acknowledged: {}",
        last.unwrap_or_else(|| "no coordinator given".into())
    )
}

pub(crate) fn post_write(t: &Target, path: &str, body: &str) -> anyhow::Result<WriteAck> {
    serde_json::from_str(&post(t, path, body)?.body).context("parsing the acknowledgement")
}

pub fn cluster(cmd: &ClusterCommand, out: &mut dyn Write) -> anyhow::Result<()> {
    match cmd {
        ClusterCommand::Status(t) => status(t, out),
        ClusterCommand::MoveLeader { to, target } => {
            let body = serde_json::json!({ "to": to }).to_string();
            let r = post(target, crate::admin::leader::PATH, &body)?;
            write!(out, "{}", r.body)?;
            Ok(())
        }
    }
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
            let ack = post_write(target, "/policy", &serde_json::to_string(&req)?)?;
            writeln!(out, "committed at index {}", ack.index)?;
        }
        PolicyCommand::Get(t) => {
            let admin = t.admins.first().context("no coordinator given")?;
            let body = t.identity.client()?.get(admin, "/policy", TIMEOUT)?;
            let v: serde_json::Value = serde_json::from_str(&body).context("parsing /policy")?;
            output::emit(t.output, &v, out, policy_table)?;
        }
    }
    Ok(())
}

/// Current values as `key value`, then the log's last entries.
fn policy_table(v: &serde_json::Value, out: &mut dyn Write) -> anyhow::Result<()> {
    writeln!(out, "{:<32} VALUE", "KEY")?;
    if let Some(map) = v["policies"].as_object() {
        for (k, value) in map {
            writeln!(out, "{k:<32} {}", plain(value))?;
        }
    }
    let log = v["log"].as_array().map_or(&[][..], Vec::as_slice);
    writeln!(
        out,
        "\n{:>8}  {:<32} {:<16} {:<24} WRITE_ID",
        "INDEX", "KEY", "VALUE", "WRITER"
    )?;
    for w in log.iter().rev().take(20).rev() {
        writeln!(
            out,
            "{:>8}  {:<32} {:<16} {:<24} {}",
            w["index"],
            plain(&w["key"]),
            plain(&w["value"]),
            plain(&w["writer"]),
            w["write_id"]
        )?;
    }
    Ok(())
}

/// A JSON value as people read it: strings unquoted, `{"Number": 1.0}` as `1`.
fn plain(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Object(m) if m.len() == 1 => {
            m.values().next().map_or_else(String::new, plain)
        }
        other => other.to_string(),
    }
}

pub fn members(cmd: &MembersCommand, out: &mut dyn Write) -> anyhow::Result<()> {
    let (body, target) = match cmd {
        MembersCommand::List(t) => {
            let rows = views(t)?;
            let members = rows
                .iter()
                .find_map(|v| v.status.as_ref().map(|s| s.members.clone()))
                .context("no replica answered")?;
            return output::emit(t.output, &members, out, |ms, out| {
                writeln!(out, "{:<16} {:>3} {:<8} ADMIN", "NAME", "ID", "ROLE")?;
                for m in ms {
                    writeln!(out, "{:<16} {:>3} {:<8} {}", m.name, m.id, m.role, m.admin)?;
                }
                Ok(())
            });
        }
        MembersCommand::Add { id, target } => (serde_json::json!({ "add": id }), target),
        MembersCommand::Remove { id, force, target } => {
            (serde_json::json!({ "remove": id, "force": force }), target)
        }
    };
    let ack = post_write(target, "/members", &body.to_string())?;
    writeln!(out, "membership change committed at index {}", ack.index)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(admin: &str, leader: Option<u64>) -> ReplicaView {
        let status: ClusterStatus = serde_json::from_value(serde_json::json!({
            "replica": admin, "id": 1, "role": "Follower", "leader_id": leader,
            "leader_name": null, "term": 2, "commit": 3, "applied": 3, "first_index": 1,
            "last_index": 3, "voters": [1, 2, 3], "learners": [], "lag": {}, "plan_epoch": 0,
            "policy_writes": 0, "registered_nodes": 0, "catalog_index": 0
        }))
        .expect("status");
        ReplicaView {
            admin: admin.into(),
            status: Some(status),
            error: None,
        }
    }

    #[test]
    fn members_are_named_or_numbered() {
        assert_eq!(parse_member("coord-2"), Ok(3));
        assert_eq!(parse_member("3"), Ok(3));
        assert!(parse_member("coordinator").is_err());
    }

    #[test]
    fn health_needs_every_replica_and_one_agreed_leader() {
        assert_eq!(
            health_problem(&[view("a", Some(2)), view("b", Some(2))]),
            None
        );
        assert!(health_problem(&[view("a", Some(2)), view("b", Some(3))]).is_some());
        assert!(health_problem(&[view("a", None)]).is_some());
        let down = ReplicaView {
            admin: "c".into(),
            status: None,
            error: Some("refused".into()),
        };
        assert!(
            health_problem(&[view("a", Some(2)), down])
                .is_some_and(|p| p.contains("unreachable: c"))
        );
    }
}
