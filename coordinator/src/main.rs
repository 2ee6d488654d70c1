//! `mcdnn-coordinator`: the fleet coordinator daemon.

use anyhow::Context;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

#[derive(Parser)]
#[command(name = "mcdnn-coordinator", version, about = "MCDNN fleet coordinator")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the coordinator: node endpoint, solve loop, admin API.
    Run(mcdnn_coordinator::daemon::RunArgs),
}

fn main() -> anyhow::Result<()> {
    // `--config FILE` settings go in under flags and `MCDNN_*` variables.
    let command = Cli::command().mut_subcommand("run", |c| c.args_override_self(true));
    let argv = config_file::args_with_file(&command, std::env::args_os().collect())?;
    let Command::Run(args) = Cli::from_arg_matches(&command.get_matches_from(argv))?.command;
    let filter = tracing_subscriber::EnvFilter::try_from_env("MCDNN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only on a terminal: logs in files and container logs stay plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if args.log_json {
        builder.json().init();
    } else {
        builder.init();
    }
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(mcdnn_coordinator::daemon::run(args))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn every_flag_has_help_and_the_command_line_is_consistent() {
        config_file::check_command(&super::Cli::command()).unwrap();
    }
}
