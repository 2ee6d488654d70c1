//! `mcdnn-node run` configuration: flags, each also settable as `MCDNN_*` environment variables
//! (clap `env`), with defaults that run locally.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;

use crate::frames::ClassMix;

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// A TOML file of settings named like these flags (`device-class = "laptop"`); flags and
    /// `MCDNN_*` variables override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Node id; must be the name in this node's certificate.
    #[arg(long, env = "MCDNN_NODE_NAME")]
    pub name: String,
    /// Folder with `<name>.pem`, `<name>.key` and `ca.pem` (from `mcdnnctl enroll node NAME`).
    #[arg(long, env = "MCDNN_IDENTITY_DIR", default_value = "fleet-ca")]
    pub identity_dir: PathBuf,
    /// Coordinator addresses (host:port); repeat or comma-separate. A follower redirects to the
    /// leader.
    #[arg(
        long = "coordinator",
        env = "MCDNN_COORDINATORS",
        value_delimiter = ',',
        default_value = "127.0.0.1:7400"
    )]
    pub coordinators: Vec<String>,
    /// Device class from the catalog's device_classes (bodycam-lite, phone-2016, laptop).
    #[arg(long, env = "MCDNN_DEVICE_CLASS", default_value = "phone-2016")]
    pub device_class: String,
    /// Energy the vision apps may spend over the shift, joules.
    #[arg(long, env = "MCDNN_ENERGY_BUDGET_J", default_value_t = 7200.0)]
    pub energy_budget_j: f64,
    /// Battery capacity in watt-hours (the battery model's; a real battery is read from sysfs).
    #[arg(long, env = "MCDNN_BATTERY_WH", default_value_t = 10.0)]
    pub battery_wh: f64,
    /// Use only the battery model even where /sys/class/power_supply has a battery.
    #[arg(long, env = "MCDNN_BATTERY_MODEL")]
    pub battery_model: bool,
    /// Cloud budget over the shift, USD.
    #[arg(long, env = "MCDNN_COST_BUDGET_USD", default_value_t = 0.0667)]
    pub cost_budget_usd: f64,
    /// Shift length in seconds: the budgets must last this long.
    #[arg(long, env = "MCDNN_SHIFT_S", default_value_t = 36_000.0)]
    pub shift_s: f64,
    /// Stop after this many seconds (default: run until SIGINT/SIGTERM).
    #[arg(long, env = "MCDNN_DURATION_S")]
    pub duration_s: Option<f64>,
    /// Apps and request rates, `app=rate,...`.
    #[arg(long, env = "MCDNN_APPS", default_value = "garment=4,category=2")]
    pub apps: String,
    /// Class mix of the replayed stream: `uniform` or `skewed:TOP:SHARE:EPISODE_S[:FROM_S[:UNTIL_S]]`
    /// (uniform before `FROM_S` and from `UNTIL_S` seconds into the stream).
    #[arg(long, env = "MCDNN_MIX", default_value = "uniform")]
    pub mix: String,
    /// Per-request policy: mcdnn, paper, best-device, cloud, cheapest.
    #[arg(long, env = "MCDNN_POLICY", default_value = "mcdnn")]
    pub policy: String,
    /// Memory for loaded models, MB.
    #[arg(long, env = "MCDNN_MODEL_MEMORY_MB", default_value_t = 8.0)]
    pub model_memory_mb: f64,
    /// Catalog manifest (default: models/catalog.json or MCDNN_CATALOG).
    #[arg(long)]
    pub catalog: Option<PathBuf>,
    /// Folder with the Fashion-MNIST idx files (default: MCDNN_DATA or Debian's).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// The node's sled database folder.
    #[arg(long, env = "MCDNN_STORE", default_value = "node-store")]
    pub store: PathBuf,
    /// Write the end-of-run summary (JSON) here.
    #[arg(long)]
    pub summary: Option<PathBuf>,
    /// Send telemetry this often (milliseconds).
    #[arg(long, env = "MCDNN_TELEMETRY_MS", default_value_t = 1000)]
    pub telemetry_ms: u64,
    /// Ignore specialised heads the coordinator assigns (a baseline for measuring them).
    #[arg(long, env = "MCDNN_NO_SPECIALISE")]
    pub no_specialise: bool,
    /// Largest Euclidean distance between face descriptors at which a face is named from the
    /// watchlist (0.6: the descriptor network's same-person distance); farther is "unknown".
    #[arg(long, env = "MCDNN_WATCHLIST_THRESHOLD", default_value_t = 0.6)]
    pub watchlist_threshold: f32,
    /// A face app also runs its reference variant (the catalog's `full` face variant) on every
    /// this many requests and reports how often the two agree (0: no audit).
    #[arg(long, env = "MCDNN_FACE_AUDIT_EVERY", default_value_t = 10)]
    pub face_audit_every: u64,
    /// Seed for the replayed stream.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Log as JSON lines.
    #[arg(long, env = "MCDNN_LOG_JSON")]
    pub log_json: bool,
    /// `device` (runs its own apps) or `server` (serves offloaded requests for enrolled nodes).
    #[arg(long, env = "MCDNN_ROLE", default_value = "device", value_parser = ["device", "server"])]
    pub role: String,
    /// Server role: requests per second this server can sustain (reported to the fleet solver).
    #[arg(long, env = "MCDNN_CAPACITY_RPS", default_value_t = 50.0)]
    pub capacity_rps: f64,
    /// Server role: QUIC address to accept offload requests on (7600: clear of the
    /// coordinator's 7400 nodes, 7480/7481 operator/health and 7500 Raft ports).
    #[arg(long, env = "MCDNN_OFFLOAD_LISTEN", default_value = "127.0.0.1:7600")]
    pub offload_listen: std::net::SocketAddr,
    /// Server role: address devices are told to use (default: --offload-listen). The server's
    /// certificate must name its host (enrol with `--san`).
    #[arg(long, env = "MCDNN_OFFLOAD_ADVERTISE")]
    pub offload_advertise: Option<String>,
    /// Device role: offload to this server instead of the assignment's target.
    #[arg(long, env = "MCDNN_OFFLOAD_SERVER")]
    pub offload_server: Option<String>,
    /// Device role: give up on the offload server after this long and answer locally; keep it
    /// under the app's latency limit minus local inference time.
    #[arg(long, env = "MCDNN_OFFLOAD_TIMEOUT_MS", default_value_t = 300)]
    pub offload_timeout_ms: u64,
    /// Where model bytes come from: `folder` (beside the catalog) or `coordinator` (fetched as
    /// verified shards into the node store).
    #[arg(long, env = "MCDNN_MODELS", default_value = "folder", value_parser = ["folder", "coordinator"])]
    pub models: String,
    /// Disk for stored model shards, MB; unreferenced variants are collected beyond it.
    #[arg(long, env = "MCDNN_MODEL_DISK_MB", default_value_t = 64.0)]
    pub model_disk_mb: f64,
    /// Which variants to keep stored: `assigned` or `all`.
    #[arg(long, env = "MCDNN_PREFETCH", default_value = "assigned", value_parser = ["assigned", "all"])]
    pub prefetch: String,
    /// Cap model downloads at this many MB/s (a metered uplink).
    #[arg(long, env = "MCDNN_FETCH_MAX_MBPS")]
    pub fetch_max_mbps: Option<f64>,
    /// At the end of a run, wait this long for spooled results to be acknowledged.
    #[arg(long, env = "MCDNN_DRAIN_TIMEOUT_S", default_value_t = 15.0)]
    pub drain_timeout_s: f64,
    /// What the serving loop serves besides API calls: `replay` (Fashion-MNIST test images),
    /// `api` (API calls only), `file:PATH` (a video file, played at its frame rate) or
    /// `v4l2:DEVICE` (a camera).
    #[arg(long, env = "MCDNN_SOURCE", default_value = "replay")]
    pub source: String,
    /// Play a `file:` source again from the start each time it ends (until `--duration-s`).
    #[arg(long, env = "MCDNN_SOURCE_LOOP")]
    pub source_loop: bool,
    /// Serve the local inference API on this loopback address (127.0.0.1:PORT).
    #[arg(long, env = "MCDNN_API_LISTEN")]
    pub api_listen: Option<std::net::SocketAddr>,
    /// Serve the local inference API on this Unix socket (created with mode 0600).
    #[arg(long, env = "MCDNN_API_SOCKET")]
    pub api_socket: Option<PathBuf>,
    /// Requests the serving loop's intake holds for outside clients; more are refused.
    #[arg(long, env = "MCDNN_INTAKE", default_value_t = 16)]
    pub intake: usize,
    /// How long an API call may wait in the serving loop before it is dropped as late, ms.
    #[arg(long, env = "MCDNN_API_DEADLINE_MS", default_value_t = 2000)]
    pub api_deadline_ms: u64,
}

/// What feeds the serving loop besides the API.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    Replay,
    ApiOnly,
    Video(crate::video::VideoSource),
}

impl RunArgs {
    pub fn app_rates(&self) -> anyhow::Result<Vec<(String, f64)>> {
        parse_apps(&self.apps)
    }

    pub fn class_mix(&self) -> anyhow::Result<ClassMix> {
        parse_mix(&self.mix)
    }

    pub fn input_source(&self) -> anyhow::Result<Source> {
        let source = match self.source.as_str() {
            "replay" => Source::Replay,
            "api" => Source::ApiOnly,
            other => Source::Video(other.parse().map_err(|e| {
                anyhow::anyhow!("--source: {e} (or `replay`, or `api` for API calls only)")
            })?),
        };
        if source == Source::ApiOnly && self.api_listen.is_none() && self.api_socket.is_none() {
            bail!("--source api needs --api-listen or --api-socket");
        }
        Ok(source)
    }
}

pub fn parse_apps(text: &str) -> anyhow::Result<Vec<(String, f64)>> {
    let mut out = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (app, rate) = part
            .split_once('=')
            .with_context(|| format!("--apps: {part:?} is not app=rate"))?;
        let rate: f64 = rate
            .parse()
            .with_context(|| format!("--apps: rate of {app} is not a number"))?;
        if !(rate.is_finite() && rate > 0.0) {
            bail!("--apps: rate of {app} must be positive");
        }
        out.push((app.to_string(), rate));
    }
    if out.is_empty() {
        bail!("--apps names no app");
    }
    Ok(out)
}

pub fn parse_mix(text: &str) -> anyhow::Result<ClassMix> {
    if text == "uniform" {
        return Ok(ClassMix::Uniform);
    }
    let parts: Vec<&str> = text.split(':').collect();
    match parts.as_slice() {
        ["skewed", top, share, episode, window @ ..] if window.len() <= 2 => {
            let share: f64 = share.parse().context("--mix share")?;
            if !(0.0..=1.0).contains(&share) {
                bail!("--mix share must be in [0, 1]");
            }
            let seconds = |i: usize, default: f64| -> anyhow::Result<f64> {
                window.get(i).map_or(Ok(default), |t| {
                    t.parse::<f64>().context("--mix skew window seconds")
                })
            };
            let (from_s, until_s) = (seconds(0, 0.0)?, seconds(1, f64::INFINITY)?);
            if from_s.is_nan() || from_s < 0.0 || until_s.is_nan() || until_s < from_s {
                bail!("--mix FROM_S and UNTIL_S must satisfy 0 <= FROM_S <= UNTIL_S");
            }
            Ok(ClassMix::Skewed {
                top: top.parse().context("--mix top")?,
                share,
                episode_s: episode.parse().context("--mix episode seconds")?,
                from_s,
                until_s,
            })
        }
        _ => bail!(
            "--mix must be `uniform` or `skewed:TOP:SHARE:EPISODE_S[:FROM_S[:UNTIL_S]]`, not {text:?}"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_apps_and_mix() {
        assert_eq!(parse_apps("garment=4, category=0.5").expect("ok").len(), 2);
        assert!(parse_apps("garment").is_err());
        assert!(parse_apps("garment=-1").is_err());
        assert!(parse_apps("").is_err());
        assert_eq!(parse_mix("uniform").expect("ok"), ClassMix::Uniform);
        assert_eq!(
            parse_mix("skewed:3:0.7:60").expect("ok"),
            ClassMix::Skewed {
                top: 3,
                share: 0.7,
                episode_s: 60.0,
                from_s: 0.0,
                until_s: f64::INFINITY,
            }
        );
        assert_eq!(
            parse_mix("skewed:3:0.9:1e6:10:70").expect("ok"),
            ClassMix::Skewed {
                top: 3,
                share: 0.9,
                episode_s: 1e6,
                from_s: 10.0,
                until_s: 70.0,
            }
        );
        assert!(
            parse_mix("skewed:3:0.9:60:70:10").is_err(),
            "ends before it starts"
        );
        assert!(parse_mix("skewed:3:0.9:60:1:2:3").is_err());
        assert!(parse_mix("skewed:3:1.7:60").is_err());
        assert!(parse_mix("zipf").is_err());
    }
}
