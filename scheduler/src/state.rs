//! What a policy is told about the device: budgets, what is resident, connectivity, and the
//! coordinator's constraints. The caller (simulator or node agent) owns and updates it; the
//! scheduler only reads it, so it never needs a clock or telemetry of its own.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::{Deserialize, Serialize};

use crate::catalog::{Catalog, Place, VariantKey};

/// Budgets over the horizon for one device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Budgets {
    pub energy_j: f64,
    pub cost_usd: f64,
    pub horizon_s: f64,
    /// Memory for models on the device.
    pub memory_mb: f64,
}

impl Budgets {
    /// The catalog's default budgets (the authors' constants for `paper`).
    pub fn from_catalog(catalog: &Catalog) -> Budgets {
        let c = &catalog.constants;
        Budgets {
            energy_j: c.energy_budget_j,
            cost_usd: c.cost_budget_usd,
            horizon_s: c.horizon_s,
            memory_mb: c.memory_mb,
        }
    }
}

/// A coordinator assignment that narrows what a policy may choose on this node.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Constraints {
    /// Per app, the variants the node may run; an app not listed is unrestricted.
    pub allowed: BTreeMap<String, BTreeSet<String>>,
    /// Whether requests may be offloaded at all.
    pub offload_forbidden: bool,
    /// Apps whose requests never leave the device (face apps: the offload protocol carries the
    /// catalog's gray input, not a camera frame).
    pub device_only: BTreeSet<String>,
    /// Per-request caps from the fleet plan (expected energy / cost of one request).
    pub energy_cap_j: Option<f64>,
    pub cost_cap_usd: Option<f64>,
}

impl Constraints {
    /// Whether the constraints admit running `variant` of `app` at `place`.
    pub fn admits(&self, app: &str, variant: &str, place: Place) -> bool {
        if place == Place::Server && (self.offload_forbidden || self.device_only.contains(app)) {
            return false;
        }
        self.allowed
            .get(app)
            .is_none_or(|set| set.contains(variant))
    }
}

/// The device as the policy sees it at a request.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceState {
    pub energy_left_j: f64,
    pub cost_left_usd: f64,
    /// End of the horizon (same clock as `now_s`).
    pub end_s: f64,
    pub connected: bool,
    /// Memory available for models.
    pub memory_mb: f64,
    /// Variants in device memory, least recently used first.
    pub resident: Vec<VariantKey>,
    /// Variants the offload server has loaded.
    pub server_loaded: Vec<VariantKey>,
    /// Trunks already computed for the current frame, and where (shared by the next heads).
    pub frame_trunks: Vec<(usize, Place)>,
    /// Per app index, where its last request ran (None: never, or the last one was dropped):
    /// the authors' "status", which decides paging and the cold-miss latency check under
    /// [`crate::catalog::EvalModel::Authors`]. Whoever runs requests keeps it
    /// ([`DeviceState::set_running`]).
    pub running: Vec<Option<Place>>,
}

impl DeviceState {
    /// A fresh device at `start_s` with full budgets and nothing loaded.
    pub fn new(budgets: &Budgets, start_s: f64) -> DeviceState {
        DeviceState {
            energy_left_j: budgets.energy_j,
            cost_left_usd: budgets.cost_usd,
            end_s: start_s + budgets.horizon_s,
            connected: true,
            memory_mb: budgets.memory_mb,
            resident: Vec::new(),
            server_loaded: Vec::new(),
            frame_trunks: Vec::new(),
            running: Vec::new(),
        }
    }

    /// Where `app`'s last request ran (None: not running).
    pub fn running_at(&self, app: usize) -> Option<Place> {
        self.running.get(app).copied().flatten()
    }

    /// Records where `app`'s request ran (None when it was dropped).
    pub fn set_running(&mut self, app: usize, place: Option<Place>) {
        if self.running.len() <= app {
            self.running.resize(app + 1, None);
        }
        self.running[app] = place;
    }

    pub fn is_resident(&self, key: VariantKey) -> bool {
        self.resident.contains(&key)
    }

    /// Whether the app has any variant loaded at `place` (else a request there is a cold start).
    pub fn app_warm(&self, app: usize, place: Place) -> bool {
        let list = match place {
            Place::Device => &self.resident,
            Place::Server => &self.server_loaded,
        };
        list.iter().any(|k| k.app == app)
    }

    pub fn is_loaded(&self, key: VariantKey, place: Place) -> bool {
        match place {
            Place::Device => self.resident.contains(&key),
            Place::Server => self.server_loaded.contains(&key),
        }
    }

    pub fn trunk_done(&self, trunk: usize, place: Place) -> bool {
        self.frame_trunks.contains(&(trunk, place))
    }

    /// Marks `key` used at `place`; on the device it becomes most recently used and, if it was
    /// not resident, least recently used variants are evicted until it fits. Returns whether it
    /// had to be loaded.
    pub fn touch(&mut self, catalog: &Catalog, key: VariantKey, place: Place) -> bool {
        if place == Place::Server {
            if self.server_loaded.contains(&key) {
                return false;
            }
            self.server_loaded.push(key);
            return true;
        }
        if let Some(i) = self.resident.iter().position(|k| *k == key) {
            let k = self.resident.remove(i);
            self.resident.push(k);
            return false;
        }
        let need = catalog.variant(key).memory_mb;
        let mut used: f64 = self
            .resident
            .iter()
            .map(|k| catalog.variant(*k).memory_mb)
            .sum();
        while used + need > self.memory_mb && !self.resident.is_empty() {
            let gone = self.resident.remove(0);
            used -= catalog.variant(gone).memory_mb;
        }
        self.resident.push(key);
        true
    }
}

const MIN_SPAN_S: f64 = 2.0;

/// Request rate per app over a sliding window (arrival times only).
#[derive(Debug, Clone)]
pub struct RateWindow {
    window_s: f64,
    first_s: Option<f64>,
    arrivals: Vec<VecDeque<f64>>,
}

impl RateWindow {
    pub fn new(apps: usize, window_s: f64) -> RateWindow {
        RateWindow {
            window_s,
            first_s: None,
            arrivals: vec![VecDeque::new(); apps],
        }
    }

    pub fn record(&mut self, app: usize, now_s: f64) {
        self.first_s.get_or_insert(now_s);
        if let Some(q) = self.arrivals.get_mut(app) {
            q.push_back(now_s);
            while q.front().is_some_and(|&t| t <= now_s - self.window_s) {
                q.pop_front();
            }
        }
    }

    /// Requests/s of `app` over the window (or since the first request if shorter, and at least
    /// a few seconds). Early on this over-estimates, which makes planners frugal until the
    /// estimate settles: the safe side.
    pub fn rate(&self, app: usize, now_s: f64) -> f64 {
        let Some(q) = self.arrivals.get(app) else {
            return 0.0;
        };
        let n = q.len() - q.partition_point(|&t| t <= now_s - self.window_s);
        let span = self
            .first_s
            .map_or(0.0, |f| now_s - f)
            .clamp(MIN_SPAN_S, self.window_s.max(MIN_SPAN_S));
        n as f64 / span
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lru_eviction_keeps_memory_within_budget() {
        let c = Catalog::paper();
        let mut budgets = Budgets::from_catalog(&c);
        budgets.memory_mb = 500.0;
        let mut s = DeviceState::new(&budgets, 0.0);
        let k = |v: &str| c.key("deepface", v);
        let (Some(d0), Some(d10), Some(d8)) = (k("D0"), k("D10"), k("D8")) else {
            panic!("keys");
        };
        assert!(s.touch(&c, d0, Place::Device));
        assert!(s.touch(&c, d10, Place::Device));
        assert!(!s.touch(&c, d0, Place::Device));
        assert!(s.touch(&c, d8, Place::Device));
        // D0 (394) + D8 (354) do not fit: the least recently used (D10) goes first, then D0.
        let used: f64 = s.resident.iter().map(|k| c.variant(*k).memory_mb).sum();
        assert!(used <= 500.0);
        assert!(s.is_resident(d8));
    }

    #[test]
    fn rate_window_estimates_rate() {
        let mut r = RateWindow::new(1, 300.0);
        for i in 0..600 {
            r.record(0, i as f64 * 0.5);
        }
        assert!((r.rate(0, 300.0) - 2.0).abs() < 0.05);
    }
}

#[cfg(test)]
mod device_only_tests {
    use super::*;
    use crate::policy::{Decision, by_name};

    /// An app marked device-only is never sent to the server, by any policy, even the one that
    /// always offloads; the other apps still may be.
    #[test]
    fn no_policy_offloads_a_device_only_app() {
        let c = Catalog::paper();
        let budgets = Budgets::from_catalog(&c);
        let (kept, free) = (c.apps[0].name.clone(), c.apps[1].name.clone());
        for name in ["paper", "mcdnn", "best-device", "cloud", "cheapest"] {
            let mut policy = by_name(name, &c, &budgets).expect("policy");
            policy.set_constraints(Constraints {
                device_only: BTreeSet::from([kept.clone()]),
                ..Constraints::default()
            });
            let mut state = DeviceState::new(&budgets, 0.0);
            state.connected = true;
            let mut free_offloaded = false;
            for i in 0..200 {
                let now_s = f64::from(i) * 0.1;
                if let Decision::Run(run) = policy.decide(now_s, &kept, &state) {
                    assert_eq!(run.place, Place::Device, "{name} offloaded {kept}");
                }
                if let Decision::Run(run) = policy.decide(now_s, &free, &state) {
                    free_offloaded |= run.place == Place::Server;
                }
            }
            if name == "cloud" {
                assert!(free_offloaded, "cloud still offloads the other apps");
            }
        }
        let c = Constraints {
            device_only: BTreeSet::from(["face-id".to_string()]),
            ..Constraints::default()
        };
        assert!(!c.admits("face-id", "int8-150", Place::Server));
        assert!(c.admits("face-id", "int8-150", Place::Device));
        assert!(c.admits("garment", "full", Place::Server));
    }
}
