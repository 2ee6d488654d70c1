//! The bench's coordinator cluster: real `mcdnn-coordinator` processes (beside `mcdnnctl`) on
//! loopback addresses of their own, so their CPU and memory are theirs alone (read from
//! `/proc`), not the virtual nodes'.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};

use crate::ctl::http;

/// Replica i's address. 127.0.0.20+: away from the addresses the black-box tests use.
pub fn host(i: usize) -> String {
    format!("127.0.0.{}", 20 + i)
}

/// Started replicas; killed on drop.
pub struct Replicas {
    pub children: Vec<Child>,
    pub port: u16,
}

impl Replicas {
    /// Starts `n` replicas of `program` named `coord-<i>` with identities in `ca_dir` (already enrolled).
    /// With `cpus`, each replica runs under `taskset -c CPUS` (its whole life: the CPU list is
    /// set before it starts).
    pub fn start(
        program: Option<&Path>,
        n: usize,
        dirs: (&Path, &Path),
        catalog: &Path,
        solve_interval_ms: u64,
        port: u16,
        cpus: Option<&str>,
    ) -> anyhow::Result<Replicas> {
        let (ca_dir, run_dir) = dirs;
        let program = match program {
            Some(p) => p.to_path_buf(),
            None => std::env::current_exe()
                .context("locating mcdnnctl")?
                .with_file_name("mcdnn-coordinator"),
        };
        if !program.is_file() {
            bail!(
                "{} not found beside mcdnnctl; build it (cargo build --release -p mcdnn-coordinator)",
                program.display()
            );
        }
        let peers: Vec<String> = (0..n).map(|i| format!("coord-{i}={}", host(i))).collect();
        let mut replicas = Replicas {
            children: Vec::new(),
            port,
        };
        for i in 0..n {
            let name = format!("coord-{i}");
            let log = std::fs::File::create(run_dir.join(format!("{name}.log")))?;
            let mut command = match cpus {
                Some(cpus) => {
                    let mut c = Command::new("taskset");
                    c.args(["-c", cpus]).arg(&program);
                    c
                }
                None => Command::new(&program),
            };
            let child = command
                .arg("run")
                .args(["--name", &name, "--peers", &peers.join(",")])
                .args(["--solve-interval-ms", &solve_interval_ms.to_string()])
                .arg("--listen")
                .arg(format!("{}:{port}", host(i)))
                .arg("--raft-listen")
                .arg(format!("{}:{}", host(i), port + 1))
                .arg("--admin")
                .arg(format!("{}:{}", host(i), port + 2))
                .arg("--health-listen")
                .arg(replicas.health(i))
                .arg("--identity-dir")
                .arg(ca_dir)
                .arg("--data-dir")
                .arg(run_dir.join(&name))
                .arg("--catalog")
                .arg(catalog)
                .env("MCDNN_LOG", "warn")
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .with_context(|| format!("starting {name}"))?;
            replicas.children.push(child);
        }
        Ok(replicas)
    }

    pub fn node_addr(&self, i: usize) -> String {
        format!("{}:{}", host(i), self.port)
    }

    pub fn health(&self, i: usize) -> String {
        format!("{}:{}", host(i), self.port + 3)
    }

    /// A counter or gauge from replica i's `/metrics`.
    pub fn metric(&self, i: usize, name: &str) -> anyhow::Result<f64> {
        let text = http::health_get(&self.health(i), "/metrics", Duration::from_secs(2))?;
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .find_map(|l| {
                let (k, v) = l.split_once(' ')?;
                (k == name).then(|| v.trim().parse::<f64>().ok())?
            })
            .with_context(|| format!("replica {i} has no {name}"))
    }

    pub fn pid(&self, i: usize) -> u32 {
        self.children[i].id()
    }

    /// The highest Raft term any replica reports (a replica that does not answer is skipped:
    /// under load a health request can time out), `None` if none answered. Pre-vote keeps
    /// failed elections from raising it, so each step is an election that took place.
    pub fn max_term(&self) -> Option<u64> {
        (0..self.children.len())
            .filter_map(|i| self.metric(i, "mcdnn_raft_term").ok())
            .map(|t| t as u64)
            .max()
    }
}

impl Drop for Replicas {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// CPU seconds (user + system) a process has used, from `/proc/<pid>/stat`.
pub fn cpu_seconds(pid: &str) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (field 2) may hold spaces; fields after its closing parenthesis.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).context("bad stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 (1-based), i.e. 11 and 12 after the name.
    let ticks: f64 = fields
        .get(11..13)
        .context("short stat")?
        .iter()
        .map(|f| f.parse::<f64>().unwrap_or(0.0))
        .sum();
    Ok(ticks / clock_ticks_per_s())
}

fn clock_ticks_per_s() -> f64 {
    // Linux has reported USER_HZ = 100 to user space on every architecture for decades.
    100.0
}

/// Resident memory of a process, bytes, from `/proc/<pid>/status`.
pub fn rss_bytes(pid: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok())
        .context("no VmRSS")?;
    Ok(kb * 1024)
}

/// Restricts every thread of this process (and the threads and processes it starts later) to
/// `cpus` (a `taskset -c` list), so the virtual nodes do not take the cluster's CPUs.
pub fn pin_self(cpus: &str) -> anyhow::Result<()> {
    let pid = std::process::id().to_string();
    let status = Command::new("taskset")
        .args(["-a", "-p", "-c", cpus, &pid])
        .stdout(Stdio::null())
        .status()
        .context("running taskset (util-linux)")?;
    if !status.success() {
        bail!("taskset -a -p -c {cpus} failed ({status}): is the CPU list valid?");
    }
    Ok(())
}

/// Lowers the scheduling priority of every thread of this process to `nice` (threads started
/// later inherit it), so that on a shared machine the replicas win the CPU over the virtual
/// nodes. Linux keeps a nice value per thread, hence every task of `/proc/self/task`.
pub fn nice_self(nice: i32) -> anyhow::Result<()> {
    let tasks: Vec<String> = std::fs::read_dir("/proc/self/task")
        .context("listing /proc/self/task")?
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    let status = Command::new("renice")
        .args(["-n", &nice.to_string(), "-p"])
        .args(&tasks)
        .stdout(Stdio::null())
        .status()
        .context("running renice (util-linux)")?;
    if !status.success() {
        bail!("renice -n {nice} failed ({status})");
    }
    Ok(())
}

/// A client endpoint for virtual nodes with a receive buffer as large as the coordinator's node
/// socket asks for: hundreds of connections share it, and a default-sized buffer overflows
/// whenever its task is scheduled late (a dropped ping answer looks like a dead leader).
pub fn client_endpoint() -> anyhow::Result<quinn::Endpoint> {
    let socket = std::net::UdpSocket::bind(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))?;
    let state = quinn::udp::UdpSocketState::new((&socket).into())?;
    let wanted = crate::fleet::node_endpoint::SOCKET_RECV_BUFFER;
    if let Err(e) = state.set_recv_buffer_size((&socket).into(), wanted) {
        eprintln!("could not enlarge a virtual-node socket's receive buffer: {e}");
    }
    let runtime = quinn::default_runtime().context("virtual nodes need a tokio runtime")?;
    Ok(quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        None,
        socket,
        runtime,
    )?)
}

/// The kernel's count of UDP datagrams dropped because a socket's receive buffer was full.
pub fn udp_receive_buffer_drops() -> anyhow::Result<u64> {
    let snmp = std::fs::read_to_string("/proc/net/snmp").context("reading /proc/net/snmp")?;
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let (names, values) = (udp.next(), udp.next());
    let (Some(names), Some(values)) = (names, values) else {
        bail!("/proc/net/snmp has no Udp lines");
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "RcvbufErrors")
        .context("/proc/net/snmp has no RcvbufErrors")?
        .1
        .parse()
        .context("RcvbufErrors is not a number")
}
