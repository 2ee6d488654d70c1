//! Who is in the demo fleet: device classes, battery levels, app rates, their certificates and
//! the `mcdnn-node run` line each node is started with.

use std::path::Path;

use config_file::node_command::NodeRun;
use net::identity::{Ca, Kind, OperatorRole};

/// A node of the demo fleet: device class, energy budget per second of shift, app rates.
pub(super) struct NodeSpec {
    pub(super) name: String,
    pub(super) class: &'static str,
    pub(super) joules_per_s: f64,
    pub(super) apps: &'static str,
}

/// What the demo fleet serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Workload {
    /// The Fashion-MNIST apps on the replayed test split.
    Fashion,
    /// The face app on Megamind.avi against a watchlist.
    Face,
}

pub(super) fn fleet(n: usize, workload: Workload) -> Vec<NodeSpec> {
    // Budgets per class chosen so they bind on every node (the comparison of policies says
    // nothing otherwise): a body camera with a low battery, a phone at half, a laptop on a
    // tight power budget; none can run its best variant on every request.
    const FASHION: [(&str, f64, &str); 3] = [
        ("bodycam-lite", 0.06, "garment=4,category=2"),
        ("phone-2016", 0.08, "garment=4,category=4"),
        ("laptop", 0.04, "garment=6,category=3"),
    ];
    // A face request costs 1.21 J on bodycam-lite with int8-150 (3.02 J with fp32-150), 1.04
    // (2.08) on phone-2016 and 0.40 (0.61) on the laptop, and every tenth is audited with
    // fp32-150 too: at 2 frames/s the body camera's budget (2.6 J/s) covers int8 on every
    // frame but not all the audits, the phone's just covers both, the laptop's leaves room.
    // (At 2.0 J/s the body camera's per-request share is under one int8 run: it drops all.)
    const FACE: [(&str, f64, &str); 3] = [
        ("bodycam-lite", 2.6, "face-id=2"),
        ("phone-2016", 2.5, "face-id=2"),
        ("laptop", 1.5, "face-id=2"),
    ];
    let classes = match workload {
        Workload::Fashion => FASHION,
        Workload::Face => FACE,
    };
    (0..n)
        .map(|i| {
            let (class, jps, apps) = classes[i % classes.len()];
            // Later nodes of a class start with less battery.
            let level = 1.0 - 0.25 * (i / classes.len()) as f64;
            NodeSpec {
                name: format!("cam-{}", i + 1),
                class,
                joules_per_s: jps * level.max(0.25),
                apps,
            }
        })
        .collect()
}

/// Where a demo node finds its coordinator, identity, catalog, and keeps its files.
pub(super) struct NodePlaces<'a> {
    pub(super) coordinator: &'a str,
    pub(super) ca_dir: &'a Path,
    pub(super) run_dir: &'a Path,
    pub(super) catalog: Option<&'a Path>,
}

impl NodeSpec {
    /// The node's command line for a shift compressed to `secs`; `seed` varies its stream.
    pub(super) fn command_line(&self, places: &NodePlaces<'_>, secs: f64, seed: u64) -> NodeRun {
        let file = |suffix: &str| places.run_dir.join(format!("{}.{suffix}", self.name));
        NodeRun {
            apps: Some(self.apps.into()),
            telemetry_ms: Some(500),
            seed: Some(seed),
            summary: Some(file("summary.json")),
            catalog: places.catalog.map(Path::to_path_buf),
            ..NodeRun::new(
                &self.name,
                places.coordinator,
                self.class,
                places.ca_dir,
                file("store"),
            )
            .shift(secs, (self.joules_per_s * secs * 1000.0).round() / 1000.0)
        }
    }
}

/// The read-only operator identity the demo's live view reads `/status` with.
pub const DEMO_OPERATOR: &str = "demo-viewer";

/// Creates the CA and the certificates the demo needs (`admin`: an admin operator too, to
/// enrol the watchlist), keeping any that exist.
pub(super) fn certificates(
    dir: &Path,
    nodes: &[NodeSpec],
    admin: Option<&str>,
) -> anyhow::Result<()> {
    let ca = if dir.join(net::identity::CA_CERT_FILE).exists() {
        Ca::load(dir)?
    } else {
        Ca::init(dir)?
    };
    let mut want = vec![(Kind::Coordinator, "coord-0".to_string())];
    want.extend(nodes.iter().map(|n| (Kind::Node, n.name.clone())));
    for (kind, name) in want {
        if !dir.join(format!("{name}.pem")).exists() {
            ca.enroll(kind, &name, dir, &[], 30)?;
        }
    }
    if !dir.join(format!("{DEMO_OPERATOR}.pem")).exists() {
        ca.enroll_operator(DEMO_OPERATOR, dir, OperatorRole::ReadOnly, 30)?;
    }
    if let Some(admin) = admin.filter(|a| !dir.join(format!("{a}.pem")).exists()) {
        ca.enroll_operator(admin, dir, OperatorRole::Admin, 30)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fleet_mixes_classes_and_battery_levels() {
        let f = fleet(6, Workload::Fashion);
        assert_eq!(f.len(), 6);
        assert_ne!(f[0].class, f[1].class);
        assert_eq!(f[0].class, f[3].class);
        assert!(
            f[3].joules_per_s < f[0].joules_per_s,
            "later nodes start with less battery"
        );
    }

    #[test]
    fn a_node_runs_its_shift_on_its_budget() {
        let spec = &fleet(1, Workload::Fashion)[0];
        let places = NodePlaces {
            coordinator: "127.0.0.1:7400",
            ca_dir: Path::new("ca"),
            run_dir: Path::new("run"),
            catalog: None,
        };
        let line = spec.command_line(&places, 30.0, 3);
        assert_eq!(line.energy_budget_j, Some(1.8));
        assert_eq!((line.shift_s, line.duration_s), (Some(30.0), Some(30.0)));
        assert!(line.battery_model);
        assert_eq!(line.store, Path::new("run/cam-1.store"));
        let face = &fleet(3, Workload::Face);
        assert!(face.iter().all(|n| n.apps.starts_with("face-id=")));
    }
}
