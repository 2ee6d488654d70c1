//! Solving a [`Problem`]: per-node greedy on the group hulls at given prices (in parallel for
//! large fleets), and the price search that certifies the gap.

use super::cuts::*;
use super::mixes::Pick;
use super::table::*;
use super::*;

#[derive(Default)]
pub(super) struct Scratch {
    /// Per table, its priced options at the current cost price.
    pub(super) priced: Vec<Vec<PPt>>,
    /// Every group's hull of the current node, back to back; `starts` has one more entry.
    pub(super) hulls: Vec<Pt>,
    /// Per group, the slope (value per energy) of its segment at `heads`; `NEG_INFINITY` once
    /// its hull is walked to the end.
    pub(super) slopes: Vec<f64>,
    pub(super) starts: Vec<usize>,
    /// Per group, the next hull vertex the greedy would move to.
    pub(super) heads: Vec<usize>,
}

#[cfg(test)]
thread_local! {
    /// Test hook: the parallel sweep's worker of this index panics (for solves started on
    /// this thread), as a bug in the sweep would.
    pub(super) static PANIC_IN_WORKER: std::cell::Cell<Option<usize>> =
        const { std::cell::Cell::new(None) };
}

#[cfg(test)]
fn injected_panic(worker: usize) -> bool {
    PANIC_IN_WORKER.with(|w| w.get()) == Some(worker)
}

/// Never outside tests.
#[cfg(not(test))]
fn injected_panic(_worker: usize) -> bool {
    false
}

/// Where the groups of `nodes` start: the first node with any groups says.
fn group_start(nodes: &[Node]) -> Option<usize> {
    nodes.iter().find(|n| n.len > 0).map(|n| n.first as usize)
}

impl Scratch {
    /// The slope of group `gi`'s hull segment that ends at its head; `NEG_INFINITY` past its
    /// hull's end. Hull energies strictly rise, so every real slope is finite.
    fn head_slope(&self, gi: usize) -> f64 {
        let h = self.heads[gi];
        if h >= self.starts[gi + 1] {
            return f64::NEG_INFINITY;
        }
        let (a, b) = (self.hulls[h - 1], self.hulls[h]);
        (b.v - a.v) / (b.e - a.e)
    }
}

pub(super) fn price_term(price: f64, budget: f64) -> f64 {
    if price == 0.0 { 0.0 } else { price * budget }
}

impl Problem {
    /// A one-node problem (the device's own plan, or the trace bound).
    pub fn single(tables: Vec<Table>, groups: Vec<Group>, energy: f64, cost: f64) -> Problem {
        let len = groups.len() as u32;
        Problem {
            tables,
            groups,
            nodes: vec![Node {
                energy_budget: energy,
                first: 0,
                len,
            }],
            cost_budget: cost,
            server_budget: f64::INFINITY,
        }
    }

    pub(super) fn dual_at(&self, mu: f64, nu: f64, t: &Totals) -> f64 {
        t.adj + price_term(mu, self.cost_budget) + price_term(nu, self.server_budget)
    }

    /// Solves every node at prices (mu per USD, nu per unit of server budget); with `rec` (one
    /// entry per group), also writes each group's pure choice. Large problems are split into a
    /// fixed number of chunks solved on threads and summed in chunk order, so the result does
    /// not depend on timing.
    pub(super) fn eval(
        &self,
        mu: f64,
        nu: f64,
        s: &mut Scratch,
        rec: Option<&mut [Pick]>,
    ) -> Result<Totals, SolveError> {
        s.priced.resize_with(self.tables.len(), Vec::new);
        for (t, out) in self.tables.iter().zip(s.priced.iter_mut()) {
            t.priced(mu, out);
        }
        let priced = std::mem::take(&mut s.priced);
        let tot = self.eval_split(&priced, nu, s, rec);
        s.priced = priced;
        tot
    }

    pub(super) fn eval_split(
        &self,
        priced: &[Vec<PPt>],
        nu: f64,
        s: &mut Scratch,
        rec: Option<&mut [Pick]>,
    ) -> Result<Totals, SolveError> {
        // `eval_nodes` records from its first node's first group on.
        let first = group_start(&self.nodes).unwrap_or(0);
        let rec = rec.map(|r| &mut r[first..]);
        if self.nodes.len() < PARALLEL_MIN_NODES {
            return Ok(self.eval_nodes(&self.nodes, priced, nu, s, rec));
        }
        let chunk = self.nodes.len().div_ceil(CHUNKS);
        // Each chunk records into its own part of `rec`: the groups from its first node's to
        // the next chunk's (a node's groups follow the previous node's).
        let mut outs: Vec<Option<&mut [Pick]>> = Vec::with_capacity(CHUNKS);
        match rec {
            Some(mut rest) => {
                let mut at = first;
                for nodes in self.nodes.chunks(chunk).skip(1) {
                    let start = group_start(nodes).unwrap_or(at);
                    let (part, tail) = rest.split_at_mut(start - at);
                    at = start;
                    outs.push(Some(part));
                    rest = tail;
                }
                outs.push(Some(rest));
            }
            None => outs.resize_with(self.nodes.len().div_ceil(chunk), || None),
        }
        let parts: Result<Vec<Totals>, SolveError> = std::thread::scope(|sc| {
            let handles: Vec<_> = self
                .nodes
                .chunks(chunk)
                .zip(outs)
                .enumerate()
                .map(|(worker, (nodes, out))| {
                    let fail = injected_panic(worker);
                    sc.spawn(move || {
                        assert!(!fail, "injected in worker {worker}");
                        let mut s = Scratch::default();
                        self.eval_nodes(nodes, priced, nu, &mut s, out)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .map_err(|p| SolveError::WorkerPanicked(panic_text(&*p)))
                })
                .collect()
        });
        let mut tot = Totals::default();
        for t in &parts? {
            tot.add(t);
        }
        Ok(tot)
    }

    /// Each node's problem at fixed prices: per group the upper hull of (energy, priced value),
    /// then the greedy that walks the groups' hull segments in falling slope until the node's
    /// energy runs out. Every hull is concave, so its segments already come in falling slope and
    /// the greedy is a merge of the groups' lists (ties: lower group first).
    pub(super) fn eval_nodes(
        &self,
        nodes: &[Node],
        priced: &[Vec<PPt>],
        nu: f64,
        s: &mut Scratch,
        mut rec: Option<&mut [Pick]>,
    ) -> Totals {
        let mut tot = Totals::default();
        // `rec` starts at the first node's first group.
        let rec_start = group_start(nodes).unwrap_or(0);
        for node in nodes {
            s.hulls.clear();
            s.starts.clear();
            let groups = &self.groups[node.first as usize..(node.first + node.len) as usize];
            for g in groups {
                let table = &self.tables[g.table as usize];
                let nu_req = if g.weight > 0.0 {
                    nu * g.server_weight / g.weight
                } else {
                    0.0
                };
                let start = s.hulls.len();
                s.starts.push(start);
                table.hull_into(&priced[g.table as usize], nu_req, &mut s.hulls);
                // The base point (may be a free option at zero energy) is always taken.
                let base = s.hulls[start];
                tot.adj += g.weight * base.v;
                if base.opt != DROP {
                    let o = &table.opts[base.opt as usize];
                    tot.value += g.weight * o.value;
                    tot.energy += g.weight * o.energy;
                    tot.cost += g.weight * o.cost;
                    tot.server += g.server_weight * o.server;
                }
            }
            s.starts.push(s.hulls.len());
            s.heads.clear();
            s.heads
                .extend(s.starts[..groups.len()].iter().map(|&st| st + 1));
            s.slopes.clear();
            for gi in 0..groups.len() {
                let slope = s.head_slope(gi);
                s.slopes.push(slope);
            }
            let mut left = node.energy_budget.max(0.0);
            let mut partial: Option<(usize, f64)> = None;
            loop {
                let mut best: Option<(usize, f64)> = None;
                for (gi, &slope) in s.slopes.iter().enumerate() {
                    if slope > f64::NEG_INFINITY && best.is_none_or(|(_, bs)| slope > bs) {
                        best = Some((gi, slope));
                    }
                }
                let Some((gi, _)) = best else { break };
                let g = &groups[gi];
                let h = s.heads[gi];
                let (a, b) = (s.hulls[h - 1], s.hulls[h]);
                let de = g.weight * (b.e - a.e);
                let frac = if de <= left { 1.0 } else { left / de };
                if frac <= 0.0 {
                    break;
                }
                let table = &self.tables[g.table as usize];
                let ob = &table.opts[b.opt as usize];
                let (va, ca, sa) = if a.opt == DROP {
                    (0.0, 0.0, 0.0)
                } else {
                    let oa = &table.opts[a.opt as usize];
                    (oa.value, oa.cost, oa.server)
                };
                let w = frac * g.weight;
                tot.adj += w * (b.v - a.v);
                tot.value += w * (ob.value - va);
                tot.energy += frac * de;
                tot.cost += w * (ob.cost - ca);
                tot.server += frac * g.server_weight * (ob.server - sa);
                if frac < 1.0 {
                    partial = Some((gi, frac));
                    break;
                }
                s.heads[gi] += 1;
                s.slopes[gi] = s.head_slope(gi);
                left -= de;
            }
            if let Some(out) = rec.as_deref_mut().filter(|_| !groups.is_empty()) {
                let out = &mut out[node.first as usize - rec_start..][..groups.len()];
                for (gi, pick) in out.iter_mut().enumerate() {
                    let k = s.heads[gi] - 1;
                    let here = s.hulls[k].opt;
                    *pick = match partial {
                        Some((pg, frac)) if pg == gi => Pick {
                            here,
                            next: s.hulls[k + 1].opt,
                            frac,
                        },
                        _ => Pick::whole(here),
                    };
                }
            }
        }
        tot
    }

    /// Every node's groups exist, and each node with groups starts after the previous one's
    /// end: the sweep records each node's choices in place, and its threads split the groups
    /// where their nodes do.
    fn check_layout(&self) -> Result<(), SolveError> {
        let mut end = 0u64;
        for (i, n) in self.nodes.iter().enumerate() {
            let (first, last) = (u64::from(n.first), u64::from(n.first) + u64::from(n.len));
            if last > self.groups.len() as u64 {
                return Err(SolveError::Layout(format!(
                    "node {i} has groups {first}..{last} of {}",
                    self.groups.len()
                )));
            }
            if n.len > 0 {
                if first < end {
                    return Err(SolveError::Layout(format!(
                        "node {i} starts at group {first}, before the previous node's end {end}"
                    )));
                }
                end = last;
            }
        }
        Ok(())
    }

    /// Prices at which no priced option is worth anything, so usage of cost (0) and server (1)
    /// is zero; 0 for a resource without a budget (never priced).
    pub(super) fn price_caps(&self) -> [f64; 2] {
        let mut cap = [0.0f64; 2];
        for g in &self.groups {
            let t = &self.tables[g.table as usize];
            for o in &t.opts {
                let server = if g.weight > 0.0 {
                    o.server * g.server_weight / g.weight
                } else {
                    0.0
                };
                for (c, per) in cap.iter_mut().zip([o.cost, server]) {
                    if per > 0.0 {
                        *c = c.max(o.value / per);
                    }
                }
            }
        }
        let budgets = [self.cost_budget, self.server_budget];
        let mut out = [0.0; 2];
        for r in 0..2 {
            if budgets[r].is_finite() {
                out[r] = cap[r] * 1.01 + 1.0;
            }
        }
        out
    }

    pub(super) fn cut(
        &self,
        q: [f64; 2],
        caps: [f64; 2],
        s: &mut Scratch,
    ) -> Result<Cut, SolveError> {
        let (mu, nu) = (q[0] * caps[0], q[1] * caps[1]);
        let t = self.eval(mu, nu, s, None)?;
        let d = self.dual_at(mu, nu, &t);
        let slack = |budget: f64, used: f64, cap: f64| {
            if budget.is_finite() {
                (budget - used) * cap
            } else {
                0.0
            }
        };
        Ok(Cut {
            q,
            d,
            g: [
                slack(self.cost_budget, t.cost, caps[0]),
                slack(self.server_budget, t.server, caps[1]),
            ],
            mu,
            nu,
            t,
        })
    }

    /// Solves to relative gap `tol` (or as close as the iteration limit gets).
    ///
    /// Method: Kelley's cutting plane on the dual, which is convex and piecewise linear in the
    /// two prices. Every evaluation gives a cut; the next price pair minimises the cut model over
    /// the price box (found exactly by enumerating the model's vertices). The best dual value
    /// seen is the certified bound; the primal is the best convex combination of at most three
    /// evaluated pure solutions that meets both coupling budgets (the LP dual of the cut model),
    /// so the gap closes as the model does. Usually a dozen or two evaluations.
    ///
    /// Fails only when a worker thread of the parallel sweep (large fleets) panicked.
    pub fn solve(&self, tol: f64) -> Result<Solution, SolveError> {
        self.solve_warm(tol, &[])
    }

    /// [`Problem::solve`] warm-started from price pairs `(mu, nu)` of an earlier solve (its
    /// [`Solution::prices`]): they are evaluated first, so when the problem changed little the
    /// cut model is already tight where the optimum is and a few evaluations close the gap.
    /// Each warm pair is an ordinary evaluation, a valid dual value and a pure solution, so the
    /// bound, the primal and the gap are certified exactly as in a cold solve; only the number
    /// of evaluations changes. Pairs outside the price box are clamped into it.
    pub fn solve_warm(&self, tol: f64, warm: &[(f64, f64)]) -> Result<Solution, SolveError> {
        self.check_layout()?;
        let mut s = Scratch::default();
        let caps = self.price_caps();
        let active = [caps[0] > 0.0, caps[1] > 0.0];
        let mut cuts: Vec<Cut> = vec![self.cut([0.0, 0.0], caps, &mut s)?];
        let mut best = cuts[0].d;
        let feasible = |c: &Cut| c.g[0] >= 0.0 && c.g[1] >= 0.0;
        let combo = if feasible(&cuts[0]) {
            Combo::pure(0.0, 0.0, cuts[0].t)
        } else {
            for q in warm_points(warm, caps) {
                if cuts.iter().any(|c| c.q == q) {
                    continue;
                }
                let c = self.cut(q, caps, &mut s)?;
                best = best.min(c.d);
                cuts.push(c);
            }
            let mut combo: Option<Combo> = None;
            for _ in 0..MAX_CUTS {
                combo = best_combo(&cuts, active);
                if let Some(c) = &combo
                    && best - c.t.value <= tol * best.abs().max(1e-12)
                {
                    break;
                }
                let q = master(&cuts, active);
                if cuts.iter().any(|c| c.q == q) {
                    break; // the model is exact there: nothing more to learn
                }
                let c = self.cut(q, caps, &mut s)?;
                best = best.min(c.d);
                cuts.push(c);
            }
            match combo.or_else(|| best_combo(&cuts, active)) {
                Some(c) => c,
                // Unreachable in practice: the price box's corner uses nothing priced.
                None => {
                    let c = self.cut([1.0, 1.0], caps, &mut s)?;
                    best = best.min(c.d);
                    cuts.push(c);
                    Combo::pure(c.mu, c.nu, c.t)
                }
            }
        };
        self.realise(&combo, best, cuts.len(), &mut s)
    }

    pub(super) fn realise(
        &self,
        combo: &Combo,
        best: f64,
        evals: usize,
        s: &mut Scratch,
    ) -> Result<Solution, SolveError> {
        let mut picks: Vec<(f64, Vec<Pick>)> = Vec::with_capacity(combo.parts.len());
        for &(w, m, n) in &combo.parts {
            let mut pure = vec![Pick::default(); self.groups.len()];
            self.eval(m, n, s, Some(&mut pure))?;
            picks.push((w, pure));
        }
        let mixes = Mixes::combine(self.groups.len(), &picks);
        drop(picks);
        // The price pair the heaviest part was solved at is the one to report.
        let heavy = combo
            .parts
            .iter()
            .fold((0.0, 0.0, 0.0), |a, p| if p.0 > a.0 { *p } else { a });
        let prices = combo.parts.iter().map(|&(_, m, n)| (m, n)).collect();
        // The raw dual: if it ever fell below the primal the gap turns negative and shows it.
        Ok(Solution {
            prices,
            value: combo.t.value,
            dual: best,
            cost_price: heavy.1,
            server_price: heavy.2,
            cost_used: combo.t.cost,
            server_used: combo.t.server,
            energy_used: combo.t.energy,
            mixes,
            evaluations: evals,
        })
    }
}

/// Warm price pairs in the scaled unit box of this problem's price caps (a resource without a
/// budget stays at 0), non-finite or negative prices dropped, at most four (a combination has
/// at most three parts).
fn warm_points(warm: &[(f64, f64)], caps: [f64; 2]) -> Vec<[f64; 2]> {
    let scale = |p: f64, cap: f64| {
        if cap > 0.0 {
            (p / cap).clamp(0.0, 1.0)
        } else {
            0.0
        }
    };
    warm.iter()
        .filter(|(m, n)| m.is_finite() && n.is_finite() && *m >= 0.0 && *n >= 0.0)
        .take(4)
        .map(|&(m, n)| [scale(m, caps[0]), scale(n, caps[1])])
        .collect()
}

/// The message a panicking thread left, for the error that replaces its missing share.
pub(super) fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".into())
}
