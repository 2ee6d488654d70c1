//! `mcdnnctl snapshot save FILE` (a consistent, checksummed backup from the leader) and
//! `mcdnnctl snapshot restore FILE` (seeds a replica's empty data folder of a NEW cluster with
//! it: run it once per replica with the same `--peers`, then start the replicas as usual).

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};

use super::cluster::Target;
use crate::admin::backup::PATH;
use crate::cluster::peers::id_of;
use crate::raft::SledStorage;
use crate::state::backup;

/// Largest backup accepted from a coordinator: above the state decoder's own limit.
const MAX_BACKUP_BYTES: u64 = 512 * 1024 * 1024;
const TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Save the replicated fleet state, as the leader has applied it, to FILE.
    Save {
        /// Where to write the backup (written atomically).
        file: PathBuf,
        #[command(flatten)]
        target: Target,
    },
    /// Seed the empty data folder of one replica of a new cluster from a saved FILE.
    Restore(RestoreArgs),
}

#[derive(Debug, Clone, Args)]
pub struct RestoreArgs {
    /// A backup written by `mcdnnctl snapshot save`.
    pub file: PathBuf,
    /// The replica's data folder (its `--data-dir`); must hold no Raft state yet.
    #[arg(long)]
    pub data_dir: PathBuf,
    /// Every replica of the new cluster, as its `--peers` lists them (`coord-0=HOST,...`).
    #[arg(long)]
    pub peers: String,
}

pub fn run(cmd: &SnapshotCommand, out: &mut dyn Write) -> anyhow::Result<()> {
    match cmd {
        SnapshotCommand::Save { file, target } => save(file, target, out),
        SnapshotCommand::Restore(args) => restore(args, out),
    }
}

/// Fetches a backup from the first replica that leads, verifies it and writes it atomically.
pub fn save(file: &PathBuf, target: &Target, out: &mut dyn Write) -> anyhow::Result<()> {
    let client = target.identity.client()?;
    let mut errors = Vec::new();
    for admin in &target.admins {
        match client.get_bytes(admin, PATH, TIMEOUT, MAX_BACKUP_BYTES) {
            Ok(bytes) => {
                let b = backup::decode(&bytes).context("the coordinator sent a damaged backup")?;
                let tmp = file.with_extension("partial");
                std::fs::write(&tmp, &bytes)
                    .and_then(|()| std::fs::File::open(&tmp)?.sync_all())
                    .and_then(|()| std::fs::rename(&tmp, file))
                    .with_context(|| format!("writing {}", file.display()))?;
                writeln!(
                    out,
                    "saved the fleet state at raft index {} to {} ({} bytes, sha256 {})",
                    b.index,
                    file.display(),
                    bytes.len(),
                    b.sha256
                )?;
                return Ok(());
            }
            Err(e) => errors.push(format!("{admin}: {e:#}")),
        }
    }
    bail!("no replica gave a snapshot:\n  {}", errors.join("\n  "))
}

/// Writes the backup as the initial Raft snapshot of a new cluster's replica.
pub fn restore(args: &RestoreArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let len = std::fs::metadata(&args.file)
        .with_context(|| format!("reading {}", args.file.display()))?
        .len();
    anyhow::ensure!(
        len <= MAX_BACKUP_BYTES,
        "{} is {len} bytes, more than any backup can be ({MAX_BACKUP_BYTES}); is it a backup?",
        args.file.display()
    );
    let bytes =
        std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let b = backup::decode(&bytes).with_context(|| format!("{}", args.file.display()))?;
    let mut voters = Vec::new();
    for part in args
        .peers
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        let name = part.split_once('=').map_or(part, |(n, _)| n);
        voters.push(id_of(name)?);
    }
    voters.sort_unstable();
    voters.dedup();
    anyhow::ensure!(!voters.is_empty(), "--peers names no replica");
    let raft_dir = args.data_dir.join("raft");
    let mut store =
        SledStorage::open(&raft_dir).with_context(|| format!("opening {}", raft_dir.display()))?;
    if store.is_initialized() {
        bail!(
            "{} already holds Raft state; restore only into an empty data folder of a new cluster",
            raft_dir.display()
        );
    }
    // The new cluster's log starts at index 1 (this snapshot): the state is rebased there.
    let state = b.state.rebased_at(1);
    store.bootstrap(&voters, state.to_snapshot_bytes()?)?;
    writeln!(
        out,
        "restored the fleet state taken at raft index {} (sha256 {}) into {} for voters {voters:?}; \
         start the replica with its usual configuration",
        b.index,
        b.sha256,
        raft_dir.display()
    )?;
    Ok(())
}
