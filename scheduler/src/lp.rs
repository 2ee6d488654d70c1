//! The fractional (LP) optimum behind `mcdnn`, `bound` and the fleet solver.
//!
//! Problem: nodes, each with an energy budget and groups of requests (an app on a node, or a
//! class of trace requests). A group has a weight (requests) and a table of options (variant x
//! place); each request takes a mix of options or is dropped. Maximise total accuracy subject to
//! each node's energy and two coupling budgets: cloud cost and server capacity.
//!
//! Method: price-based (Lagrangian) decomposition. Given prices for cost and server use, each
//! node's problem is a multiple-choice knapsack LP over energy, solved exactly by the greedy on
//! the upper concave hull of every group's (energy, priced value) points. Prices are found by a
//! cutting-plane method on the (convex, piecewise-linear) dual; the primal is the best convex
//! combination of at most three evaluated pure solutions that meets both coupling budgets
//! (feasible by construction), and every evaluated price pair gives a dual value, so the gap is
//! certified.

/// Problems with at least this many nodes are solved on `CHUNKS` threads.
const PARALLEL_MIN_NODES: usize = 4096;
const CHUNKS: usize = 2;

/// A group's pure choice at one price pair: up to two options and their fractions.
type Picks = [(u32, f64); 2];

/// Sentinel option index for "drop the request".
pub const DROP: u32 = u32::MAX;

/// One (variant, place) choice for a request of a group, per request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Opt {
    /// Accuracy (percent) credited per request.
    pub value: f64,
    /// Device energy per request (J).
    pub energy: f64,
    /// Cloud cost per request (USD).
    pub cost: f64,
    /// Server use per request: 1 if offloaded, else 0.
    pub server: f64,
}

/// A shared option table; many groups (e.g. every node of a device class) may point to one.
#[derive(Debug, Clone)]
pub struct Table {
    opts: Vec<Opt>,
    /// Upper hull of the options that use no priced resource (independent of prices).
    static_hull: Vec<Pt>,
    /// Priced options grouped by equal energy, ascending: only the best one per bucket matters.
    buckets: Vec<(f64, Vec<u32>)>,
}

#[derive(Debug, Clone, Copy)]
struct Pt {
    e: f64,
    v: f64,
    opt: u32,
}

const ORIGIN: Pt = Pt {
    e: 0.0,
    v: 0.0,
    opt: DROP,
};

/// Adds `p` (energies non-decreasing) to an increasing upper concave hull.
fn push_hull(h: &mut Vec<Pt>, p: Pt) {
    let Some(last) = h.last() else {
        h.push(p);
        return;
    };
    if p.v <= last.v {
        return; // more energy, no more value: never worth it
    }
    if p.e <= last.e {
        h.pop();
    }
    while h.len() >= 2 {
        let a = h[h.len() - 2];
        let b = h[h.len() - 1];
        if (b.v - a.v) * (p.e - a.e) <= (p.v - a.v) * (b.e - a.e) {
            h.pop();
        } else {
            break;
        }
    }
    h.push(p);
}

impl Table {
    /// Compiles options; options with negative or non-finite figures are ignored.
    pub fn new(opts: Vec<Opt>) -> Table {
        let ok = |o: &Opt| {
            [o.value, o.energy, o.cost, o.server]
                .iter()
                .all(|x| x.is_finite() && *x >= 0.0)
        };
        let mut statics: Vec<u32> = (0..opts.len() as u32)
            .filter(|&i| {
                let o = &opts[i as usize];
                ok(o) && o.cost == 0.0 && o.server == 0.0
            })
            .collect();
        statics.sort_by(|&a, &b| {
            let (oa, ob) = (&opts[a as usize], &opts[b as usize]);
            oa.energy
                .total_cmp(&ob.energy)
                .then(ob.value.total_cmp(&oa.value))
        });
        let mut static_hull = vec![ORIGIN];
        for i in statics {
            let o = &opts[i as usize];
            push_hull(
                &mut static_hull,
                Pt {
                    e: o.energy,
                    v: o.value,
                    opt: i,
                },
            );
        }
        let mut priced: Vec<u32> = (0..opts.len() as u32)
            .filter(|&i| {
                let o = &opts[i as usize];
                ok(o) && (o.cost > 0.0 || o.server > 0.0)
            })
            .collect();
        priced.sort_by(|&a, &b| opts[a as usize].energy.total_cmp(&opts[b as usize].energy));
        let mut buckets: Vec<(f64, Vec<u32>)> = Vec::new();
        for i in priced {
            let e = opts[i as usize].energy;
            match buckets.last_mut() {
                Some((be, list)) if *be == e => list.push(i),
                _ => buckets.push((e, vec![i])),
            }
        }
        Table {
            opts,
            static_hull,
            buckets,
        }
    }

    /// The options as given.
    pub fn opts(&self) -> &[Opt] {
        &self.opts
    }

    /// The priced options worth anything at cost price `mu`, by energy bucket: in each bucket
    /// the best one per server use, and more server use only for more value (whatever the server
    /// price, nothing else in the bucket can be the best).
    fn priced(&self, mu: f64, out: &mut Vec<PPt>) {
        out.clear();
        for (e, list) in &self.buckets {
            let first = out.len();
            for &i in list {
                let o = &self.opts[i as usize];
                let v = o.value - mu * o.cost;
                if v > 0.0 {
                    out.push(PPt {
                        e: *e,
                        v,
                        server: o.server,
                        opt: i,
                    });
                }
            }
            let bucket = &mut out[first..];
            bucket.sort_by(|a, b| {
                a.server
                    .total_cmp(&b.server)
                    .then(b.v.total_cmp(&a.v))
                    .then(a.opt.cmp(&b.opt))
            });
            let mut keep = first;
            let mut top = f64::NEG_INFINITY;
            for k in first..out.len() {
                if out[k].v > top {
                    top = out[k].v;
                    out[keep] = out[k];
                    keep += 1;
                }
            }
            out.truncate(keep);
        }
    }

    /// Builds the hull at server price `nu_per_request` into `out` (cleared first) from the
    /// static hull and this table's `priced` options.
    fn hull(&self, priced: &[PPt], nu_per_request: f64, out: &mut Vec<Pt>) {
        out.clear();
        let sh = &self.static_hull;
        let mut si = 0;
        let mut pi = 0;
        while si < sh.len() || pi < priced.len() {
            if pi >= priced.len() || (si < sh.len() && sh[si].e <= priced[pi].e) {
                push_hull(out, sh[si]);
                si += 1;
                continue;
            }
            let e = priced[pi].e;
            let mut best = Pt {
                e,
                v: 0.0,
                opt: DROP,
            };
            while pi < priced.len() && priced[pi].e == e {
                let p = &priced[pi];
                let v = p.v - nu_per_request * p.server;
                if v > best.v {
                    best = Pt { e, v, opt: p.opt };
                }
                pi += 1;
            }
            if best.opt != DROP {
                push_hull(out, best);
            }
        }
    }
}

/// A priced option at a given cost price.
#[derive(Debug, Clone, Copy)]
struct PPt {
    e: f64,
    v: f64,
    server: f64,
    opt: u32,
}

/// A group of requests sharing one option table.
#[derive(Debug, Clone, Copy)]
pub struct Group {
    pub table: u32,
    /// Requests in the group (objective, energy and cost scale with it).
    pub weight: f64,
    /// What one unit of `Opt::server` counts against the server budget for the whole group
    /// (e.g. the request rate when the budget is in requests/s).
    pub server_weight: f64,
}

/// A node: its energy budget and its groups `groups[first..first + len]`.
#[derive(Debug, Clone, Copy)]
pub struct Node {
    pub energy_budget: f64,
    pub first: u32,
    pub len: u32,
}

/// The whole problem.
#[derive(Debug, Clone, Default)]
pub struct Problem {
    pub tables: Vec<Table>,
    pub groups: Vec<Group>,
    pub nodes: Vec<Node>,
    /// Coupling budgets; `f64::INFINITY` when absent.
    pub cost_budget: f64,
    pub server_budget: f64,
}

/// `(dual - primal) / |dual|`, 0 when both are 0 (nothing to serve), unclamped.
pub fn relative_gap(primal: f64, dual: f64) -> f64 {
    if dual == 0.0 && primal == 0.0 {
        0.0
    } else {
        (dual - primal) / dual.abs().max(f64::MIN_POSITIVE)
    }
}

/// Why a solve produced no answer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SolveError {
    /// A worker thread of the parallel node sweep panicked: its share of the sum is unknown, so
    /// no plan or bound built from it can be trusted.
    #[error("a solver worker thread panicked: {0}")]
    WorkerPanicked(String),
}

/// Solution: per group a mix of options (the rest is dropped), the primal value and the dual
/// bound.
#[derive(Debug, Clone)]
pub struct Solution {
    /// Objective of the returned (feasible) mix: sum of weight x accuracy.
    pub value: f64,
    /// Certified upper bound on the LP optimum (best dual value found).
    pub dual: f64,
    pub cost_price: f64,
    pub server_price: f64,
    pub cost_used: f64,
    pub server_used: f64,
    pub energy_used: f64,
    /// Per group: (option index, fraction of the group's requests); drop is the remainder.
    pub mixes: Vec<Vec<(u32, f64)>>,
    pub evaluations: usize,
}

impl Solution {
    /// Relative optimality gap (dual - primal) / dual; 0 when both are 0. Not clamped: a
    /// negative gap means the "bound" is below a feasible plan, i.e. the dual is broken, and
    /// callers must see that rather than a reassuring 0.
    pub fn gap(&self) -> f64 {
        relative_gap(self.value, self.dual)
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Totals {
    adj: f64,
    value: f64,
    energy: f64,
    cost: f64,
    server: f64,
}

impl Totals {
    fn add(&mut self, o: &Totals) {
        self.adj += o.adj;
        self.value += o.value;
        self.energy += o.energy;
        self.cost += o.cost;
        self.server += o.server;
    }
}

#[derive(Default)]
struct Scratch {
    /// Per table, its priced options at the current cost price.
    priced: Vec<Vec<PPt>>,
    hull: Vec<Pt>,
    /// Every group's hull of the current node, back to back; `starts` has one more entry.
    hulls: Vec<Pt>,
    starts: Vec<usize>,
    /// Per group, the next hull vertex the greedy would move to.
    heads: Vec<usize>,
}

/// A convex combination of pure solutions at price pairs, with its mixed totals.
#[derive(Debug, Clone)]
struct Combo {
    parts: Vec<(f64, f64, f64)>, // (weight, mu, nu)
    t: Totals,
}

impl Combo {
    fn pure(mu: f64, nu: f64, t: Totals) -> Combo {
        Combo {
            parts: vec![(1.0, mu, nu)],
            t,
        }
    }
}

/// One evaluated price pair: a cut `D(q) >= d + g.(q - q_at)` on the dual, in prices scaled to
/// the unit box, and the pure solution behind it.
#[derive(Debug, Clone, Copy)]
struct Cut {
    q: [f64; 2],
    /// Dual value at `q`.
    d: f64,
    /// Subgradient in scaled prices: (budget - usage) x price cap; 0 for an unpriced resource.
    g: [f64; 2],
    mu: f64,
    nu: f64,
    t: Totals,
}

impl Cut {
    /// Intercept of the cut at q = 0.
    fn a(&self) -> f64 {
        self.d - self.g[0] * self.q[0] - self.g[1] * self.q[1]
    }

    fn at(&self, q: [f64; 2]) -> f64 {
        self.a() + self.g[0] * q[0] + self.g[1] * q[1]
    }
}

fn price_term(price: f64, budget: f64) -> f64 {
    if price == 0.0 { 0.0 } else { price * budget }
}

/// Solves the 2x2 system [a b; c d] x = [e; f]; None when (nearly) singular.
fn solve2(a: f64, b: f64, c: f64, d: f64, e: f64, f: f64) -> Option<[f64; 2]> {
    let det = a * d - b * c;
    let scale = (a.abs() + b.abs()) * (c.abs() + d.abs());
    if det == 0.0 || det.abs() <= 1e-14 * scale {
        return None;
    }
    Some([(e * d - b * f) / det, (a * f - e * c) / det])
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

    fn dual_at(&self, mu: f64, nu: f64, t: &Totals) -> f64 {
        t.adj + price_term(mu, self.cost_budget) + price_term(nu, self.server_budget)
    }

    /// Solves every node at prices (mu per USD, nu per unit of server budget); with `rec`, also
    /// writes each group's pure mix. Large problems are split into a fixed number of chunks
    /// solved on threads and summed in chunk order, so the result does not depend on timing.
    fn eval(
        &self,
        mu: f64,
        nu: f64,
        s: &mut Scratch,
        rec: Option<&mut Vec<[(u32, f64); 2]>>,
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

    fn eval_split(
        &self,
        priced: &[Vec<PPt>],
        nu: f64,
        s: &mut Scratch,
        rec: Option<&mut Vec<[(u32, f64); 2]>>,
    ) -> Result<Totals, SolveError> {
        if self.nodes.len() < PARALLEL_MIN_NODES {
            return Ok(self.eval_nodes(&self.nodes, priced, nu, s, rec));
        }
        let chunk = self.nodes.len().div_ceil(CHUNKS);
        let want = rec.is_some();
        let parts: Result<Vec<(Totals, Vec<Picks>)>, SolveError> = std::thread::scope(|sc| {
            let handles: Vec<_> = self
                .nodes
                .chunks(chunk)
                .map(|nodes| {
                    sc.spawn(move || {
                        let mut s = Scratch::default();
                        let mut out = Vec::new();
                        let t =
                            self.eval_nodes(nodes, priced, nu, &mut s, want.then_some(&mut out));
                        (t, out)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .map_err(|p| SolveError::WorkerPanicked(panic_text(&p)))
                })
                .collect()
        });
        let parts = parts?;
        let mut tot = Totals::default();
        let mut rec = rec;
        for (t, out) in &parts {
            tot.add(t);
            if let Some(r) = rec.as_deref_mut() {
                r.extend_from_slice(out);
            }
        }
        Ok(tot)
    }

    /// Each node's problem at fixed prices: per group the upper hull of (energy, priced value),
    /// then the greedy that walks the groups' hull segments in falling slope until the node's
    /// energy runs out. Every hull is concave, so its segments already come in falling slope and
    /// the greedy is a merge of the groups' lists (ties: lower group first).
    fn eval_nodes(
        &self,
        nodes: &[Node],
        priced: &[Vec<PPt>],
        nu: f64,
        s: &mut Scratch,
        mut rec: Option<&mut Vec<[(u32, f64); 2]>>,
    ) -> Totals {
        let mut tot = Totals::default();
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
                table.hull(&priced[g.table as usize], nu_req, &mut s.hull);
                s.starts.push(s.hulls.len());
                s.hulls.extend_from_slice(&s.hull);
                // The base point (may be a free option at zero energy) is always taken.
                let base = s.hull[0];
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
            let mut left = node.energy_budget.max(0.0);
            let mut partial: Option<(usize, f64)> = None;
            loop {
                let mut best: Option<(usize, f64)> = None;
                for gi in 0..groups.len() {
                    let h = s.heads[gi];
                    if h >= s.starts[gi + 1] {
                        continue;
                    }
                    let (a, b) = (s.hulls[h - 1], s.hulls[h]);
                    let slope = (b.v - a.v) / (b.e - a.e);
                    if best.is_none_or(|(_, bs)| slope > bs) {
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
                left -= de;
            }
            if let Some(out) = rec.as_deref_mut() {
                for gi in 0..groups.len() {
                    let k = s.heads[gi] - 1;
                    let here = s.hulls[k].opt;
                    match partial {
                        Some((pg, frac)) if pg == gi => {
                            out.push([(here, 1.0 - frac), (s.hulls[k + 1].opt, frac)]);
                        }
                        _ => out.push([(here, 1.0), (DROP, 0.0)]),
                    }
                }
            }
        }
        tot
    }

    /// Prices at which no priced option is worth anything, so usage of cost (0) and server (1)
    /// is zero; 0 for a resource without a budget (never priced).
    fn price_caps(&self) -> [f64; 2] {
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

    fn cut(&self, q: [f64; 2], caps: [f64; 2], s: &mut Scratch) -> Result<Cut, SolveError> {
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
        let mut s = Scratch::default();
        let caps = self.price_caps();
        let active = [caps[0] > 0.0, caps[1] > 0.0];
        let mut cuts: Vec<Cut> = vec![self.cut([0.0, 0.0], caps, &mut s)?];
        let mut best = cuts[0].d;
        let feasible = |c: &Cut| c.g[0] >= 0.0 && c.g[1] >= 0.0;
        let combo = if feasible(&cuts[0]) {
            Combo::pure(0.0, 0.0, cuts[0].t)
        } else {
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

    fn realise(
        &self,
        combo: &Combo,
        best: f64,
        evals: usize,
        s: &mut Scratch,
    ) -> Result<Solution, SolveError> {
        let mut picks: Vec<(f64, Vec<Picks>)> = Vec::with_capacity(combo.parts.len());
        for &(w, m, n) in &combo.parts {
            let mut pure = Vec::with_capacity(self.groups.len());
            self.eval(m, n, s, Some(&mut pure))?;
            picks.push((w, pure));
        }
        let mixes: Vec<Vec<(u32, f64)>> = (0..self.groups.len())
            .map(|gi| {
                let mut mix: Vec<(u32, f64)> = Vec::with_capacity(2 * picks.len());
                for (w, pure) in &picks {
                    for &(opt, f) in &pure[gi] {
                        if opt == DROP || f <= 0.0 {
                            continue;
                        }
                        match mix.iter_mut().find(|(o, _)| *o == opt) {
                            Some(e) => e.1 += w * f,
                            None => mix.push((opt, w * f)),
                        }
                    }
                }
                mix
            })
            .collect();
        // The price pair the heaviest part was solved at is the one to report.
        let heavy = combo
            .parts
            .iter()
            .fold((0.0, 0.0, 0.0), |a, p| if p.0 > a.0 { *p } else { a });
        // The raw dual: if it ever fell below the primal the gap turns negative and shows it.
        Ok(Solution {
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

/// The message a panicking thread left, for the error that replaces its missing share.
fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".into())
}

/// Evaluations the price search may spend at most.
const MAX_CUTS: usize = 200;

/// The minimiser of the cut model `max_i cut_i(q)` over the unit box (restricted to the priced
/// resources): the model is piecewise linear, so its minimum is at a box corner, where two cuts
/// meet a box edge, or where three cuts meet. Ties go to the first candidate found.
fn master(cuts: &[Cut], active: [bool; 2]) -> [f64; 2] {
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
fn best_combo(cuts: &[Cut], active: [bool; 2]) -> Option<Combo> {
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

#[cfg(test)]
#[path = "lp_tests.rs"]
mod tests;
