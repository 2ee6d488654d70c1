//! The demo's child processes: found beside `mcdnnctl`, logging to the run folder, killed if the
//! demo fails half-way.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::ctl::http;

/// Started children, in order; every one still running is killed on drop.
pub(super) struct Procs {
    log_dir: PathBuf,
    children: Vec<(String, Child)>,
}

impl Procs {
    pub(super) fn new(log_dir: &Path) -> Procs {
        Procs {
            log_dir: log_dir.to_path_buf(),
            children: Vec::new(),
        }
    }

    /// Starts the binary `program` (beside mcdnnctl) as `name`, its stderr in `<name>.log`.
    pub(super) fn start(
        &mut self,
        name: &str,
        program: &str,
        args: impl IntoIterator<Item = OsString>,
    ) -> anyhow::Result<()> {
        let log = std::fs::File::create(self.log_dir.join(format!("{name}.log")))?;
        let child = Command::new(sibling(program)?)
            .args(args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        self.children.push((name.to_string(), child));
        Ok(())
    }

    /// Whether every child after the first (the nodes, after the coordinator) has exited.
    pub(super) fn all_but_first_exited(&mut self) -> bool {
        self.children
            .iter_mut()
            .skip(1)
            .all(|(_, c)| matches!(c.try_wait(), Ok(Some(_))))
    }

    /// Asks the first child (the coordinator) to stop with SIGTERM, as an operator would.
    pub(super) fn terminate_first(&mut self) {
        if let Some((_, child)) = self.children.first() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
        }
    }

    /// Waits for the child named `name`; an unsuccessful exit is an error naming its log.
    pub(super) fn wait_success(&mut self, name: &str) -> anyhow::Result<()> {
        let Some((_, child)) = self.children.iter_mut().find(|(n, _)| n == name) else {
            bail!("no process named {name}");
        };
        let status = child.wait()?;
        if !status.success() {
            bail!(
                "{name} failed ({status}); see {}",
                self.log_dir.join(format!("{name}.log")).display()
            );
        }
        Ok(())
    }

    /// Waits for every child and forgets them (nothing left to kill).
    pub(super) fn wait_all(mut self) {
        for (_, child) in &mut self.children {
            let _ = child.wait();
        }
        self.children.clear();
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        for (_, c) in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn sibling(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating mcdnnctl")?;
    let path = exe.with_file_name(name);
    if !path.is_file() {
        bail!(
            "{} not found beside mcdnnctl; build the workspace (cargo build --release)",
            path.display()
        );
    }
    Ok(path)
}

/// Waits until the coordinator's health port answers `/livez`.
pub(super) fn wait_ready(health: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if http::health_get(health, "/livez", Duration::from_millis(500)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("the coordinator's health port at {health} did not come up within 20 s")
}
