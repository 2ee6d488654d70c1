//! `mcdnn-node`: the node agent binary.

use std::path::PathBuf;

use anyhow::Context;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use mcdnn_node::{catalog, dataset};

#[derive(Parser)]
#[command(name = "mcdnn-node", version, about = "MCDNN node agent")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the node agent: serve the replayed camera stream under the coordinator's assignment.
    Run(Box<mcdnn_node::config::RunArgs>),
    /// Get this device's certificate with a one-time token: the key is made here and never
    /// leaves the device.
    Enroll(mcdnn_node::enroll::EnrollArgs),
    /// Benchmarks that print figures.
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
    /// Model catalog commands.
    Catalog {
        #[command(subcommand)]
        command: CatalogCommand,
    },
}

/// What every node benchmark takes.
#[derive(clap::Args)]
struct BenchArgs {
    /// The variant every path runs.
    #[arg(long, default_value = "full")]
    variant: String,
    /// Rounds; the figures are medians over them.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// The catalog manifest (default: models/catalog.json, or MCDNN_CATALOG).
    #[arg(long)]
    catalog: Option<PathBuf>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

impl BenchArgs {
    /// The catalog and the test images a benchmark runs on.
    fn load(&self) -> anyhow::Result<(wire::manifest::Manifest, PathBuf, dataset::Dataset)> {
        let path = catalog::locate(self.catalog.as_deref())?;
        let (manifest, dir) = catalog::load(&path)?;
        let test = dataset::Dataset::test_split().context("loading the test images")?;
        Ok((manifest, dir, test))
    }
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Per-frame cost of the node's request path against raw ONNX Runtime calls (ratio).
    Overhead {
        /// Frames per round (the same frames on both paths).
        #[arg(long, default_value_t = 1000)]
        frames: usize,
        #[command(flatten)]
        common: BenchArgs,
    },
    /// Per-call cost of the local API (loopback HTTP, Unix socket) against handing the same
    /// request to the serving loop in-process (ratio).
    Api {
        /// Calls per path per round.
        #[arg(long, default_value_t = 500)]
        calls: usize,
        #[command(flatten)]
        common: BenchArgs,
    },
}

#[derive(Subcommand)]
enum CatalogCommand {
    /// Print the resident bytes one variant adds when loaded (used by `eval`, one process per
    /// variant so the allocator's reuse does not hide the footprint).
    #[command(hide = true)]
    ProbeMemory {
        /// The variant to load.
        #[arg(long)]
        variant: String,
        /// The catalog manifest.
        #[arg(long)]
        catalog: Option<PathBuf>,
    },
    /// Measure every variant on the 10k Fashion-MNIST test images with ONNX Runtime.
    Eval {
        /// The catalog manifest (default: models/catalog.json, or MCDNN_CATALOG).
        #[arg(long)]
        catalog: Option<PathBuf>,
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
        /// Only these variants (repeatable).
        #[arg(long = "variant")]
        variants: Vec<String>,
        /// Only the first N test images.
        #[arg(long)]
        limit: Option<usize>,
        /// Folder with the idx files (default: MCDNN_DATA or Debian's).
        #[arg(long)]
        data: Option<PathBuf>,
    },
    /// Measure every face variant on real video: ms per frame and per face, agreement of its
    /// answers with the fp32 reference's, descriptor distance to the reference.
    FaceEval {
        /// The face catalog.
        #[arg(long, default_value = "models/face/catalog.json")]
        catalog: PathBuf,
        /// Videos to run (repeatable; default: opencv-doc's Megamind.avi and vtest.avi).
        #[arg(long = "video")]
        videos: Vec<PathBuf>,
        /// Every N-th frame.
        #[arg(long, default_value_t = 1)]
        stride: usize,
        /// At most this many frames per video.
        #[arg(long)]
        max_frames: Option<usize>,
        /// Write each variant's agreement into the catalog as its accuracy.
        #[arg(long)]
        update_catalog: bool,
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Write the embedding corpus the coordinator trains specialised heads on
    /// (`mcdnn-coordinator --specialise-corpus`): training images through one variant's trunk,
    /// plus held-out test images.
    Corpus {
        /// The variant whose trunk specialised heads will read (a cheap one).
        #[arg(long, default_value = "quarter")]
        variant: String,
        /// Training images (spread over the 60k training split).
        #[arg(long, default_value_t = 20_000)]
        train: usize,
        /// Held-out images (spread over the 10k test split).
        #[arg(long, default_value_t = 5_000)]
        test: usize,
        /// Where to write it.
        #[arg(long)]
        out: PathBuf,
        /// The catalog manifest (default: models/catalog.json, or MCDNN_CATALOG).
        #[arg(long)]
        catalog: Option<PathBuf>,
        /// Folder with the idx files (default: MCDNN_DATA or Debian's).
        #[arg(long)]
        data: Option<PathBuf>,
    },
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("MCDNN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only on a terminal: logs in files and container logs stay plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// The command line, with `--config FILE` settings put in under flags and `MCDNN_*` variables.
fn parse_cli() -> anyhow::Result<Cli> {
    let command = Cli::command().mut_subcommand("run", |c| c.args_override_self(true));
    let args = config_file::args_with_file(&command, std::env::args_os().collect())?;
    Ok(Cli::from_arg_matches(&command.get_matches_from(args))?)
}

fn main() -> anyhow::Result<()> {
    // A test build (feature `failpoints`) takes its fault injections from `FAILPOINTS`.
    #[cfg(feature = "failpoints")]
    let _failpoints = fail::FailScenario::setup();
    let cli = parse_cli()?;
    match cli.command {
        Command::Run(args) => {
            init_logging(args.log_json);
            let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            let summary = runtime.block_on(mcdnn_node::agent::run::run(*args))?;
            println!("{}", serde_json::to_string(&summary)?);
        }
        Command::Enroll(args) => {
            let cert = mcdnn_node::enroll::enroll(&args)?;
            println!("enrolled {}: certificate {}", args.name, cert.display());
        }
        Command::Bench {
            command: BenchCommand::Overhead { frames, common },
        } => {
            let (manifest, dir, test) = common.load()?;
            let r = mcdnn_node::bench::overhead(
                &manifest,
                &dir,
                &test,
                &common.variant,
                frames.max(1),
                common.rounds.max(1),
            )?;
            if common.json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                println!(
                    "variant {}: raw ort {:.1} us/frame, node request path {:.1} us/frame, ratio {:.3} (median of {} rounds x {} frames, same images; node answered {})",
                    r.variant,
                    r.direct_us_per_frame,
                    r.node_us_per_frame,
                    r.ratio,
                    r.rounds,
                    r.frames,
                    r.node_answered
                );
                println!(
                    "  per block of {} frames (median): node/raw {:.3}, engine alone/raw {:.3}, node/engine {:.3}; node overhead {:.1} us/frame; engine alone {:.1} us/frame",
                    mcdnn_node::bench::BLOCK,
                    r.ratio_block_median,
                    r.engine_ratio_block_median,
                    r.node_over_engine_block_median,
                    r.overhead_us_per_frame,
                    r.engine_us_per_frame
                );
            }
        }
        Command::Bench {
            command: BenchCommand::Api { calls, common },
        } => {
            let (manifest, dir, test) = common.load()?;
            let r = mcdnn_node::bench_api::run(
                &manifest,
                &dir,
                &test,
                &common.variant,
                calls,
                common.rounds,
            )?;
            if common.json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                println!(
                    "variant {}: in-process request {:.1} us/call, loopback HTTP {:.1} us/call (ratio {:.3}), Unix socket {:.1} us/call (ratio {:.3}) (median of {} rounds x {} calls, same images, raw 28x28 gray)",
                    r.variant,
                    r.in_process_us,
                    r.tcp_us,
                    r.tcp_ratio,
                    r.unix_us,
                    r.unix_ratio,
                    r.rounds,
                    r.calls
                );
            }
        }
        Command::Catalog {
            command:
                CatalogCommand::ProbeMemory {
                    variant,
                    catalog: path,
                },
        } => {
            let path = catalog::locate(path.as_deref())?;
            let (manifest, dir) = catalog::load(&path)?;
            let test = dataset::Dataset::test_split()?;
            println!(
                "{}",
                catalog::eval::probe_memory(&manifest, &dir, &variant, &test)?
            );
        }
        Command::Catalog {
            command:
                CatalogCommand::Eval {
                    catalog: path,
                    json,
                    variants,
                    limit,
                    data,
                },
        } => {
            let path = catalog::locate(path.as_deref())?;
            let (manifest, dir) = catalog::load(&path)?;
            let data_dir = data.unwrap_or_else(dataset::data_dir);
            let test =
                dataset::Dataset::load(&data_dir, "t10k").context("loading the test images")?;
            let eval = catalog::eval::run(&manifest, &dir, &test, &variants, limit)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&eval)?);
            } else {
                print!("{}", catalog::eval::table(&eval));
            }
        }
        Command::Catalog {
            command:
                CatalogCommand::FaceEval {
                    catalog: path,
                    videos,
                    stride,
                    max_frames,
                    update_catalog,
                    json,
                },
        } => {
            let (manifest, dir) = catalog::load(&path)?;
            let videos = if videos.is_empty() {
                catalog::face_eval::DEFAULT_VIDEOS
                    .iter()
                    .map(PathBuf::from)
                    .collect()
            } else {
                videos
            };
            let eval = catalog::face_eval::run(&manifest, &dir, &videos, stride, max_frames)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&eval)?);
            } else {
                print!("{}", catalog::face_eval::table(&eval));
            }
            if update_catalog {
                catalog::face_eval::update_catalog(&path, &manifest, &eval)?;
            }
        }
        Command::Catalog {
            command:
                CatalogCommand::Corpus {
                    variant,
                    train,
                    test,
                    out,
                    catalog: path,
                    data,
                },
        } => {
            let path = catalog::locate(path.as_deref())?;
            let (manifest, dir) = catalog::load(&path)?;
            let data_dir = data.unwrap_or_else(dataset::data_dir);
            let train_set = dataset::Dataset::load(&data_dir, "train")
                .context("loading the training images")?;
            let test_set =
                dataset::Dataset::load(&data_dir, "t10k").context("loading the test images")?;
            let started = std::time::Instant::now();
            let corpus = catalog::corpus::build(
                &manifest,
                &dir,
                &variant,
                (&train_set, train),
                (&test_set, test),
            )?;
            std::fs::write(&out, corpus.encode()?)
                .with_context(|| format!("writing {}", out.display()))?;
            println!(
                "corpus {}: {} training + {} held-out embeddings of width {} from {}'s trunk in {:.1} s",
                out.display(),
                corpus.train.len(),
                corpus.test.len(),
                corpus.dim,
                variant,
                started.elapsed().as_secs_f64()
            );
        }
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

    /// The builder the demo, the test harness and chaos start nodes with speaks this command line.
    #[test]
    fn the_shared_node_command_builder_parses_as_written() {
        use clap::Parser;
        use config_file::node_command::{NodeRun, ServerRole};
        let run = NodeRun {
            apps: Some("garment=4".into()),
            telemetry_ms: Some(250),
            seed: Some(7),
            summary: Some("s.json".into()),
            catalog: Some("m.json".into()),
            policy: Some("paper".into()),
            server: Some(ServerRole {
                listen: "127.0.0.1:7601".into(),
                capacity_rps: 12.5,
            }),
            source: Some("file:clip.avi".into()),
            source_loop: true,
            model_memory_mb: Some(40.0),
            ..NodeRun::new("cam-9", "a:1,b:2", "laptop", "ca", "st").shift(30.0, 2.5)
        };
        let argv = std::iter::once("mcdnn-node".into()).chain(run.args());
        let super::Command::Run(a) = super::Cli::try_parse_from(argv).expect("parses").command
        else {
            panic!("not the run command");
        };
        assert_eq!(
            (a.name.as_str(), a.device_class.as_str()),
            ("cam-9", "laptop")
        );
        assert_eq!(a.coordinators, ["a:1", "b:2"]);
        assert_eq!(
            (a.energy_budget_j, a.shift_s, a.duration_s),
            (2.5, 30.0, Some(30.0))
        );
        assert!(a.battery_model);
        assert_eq!(
            (a.telemetry_ms, a.seed, a.apps.as_str()),
            (250, 7, "garment=4")
        );
        assert_eq!((a.role.as_str(), a.capacity_rps), ("server", 12.5));
        assert_eq!(a.offload_listen.to_string(), "127.0.0.1:7601");
        assert_eq!(a.store, std::path::PathBuf::from("st"));
        assert_eq!(
            (a.source.as_str(), a.source_loop, a.model_memory_mb),
            ("file:clip.avi", true, 40.0)
        );
        assert_eq!(a.policy, "paper");
    }
}
