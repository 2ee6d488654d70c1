//! `mcdnn-chaos SCENARIO [flags] [--json]`: runs a named fault scenario against real coordinator
//! and node processes on this machine and prints its figures (JSON with at least `scenario`,
//! `ok`, `lost`, `duplicated`). Exit status 1 when the scenario's checks fail.
//! `mcdnn-chaos bench transfer|offload` prints benchmark figures instead.

use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use mcdnn_tests::chaos::{self, Options};
use mcdnn_tests::{raft_chaos, rogue_chaos};

#[derive(Parser)]
#[command(
    name = "mcdnn-chaos",
    version,
    about = "Fault scenarios against real MCDNN processes on this machine"
)]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
    /// Print the result as one JSON line instead of pretty JSON.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand)]
enum Scenario {
    /// A node fetching every variant is killed mid-download; restarted, it resumes and verifies.
    NodeCrashDuringDownload,
    /// Stored shards are corrupted on disk; the scrub detects, drops and refetches them.
    CorruptShard,
    /// The offload server is killed mid-run; devices fall back locally within the timeout.
    OffloadServerKill,
    /// A UDP proxy cuts a node off while it serves; its spool drains once after the heal.
    PartitionSpool {
        /// How long the node is cut off, seconds.
        #[arg(long, default_value_t = 30.0)]
        partition_s: f64,
    },
    /// The leader is SIGKILLed with a write in flight, again and again, under writes and nodes.
    LeaderKill {
        /// How many kills.
        #[arg(long, default_value_t = 20)]
        kills: usize,
        /// Node agents serving meanwhile.
        #[arg(long, default_value_t = 5)]
        nodes: usize,
    },
    /// The leader is cut off (iptables); it must not commit or push, the majority goes on.
    MinorityPartition {
        /// How long the leader is cut off, seconds.
        #[arg(long, default_value_t = 10.0)]
        cut_s: f64,
        /// Node agents serving meanwhile.
        #[arg(long, default_value_t = 5)]
        nodes: usize,
    },
    /// Every replica SIGTERMed and restarted in turn under writes and node load.
    RollingRestart {
        /// Node agents serving meanwhile.
        #[arg(long, default_value_t = 5)]
        nodes: usize,
    },
    /// Policy-write commit latency and throughput on a 3-replica cluster (audited).
    BenchWrites,
    /// A node with a valid certificate claims the server role, names unknown apps, reports inf.
    RogueNode,
    /// A node's store is wiped mid-run; nothing it accepted afterwards is lost.
    StoreWipe,
    /// Oversized and numerous operator writes are refused; every replica restarts cleanly.
    AdminFlood,
    /// A live node is revoked: session closed, handshakes refused, also after a leader kill.
    Revoke {
        /// Node agents serving meanwhile.
        #[arg(long, default_value_t = 5)]
        nodes: usize,
    },
    /// A backup saved under writes is restored into a new cluster with every earlier write.
    SnapshotRestore {
        /// Writes acknowledged before the save.
        #[arg(long, default_value_t = 500)]
        writes: usize,
    },
    /// A replica's data is wiped and it restarts with unchanged configuration, again and again.
    WipedReplica {
        /// How many wipe-and-restart rounds.
        #[arg(long, default_value_t = 20)]
        kills: usize,
    },
    /// Two devices replay the same skewed stream, one running the heads the leader trains at
    /// run time: accuracy, energy/request, answered, onset-to-serving.
    Specialise {
        /// How long the nodes serve, seconds.
        #[arg(long, default_value_t = 100.0)]
        run_s: f64,
        /// When the 90 % skew onto three classes starts and ends, seconds into the stream.
        #[arg(long, default_value_t = 10.0)]
        onset_s: f64,
        /// When the skew ends (the stream is uniform again), seconds into the stream.
        #[arg(long, default_value_t = 70.0)]
        until_s: f64,
        /// Each node's energy budget over the run, J.
        #[arg(long, default_value_t = 20.0)]
        energy_budget_j: f64,
    },
    /// Benchmarks against a baseline measured in the same run (no ok/fail).
    Bench {
        /// What to measure.
        what: BenchKind,
        /// The catalog `transfer` fetches (default: models/fleet.json, face models included).
        #[arg(long)]
        catalog: Option<std::path::PathBuf>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum BenchKind {
    /// Model shard transfer vs one raw QUIC stream.
    Transfer,
    /// Offload round trip vs local inference of the same variant.
    Offload,
}

fn run(scenario: Scenario) -> anyhow::Result<serde_json::Value> {
    Ok(match scenario {
        Scenario::NodeCrashDuringDownload => {
            chaos::run("node-crash-during-download", &Options::default())?
        }
        Scenario::CorruptShard => chaos::run("corrupt-shard", &Options::default())?,
        Scenario::OffloadServerKill => chaos::run("offload-server-kill", &Options::default())?,
        Scenario::PartitionSpool { partition_s } => chaos::run(
            "partition-spool",
            &Options {
                partition: Duration::from_secs_f64(partition_s.max(0.0)),
            },
        )?,
        Scenario::LeaderKill { kills, nodes } => raft_chaos::leader_kill(kills, nodes)?,
        Scenario::MinorityPartition { cut_s, nodes } => {
            raft_chaos::minority_partition(cut_s, nodes)?
        }
        Scenario::RollingRestart { nodes } => raft_chaos::rolling_restart(nodes)?,
        Scenario::BenchWrites => raft_chaos::write_bench(500, 8)?,
        Scenario::RogueNode => rogue_chaos::rogue_node(&Default::default())?,
        Scenario::StoreWipe => rogue_chaos::store_wipe(&Default::default())?,
        Scenario::AdminFlood => mcdnn_tests::admin_flood::run(&Default::default())?,
        Scenario::Revoke { nodes } => mcdnn_tests::revoke_chaos::run(nodes)?,
        Scenario::SnapshotRestore { writes } => {
            mcdnn_tests::backup_chaos::snapshot_restore(writes)?
        }
        Scenario::WipedReplica { kills } => mcdnn_tests::wiped_chaos::wiped_replica(kills)?,
        Scenario::Specialise {
            run_s,
            onset_s,
            until_s,
            energy_budget_j,
        } => mcdnn_tests::specialise::run(&mcdnn_tests::specialise::SpecialiseOptions {
            run_s,
            onset_s,
            until_s,
            energy_budget_j,
            ..Default::default()
        })?,
        Scenario::Bench { what, catalog } => mcdnn_tests::bench::run(
            match what {
                BenchKind::Transfer => "transfer",
                BenchKind::Offload => "offload",
            },
            catalog.as_deref(),
        )?,
    })
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let is_bench = matches!(cli.scenario, Scenario::Bench { .. });
    let result = run(cli.scenario)?;
    if cli.json {
        println!("{}", serde_json::to_string(&result)?);
    } else {
        println!("{}", serde_json::to_string_pretty(&result)?);
    }
    if !is_bench && result["ok"].as_bool() != Some(true) {
        std::process::exit(1);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn every_flag_has_help_and_the_command_line_is_consistent() {
        config_file::check_command(&super::Cli::command()).unwrap();
    }
}
