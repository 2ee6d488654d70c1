//! `paper`: the published MCDNN per-request heuristic (Han et al., MobiSys 2016), faithfully.
//!
//! Per-request budget at a place = f x (remaining budget / remaining time) / (f^2 + sum of f_j^2
//! over the other apps resident at that place), f the app's request rate: heavily used apps get
//! a larger share. A device variant coming back from the server is charged its load energy x
//! (remaining time / time since the last swap-in), the expected number of such swaps; other
//! swap-ins pay their load once. The most accurate feasible variant per place (server only when
//! connected), then the more accurate place; when nothing fits, the cheapest device variant
//! while energy is left, else the cheapest server variant while money is left, else drop.

use super::candidates::{Candidate, Core, most_accurate};
use super::{Decision, Outcome, Policy};
use crate::catalog::Place;
use crate::state::{Constraints, DeviceState};

/// The published heuristic.
#[derive(Debug, Clone)]
pub struct Paper {
    core: Core,
    cands: Vec<Candidate>,
}

impl Paper {
    pub fn new(core: Core) -> Paper {
        Paper {
            core,
            cands: Vec::new(),
        }
    }

    /// f x (B / T) / (f^2 + sum of f_j^2 over the other apps last run at `place`).
    fn per_request_budget(
        &self,
        app: usize,
        now_s: f64,
        left: f64,
        t_left: f64,
        place: Place,
    ) -> f64 {
        let rate = |a: usize| self.core.rates.rate(a, now_s);
        let f = rate(app).max(1e-9);
        let others: f64 = (0..self.core.last_place.len())
            .filter(|&j| j != app && self.core.last_place[j] == Some(place))
            .map(|j| rate(j).powi(2))
            .sum();
        f * (left / t_left) / (f * f + others)
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
        self.core.candidates(a, state, &mut self.cands);
        let t_left = (state.end_s - now_s).max(1.0);
        let e_budget =
            self.per_request_budget(a, now_s, state.energy_left_j, t_left, Place::Device);
        let c_budget =
            self.per_request_budget(a, now_s, state.cost_left_usd, t_left, Place::Server);
        let from_server = self.core.last_place[a] == Some(Place::Server);
        let since_swap = self.core.last_swap_in_s[a].map(|t| (now_s - t).max(1.0));
        // Energy the heuristic charges a device candidate against its per-request budget.
        let charged = |c: &Candidate| match (from_server, since_swap) {
            (true, Some(since)) if c.load_j > 0.0 => {
                c.steady_j + c.load_j * (t_left / since).max(1.0)
            }
            _ => c.energy_j,
        };
        let device = most_accurate(
            &self.cands,
            |c| c.nominal,
            |c| c.place == Place::Device && charged(c) <= e_budget,
        );
        let server = most_accurate(
            &self.cands,
            |c| c.nominal,
            |c| c.place == Place::Server && c.usd <= c_budget && c.energy_j <= e_budget,
        );
        let pick = match (device, server) {
            (Some(d), Some(s)) => Some(if s.nominal > d.nominal { s } else { d }),
            (d, s) => d.or(s),
        };
        match pick.or_else(|| self.core.cheapest(&self.cands)) {
            Some(c) => self.core.decision(a, c),
            None => Decision::Drop,
        }
    }

    fn observe(&mut self, now_s: f64, app: &str, outcome: &Outcome<'_>) {
        self.core.observe(now_s, app, outcome);
    }

    fn set_constraints(&mut self, constraints: Constraints) {
        self.core.constraints = constraints;
    }

    fn update_load_profile(&mut self, variant: &str, load_ms: f64, load_j: f64) -> bool {
        self.core.update_load_profile(variant, load_ms, load_j)
    }
}
