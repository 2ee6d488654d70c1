//! `paper`: the MCDNN authors' scheduler (Han et al., MobiSys 2016), as their `scheduler.py`
//! (`Scheduler.rununtil`, public repository haneul/mcdnn) runs it:
//!
//! - per-request budgets: energy left / time left / the app's declared frequency, and the same
//!   for money (no sharing between apps beyond spending from one budget);
//! - candidates: while the stream is skewed ([`crate::specialise::eligible_share`]) only the
//!   specialised variants, else only the general ones; server ones only while connected;
//! - the latency limit only on a cold miss (the app not running anywhere), by the rule of the
//!   catalog's model ([`super::meets_latency`]);
//! - server: compute cost within the money per request (energy is not checked); device:
//!   compute energy within the energy per request, after taking out, when the app runs at the
//!   server, its load energy times (time left / time since its last swap onto the device);
//! - the most accurate per place (first in catalog order on ties), then the more accurate
//!   place, the server on a tie; nothing fits: drop (no cheapest fallback).
//!
//! One rule the authors do not have: a candidate the device cannot pay for (energy or money
//! left) is not considered, because a real battery cannot go below empty. It only matters once
//! a budget is spent. The coordinator's constraints apply as to every policy. Under the cascade
//! model (manifest catalogs) the "specialised variants" are the cascades, ranked by the
//! specialised head's accuracy.

use super::candidates::{Candidate, Core};
use super::{Decision, Outcome, Policy};
use crate::catalog::Place;
use crate::state::{Constraints, DeviceState};

/// The authors' heuristic.
#[derive(Debug, Clone)]
pub struct Paper {
    core: Core,
    cands: Vec<Candidate>,
    /// Per app: the declared request frequency (None: use the measured rate).
    declared: Vec<Option<f64>>,
    /// Per app: when it last moved onto the device (the authors start at 0, the trace start).
    last_swapin_s: Vec<Option<f64>>,
}

/// Keeps the authors' divisions finite where their code would divide by zero.
const MIN_S: f64 = 1e-3;

impl Paper {
    pub fn new(core: Core) -> Paper {
        let n = core.catalog.apps.len();
        Paper {
            core,
            cands: Vec::new(),
            declared: vec![None; n],
            last_swapin_s: vec![None; n],
        }
    }

    fn freq(&self, app: usize, now_s: f64) -> f64 {
        self.declared[app]
            .unwrap_or_else(|| self.core.rates.rate(app, now_s))
            .max(1e-9)
    }

    /// The authors' pick among the candidates, as an index into `self.cands`.
    fn pick(&self, a: usize, now_s: f64, state: &DeviceState) -> Option<usize> {
        let t_left = (state.end_s - now_s).max(MIN_S);
        let f = self.freq(a, now_s);
        let from_server = self.core.last_place[a] == Some(Place::Server);
        // Before any swap the authors count from the start of the shift.
        let shift_start = state.end_s - self.core.budgets.horizon_s;
        let since = (now_s - self.last_swapin_s[a].unwrap_or(shift_start)).max(MIN_S);
        let skewed = if self.core.authors() {
            self.core.spec_share[a].is_some()
        } else {
            self.core.skew[a]
                .as_ref()
                .is_some_and(|t| t.active().is_some())
        };
        let fits = |c: &Candidate| match c.place {
            Place::Server => state.cost_left_usd / t_left / f >= c.steady_usd,
            Place::Device => {
                let mut e = state.energy_left_j;
                if from_server {
                    e -= c.load_j * (t_left / since);
                }
                e / t_left / f >= c.steady_j
            }
        };
        // Cascades that drop "other" answers are the planner's, not the authors'.
        let eligible = |c: &Candidate| {
            c.specialised == skewed && c.fallback != Some(crate::options::DROP_OTHER) && fits(c)
        };
        let best = |place: Place| {
            let mut best: Option<usize> = None;
            for (i, c) in self.cands.iter().enumerate() {
                if c.place == place
                    && eligible(c)
                    && best.is_none_or(|b| c.nominal > self.cands[b].nominal)
                {
                    best = Some(i);
                }
            }
            best
        };
        match (best(Place::Server), best(Place::Device)) {
            (Some(s), Some(d)) => Some(if self.cands[d].nominal > self.cands[s].nominal {
                d
            } else {
                s
            }),
            (s, d) => s.or(d),
        }
    }
}

impl Policy for Paper {
    fn name(&self) -> &str {
        "paper"
    }

    fn decide(&mut self, now_s: f64, app: &str, state: &DeviceState) -> Decision {
        let Some(a) = self.core.arrive(now_s, app) else {
            return Decision::Drop;
        };
        let mut cands = std::mem::take(&mut self.cands);
        self.core.candidates(a, state, &mut cands);
        self.cands = cands;
        match self.pick(a, now_s, state) {
            Some(i) => self.core.decision(a, &self.cands[i]),
            None => Decision::Drop,
        }
    }

    fn observe(&mut self, now_s: f64, app: &str, outcome: &Outcome<'_>) {
        if let Some(a) = self.core.catalog.app_index(app)
            && outcome.place == Some(Place::Device)
            && self.core.last_place[a] != Some(Place::Device)
        {
            self.last_swapin_s[a] = Some(now_s);
        }
        self.core.observe(now_s, app, outcome);
        // The authors' status: a dropped request leaves the app not running.
        if let Some(a) = self.core.catalog.app_index(app)
            && outcome.place.is_none()
        {
            self.core.last_place[a] = None;
        }
    }

    fn set_constraints(&mut self, constraints: Constraints) {
        self.core.constraints = constraints;
    }

    fn update_load_profile(&mut self, variant: &str, load_ms: f64, load_j: f64) -> bool {
        self.core.update_load_profile(variant, load_ms, load_j)
    }

    fn declare_rate(&mut self, app: &str, per_s: f64) {
        if let Some(a) = self.core.catalog.app_index(app)
            && per_s.is_finite()
            && per_s > 0.0
        {
            self.declared[a] = Some(per_s);
        }
    }
}
