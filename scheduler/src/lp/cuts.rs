//! The price search's cutting-plane model: evaluated price pairs (cuts), the master problem
//! over the unit box, and the best convex combination of pure solutions that meets both budgets.

use super::*;

/// A convex combination of pure solutions at price pairs, with its mixed totals.
#[derive(Debug, Clone)]
pub(super) struct Combo {
    pub(super) parts: Vec<(f64, f64, f64)>, // (weight, mu, nu)
    pub(super) t: Totals,
}

impl Combo {
    pub(super) fn pure(mu: f64, nu: f64, t: Totals) -> Combo {
        Combo {
            parts: vec![(1.0, mu, nu)],
            t,
        }
    }
}

/// One evaluated price pair: a cut `D(q) >= d + g.(q - q_at)` on the dual, in prices scaled to
/// the unit box, and the pure solution behind it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Cut {
    pub(super) q: [f64; 2],
    /// Dual value at `q`.
    pub(super) d: f64,
    /// Subgradient in scaled prices: (budget - usage) x price cap; 0 for an unpriced resource.
    pub(super) g: [f64; 2],
    pub(super) mu: f64,
    pub(super) nu: f64,
    pub(super) t: Totals,
}

impl Cut {
    /// Intercept of the cut at q = 0.
    pub(super) fn a(&self) -> f64 {
        self.d - self.g[0] * self.q[0] - self.g[1] * self.q[1]
    }

    pub(super) fn at(&self, q: [f64; 2]) -> f64 {
        self.a() + self.g[0] * q[0] + self.g[1] * q[1]
    }
}

/// Solves the 2x2 system [a b; c d] x = [e; f]; None when (nearly) singular.
pub(super) fn solve2(a: f64, b: f64, c: f64, d: f64, e: f64, f: f64) -> Option<[f64; 2]> {
    let det = a * d - b * c;
    let scale = (a.abs() + b.abs()) * (c.abs() + d.abs());
    if det == 0.0 || det.abs() <= 1e-14 * scale {
        return None;
    }
    Some([(e * d - b * f) / det, (a * f - e * c) / det])
}

/// Evaluations the price search may spend at most.
pub(super) const MAX_CUTS: usize = 200;

/// The minimiser of the cut model `max_i cut_i(q)` over the unit box (restricted to the priced
/// resources): the model is piecewise linear, so its minimum is at a box corner, where two cuts
/// meet a box edge, or where three cuts meet. Ties go to the first candidate found.
pub(super) fn master(cuts: &[Cut], active: [bool; 2]) -> [f64; 2] {
    let lo = |r: usize| if active[r] { 1.0 } else { 0.0 };
    let mut best_q = [0.0, 0.0];
    let mut best_f = f64::INFINITY;
    let mut consider = |q: [f64; 2]| {
        if !q.iter().all(|x| x.is_finite()) {
            return;
        }
        let q = [q[0].clamp(0.0, lo(0)), q[1].clamp(0.0, lo(1))];
        let mut f = f64::NEG_INFINITY;
        for c in cuts {
            f = f.max(c.at(q));
            if f >= best_f {
                return;
            }
        }
        best_f = f;
        best_q = q;
    };
    for q0 in [0.0, lo(0)] {
        for q1 in [0.0, lo(1)] {
            consider([q0, q1]);
        }
    }
    let eps = 1e-9;
    let inside = |x: f64, r: usize| x >= -eps && x <= lo(r) + eps;
    for i in 0..cuts.len() {
        for j in i + 1..cuts.len() {
            let (ci, cj) = (&cuts[i], &cuts[j]);
            // Line: (g_i - g_j).q = a_j - a_i.
            let dg = [ci.g[0] - cj.g[0], ci.g[1] - cj.g[1]];
            let rhs = cj.a() - ci.a();
            for r in 0..2 {
                if !active[r] || dg[r] == 0.0 {
                    continue;
                }
                let o = 1 - r;
                for fixed in [0.0, lo(o)] {
                    let x = (rhs - dg[o] * fixed) / dg[r];
                    if inside(x, r) {
                        let mut q = [0.0; 2];
                        q[r] = x;
                        q[o] = fixed;
                        consider(q);
                    }
                }
            }
            if !(active[0] && active[1]) {
                continue;
            }
            for ck in &cuts[j + 1..] {
                let dk = [ci.g[0] - ck.g[0], ci.g[1] - ck.g[1]];
                if let Some(q) = solve2(dg[0], dg[1], dk[0], dk[1], rhs, ck.a() - ci.a())
                    && inside(q[0], 0)
                    && inside(q[1], 1)
                {
                    consider(q);
                }
            }
        }
    }
    best_q
}

/// The best convex combination of at most three cuts' pure solutions whose mixed usage stays
/// within both budgets (slacks `g` non-negative), or None if there is none yet.
pub(super) fn best_combo(cuts: &[Cut], active: [bool; 2]) -> Option<Combo> {
    // Tolerate rounding far below anything a budget check would notice.
    let tol = |i: usize, r: usize| 1e-12 * cuts[i].g[r].abs();
    let mut best: Option<(f64, Vec<(usize, f64)>)> = None;
    let mut offer = |parts: Vec<(usize, f64)>| {
        let v: f64 = parts.iter().map(|&(i, w)| w * cuts[i].t.value).sum();
        for r in 0..2 {
            let slack: f64 = parts.iter().map(|&(i, w)| w * cuts[i].g[r]).sum();
            let allow: f64 = parts.iter().map(|&(i, _)| tol(i, r)).sum();
            if slack < -allow {
                return;
            }
        }
        if best.as_ref().is_none_or(|b| v > b.0) {
            best = Some((v, parts));
        }
    };
    for i in 0..cuts.len() {
        offer(vec![(i, 1.0)]);
    }
    for i in 0..cuts.len() {
        for j in i + 1..cuts.len() {
            for (r, &on) in active.iter().enumerate() {
                let (gi, gj) = (cuts[i].g[r], cuts[j].g[r]);
                if on && gi * gj < 0.0 {
                    let w = gj / (gj - gi);
                    offer(vec![(i, w), (j, 1.0 - w)]);
                }
            }
            if !(active[0] && active[1]) {
                continue;
            }
            for k in j + 1..cuts.len() {
                // w_i g_i + w_j g_j + w_k g_k = 0 with w_k = 1 - w_i - w_j.
                let (a, b, c) = (&cuts[i].g, &cuts[j].g, &cuts[k].g);
                if let Some([wi, wj]) = solve2(
                    a[0] - c[0],
                    b[0] - c[0],
                    a[1] - c[1],
                    b[1] - c[1],
                    -c[0],
                    -c[1],
                ) {
                    let wk = 1.0 - wi - wj;
                    if wi >= 0.0 && wj >= 0.0 && wk >= 0.0 {
                        offer(vec![(i, wi), (j, wj), (k, wk)]);
                    }
                }
            }
        }
    }
    let (_, parts) = best?;
    let mut t = Totals::default();
    for &(i, w) in &parts {
        let c = &cuts[i].t;
        t.add(&Totals {
            adj: w * c.adj,
            value: w * c.value,
            energy: w * c.energy,
            cost: w * c.cost,
            server: w * c.server,
        });
    }
    Some(Combo {
        parts: parts
            .iter()
            .filter(|p| p.1 > 0.0)
            .map(|&(i, w)| (w, cuts[i].mu, cuts[i].nu))
            .collect(),
        t,
    })
}
