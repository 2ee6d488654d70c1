//! Catalog types: apps, their variants and the profiles the scheduler reasons with.
//!
//! A `Catalog` is built for one device class (profiles differ per class), so every figure in it
//! is "on this device" or "on the server". Build one with [`Catalog::paper`] (the MCDNN authors'
//! measured profiles) or [`Catalog::from_manifest`] (the project's own models).

use serde::{Deserialize, Serialize};

/// Where a request runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Place {
    Device,
    Server,
}

/// Index of a variant inside a catalog: (app index, variant index within the app).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct VariantKey {
    pub app: usize,
    pub variant: usize,
}

/// How a run is evaluated: what a specialised variant is worth and when paging and the latency
/// limit apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EvalModel {
    /// The MCDNN authors' model (their `scheduler.py`), for their catalog, whose specialised
    /// variants are profiles, not real heads: a specialised variant runs alone and is credited
    /// its profiled accuracy at the stream's current top-N share; an app's paging is charged
    /// when it moves onto the device; the latency limit is checked only on a cold miss (the app
    /// not running anywhere: never run, or its last request dropped).
    Authors,
    /// What the project's nodes run (manifest catalogs, whose specialised heads are real): a
    /// specialised head answers only for its classes and its "other" answers fall back to a
    /// general variant (cascade); paging is charged whenever a variant is not resident; every
    /// request meets the latency limit.
    #[default]
    Cascade,
}

impl std::str::FromStr for EvalModel {
    type Err = String;
    fn from_str(s: &str) -> Result<EvalModel, String> {
        match s {
            "authors" => Ok(EvalModel::Authors),
            "cascade" => Ok(EvalModel::Cascade),
            other => Err(format!("unknown model {other:?}; known: authors, cascade")),
        }
    }
}

/// Fleet-wide constants; defaults are the MCDNN authors' (see `Constants::default`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Constants {
    /// Every request must be answered within this many milliseconds.
    pub latency_limit_ms: f64,
    /// Round trip to the offload server.
    pub rtt_ms: f64,
    /// What one millisecond of server compute costs.
    pub server_cost_usd_per_ms: f64,
    /// Device energy to ship one request to the server.
    pub send_energy_j: f64,
    /// Default horizon (battery must last this long).
    pub horizon_s: f64,
    /// Default device energy budget over the horizon.
    pub energy_budget_j: f64,
    /// Default cloud budget over the horizon.
    pub cost_budget_usd: f64,
    /// Sliding window for skew detection.
    pub skew_window_s: f64,
    /// Specialised variants become eligible when the top-N classes reach this share.
    pub skew_trigger_share: f64,
    /// N of "top-N classes".
    pub skew_top_n: usize,
    /// Default memory available for models on the device. The authors give none; 1 GB lets a
    /// couple of large variants stay resident, which is what a 2016 phone could hold.
    pub memory_mb: f64,
    /// How runs on this catalog are evaluated.
    #[serde(default)]
    pub model: EvalModel,
}

impl Default for Constants {
    fn default() -> Self {
        Constants {
            latency_limit_ms: 1000.0,
            rtt_ms: 100.0,
            server_cost_usd_per_ms: 1.8e-7,
            send_energy_j: 0.0038,
            horizon_s: 36_000.0,
            energy_budget_j: 7_200.0,
            cost_budget_usd: 0.0667,
            skew_window_s: 300.0,
            skew_trigger_share: 0.6,
            skew_top_n: 7,
            memory_mb: 1024.0,
            model: EvalModel::Cascade,
        }
    }
}

/// Accuracy of a specialised variant when `min_share` of requests come from the top `top_n`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpecialisedPoint {
    pub top_n: usize,
    pub min_share: f64,
    pub accuracy: f64,
}

/// A shared trunk: lower layers computed once per frame for several apps' heads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trunk {
    pub id: String,
    pub device_energy_j: f64,
    pub device_latency_ms: f64,
    pub server_ms: f64,
}

/// One model variant of an app and its measured profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Variant {
    pub name: String,
    /// Top-1 accuracy in percent on the general stream; 0 for specialised-only variants.
    pub accuracy: f64,
    pub memory_mb: f64,
    /// Device energy and latency per request (trunk included).
    pub device_energy_j: f64,
    pub device_latency_ms: f64,
    /// Paging the variant into device memory.
    pub load_energy_j: f64,
    pub load_latency_ms: f64,
    /// Server compute time per request (trunk included) and server load time.
    pub server_ms: f64,
    pub server_load_ms: f64,
    /// Index into `Catalog::trunks` when the variant's lower layers are shared.
    pub trunk: Option<usize>,
    /// Non-empty for a specialised variant: accuracy by top-N share, ascending `min_share`.
    pub specialised: Vec<SpecialisedPoint>,
    /// A specialised variant for whichever identities dominated recently, up to top-N of them
    /// (a face gallery of the people seen lately), rather than for exactly top-N fixed classes.
    #[serde(default)]
    pub recent_set: bool,
}

impl Variant {
    /// A specialised variant only answers for the top-N classes (cascade with a general one).
    pub fn is_specialised(&self) -> bool {
        !self.specialised.is_empty()
    }

    /// N of the top-N classes the variant is specialised for (0 if general).
    pub fn top_n(&self) -> usize {
        self.specialised.first().map_or(0, |p| p.top_n)
    }

    /// Accuracy on the specialised classes at this top-N share: the point with the largest
    /// `min_share <= share` (the measured figure "for that share"). Below the lowest measured
    /// share the variant is not eligible and is credited nothing: no one measured it there.
    pub fn specialised_accuracy(&self, share: f64) -> f64 {
        self.specialised
            .iter()
            .rev()
            .find(|p| p.min_share <= share)
            .map_or(0.0, |p| p.accuracy)
    }

    /// The largest accuracy `specialised_accuracy` can give at any share up to `share`: the
    /// measured points are not monotone, so the bound must take the running maximum.
    pub fn specialised_accuracy_upper(&self, share: f64) -> f64 {
        self.specialised
            .iter()
            .filter(|p| p.min_share <= share)
            .map(|p| p.accuracy)
            .fold(0.0, f64::max)
    }
}

/// An app and its variants.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct App {
    pub name: String,
    pub variants: Vec<Variant>,
    /// Never offloaded: the offload protocol carries the grey catalog input, so a face app's
    /// RGB frames are served on the device (every planner and policy leaves the server out).
    #[serde(default)]
    pub device_only: bool,
}

/// Apps -> variants -> profiles for one device class, plus the constants.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Catalog {
    /// Where the catalog came from ("paper", a manifest path, a test fixture).
    pub name: String,
    pub device_class: String,
    pub apps: Vec<App>,
    pub trunks: Vec<Trunk>,
    pub constants: Constants,
}

/// Errors building a catalog.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("catalog data is not valid: {0}")]
    Parse(String),
    #[error("catalog is inconsistent: {0}")]
    Invalid(String),
    #[error("device class {0:?} is not in the manifest; use one of its device_classes")]
    UnknownDeviceClass(String),
}

impl Catalog {
    /// Index of an app by name.
    pub fn app_index(&self, app: &str) -> Option<usize> {
        self.apps.iter().position(|a| a.name == app)
    }

    /// Key of a variant by app and variant name.
    pub fn key(&self, app: &str, variant: &str) -> Option<VariantKey> {
        let a = self.app_index(app)?;
        let v = self.apps[a]
            .variants
            .iter()
            .position(|v| v.name == variant)?;
        Some(VariantKey { app: a, variant: v })
    }

    /// The variant behind a key. Keys come from this catalog, so indexing cannot fail for them.
    pub fn variant(&self, key: VariantKey) -> &Variant {
        &self.apps[key.app].variants[key.variant]
    }

    /// The profiled paging cost of `variant` as (load ms, load J): the first app that has it
    /// (every app's entry of a variant pages the same model in).
    pub fn load_profile(&self, variant: &str) -> Option<(f64, f64)> {
        self.apps
            .iter()
            .flat_map(|a| &a.variants)
            .find(|v| v.name == variant)
            .map(|v| (v.load_latency_ms, v.load_energy_j))
    }

    /// The device class's paging power for `variant`, joules per millisecond of load: the
    /// profile's own ratio `load_energy_j / load_latency_ms`, so a measured load time scales the
    /// profiled energy. Zero when the profile has no load time.
    pub fn load_j_per_ms(&self, variant: &str) -> Option<f64> {
        let (ms, j) = self.load_profile(variant)?;
        Some(if ms > 0.0 { j / ms } else { 0.0 })
    }

    /// Sets the paging cost of `variant` in every app that has it; returns whether any did.
    /// Non-finite or negative figures are refused (the catalog stays valid).
    pub fn set_load_profile(&mut self, variant: &str, load_ms: f64, load_j: f64) -> bool {
        if !(load_ms.is_finite() && load_j.is_finite() && load_ms >= 0.0 && load_j >= 0.0) {
            return false;
        }
        let mut any = false;
        for v in self
            .apps
            .iter_mut()
            .flat_map(|a| &mut a.variants)
            .filter(|v| v.name == variant)
        {
            v.load_latency_ms = load_ms;
            v.load_energy_j = load_j;
            any = true;
        }
        any
    }

    /// Server cost in USD of one request of this variant (trunk included).
    pub fn server_usd(&self, v: &Variant) -> f64 {
        v.server_ms * self.constants.server_cost_usd_per_ms
    }

    /// Checks the invariants policies rely on: non-negative finite figures, known trunks,
    /// specialised points sorted.
    pub fn validate(&self) -> Result<(), CatalogError> {
        if self.apps.is_empty() {
            return Err(CatalogError::Invalid("no apps".into()));
        }
        for app in &self.apps {
            if app.variants.is_empty() {
                return Err(CatalogError::Invalid(format!(
                    "app {} has no variants",
                    app.name
                )));
            }
            for v in &app.variants {
                let figures = [
                    v.accuracy,
                    v.memory_mb,
                    v.device_energy_j,
                    v.device_latency_ms,
                    v.load_energy_j,
                    v.load_latency_ms,
                    v.server_ms,
                    v.server_load_ms,
                ];
                if figures.iter().any(|x| !x.is_finite() || *x < 0.0) {
                    return Err(CatalogError::Invalid(format!(
                        "{}/{}: negative or non-finite profile figure",
                        app.name, v.name
                    )));
                }
                if v.trunk.is_some_and(|t| t >= self.trunks.len()) {
                    return Err(CatalogError::Invalid(format!(
                        "{}/{}: unknown trunk",
                        app.name, v.name
                    )));
                }
                if v.specialised
                    .windows(2)
                    .any(|w| w[0].min_share > w[1].min_share)
                {
                    return Err(CatalogError::Invalid(format!(
                        "{}/{}: specialised points not sorted by share",
                        app.name, v.name
                    )));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> Variant {
        Variant {
            name: "C3".into(),
            accuracy: 0.0,
            memory_mb: 1.0,
            device_energy_j: 0.2,
            device_latency_ms: 17.0,
            load_energy_j: 2.8,
            load_latency_ms: 28.0,
            server_ms: 3.7,
            server_load_ms: 17.0,
            trunk: None,
            specialised: vec![
                SpecialisedPoint {
                    top_n: 7,
                    min_share: 0.6,
                    accuracy: 87.3,
                },
                SpecialisedPoint {
                    top_n: 7,
                    min_share: 0.8,
                    accuracy: 85.0,
                },
                SpecialisedPoint {
                    top_n: 7,
                    min_share: 0.9,
                    accuracy: 92.2,
                },
            ],
            recent_set: false,
        }
    }

    #[test]
    fn specialised_accuracy_is_the_point_for_that_share() {
        let v = spec();
        assert_eq!(v.specialised_accuracy(0.7), 87.3);
        assert_eq!(v.specialised_accuracy(0.85), 85.0);
        assert_eq!(v.specialised_accuracy(0.95), 92.2);
        assert_eq!(v.specialised_accuracy(0.3), 0.0);
    }

    #[test]
    fn upper_accuracy_is_monotone_and_dominates() {
        let v = spec();
        let mut last = 0.0;
        for i in 0..=100 {
            let s = i as f64 / 100.0;
            let up = v.specialised_accuracy_upper(s);
            assert!(up >= v.specialised_accuracy(s));
            assert!(up >= last);
            last = up;
        }
    }
}
