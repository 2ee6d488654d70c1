//! `mcdnn-chaos SCENARIO [--json] [--partition-s N]`: runs a named fault scenario against real
//! coordinator and node processes on this machine and prints its figures.

use std::time::Duration;

use anyhow::Context;
use mcdnn_tests::chaos::{self, Options, SCENARIOS};

fn usage() -> String {
    format!(
        "usage: mcdnn-chaos SCENARIO [--json] [--partition-s N]\nscenarios: {}",
        SCENARIOS.join(", ")
    )
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut scenario = None;
    let mut as_json = false;
    let mut opts = Options::default();
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
            "-h" | "--help" => {
                println!("{}", usage());
                return Ok(());
            }
            s if scenario.is_none() => scenario = Some(s.to_string()),
            other => anyhow::bail!("unexpected argument {other:?}\n{}", usage()),
        }
    }
    let scenario = scenario.with_context(usage)?;
    let result = chaos::run(&scenario, &opts)?;
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
