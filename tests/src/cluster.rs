//! A coordinator replica set as real processes: replica i listens on its own loopback address
//! 127.0.0.(i+2) with the same ports as the others (as pods of a StatefulSet do), so a replica can
//! be cut off with a firewall rule on its address, killed, wiped or restarted.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use mcdnn_coordinator::admin::ClusterStatus;
use mcdnn_coordinator::ctl::http;
use net::identity::{Ca, Kind};

use crate::{Proc, bin, catalog};

/// Clusters share the addresses 127.0.0.2-4 and a partition firewalls a whole address, so one
/// cluster runs at a time in a process (tests in one binary run on parallel threads).
static BUSY: std::sync::Mutex<bool> = std::sync::Mutex::new(false);
static FREED: std::sync::Condvar = std::sync::Condvar::new();

/// Held by a running cluster; unlike a `MutexGuard` it may move between threads.
struct Exclusive;

impl Exclusive {
    fn acquire() -> Self {
        let mut busy = BUSY.lock().unwrap_or_else(|p| p.into_inner());
        while *busy {
            busy = FREED.wait(busy).unwrap_or_else(|p| p.into_inner());
        }
        *busy = true;
        Exclusive
    }
}

impl Drop for Exclusive {
    fn drop(&mut self) {
        *BUSY.lock().unwrap_or_else(|p| p.into_inner()) = false;
        FREED.notify_one();
    }
}

pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub ca: PathBuf,
    pub size: usize,
    /// Node QUIC port; operator API is +1, raft +2, health +3.
    pub port: u16,
    pub replicas: Vec<Option<Proc>>,
    /// Flags every replica is started with, after the harness's own.
    pub extra_args: Vec<String>,
    /// An admin operator's client for the operator API.
    pub ops: http::Client,
    /// Last, so it is released after the replicas' processes are killed (fields drop in order).
    _exclusive: Exclusive,
}

/// Ports free on every replica address.
fn free_ports(size: usize) -> u16 {
    for _ in 0..200 {
        let Ok(s) = std::net::UdpSocket::bind("127.0.0.1:0") else {
            continue;
        };
        let Ok(a) = s.local_addr() else { continue };
        let p = a.port();
        drop(s);
        if p > 64000 {
            continue;
        }
        let ok = (0..size).all(|i| {
            let ip = host(i);
            std::net::UdpSocket::bind((ip.as_str(), p)).is_ok()
                && std::net::TcpListener::bind((ip.as_str(), p + 1)).is_ok()
                && std::net::UdpSocket::bind((ip.as_str(), p + 2)).is_ok()
                && std::net::TcpListener::bind((ip.as_str(), p + 3)).is_ok()
        });
        if ok {
            return p;
        }
    }
    17400
}

/// Replica i's address: 127.0.0.2, .3, ... Not 127.0.0.1: that is the source address of every
/// node (and test client) on this machine, so firewalling a replica there would cut them too.
pub fn host(i: usize) -> String {
    format!("127.0.0.{}", i + 2)
}

impl Cluster {
    pub fn new(size: usize) -> anyhow::Result<Self> {
        let exclusive = Exclusive::acquire();
        let dir = tempfile::tempdir()?;
        let ca_dir = dir.path().join("ca");
        std::fs::create_dir_all(&ca_dir)?;
        let ca = Ca::init(&ca_dir)?;
        for i in 0..size {
            ca.enroll(
                Kind::Coordinator,
                &format!("coord-{i}"),
                &ca_dir,
                &[host(i)],
                30,
            )?;
        }
        let ops = crate::enroll_operator(&ca_dir)?;
        Ok(Self {
            ops,
            _exclusive: exclusive,
            dir,
            ca: ca_dir,
            size,
            port: free_ports(size),
            replicas: (0..size).map(|_| None).collect(),
            extra_args: Vec::new(),
        })
    }

    pub fn peers(&self) -> String {
        (0..self.size)
            .map(|i| format!("coord-{i}={}", host(i)))
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn node_addr(&self, i: usize) -> String {
        format!("{}:{}", host(i), self.port)
    }

    pub fn admin(&self, i: usize) -> String {
        format!("{}:{}", host(i), self.port + 1)
    }

    pub fn health(&self, i: usize) -> String {
        format!("{}:{}", host(i), self.port + 3)
    }

    pub fn node_addrs(&self) -> String {
        (0..self.size)
            .map(|i| self.node_addr(i))
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn data_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("coord-{i}"))
    }

    /// Starts replica i, always with the same configuration: on an empty disk it forms the
    /// cluster with the others or rejoins it by itself.
    pub fn start(&mut self, i: usize) -> anyhow::Result<()> {
        let name = format!("coord-{i}");
        let log = self.dir.path().join(format!("{name}.log"));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)?;
        let mut cmd = Command::new(bin("mcdnn-coordinator")?);
        cmd.args([
            "run",
            "--name",
            &name,
            "--peers",
            &self.peers(),
            "--solve-interval-ms",
            "500",
        ])
        .arg("--listen")
        .arg(self.node_addr(i))
        .arg("--admin")
        .arg(self.admin(i))
        .arg("--raft-listen")
        .arg(format!("{}:{}", host(i), self.port + 2))
        .arg("--health-listen")
        .arg(self.health(i))
        .arg("--identity-dir")
        .arg(&self.ca)
        .arg("--data-dir")
        .arg(self.data_dir(i))
        .arg("--catalog")
        .arg(catalog())
        .env("MCDNN_LOG", "info,raft=warn")
        .stdout(std::process::Stdio::null())
        .stderr(file);
        cmd.args(&self.extra_args);
        let child = cmd.spawn().with_context(|| format!("starting {name}"))?;
        self.replicas[i] = Some(Proc { name, child, log });
        Ok(())
    }

    pub fn start_all(&mut self) -> anyhow::Result<()> {
        for i in 0..self.size {
            self.start(i)?;
        }
        Ok(())
    }

    pub fn kill(&mut self, i: usize) {
        if let Some(mut p) = self.replicas[i].take() {
            p.kill();
        }
    }

    /// SIGTERM and wait for the exit (a leader hands over first).
    pub fn terminate(&mut self, i: usize) -> anyhow::Result<std::process::ExitStatus> {
        let mut p = self.replicas[i].take().context("replica not running")?;
        p.terminate();
        p.wait_exit(Duration::from_secs(15))
    }

    pub fn wipe(&self, i: usize) {
        let _ = std::fs::remove_dir_all(self.data_dir(i));
    }

    pub fn status(&self, i: usize) -> anyhow::Result<ClusterStatus> {
        let body = self
            .ops
            .get(&self.admin(i), "/cluster", Duration::from_secs(2))?;
        Ok(serde_json::from_str(&body)?)
    }

    /// The replica index every running replica that answers agrees leads, once a majority
    /// answers and agrees.
    pub fn leader(&self) -> Option<usize> {
        let views: Vec<u64> = (0..self.size)
            .filter(|&i| self.replicas[i].is_some())
            .filter_map(|i| self.status(i).ok())
            .filter_map(|s| s.leader_id)
            .collect();
        let first = *views.first()?;
        (views.len() * 2 > self.size && views.iter().all(|&l| l == first))
            .then(|| first as usize - 1)
    }

    pub fn wait_leader(&self, timeout: Duration, not: Option<usize>) -> anyhow::Result<usize> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(l) = self.leader()
                && Some(l) != not
                && self.status(l).is_ok_and(|s| s.role == "Leader")
            {
                return Ok(l);
            }
            if Instant::now() > deadline {
                bail!("no leader within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Writes a policy through any live replica (followers redirect to the leader). Ok(index)
    /// means acknowledged: committed and applied on the leader.
    pub fn write_policy(
        &self,
        key: &str,
        value: f64,
        writer: &str,
        write_id: u64,
    ) -> anyhow::Result<u64> {
        let body =
            serde_json::json!({"key": key, "value": value, "writer": writer, "write_id": write_id})
                .to_string();
        let mut last = String::new();
        for i in 0..self.size {
            if self.replicas[i].is_none() {
                continue;
            }
            match self
                .ops
                .post_json(&self.admin(i), "/policy", &body, Duration::from_secs(3))
            {
                Ok(r) if r.status == 200 => {
                    let v: serde_json::Value = serde_json::from_str(&r.body)?;
                    return v["index"].as_u64().context("ack without index");
                }
                Ok(r) => last = format!("HTTP {}: {}", r.status, r.body.trim()),
                Err(e) => last = format!("{e:#}"),
            }
        }
        bail!("not acknowledged: {last}")
    }

    /// The HTTP status of replica i's `/readyz` (200 ready, 503 without a known leader) once its
    /// health port answers at all, within `timeout`.
    pub fn readyz(&self, i: usize, timeout: Duration) -> anyhow::Result<u16> {
        let deadline = Instant::now() + timeout;
        loop {
            match http::health_status(&self.health(i), "/readyz", Duration::from_secs(2)) {
                Ok(status) => return Ok(status),
                Err(e) if Instant::now() > deadline => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// Waits until replica i's `/readyz` answers `want`; returns the last status seen.
    pub fn wait_readyz(&self, i: usize, want: u16, timeout: Duration) -> anyhow::Result<u16> {
        let deadline = Instant::now() + timeout;
        loop {
            let status = self.readyz(i, timeout)?;
            if status == want || Instant::now() > deadline {
                return Ok(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `POST /members` on replica i (`{"add": id}` or `{"remove": id}`).
    pub fn change_members(
        &self,
        i: usize,
        change: serde_json::Value,
    ) -> anyhow::Result<http::Response> {
        self.ops.post_json(
            &self.admin(i),
            "/members",
            &change.to_string(),
            Duration::from_secs(5),
        )
    }

    /// The policy write log as replica i holds it: (writer label, write_id) in commit order.
    /// The coordinator records writers as `ops/<label>` (certificate name, then the label the
    /// harness chose); the prefix is taken off so callers compare with their own labels.
    pub fn policy_log(&self, i: usize) -> anyhow::Result<Vec<(String, u64)>> {
        let body = self
            .ops
            .get(&self.admin(i), "/policy", Duration::from_secs(3))?;
        let v: serde_json::Value = serde_json::from_str(&body)?;
        Ok(v["log"]
            .as_array()
            .map(|log| {
                log.iter()
                    .filter_map(|w| {
                        let writer = w["writer"].as_str()?;
                        let label = writer
                            .strip_prefix(&format!("{}/", crate::OPERATOR))
                            .unwrap_or(writer);
                        Some((label.to_string(), w["write_id"].as_u64()?))
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Waits until every running replica has applied at least `index`.
    pub fn wait_applied(&self, index: u64, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        for i in 0..self.size {
            if self.replicas[i].is_none() {
                continue;
            }
            while self.status(i).map_or(true, |s| s.applied < index) {
                if Instant::now() > deadline {
                    bail!("replica {i} did not apply index {index} within {timeout:?}");
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(())
    }

    /// Waits until replica i is a voter again in the leader's view (not a learner) and has
    /// applied the leader's commit index: a replica back from an empty disk has rejoined.
    pub fn wait_rejoined(&self, i: usize, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        let id = i as u64 + 1;
        loop {
            // `rejoining` matters: until the leader has taken the replica out and back in, the
            // old membership still lists it as a voter while it cannot vote.
            if let Some(l) = self.leader()
                && let (Ok(ls), Ok(me)) = (self.status(l), self.status(i))
                && ls.voters.contains(&id)
                && !ls.learners.contains(&id)
                && !me.rejoining
                && me.voters.contains(&id)
                && me.applied >= ls.commit
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("replica {i} did not rejoin as a voter within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Cuts replica i off from every other replica and node (its QUIC traffic is dropped).
    pub fn isolate(&self, i: usize) -> anyhow::Result<Partition> {
        Partition::new(&host(i))
    }
}

/// Firewall rules dropping every UDP datagram (QUIC: Raft and node traffic) to or from one
/// loopback address; removed on drop. TCP stays open so the test can still read the cut-off
/// replica's admin API.
pub struct Partition {
    host: String,
}

impl Partition {
    fn rule(action: &str, host: &str, dir: &str) -> anyhow::Result<()> {
        let status = Command::new("iptables")
            .args(["-w", action, "INPUT", "-p", "udp", dir, host, "-j", "DROP"])
            .status()
            .context("running iptables (the partition scenarios need root and iptables)")?;
        if !status.success() {
            bail!("iptables {action} for {host} failed");
        }
        Ok(())
    }

    pub fn new(host: &str) -> anyhow::Result<Self> {
        Self::rule("-I", host, "-s")?;
        Self::rule("-I", host, "-d")?;
        Ok(Self {
            host: host.to_string(),
        })
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        crate::keep_on_panic(&mut self.dir);
    }
}

impl Drop for Partition {
    fn drop(&mut self) {
        let _ = Self::rule("-D", &self.host, "-s");
        let _ = Self::rule("-D", &self.host, "-d");
    }
}

impl Cluster {
    /// Starts a node agent that knows every replica, runs `secs` and writes its summary.
    pub fn node(&self, name: &str, class: &str, secs: f64) -> anyhow::Result<Proc> {
        if !self.ca.join(format!("{name}.pem")).exists() {
            Ca::load(&self.ca)?.enroll(Kind::Node, name, &self.ca, &[], 30)?;
        }
        let addrs = self.node_addrs();
        let run = crate::NodeRun {
            coordinators: &addrs,
            energy_budget_j: 0.2 * secs,
            apps: "garment=6,category=3",
            telemetry_ms: 300,
        };
        let cmd = crate::node_command(&self.ca, self.dir.path(), name, class, secs, &run)?;
        crate::spawn_logged(self.dir.path(), name, cmd)
    }

    pub fn summary_path(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.summary.json"))
    }

    /// The node's end-of-run summary, typed: a missing field is an error, never a zero.
    pub fn summary(&self, name: &str) -> anyhow::Result<wire::summary::Summary> {
        crate::read_summary(&self.summary_path(name))
    }

    /// The fleet as replica i sees it.
    pub fn fleet_status(
        &self,
        i: usize,
    ) -> anyhow::Result<mcdnn_coordinator::fleet::status::FleetStatus> {
        mcdnn_coordinator::ctl::demo::fetch_status(&self.ops, &self.admin(i))
    }
}
