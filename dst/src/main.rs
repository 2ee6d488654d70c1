//! `mcdnn-dst`: runs a range of simulation seeds and prints each seed's summary, every failure
//! with the command that replays it, and seeds per second (the figure for the issue note).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use mcdnn_dst::{SimConfig, explain, run_seed, summary};

/// Deterministic simulation of the coordinator: three replicas and many nodes in one process.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// First seed to run.
    #[arg(long, default_value_t = 0)]
    first: u64,
    /// Number of seeds to run.
    #[arg(long, default_value_t = 20)]
    count: u64,
    /// Virtual nodes per seed.
    #[arg(long, default_value_t = SimConfig::default().nodes)]
    nodes: usize,
    /// Simulated seconds of faults per seed (a calm drain follows).
    #[arg(long, default_value_t = SimConfig::default().fault_phase.as_secs())]
    fault_secs: u64,
    /// Also wipe a replica's disk while another is still rejoining (two disk losses at once:
    /// shows the cluster stalling for good).
    #[arg(long)]
    double_disk_loss: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = SimConfig {
        nodes: cli.nodes.max(1),
        fault_phase: Duration::from_secs(cli.fault_secs),
        double_disk_loss: cli.double_disk_loss,
        ..SimConfig::default()
    };
    let started = Instant::now();
    let mut failed = 0;
    for seed in cli.first..cli.first.saturating_add(cli.count) {
        let r = run_seed(seed, &config);
        println!("{}", summary(&r));
        if !r.ok() {
            failed += 1;
            eprintln!("{}", explain(&r));
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{} seeds in {secs:.1}s: {:.2} seeds/s, {failed} failed",
        cli.count,
        cli.count as f64 / secs.max(1e-9)
    );
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn every_flag_has_help_and_the_command_line_is_consistent() {
        assert_eq!(config_file::check_command(&super::Cli::command()), Ok(()));
    }
}
