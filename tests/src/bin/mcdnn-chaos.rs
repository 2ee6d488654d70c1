//! `mcdnn-chaos SCENARIO [--json] [--partition-s N] [--kills N] [--nodes N] [--cut-s N]`: runs a
//! named fault scenario against real coordinator and node processes on this machine and prints
//! its figures. Exit status 1 when the scenario's checks fail.

use std::time::Duration;

use anyhow::Context;
use mcdnn_tests::chaos::{self, Options, SCENARIOS};
use mcdnn_tests::raft_chaos;

/// The replicated-coordinator scenarios.
const RAFT_SCENARIOS: [&str; 5] = [
    "leader-kill",
    "minority-partition",
    "rolling-restart",
    "bench-writes",
    "snapshot-restore",
];

fn usage() -> String {
    format!(
        "usage: mcdnn-chaos SCENARIO [--json] [--partition-s N] [--kills N] [--nodes N] [--cut-s N]\n       mcdnn-chaos bench transfer|offload\nscenarios: {}, {}",
        SCENARIOS.join(", "),
        RAFT_SCENARIOS.join(", ")
    )
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut scenario = None;
    let mut as_json = false;
    let mut opts = Options::default();
    // `bench transfer|offload`: figures against a same-run baseline (no ok/fail).
    let mut bench: Option<String> = None;
    let (mut kills, mut nodes, mut cut_s) = (20usize, 5usize, 10.0f64);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--json" => as_json = true,
            "--partition-s" => {
                let v: f64 = args
                    .next()
                    .context("--partition-s needs seconds")?
                    .parse()
                    .context("--partition-s")?;
                opts.partition = Duration::from_secs_f64(v.max(0.0));
            }
            "--kills" => {
                kills = args
                    .next()
                    .context("--kills needs a count")?
                    .parse()
                    .context("--kills")?
            }
            "--nodes" => {
                nodes = args
                    .next()
                    .context("--nodes needs a count")?
                    .parse()
                    .context("--nodes")?
            }
            "--cut-s" => {
                cut_s = args
                    .next()
                    .context("--cut-s needs seconds")?
                    .parse()
                    .context("--cut-s")?
            }
            "-h" | "--help" => {
                println!("{}", usage());
                return Ok(());
            }
            s if scenario.is_none() => scenario = Some(s.to_string()),
            s if scenario.as_deref() == Some("bench") && bench.is_none() => {
                bench = Some(s.to_string())
            }
            other => anyhow::bail!("unexpected argument {other:?}\n{}", usage()),
        }
    }
    let scenario = scenario.with_context(usage)?;
    if scenario == "bench" {
        let figures = mcdnn_tests::bench::run(&bench.context("bench needs transfer or offload")?)?;
        println!("{}", serde_json::to_string_pretty(&figures)?);
        return Ok(());
    }
    let result = match scenario.as_str() {
        "leader-kill" => raft_chaos::leader_kill(kills, nodes)?,
        "minority-partition" => raft_chaos::minority_partition(cut_s, nodes)?,
        "rolling-restart" => raft_chaos::rolling_restart(nodes)?,
        "bench-writes" => raft_chaos::write_bench(500, 8)?,
        "snapshot-restore" => mcdnn_tests::backup_chaos::snapshot_restore(500)?,
        _ => chaos::run(&scenario, &opts)?,
    };
    if as_json {
        println!("{}", serde_json::to_string(&result)?);
    } else {
        println!("{}", serde_json::to_string_pretty(&result)?);
    }
    if result["ok"].as_bool() != Some(true) {
        std::process::exit(1);
    }
    Ok(())
}
