//! The state every policy shares and the feasible candidates for a request.

use std::sync::Arc;

use super::cost::{meets_latency, run_cost};
use super::{Cascade, Decision, Outcome, Run};
use crate::catalog::{Catalog, EvalModel, Place, Variant, VariantKey};
use crate::options::DROP_OTHER;
use crate::specialise::{SkewTracker, tracker_for};
use crate::state::{Budgets, Constraints, DeviceState, RateWindow};

/// Window for request-rate estimates: long enough to smooth Poisson noise, short enough to
/// follow drift.
const RATE_WINDOW_S: f64 = 600.0;

/// A feasible way to serve the request.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub variant: usize,
    /// General fallback of a cascade (then `variant` is specialised); `Some(DROP_OTHER)` when
    /// the cascade drops the "other" answers instead.
    pub fallback: Option<usize>,
    /// `variant` is specialised (alone under the authors' model, else heading a cascade).
    pub specialised: bool,
    pub place: Place,
    /// Expected accuracy (a cascade mixes specialised and fallback by the top-N share).
    pub accuracy: f64,
    /// Accuracy as the published heuristic ranks it (a specialised variant at its share).
    pub nominal: f64,
    /// Expected energy and cost of this request, paging included.
    pub energy_j: f64,
    pub usd: f64,
    /// Paging part of `energy_j`.
    pub load_j: f64,
    /// Energy and cost without paging, per request in steady state.
    pub steady_j: f64,
    pub steady_usd: f64,
}

/// Shared policy state: catalog, budgets, constraints, rates, skew, paging history.
#[derive(Debug, Clone)]
pub struct Core {
    pub catalog: Arc<Catalog>,
    pub budgets: Budgets,
    pub constraints: Constraints,
    pub rates: RateWindow,
    /// Per app; `Some` for apps that have specialised variants.
    pub skew: Vec<Option<SkewTracker>>,
    /// Set when an app's specialised set changed since a policy last looked.
    pub skew_changed: bool,
    /// Per app, under the authors' model: the top-N share that makes specialised variants
    /// eligible now ([`crate::specialise::eligible_share`]), computed at each arrival.
    pub spec_share: Vec<Option<f64>>,
    pub last_place: Vec<Option<Place>>,
    pub last_swap_in_s: Vec<Option<f64>>,
    pub start_s: Option<f64>,
    /// Whether cascades that drop the specialised model's "other" answers (fallback
    /// `Some(DROP_OTHER)`) are offered as candidates (the planner uses them; the published
    /// heuristic does not know them).
    pub cascade_drop: bool,
}

impl Core {
    pub fn new(catalog: Arc<Catalog>, budgets: Budgets) -> Core {
        let n = catalog.apps.len();
        let skew = (0..n).map(|a| tracker_for(&catalog, a)).collect();
        Core {
            rates: RateWindow::new(n, RATE_WINDOW_S),
            skew,
            skew_changed: false,
            spec_share: vec![None; n],
            last_place: vec![None; n],
            last_swap_in_s: vec![None; n],
            start_s: None,
            cascade_drop: false,
            constraints: Constraints::default(),
            budgets,
            catalog,
        }
    }

    /// Records an arrival; returns the app index (None for an app the catalog lacks).
    pub fn arrive(&mut self, now_s: f64, app: &str) -> Option<usize> {
        self.start_s.get_or_insert(now_s);
        let a = self.catalog.app_index(app)?;
        self.rates.record(a, now_s);
        if self.authors() {
            self.spec_share[a] = self.skew[a].as_mut().and_then(|t| t.eligible_share(now_s));
        }
        Some(a)
    }

    /// Replaces the paging cost of `variant` (every app's entry of it) with a measured one.
    /// Copy-on-write: the catalog is cloned and the `Arc` replaced, so whoever else holds the
    /// old catalog keeps a consistent snapshot. Returns whether the catalog has the variant and
    /// the figures were usable.
    pub fn update_load_profile(&mut self, variant: &str, load_ms: f64, load_j: f64) -> bool {
        let mut next = (*self.catalog).clone();
        if !next.set_load_profile(variant, load_ms, load_j) {
            return false;
        }
        self.catalog = Arc::new(next);
        true
    }

    /// Common bookkeeping for `Policy::observe`.
    pub fn observe(&mut self, now_s: f64, app: &str, outcome: &Outcome<'_>) {
        let Some(a) = self.catalog.app_index(app) else {
            return;
        };
        if let Some(place) = outcome.place {
            self.last_place[a] = Some(place);
        }
        if outcome.swapped_in {
            self.last_swap_in_s[a] = Some(now_s);
        }
        if let Some(t) = self.skew[a].as_mut() {
            self.skew_changed |= t.record(now_s, outcome.class);
        }
    }

    /// Whether the catalog is evaluated under the authors' model.
    pub fn authors(&self) -> bool {
        self.catalog.constants.model == EvalModel::Authors
    }

    fn admits(&self, app: usize, v: &Variant, place: Place) -> bool {
        let app = &self.catalog.apps[app];
        !(place == Place::Server && app.device_only)
            && self.constraints.admits(&app.name, &v.name, place)
    }

    /// Every feasible candidate for a request of `app` now, into `out` (cleared first).
    pub fn candidates(&self, app: usize, state: &DeviceState, out: &mut Vec<Candidate>) {
        out.clear();
        let cat = &*self.catalog;
        let places: &[Place] = if state.connected {
            &[Place::Device, Place::Server]
        } else {
            &[Place::Device]
        };
        let caps_ok = |steady_j: f64, steady_usd: f64| self.caps_ok(steady_j, steady_usd);
        for &place in places {
            let first_general = out.len();
            for (vi, v) in cat.apps[app].variants.iter().enumerate() {
                if v.is_specialised() || !self.admits(app, v, place) {
                    continue;
                }
                if place == Place::Device && v.memory_mb > state.memory_mb {
                    continue;
                }
                let key = VariantKey { app, variant: vi };
                let rc = run_cost(cat, key, place, state);
                let steady_j = rc.energy_j - rc.load_j;
                if !meets_latency(cat, app, place, state, &rc)
                    || rc.energy_j > state.energy_left_j
                    || rc.usd > state.cost_left_usd
                    || !caps_ok(steady_j, rc.usd)
                {
                    continue;
                }
                out.push(Candidate {
                    variant: vi,
                    fallback: None,
                    specialised: false,
                    place,
                    accuracy: v.accuracy,
                    nominal: v.accuracy,
                    energy_j: rc.energy_j,
                    usd: rc.usd,
                    load_j: rc.load_j,
                    steady_j,
                    steady_usd: rc.usd,
                });
            }
            if self.authors() {
                self.standalone_specialised(app, place, state, out);
                continue;
            }
            let Some((_, share)) = self.skew[app].as_ref().and_then(|t| t.active()) else {
                continue;
            };
            // Cascade fallbacks: only general candidates not dominated in (energy, accuracy).
            let generals: Vec<Candidate> = pareto(&out[first_general..]);
            for (si, s) in cat.apps[app].variants.iter().enumerate() {
                if !s.is_specialised() || !self.admits(app, s, place) {
                    continue;
                }
                let skey = VariantKey { app, variant: si };
                let sc = run_cost(cat, skey, place, state);
                if !meets_latency(cat, app, place, state, &sc) {
                    continue;
                }
                let acc_s = s.specialised_accuracy(share);
                // A recent gallery learns only from its fallback's answers: dropping its misses
                // would never let a new face in.
                if self.cascade_drop
                    && !s.recent_set
                    && sc.energy_j <= state.energy_left_j
                    && sc.usd <= state.cost_left_usd
                    && caps_ok(sc.energy_j - sc.load_j, sc.usd)
                {
                    out.push(Candidate {
                        variant: si,
                        fallback: Some(DROP_OTHER),
                        specialised: true,
                        place,
                        accuracy: share * acc_s,
                        nominal: acc_s,
                        energy_j: sc.energy_j,
                        usd: sc.usd,
                        load_j: sc.load_j,
                        steady_j: sc.energy_j - sc.load_j,
                        steady_usd: sc.usd,
                    });
                }
                for g in &generals {
                    let gv = &cat.apps[app].variants[g.variant];
                    if place == Place::Device && s.memory_mb + gv.memory_mb > state.memory_mb {
                        continue;
                    }
                    // The worst case (every request "other") must fit what is left.
                    if sc.energy_j + g.energy_j > state.energy_left_j
                        || sc.usd + g.usd > state.cost_left_usd
                    {
                        continue;
                    }
                    let other = 1.0 - share;
                    let steady_j = sc.energy_j - sc.load_j + other * g.steady_j;
                    let steady_usd = sc.usd + other * g.steady_usd;
                    if !caps_ok(steady_j, steady_usd) {
                        continue;
                    }
                    out.push(Candidate {
                        variant: si,
                        fallback: Some(g.variant),
                        specialised: true,
                        place,
                        accuracy: share * acc_s + other * g.accuracy,
                        nominal: acc_s,
                        energy_j: sc.energy_j + other * g.energy_j,
                        usd: steady_usd,
                        load_j: sc.load_j + other * g.load_j,
                        steady_j,
                        steady_usd,
                    });
                }
            }
        }
    }

    /// Authors' model: while the stream is skewed, every specialised variant that fits, alone,
    /// credited its profiled accuracy at the current share.
    fn standalone_specialised(
        &self,
        app: usize,
        place: Place,
        state: &DeviceState,
        out: &mut Vec<Candidate>,
    ) {
        let Some(share) = self.spec_share[app] else {
            return;
        };
        let cat = &*self.catalog;
        for (si, s) in cat.apps[app].variants.iter().enumerate() {
            if !s.is_specialised() || !self.admits(app, s, place) {
                continue;
            }
            if place == Place::Device && s.memory_mb > state.memory_mb {
                continue;
            }
            let rc = run_cost(cat, VariantKey { app, variant: si }, place, state);
            let steady_j = rc.energy_j - rc.load_j;
            if !meets_latency(cat, app, place, state, &rc)
                || rc.energy_j > state.energy_left_j
                || rc.usd > state.cost_left_usd
                || !self.caps_ok(steady_j, rc.usd)
            {
                continue;
            }
            let acc = s.specialised_accuracy_upper(share);
            out.push(Candidate {
                variant: si,
                fallback: None,
                specialised: true,
                place,
                accuracy: acc,
                nominal: acc,
                energy_j: rc.energy_j,
                usd: rc.usd,
                load_j: rc.load_j,
                steady_j,
                steady_usd: rc.usd,
            });
        }
    }

    /// Whether the coordinator's per-request caps admit these steady costs.
    fn caps_ok(&self, steady_j: f64, steady_usd: f64) -> bool {
        self.constraints.energy_cap_j.is_none_or(|c| steady_j <= c)
            && self
                .constraints
                .cost_cap_usd
                .is_none_or(|c| steady_usd <= c)
    }

    /// Turns a candidate into a decision.
    pub fn decision(&self, app: usize, c: &Candidate) -> Decision {
        let variants = &self.catalog.apps[app].variants;
        let cascade = c.fallback.and_then(|g| {
            let (set, _) = self.skew[app].as_ref()?.active()?;
            Some(Cascade {
                fallback: variants.get(g).map_or_else(String::new, |v| v.name.clone()),
                classes: set.clone(),
                drop_other: g == DROP_OTHER,
            })
        });
        if c.fallback.is_some() && cascade.is_none() {
            return Decision::Drop;
        }
        Decision::Run(Run {
            variant: variants[c.variant].name.clone(),
            place: c.place,
            cascade,
        })
    }

    /// The published fallback when nothing fits the per-request budget: the cheapest device
    /// variant while energy is left, else the cheapest server variant while money is left.
    pub fn cheapest<'a>(&self, cands: &'a [Candidate]) -> Option<&'a Candidate> {
        let general = |p: Place| cands.iter().filter(move |c| c.place == p && !c.specialised);
        general(Place::Device)
            .min_by(|a, b| {
                a.energy_j
                    .total_cmp(&b.energy_j)
                    .then(b.accuracy.total_cmp(&a.accuracy))
            })
            .or_else(|| {
                general(Place::Server).min_by(|a, b| {
                    a.usd
                        .total_cmp(&b.usd)
                        .then(b.accuracy.total_cmp(&a.accuracy))
                })
            })
    }
}

/// The most accurate candidate by `key` among those `ok` admits (ties: less energy).
pub fn most_accurate(
    cands: &[Candidate],
    key: impl Fn(&Candidate) -> f64,
    ok: impl Fn(&Candidate) -> bool,
) -> Option<&Candidate> {
    cands.iter().filter(|c| ok(c)).max_by(|a, b| {
        key(a)
            .total_cmp(&key(b))
            .then(b.energy_j.total_cmp(&a.energy_j))
            .then(b.usd.total_cmp(&a.usd))
    })
}

/// Candidates not dominated by another that costs no more energy and money and is at least as
/// accurate.
fn pareto(cands: &[Candidate]) -> Vec<Candidate> {
    cands
        .iter()
        .filter(|c| {
            !cands.iter().any(|d| {
                d.energy_j <= c.energy_j
                    && d.usd <= c.usd
                    && d.accuracy >= c.accuracy
                    && (d.energy_j < c.energy_j || d.usd < c.usd || d.accuracy > c.accuracy)
            })
        })
        .cloned()
        .collect()
}
