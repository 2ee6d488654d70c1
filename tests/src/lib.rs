//! A harness for black-box tests across processes: a fleet CA in a temp folder, coordinator and
//! node agents started as real processes (the workspace's built binaries), their admin API and
//! end-of-run summaries. Used by the tests in `tests/tests` and by `mcdnn-chaos`.

pub mod admin_flood;
pub mod backup_chaos;
pub mod cluster;
pub mod identity;
pub mod layering;
pub mod raft_chaos;
pub mod revoke_chaos;
pub mod rogue_chaos;
pub mod specialise;
pub mod wiped_chaos;
pub mod writer;

mod status;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use config_file::node_command::{NodeRun as NodeLine, ServerRole};
use mcdnn_coordinator::ctl::http;
use net::identity::{Ca, Kind, OperatorRole};

pub mod bench;
pub mod chaos;
pub mod evidence;
pub mod peers;
pub mod proxy;
pub mod verdict;

/// The folder with the workspace's binaries (target/debug or target/release), found from the
/// running executable: a test runs from target/*/deps, a tool from target/*.
pub fn bin_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let mut dir = exe
        .parent()
        .context("executable has no folder")?
        .to_path_buf();
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.pop();
    }
    Ok(dir)
}

pub fn bin(name: &str) -> anyhow::Result<PathBuf> {
    let path = bin_dir()?.join(name);
    if !path.is_file() {
        bail!(
            "{} is not built; run `cargo build --workspace` first",
            path.display()
        );
    }
    Ok(path)
}

/// The repo's catalog.
pub fn catalog() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/catalog.json")
}

/// The fleet's catalog: the Fashion-MNIST and face catalogs merged (`models/fleet.json`).
pub fn fleet_catalog() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/fleet.json")
}

/// The digest nodes announce for the repo's catalog (what the coordinator checks hellos against).
pub fn catalog_digest() -> anyhow::Result<String> {
    use sha2::{Digest, Sha256};
    let bytes = std::fs::read(catalog()).context("reading the catalog")?;
    Ok(hex::encode(Sha256::digest(bytes)))
}

/// A free port base on loopback: QUIC on `p`, operator API on `p + 1`, Raft on `p + 2`, health
/// on `p + 3`.
pub fn free_port() -> u16 {
    for _ in 0..200 {
        let Ok(udp) = std::net::UdpSocket::bind("127.0.0.1:0") else {
            continue;
        };
        let Ok(addr) = udp.local_addr() else { continue };
        let p = addr.port();
        // Raft listens on p + 2 (UDP) for the coordinator's own replica, health on p + 3.
        if p < 65000
            && std::net::TcpListener::bind(("127.0.0.1", p + 1)).is_ok()
            && std::net::UdpSocket::bind(("127.0.0.1", p + 2)).is_ok()
            && std::net::TcpListener::bind(("127.0.0.1", p + 3)).is_ok()
        {
            return p;
        }
    }
    7400
}

/// A running process that is killed when dropped.
pub struct Proc {
    pub name: String,
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    /// SIGTERM, for an orderly stop.
    pub fn terminate(&self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
    }

    /// SIGKILL, as a crash.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn wait_exit(&mut self, timeout: Duration) -> anyhow::Result<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.child.try_wait()? {
                return Ok(s);
            }
            if Instant::now() > deadline {
                bail!(
                    "{} did not exit within {timeout:?}; log {}",
                    self.name,
                    self.log.display()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The admin operator every test CA enrolls; harness reads and writes go through it.
pub const OPERATOR: &str = "ops";

/// Enrolls [`OPERATOR`] (admin) in `ca_dir` and returns a client presenting it.
pub fn enroll_operator(ca_dir: &Path) -> anyhow::Result<http::Client> {
    Ca::load(ca_dir)?.enroll_operator(OPERATOR, ca_dir, OperatorRole::Admin, 30)?;
    http::Client::load(ca_dir, OPERATOR)
}

/// A test fleet in a temp folder.
pub struct Fleet {
    pub dir: tempfile::TempDir,
    pub ca: PathBuf,
    pub port: u16,
    /// An admin operator's client for the operator API.
    pub ops: http::Client,
    /// The catalog the coordinator serves ([`catalog`] unless set).
    pub catalog: PathBuf,
}

impl Fleet {
    pub fn new() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let ca = dir.path().join("ca");
        std::fs::create_dir_all(&ca)?;
        Ca::init(&ca)?;
        let ops = enroll_operator(&ca)?;
        Ok(Self {
            dir,
            ca,
            port: free_port(),
            ops,
            catalog: catalog(),
        })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn quic(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn admin(&self) -> String {
        format!("127.0.0.1:{}", self.port + 1)
    }

    pub fn health(&self) -> String {
        format!("127.0.0.1:{}", self.port + 3)
    }

    pub fn enroll(&self, kind: Kind, name: &str) -> anyhow::Result<()> {
        Ca::load(&self.ca)?.enroll(kind, name, &self.ca, &[], 30)?;
        Ok(())
    }

    fn spawn(&self, name: &str, cmd: Command) -> anyhow::Result<Proc> {
        spawn_logged(self.path(), name, cmd)
    }

    /// Starts the coordinator (enrolling it on first use) and waits for its admin API.
    pub fn coordinator(&self, extra: &[&str]) -> anyhow::Result<Proc> {
        if !self.ca.join("coord-0.pem").exists() {
            self.enroll(Kind::Coordinator, "coord-0")?;
        }
        let mut cmd = Command::new(bin("mcdnn-coordinator")?);
        cmd.args([
            "run",
            "--name",
            "coord-0",
            "--listen",
            &self.quic(),
            "--admin",
            &self.admin(),
            "--raft-listen",
            &format!("127.0.0.1:{}", self.port + 2),
            "--health-listen",
            &self.health(),
        ])
        .args(["--solve-interval-ms", "500", "--identity-dir"])
        .arg(&self.ca)
        .arg("--data-dir")
        .arg(self.path().join("coordinator"))
        .arg("--catalog")
        .arg(&self.catalog)
        .args(extra);
        let p = self.spawn("coordinator", cmd)?;
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if http::health_get(&self.health(), "/livez", Duration::from_millis(300)).is_ok() {
                return Ok(p);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("coordinator did not come up: {}", p.log_text())
    }

    /// Starts a node agent that runs for `secs` and writes `<name>.summary.json`.
    pub fn node(&self, name: &str, class: &str, secs: f64, extra: &[&str]) -> anyhow::Result<Proc> {
        self.node_with(name, class, secs, &NodeOpts::default(), extra)
    }

    /// A node agent with the coordinator address or energy budget overridden.
    pub fn node_with(
        &self,
        name: &str,
        class: &str,
        secs: f64,
        opts: &NodeOpts,
        extra: &[&str],
    ) -> anyhow::Result<Proc> {
        if !self.ca.join(format!("{name}.pem")).exists() {
            self.enroll(Kind::Node, name)?;
        }
        let coordinator = opts.coordinator.clone().unwrap_or_else(|| self.quic());
        let run = NodeRun {
            coordinators: &coordinator,
            energy_budget_j: opts.energy_budget_j.unwrap_or(0.1 * secs),
            apps: "garment=8,category=4",
            telemetry_ms: 200,
        };
        let mut cmd = node_command(&self.ca, self.path(), name, class, secs, &run)?;
        cmd.args(extra);
        self.spawn(name, cmd)
    }

    pub fn summary_path(&self, name: &str) -> PathBuf {
        self.path().join(format!("{name}.summary.json"))
    }

    /// The node's end-of-run summary, typed: a missing field is an error, never a zero.
    pub fn summary(&self, name: &str) -> anyhow::Result<wire::summary::Summary> {
        crate::read_summary(&self.summary_path(name))
    }
}

/// Overrides for [`Fleet::node_with`].
#[derive(Debug, Clone, Default)]
pub struct NodeOpts {
    /// Connect here instead of the coordinator (e.g. through a [`proxy::UdpProxy`]).
    pub coordinator: Option<String>,
    pub energy_budget_j: Option<f64>,
}

impl Fleet {
    /// Starts an offload server node listening on `listen` (enrolled with its IP as a SAN, so
    /// devices can reach it by address).
    pub fn server(
        &self,
        name: &str,
        secs: f64,
        listen: &str,
        capacity_rps: f64,
    ) -> anyhow::Result<Proc> {
        self.server_with(name, secs, listen, capacity_rps, &[])
    }

    /// [`Self::server`] with extra `mcdnn-node run` arguments.
    pub fn server_with(
        &self,
        name: &str,
        secs: f64,
        listen: &str,
        capacity_rps: f64,
        extra: &[&str],
    ) -> anyhow::Result<Proc> {
        if !self.ca.join(format!("{name}.pem")).exists() {
            let host = listen
                .rsplit_once(':')
                .map_or(listen, |(h, _)| h)
                .to_string();
            Ca::load(&self.ca)?.enroll(Kind::Node, name, &self.ca, &[host], 30)?;
        }
        let line = NodeLine {
            telemetry_ms: Some(200),
            duration_s: Some(secs),
            summary: Some(self.summary_path(name)),
            catalog: Some(catalog()),
            server: Some(ServerRole {
                listen: listen.into(),
                capacity_rps,
            }),
            ..NodeLine::new(name, self.quic(), "laptop", &self.ca, self.store_path(name))
        };
        let mut cmd = Command::new(bin("mcdnn-node")?);
        cmd.args(line.args()).args(extra);
        self.spawn(name, cmd)
    }

    pub fn store_path(&self, name: &str) -> PathBuf {
        self.path().join(format!("{name}.store"))
    }
}

/// Starts `cmd` with its stderr appended to `<dir>/<name>.log`; the process is killed when the
/// returned [`Proc`] is dropped.
pub fn spawn_logged(dir: &Path, name: &str, mut cmd: Command) -> anyhow::Result<Proc> {
    let log = dir.join(format!("{name}.log"));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)?;
    let child = cmd
        .env("MCDNN_LOG", "info")
        .stdout(Stdio::null())
        .stderr(file)
        .spawn()
        .with_context(|| format!("starting {name}"))?;
    Ok(Proc {
        name: name.into(),
        child,
        log,
    })
}

/// How a test node runs.
pub struct NodeRun<'a> {
    /// Comma-separated coordinator addresses.
    pub coordinators: &'a str,
    pub energy_budget_j: f64,
    pub apps: &'a str,
    pub telemetry_ms: u64,
}

/// `mcdnn-node run` for a node enrolled in `ca`, keeping its store and summary in `dir`, serving
/// for `secs` seconds (a compressed shift) with the battery model.
pub fn node_command(
    ca: &Path,
    dir: &Path,
    name: &str,
    class: &str,
    secs: f64,
    run: &NodeRun<'_>,
) -> anyhow::Result<Command> {
    let line = NodeLine {
        apps: Some(run.apps.into()),
        telemetry_ms: Some(run.telemetry_ms),
        summary: Some(dir.join(format!("{name}.summary.json"))),
        catalog: Some(catalog()),
        ..NodeLine::new(
            name,
            run.coordinators,
            class,
            ca,
            dir.join(format!("{name}.store")),
        )
        .shift(secs, run.energy_budget_j)
    };
    let mut cmd = Command::new(bin("mcdnn-node")?);
    cmd.args(line.args());
    Ok(cmd)
}

/// A metric's value from Prometheus text.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// A failed test's processes leave their story in the run folder: when the thread is panicking,
/// keep the folder and print the tail of every log in it, so a flaky failure in CI can be read
/// instead of guessed at.
pub fn keep_on_panic(dir: &mut tempfile::TempDir) {
    if std::thread::panicking() {
        keep_and_report(dir);
    }
}

/// Keeps the run folder past the test and prints the tail of every log in it: for a scenario
/// that fails by returning an error rather than by panicking.
pub fn keep_and_report(dir: &mut tempfile::TempDir) {
    dir.disable_cleanup(true);
    eprintln!("test failed: run folder kept at {}", dir.path().display());
    let mut logs: Vec<PathBuf> = walk_logs(dir.path());
    logs.sort();
    for log in logs {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = &lines[lines.len().saturating_sub(40)..];
        eprintln!(
            "---- {} (last {} lines)\n{}",
            log.display(),
            tail.len(),
            tail.join("\n")
        );
    }
}

fn walk_logs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for path in entries.filter_map(|e| e.ok().map(|e| e.path())) {
        if path.is_dir() {
            out.extend(walk_logs(&path));
        } else if path.extension().is_some_and(|e| e == "log") {
            out.push(path);
        }
    }
    out
}

impl Drop for Fleet {
    fn drop(&mut self) {
        keep_on_panic(&mut self.dir);
    }
}

/// Reads a node's summary file (`mcdnn-node run --summary`).
pub fn read_summary(path: &std::path::Path) -> anyhow::Result<wire::summary::Summary> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    wire::summary::Summary::from_json(&text).with_context(|| format!("parsing {}", path.display()))
}
