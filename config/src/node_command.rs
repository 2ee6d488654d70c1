//! The command line of `mcdnn-node run`, typed. One builder for every program that starts node
//! agents (`mcdnnctl demo`, the test harness, `mcdnn-chaos`), so a renamed or new flag changes one
//! place; the node crate's test parses this builder's output with the node's real command line.

use std::ffi::OsString;
use std::path::PathBuf;

/// An offload server's part of the command line (`--role server`).
#[derive(Debug, Clone, PartialEq)]
pub struct ServerRole {
    /// Where the server listens for offloaded frames.
    pub listen: String,
    /// Requests per second the server admits.
    pub capacity_rps: f64,
}

/// `mcdnn-node run` for one node. Fields left `None` keep the node's own defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeRun {
    pub name: String,
    /// Coordinator addresses, tried in order (`--coordinator a,b,c`).
    pub coordinators: String,
    pub device_class: String,
    /// Folder with the CA certificate and this node's certificate and key.
    pub identity_dir: PathBuf,
    /// The node's sled store (models, spool).
    pub store: PathBuf,
    /// `app=requests_per_s,...`.
    pub apps: Option<String>,
    /// Drain the energy budget with the battery model.
    pub battery_model: bool,
    pub energy_budget_j: Option<f64>,
    /// Shift the budget must last (s) and how long the node runs (s).
    pub shift_s: Option<f64>,
    pub duration_s: Option<f64>,
    pub telemetry_ms: Option<u64>,
    pub seed: Option<u64>,
    /// Where the end-of-run summary is written.
    pub summary: Option<PathBuf>,
    pub catalog: Option<PathBuf>,
    /// Per-request policy (`--policy`): `mcdnn` follows the fleet plan; the baselines decide
    /// on the device alone.
    pub policy: Option<String>,
    pub server: Option<ServerRole>,
    /// Class mix of the replayed stream (`--mix`).
    pub mix: Option<String>,
    /// Ignore specialised heads the coordinator assigns (`--no-specialise`: the baseline).
    pub no_specialise: bool,
    /// What the node serves (`--source`: `replay`, `api`, `file:PATH`, `v4l2:DEVICE`).
    pub source: Option<String>,
    /// Play a file source again each time it ends (`--source-loop`).
    pub source_loop: bool,
    /// Memory for loaded models, MB (`--model-memory-mb`).
    pub model_memory_mb: Option<f64>,
}

impl NodeRun {
    /// A device node with the node's defaults for everything not named here.
    pub fn new(
        name: impl Into<String>,
        coordinators: impl Into<String>,
        device_class: impl Into<String>,
        identity_dir: impl Into<PathBuf>,
        store: impl Into<PathBuf>,
    ) -> NodeRun {
        NodeRun {
            name: name.into(),
            coordinators: coordinators.into(),
            device_class: device_class.into(),
            identity_dir: identity_dir.into(),
            store: store.into(),
            apps: None,
            battery_model: false,
            energy_budget_j: None,
            shift_s: None,
            duration_s: None,
            telemetry_ms: None,
            seed: None,
            summary: None,
            catalog: None,
            policy: None,
            server: None,
            mix: None,
            no_specialise: false,
            source: None,
            source_loop: false,
            model_memory_mb: None,
        }
    }

    /// A compressed shift: the battery model drains `energy_budget_j` over `secs`, and the node
    /// runs for `secs`.
    pub fn shift(mut self, secs: f64, energy_budget_j: f64) -> NodeRun {
        self.battery_model = true;
        self.energy_budget_j = Some(energy_budget_j);
        self.shift_s = Some(secs);
        self.duration_s = Some(secs);
        self
    }

    /// The arguments after the program name, starting with `run`.
    pub fn args(&self) -> Vec<OsString> {
        let mut a: Vec<OsString> = Vec::new();
        let mut flag = |name: &str, value: OsString| {
            a.push(format!("--{name}").into());
            a.push(value);
        };
        flag("name", self.name.clone().into());
        flag("coordinator", self.coordinators.clone().into());
        flag("device-class", self.device_class.clone().into());
        flag("identity-dir", self.identity_dir.clone().into());
        flag("store", self.store.clone().into());
        let text = |v: &dyn std::fmt::Display| OsString::from(v.to_string());
        let optional: [(&str, Option<OsString>); 13] = [
            ("apps", self.apps.as_ref().map(|v| text(v))),
            ("energy-budget-j", self.energy_budget_j.map(|v| text(&v))),
            ("shift-s", self.shift_s.map(|v| text(&v))),
            ("duration-s", self.duration_s.map(|v| text(&v))),
            ("telemetry-ms", self.telemetry_ms.map(|v| text(&v))),
            ("seed", self.seed.map(|v| text(&v))),
            ("summary", self.summary.clone().map(Into::into)),
            ("catalog", self.catalog.clone().map(Into::into)),
            ("policy", self.policy.as_ref().map(|v| text(v))),
            ("role", self.server.as_ref().map(|_| "server".into())),
            ("mix", self.mix.clone().map(Into::into)),
            ("source", self.source.clone().map(Into::into)),
            ("model-memory-mb", self.model_memory_mb.map(|v| text(&v))),
        ];
        for (name, value) in optional {
            if let Some(value) = value {
                flag(name, value);
            }
        }
        if let Some(server) = &self.server {
            flag("offload-listen", server.listen.clone().into());
            flag("capacity-rps", text(&server.capacity_rps));
        }
        let mut out: Vec<OsString> = vec!["run".into()];
        out.extend(a);
        if self.battery_model {
            out.push("--battery-model".into());
        }
        if self.no_specialise {
            out.push("--no-specialise".into());
        }
        if self.source_loop {
            out.push("--source-loop".into());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_are_written_only_when_set() {
        let bare = NodeRun::new("cam-1", "127.0.0.1:7400", "laptop", "ca", "s").args();
        assert_eq!(bare.len(), 11, "{bare:?}");
        assert!(!bare.contains(&"--battery-model".into()));
        let full = NodeRun {
            server: Some(ServerRole {
                listen: "127.0.0.1:7600".into(),
                capacity_rps: 20.0,
            }),
            source: Some("file:clip.avi".into()),
            source_loop: true,
            model_memory_mb: Some(64.0),
            ..NodeRun::new("srv", "c", "laptop", "ca", "s").shift(30.0, 3.0)
        }
        .args();
        let text: Vec<String> = full.iter().map(|a| a.to_string_lossy().into()).collect();
        for pair in [
            ["--role", "server"],
            ["--capacity-rps", "20"],
            ["--shift-s", "30"],
            ["--source", "file:clip.avi"],
            ["--model-memory-mb", "64"],
        ] {
            assert!(text.windows(2).any(|w| w == pair), "{pair:?} in {text:?}");
        }
        assert!(text.contains(&"--battery-model".to_string()));
        assert!(text.contains(&"--source-loop".to_string()));
    }
}
