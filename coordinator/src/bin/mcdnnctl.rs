//! `mcdnnctl`: operator CLI for an MCDNN fleet.

use std::io::Write;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use mcdnn_coordinator::ctl::identity::{self, CaInitArgs, EnrollArgs};
use mcdnn_coordinator::ctl::{
    bench, cluster, demo, fleet_bench, fleet_view, plan_bench, snapshot, watchlist,
};

#[derive(Debug, Parser)]
#[command(name = "mcdnnctl", version, about = "Operate an MCDNN fleet")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Manage the fleet certificate authority.
    Ca {
        #[command(subcommand)]
        command: CaCommand,
    },
    /// Issue a node, coordinator or operator certificate signed by the fleet CA.
    Enroll(EnrollArgs),
    /// Run a local fleet (coordinator + node agents) with a live view and a summary.
    Demo(demo::DemoArgs),
    /// The coordinator replica set.
    Cluster {
        #[command(subcommand)]
        command: cluster::ClusterCommand,
    },
    /// Replicated fleet policies (budgets).
    Policy {
        #[command(subcommand)]
        command: cluster::PolicyCommand,
    },
    /// Add or remove coordinator replicas.
    Members {
        #[command(subcommand)]
        command: cluster::MembersCommand,
    },
    /// The fleet's nodes as the leader sees them; enrollment tokens and revocation.
    #[command(visible_alias = "node")]
    Nodes {
        #[command(subcommand)]
        command: fleet_view::NodesCommand,
    },
    /// The watchlist nodes match faces against: names and descriptors (never photos).
    Watchlist {
        #[command(subcommand)]
        command: watchlist::WatchlistCommand,
    },
    /// A live view of the fleet: per node battery, rate, accuracy and variants.
    Top(fleet_view::TopArgs),
    /// GET any operator API path and print the answer (like `kubectl get --raw`), e.g.
    /// `mcdnnctl api /status`.
    Api {
        /// The path, e.g. /status.
        path: String,
        #[command(flatten)]
        target: cluster::Target,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completion {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
    /// Write man pages for mcdnnctl and its subcommands into a folder.
    Man {
        #[arg(long, default_value = "man")]
        /// Folder for the pages (created if missing).
        out: std::path::PathBuf,
    },
    /// Back up the replicated fleet state, or seed a new cluster from a backup.
    Snapshot {
        #[command(subcommand)]
        command: snapshot::SnapshotCommand,
    },
    /// Benchmarks that print figures.
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Telemetry messages/s one coordinator ingests from N virtual nodes over real QUIC.
    Telemetry(bench::TelemetryBenchArgs),
    /// Raft bytes per solve (full plan vs delta) and re-solve time (warm vs cold start).
    Plan(plan_bench::PlanBenchArgs),
    /// Telemetry change -> new assignment latency, coordinator CPU/RSS and Raft bytes/s with N
    /// virtual nodes over real QUIC against a real replica set.
    Fleet(fleet_bench::FleetBenchArgs),
}

#[derive(Debug, Subcommand)]
enum CaCommand {
    /// Create a new fleet CA (refuses to overwrite an existing one).
    Init(CaInitArgs),
    /// Sign an issuing CA for the coordinators with the (offline) root CA.
    Issuing(identity::CaIssuingArgs),
}

fn print_telemetry_figure(out: &mut impl Write, f: &bench::TelemetryFigure) -> anyhow::Result<()> {
    let offered = if f.rate_per_node > 0.0 {
        format!("{}/s each", f.rate_per_node)
    } else {
        "unpaced".into()
    };
    writeln!(
        out,
        "{} connections flooding ({} joined, {} reporting, telemetry {offered}), {:.1} s window:",
        f.nodes, f.nodes_joined, f.nodes_reporting, f.seconds
    )?;
    let share = |what: &str, s: &bench::Share, rate: f64| {
        format!(
            "  {what:<9} {} of {} connections got through; per connection min/p50/max {}/{}/{}; Jain {:.3}; {rate:.0}/s ingested ({} in all)",
            s.got_through, f.nodes, s.min, s.p50, s.max, s.jain, s.total
        )
    };
    writeln!(
        out,
        "{}",
        share("telemetry", &f.telemetry, f.messages_per_s)
    )?;
    writeln!(
        out,
        "{}",
        share("results", &f.results_share, f.results_per_s)
    )?;
    writeln!(
        out,
        "  telemetry over the per-node rate: {}; sessions lost under the flood: {}",
        f.telemetry_limited, f.sessions_lost
    )?;
    Ok(())
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match cli.command {
        Command::Ca {
            command: CaCommand::Init(args),
        } => identity::ca_init(&args, &mut stdout),
        Command::Ca {
            command: CaCommand::Issuing(args),
        } => identity::ca_issuing(&args, &mut stdout),
        Command::Enroll(args) => identity::enroll(&args, &mut stdout),
        Command::Bench {
            command: BenchCommand::Telemetry(args),
        } => {
            let rt = tokio::runtime::Runtime::new()?;
            let figures = rt.block_on(bench::telemetry_bench(&args))?;
            if args.json {
                writeln!(stdout, "{}", serde_json::to_string_pretty(&figures)?)?;
            } else {
                for f in figures {
                    print_telemetry_figure(&mut stdout, &f)?;
                }
            }
            Ok(())
        }
        Command::Bench {
            command: BenchCommand::Plan(args),
        } => {
            let figures = plan_bench::plan_bench(&args)?;
            if args.json {
                writeln!(stdout, "{}", serde_json::to_string_pretty(&figures)?)?;
            } else {
                for f in &figures {
                    writeln!(stdout, "{}", plan_bench::render(f))?;
                }
            }
            Ok(())
        }
        Command::Bench {
            command: BenchCommand::Fleet(args),
        } => {
            let rt = tokio::runtime::Runtime::new()?;
            let figure = rt.block_on(fleet_bench::fleet_bench(&args))?;
            if args.json {
                writeln!(stdout, "{}", serde_json::to_string_pretty(&figure)?)?;
            } else {
                writeln!(stdout, "{}", fleet_bench::render(&figure))?;
            }
            Ok(())
        }
        Command::Cluster { command } => cluster::cluster(&command, &mut stdout),
        Command::Policy { command } => cluster::policy(&command, &mut stdout),
        Command::Members { command } => cluster::members(&command, &mut stdout),
        Command::Snapshot { command } => snapshot::run(&command, &mut stdout),
        Command::Api { path, target } => cluster::raw_get(&path, &target, &mut stdout),
        Command::Nodes { command } => fleet_view::run(&command, &mut stdout),
        Command::Watchlist { command } => watchlist::run(&command, &mut stdout),
        Command::Top(args) => fleet_view::top(&args, &mut stdout),
        Command::Completion { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "mcdnnctl", &mut stdout);
            Ok(())
        }
        Command::Man { out } => {
            std::fs::create_dir_all(&out)?;
            clap_mangen::generate_to(Cli::command(), &out)?;
            writeln!(stdout, "man pages written to {}", out.display())?;
            Ok(())
        }
        Command::Demo(args) if args.compare => {
            let comparison = demo::compare(&args, &mut stdout)?;
            if args.json {
                writeln!(stdout, "{}", serde_json::to_string_pretty(&comparison)?)?;
            } else {
                write!(stdout, "{}", demo::comparison_table(&comparison))?;
            }
            Ok(())
        }
        Command::Demo(args) => {
            let summary = demo::run(&args, &mut stdout)?;
            if args.json {
                writeln!(stdout, "{}", serde_json::to_string_pretty(&summary)?)?;
            } else {
                write!(stdout, "{}", demo::summary_table(&summary))?;
            }
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line with the whole context chain; no backtrace for an operator's typo.
            eprintln!("mcdnnctl: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn every_flag_has_help_and_the_command_line_is_consistent() {
        config_file::check_command(&super::Cli::command()).unwrap();
    }
}
