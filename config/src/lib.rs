//! Command lines of the MCDNN binaries: `--config FILE` (below), the check every binary's test
//! runs on its own command line, and [`node_command`], the typed `mcdnn-node run` line.
//!
//! `--config FILE` for the daemons: a TOML file whose keys are the command's long flag names
//! (`solve-interval-ms = 500`, `peers = "coord-0=a,coord-1=b"`). Precedence is flag > environment
//! variable > file > built-in default: a file value is passed as a flag placed before the
//! command line's own flags (clap keeps the last occurrence), and only when the flag's
//! `MCDNN_*` variable is not set. The command must accept `--config` itself (for its help) and
//! let a later flag override an earlier one (`Command::args_override_self`). An unknown key or a value of the wrong shape is an error that
//! names the file and lists the keys the command knows.

pub mod node_command;

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// What went wrong reading a config file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("config file {path} is not valid TOML: {error}")]
    Parse { path: PathBuf, error: String },
    #[error("config file {path}: unknown key {key:?}; known keys: {known}")]
    UnknownKey {
        path: PathBuf,
        key: String,
        known: String,
    },
    #[error("config file {path}: {key} must be a string, number, boolean or list of those")]
    BadValue { path: PathBuf, key: String },
    #[error("--config needs a file path")]
    MissingPath,
    #[error("config file {path} is {len} bytes; a config file is at most {MAX_CONFIG_BYTES}")]
    TooLarge { path: PathBuf, len: u64 },
}

/// Largest config file read: settings are a few hundred bytes; anything near this is a mistake.
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// The command line with the file's settings put in, for `Parser::parse_from`. `command` is the
/// clap command (`Cli::command()`); the file applies to the subcommand named on the command line
/// (or to the top-level command when it has none). Without `--config` the arguments come back
/// unchanged.
pub fn args_with_file(
    command: &clap::Command,
    args: Vec<OsString>,
) -> Result<Vec<OsString>, ConfigError> {
    let Some(path) = config_flag(&args)? else {
        return Ok(args);
    };
    // The subcommand whose flags the file sets: the first argument naming one.
    let (target, insert_at) = match args
        .iter()
        .enumerate()
        .skip(1)
        .find_map(|(i, a)| command.find_subcommand(a).map(|c| (c.clone(), i + 1)))
    {
        Some(found) => found,
        None => (command.clone(), 1),
    };
    let injected = file_flags(&target, &path)?;
    let mut out = args;
    let tail = out.split_off(insert_at.min(out.len()));
    out.extend(injected);
    out.extend(tail);
    Ok(out)
}

/// Finds `--config FILE` or `--config=FILE`.
fn config_flag(args: &[OsString]) -> Result<Option<PathBuf>, ConfigError> {
    for (i, a) in args.iter().enumerate() {
        let Some(s) = a.to_str() else { continue };
        if s == "--config" {
            let path = args.get(i + 1).ok_or(ConfigError::MissingPath)?;
            return Ok(Some(PathBuf::from(path)));
        }
        if let Some(p) = s.strip_prefix("--config=") {
            return Ok(Some(PathBuf::from(p)));
        }
    }
    Ok(None)
}

/// The file's settings as flags, skipping those whose environment variable is set.
fn file_flags(command: &clap::Command, path: &Path) -> Result<Vec<OsString>, ConfigError> {
    let read_error = |error| ConfigError::Read {
        path: path.to_owned(),
        error,
    };
    let len = std::fs::metadata(path).map_err(read_error)?.len();
    if len > MAX_CONFIG_BYTES {
        return Err(ConfigError::TooLarge {
            path: path.to_owned(),
            len,
        });
    }
    let text = std::fs::read_to_string(path).map_err(read_error)?;
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| ConfigError::Parse {
            path: path.to_owned(),
            error: e.to_string(),
        })?;
    let known = || {
        command
            .get_arguments()
            .filter_map(|a| a.get_long())
            .filter(|l| *l != "config" && *l != "help" && *l != "version")
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut flags = Vec::new();
    for (key, value) in &table {
        let long = key.replace('_', "-");
        let arg = command
            .get_arguments()
            .find(|a| a.get_long() == Some(long.as_str()) && long != "config")
            .ok_or_else(|| ConfigError::UnknownKey {
                path: path.to_owned(),
                key: key.clone(),
                known: known(),
            })?;
        if arg
            .get_env()
            .is_some_and(|env| std::env::var_os(env).is_some())
        {
            continue;
        }
        let bad = || ConfigError::BadValue {
            path: path.to_owned(),
            key: key.clone(),
        };
        match value {
            toml::Value::Boolean(true) => flags.push(OsString::from(format!("--{long}"))),
            toml::Value::Boolean(false) => {}
            toml::Value::Array(items) => {
                let parts = items
                    .iter()
                    .map(scalar)
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(bad)?;
                flags.push(OsString::from(format!("--{long}={}", parts.join(","))));
            }
            v => flags.push(OsString::from(format!(
                "--{long}={}",
                scalar(v).ok_or_else(bad)?
            ))),
        }
    }
    Ok(flags)
}

/// Checks a binary's command line the way its test does: clap's own consistency assertions
/// (they panic on duplicate ids and the like), `--version`, and a help text on every flag.
pub fn check_command(cmd: &clap::Command) -> Result<(), String> {
    cmd.clone().debug_assert();
    if cmd.get_version().is_none() {
        return Err(format!("{} has no --version", cmd.get_name()));
    }
    let missing = undocumented_args(cmd);
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!("flags without help: {missing:?}"))
    }
}

/// Every flag and argument of `cmd` and its subcommands that has no help text, as
/// `"command sub arg"` (the binaries' tests require none).
pub fn undocumented_args(cmd: &clap::Command) -> Vec<String> {
    fn walk(cmd: &clap::Command, path: &str, out: &mut Vec<String>) {
        for arg in cmd.get_arguments() {
            let id = arg.get_id().as_str();
            if arg.get_help().is_none() && id != "help" && id != "version" {
                out.push(format!("{path} {id}"));
            }
        }
        for sub in cmd.get_subcommands() {
            walk(sub, &format!("{path} {}", sub.get_name()), out);
        }
    }
    let mut out = Vec::new();
    walk(cmd, cmd.get_name(), &mut out);
    out
}

fn scalar(v: &toml::Value) -> Option<String> {
    match v {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Arg, ArgAction, Command};

    fn command() -> Command {
        Command::new("daemon").subcommand(
            Command::new("run")
                .args_override_self(true)
                .arg(Arg::new("config").long("config"))
                .arg(
                    Arg::new("name")
                        .long("name")
                        .env("MCDNN_TEST_CONFIG_NAME_UNSET"),
                )
                .arg(
                    Arg::new("interval-ms")
                        .long("interval-ms")
                        .default_value("2000"),
                )
                .arg(
                    Arg::new("bootstrap")
                        .long("bootstrap")
                        .action(ArgAction::SetTrue),
                )
                .arg(
                    Arg::new("peers")
                        .long("peers")
                        .value_delimiter(',')
                        .num_args(1..),
                ),
        )
    }

    fn parse(file: &str, cli: &[&str]) -> Result<clap::ArgMatches, ConfigError> {
        let dir = tempfile::tempdir().map_err(|error| ConfigError::Read {
            path: "tmp".into(),
            error,
        })?;
        let path = dir.path().join("c.toml");
        std::fs::write(&path, file).map_err(|error| ConfigError::Read {
            path: path.clone(),
            error,
        })?;
        let mut args: Vec<OsString> = vec!["daemon".into(), "run".into(), "--config".into()];
        args.push(path.clone().into());
        args.extend(cli.iter().map(OsString::from));
        let args = args_with_file(&command(), args)?;
        let m = command().get_matches_from(args);
        Ok(m.subcommand_matches("run").cloned().unwrap_or_default())
    }

    #[test]
    fn file_values_apply_and_flags_override_them() -> Result<(), ConfigError> {
        let m = parse(
            "name = \"coord-1\"\ninterval_ms = 500\nbootstrap = true\npeers = [\"a=h1\", \"b=h2\"]\n",
            &["--interval-ms", "700"],
        )?;
        assert_eq!(
            m.get_one::<String>("name").map(String::as_str),
            Some("coord-1")
        );
        assert_eq!(
            m.get_one::<String>("interval-ms").map(String::as_str),
            Some("700")
        );
        assert!(m.get_flag("bootstrap"));
        let peers: Vec<&String> = m
            .get_many::<String>("peers")
            .into_iter()
            .flatten()
            .collect();
        assert_eq!(peers, ["a=h1", "b=h2"]);
        Ok(())
    }

    #[test]
    fn unknown_keys_and_bad_files_are_clear_errors() {
        let err = parse("solve_intervl = 5\n", &[]).expect_err("typo");
        let msg = err.to_string();
        assert!(
            msg.contains("unknown key \"solve_intervl\"") && msg.contains("interval-ms"),
            "{msg}"
        );
        assert!(matches!(
            parse("name = [[1]]\n", &[]),
            Err(ConfigError::BadValue { .. })
        ));
        assert!(matches!(
            parse("name = \n", &[]),
            Err(ConfigError::Parse { .. })
        ));
        let huge = format!("# {}\n", "x".repeat(MAX_CONFIG_BYTES as usize));
        assert!(matches!(
            parse(&huge, &[]),
            Err(ConfigError::TooLarge { .. })
        ));
    }
}
