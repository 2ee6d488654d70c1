//! The fractional (LP) optimum behind `mcdnn`, `bound` and the fleet solver.
//!
//! Problem: nodes, each with an energy budget and groups of requests (an app on a node, or a
//! class of trace requests). A group has a weight (requests) and a table of options (variant x
//! place); each request takes a mix of options or is dropped. Maximise total accuracy subject to
//! each node's energy and two coupling budgets: cloud cost and server capacity.
//!
//! Method: price-based (Lagrangian) decomposition. Given prices for cost and server use, each
//! node's problem is a multiple-choice knapsack LP over energy, solved exactly by the greedy on
//! the upper concave hull of every group's (energy, priced value) points. Prices are found by
//! bisection on the subgradient; the primal is a convex combination of the bracketing pure
//! solutions (feasible by construction) and every evaluated price pair gives a dual value,
//! so the gap is certified.

/// Problems with at least this many nodes are solved on `CHUNKS` threads.
const PARALLEL_MIN_NODES: usize = 4096;
const CHUNKS: usize = 2;

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

    /// Builds the priced hull into `out` (cleared first).
    fn hull(&self, mu: f64, nu_per_request: f64, out: &mut Vec<Pt>) {
        out.clear();
        let mut si = 0;
        let mut bi = 0;
        let sh = &self.static_hull;
        while si < sh.len() || bi < self.buckets.len() {
            let take_static =
                bi >= self.buckets.len() || (si < sh.len() && sh[si].e <= self.buckets[bi].0);
            if take_static {
                push_hull(out, sh[si]);
                si += 1;
            } else {
                let (e, list) = &self.buckets[bi];
                bi += 1;
                let mut best = Pt {
                    e: *e,
                    v: 0.0,
                    opt: DROP,
                };
                for &i in list {
                    let o = &self.opts[i as usize];
                    let v = o.value - mu * o.cost - nu_per_request * o.server;
                    if v > best.v {
                        best = Pt { e: *e, v, opt: i };
                    }
                }
                if best.opt != DROP {
                    push_hull(out, best);
                }
            }
        }
    }
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
    /// Relative optimality gap (dual - primal) / dual; 0 when both are 0.
    pub fn gap(&self) -> f64 {
        if self.dual <= 0.0 {
            0.0
        } else {
            ((self.dual - self.value) / self.dual).max(0.0)
        }
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

#[derive(Debug, Clone, Copy)]
struct Seg {
    slope: f64,
    group: u32,
    k: u32,
    de: f64,
    d: Totals,
}

#[derive(Default)]
struct Scratch {
    hull: Vec<Pt>,
    hulls: Vec<Pt>,
    starts: Vec<usize>,
    segs: Vec<Seg>,
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

    fn mix(a: &Combo, b: &Combo, theta: f64) -> Combo {
        let mut parts: Vec<_> = a.parts.iter().map(|&(w, m, n)| (w * theta, m, n)).collect();
        parts.extend(b.parts.iter().map(|&(w, m, n)| (w * (1.0 - theta), m, n)));
        parts.retain(|p| p.0 > 0.0);
        let l = |x: f64, y: f64| theta * x + (1.0 - theta) * y;
        let t = Totals {
            adj: l(a.t.adj, b.t.adj),
            value: l(a.t.value, b.t.value),
            energy: l(a.t.energy, b.t.energy),
            cost: l(a.t.cost, b.t.cost),
            server: l(a.t.server, b.t.server),
        };
        Combo { parts, t }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Resource {
    Cost,
    Server,
}

fn price_term(price: f64, budget: f64) -> f64 {
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
    ) -> Totals {
        if rec.is_some() || self.nodes.len() < PARALLEL_MIN_NODES {
            return self.eval_nodes(&self.nodes, mu, nu, s, rec);
        }
        let chunk = self.nodes.len().div_ceil(CHUNKS);
        let parts: Vec<Totals> = std::thread::scope(|sc| {
            let handles: Vec<_> = self
                .nodes
                .chunks(chunk)
                .map(|nodes| {
                    sc.spawn(move || {
                        let mut s = Scratch::default();
                        self.eval_nodes(nodes, mu, nu, &mut s, None)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_default())
                .collect()
        });
        let mut tot = Totals::default();
        for p in parts {
            tot.adj += p.adj;
            tot.value += p.value;
            tot.energy += p.energy;
            tot.cost += p.cost;
            tot.server += p.server;
        }
        tot
    }

    fn eval_nodes(
        &self,
        nodes: &[Node],
        mu: f64,
        nu: f64,
        s: &mut Scratch,
        mut rec: Option<&mut Vec<[(u32, f64); 2]>>,
    ) -> Totals {
        let mut tot = Totals::default();
        for node in nodes {
            s.hulls.clear();
            s.starts.clear();
            s.segs.clear();
            let groups = &self.groups[node.first as usize..(node.first + node.len) as usize];
            for (gi, g) in groups.iter().enumerate() {
                let table = &self.tables[g.table as usize];
                let nu_req = if g.weight > 0.0 {
                    nu * g.server_weight / g.weight
                } else {
                    0.0
                };
                table.hull(mu, nu_req, &mut s.hull);
                s.starts.push(s.hulls.len());
                s.hulls.extend_from_slice(&s.hull);
                // The base point (may be a free option at zero energy) is always taken.
                let base = s.hull[0];
                tot.adj += g.weight * base.v;
                if base.opt != DROP {
                    let o = table.opts[base.opt as usize];
                    tot.value += g.weight * o.value;
                    tot.cost += g.weight * o.cost;
                    tot.server += g.server_weight * o.server;
                }
                for k in 1..s.hull.len() {
                    let (a, b) = (s.hull[k - 1], s.hull[k]);
                    let oa = if a.opt == DROP {
                        None
                    } else {
                        Some(table.opts[a.opt as usize])
                    };
                    let ob = table.opts[b.opt as usize];
                    let f = |sel: fn(&Opt) -> f64| sel(&ob) - oa.as_ref().map_or(0.0, sel);
                    s.segs.push(Seg {
                        slope: (b.v - a.v) / (b.e - a.e),
                        group: gi as u32,
                        k: k as u32,
                        de: g.weight * (b.e - a.e),
                        d: Totals {
                            adj: g.weight * (b.v - a.v),
                            value: g.weight * f(|o| o.value),
                            energy: g.weight * (b.e - a.e),
                            cost: g.weight * f(|o| o.cost),
                            server: g.server_weight * f(|o| o.server),
                        },
                    });
                }
            }
            s.segs.sort_unstable_by(|x, y| {
                y.slope
                    .total_cmp(&x.slope)
                    .then(x.group.cmp(&y.group))
                    .then(x.k.cmp(&y.k))
            });
            let mut left = node.energy_budget.max(0.0);
            let mut reached = vec![(0u32, 0.0f64); if rec.is_some() { groups.len() } else { 0 }];
            for seg in &s.segs {
                let frac = if seg.de <= left { 1.0 } else { left / seg.de };
                if frac <= 0.0 {
                    break;
                }
                tot.adj += frac * seg.d.adj;
                tot.value += frac * seg.d.value;
                tot.energy += frac * seg.d.energy;
                tot.cost += frac * seg.d.cost;
                tot.server += frac * seg.d.server;
                if !reached.is_empty() {
                    reached[seg.group as usize] = if frac >= 1.0 {
                        (seg.k, 0.0)
                    } else {
                        (seg.k - 1, frac)
                    };
                }
                if frac < 1.0 {
                    break;
                }
                left -= seg.de;
            }
            if let Some(out) = rec.as_deref_mut() {
                for (gi, &(k, frac)) in reached.iter().enumerate() {
                    let h = &s.hulls[s.starts[gi]..];
                    let here = h[k as usize].opt;
                    let next = if frac > 0.0 {
                        h[k as usize + 1].opt
                    } else {
                        DROP
                    };
                    out.push([(here, 1.0 - frac), (next, frac)]);
                }
            }
        }
        tot
    }

    /// Price at which no priced option is worth anything, so usage of `r` is zero.
    fn price_cap(&self, r: Resource) -> f64 {
        let mut cap: f64 = 0.0;
        for g in &self.groups {
            let t = &self.tables[g.table as usize];
            for o in &t.opts {
                let per = match r {
                    Resource::Cost => o.cost,
                    Resource::Server if g.weight > 0.0 => o.server * g.server_weight / g.weight,
                    Resource::Server => 0.0,
                };
                if per > 0.0 {
                    cap = cap.max(o.value / per);
                }
            }
        }
        cap * 1.01 + 1.0
    }

    /// Minimises the dual over the price of `r` with the other price fixed at `other`; returns
    /// the primal combination (feasible for `r`) and the smallest dual value seen in this search.
    /// With `nested`, every point is itself a cost search at that server price.
    #[allow(clippy::too_many_arguments)]
    fn solve_1d(
        &self,
        r: Resource,
        other: f64,
        nested: bool,
        tol: f64,
        s: &mut Scratch,
        evals: &mut usize,
        best: &mut f64,
    ) -> (Combo, f64) {
        let at = |p: f64, s: &mut Scratch, evals: &mut usize, best: &mut f64| -> (Combo, f64) {
            if nested {
                return self.solve_1d(Resource::Cost, p, false, tol * 0.1, s, evals, best);
            }
            let (mu, nu) = if r == Resource::Cost {
                (p, other)
            } else {
                (other, p)
            };
            let t = self.eval(mu, nu, s, None);
            *evals += 1;
            let d = self.dual_at(mu, nu, &t);
            *best = best.min(d);
            (Combo::pure(mu, nu, t), d)
        };
        let usage = |c: &Combo| {
            if r == Resource::Cost {
                c.t.cost
            } else {
                c.t.server
            }
        };
        let budget = if r == Resource::Cost {
            self.cost_budget
        } else {
            self.server_budget
        };
        // The objective this search maximises: value with the other resource still priced.
        let objective = |c: &Combo| {
            let (other_use, other_budget) = match r {
                Resource::Cost => (c.t.server, self.server_budget),
                Resource::Server => (c.t.cost, self.cost_budget),
            };
            c.t.value - other * other_use + price_term(other, other_budget)
        };
        let (mut lo, d0) = at(0.0, s, evals, best);
        if usage(&lo) <= budget {
            return (lo, d0);
        }
        let mut local = d0;
        let mut lo_p = 0.0;
        let mut hi_p = self.price_cap(r);
        let (mut hi, d1) = at(hi_p, s, evals, best);
        local = local.min(d1);
        let mixed = |lo: &Combo, hi: &Combo| {
            let (ul, uh) = (usage(lo), usage(hi));
            let theta = if ul > uh {
                ((budget - uh) / (ul - uh)).clamp(0.0, 1.0)
            } else {
                0.0
            };
            Combo::mix(lo, hi, theta)
        };
        for _ in 0..200 {
            let m = mixed(&lo, &hi);
            let gap = local - objective(&m);
            if gap <= tol * local.abs().max(1e-12) || hi_p - lo_p <= 1e-13 * hi_p.max(1.0) {
                return (m, local);
            }
            let mid = 0.5 * (lo_p + hi_p);
            let (c, d) = at(mid, s, evals, best);
            local = local.min(d);
            if usage(&c) > budget {
                lo = c;
                lo_p = mid;
            } else {
                hi = c;
                hi_p = mid;
            }
        }
        (mixed(&lo, &hi), local)
    }

    /// Solves to relative gap `tol` (or as close as bisection gets).
    pub fn solve(&self, tol: f64) -> Solution {
        let mut s = Scratch::default();
        let mut evals = 0;
        let mut best = f64::INFINITY;
        let combo = self.solve_combo(tol, &mut s, &mut evals, &mut best);
        self.realise(&combo, best, evals, &mut s)
    }

    fn solve_combo(&self, tol: f64, s: &mut Scratch, evals: &mut usize, best: &mut f64) -> Combo {
        let t0 = self.eval(0.0, 0.0, s, None);
        *evals += 1;
        *best = best.min(self.dual_at(0.0, 0.0, &t0));
        if t0.cost <= self.cost_budget && t0.server <= self.server_budget {
            return Combo::pure(0.0, 0.0, t0);
        }
        // Usually one coupling constraint binds; try each alone before the nested search.
        if t0.cost > self.cost_budget {
            let (c, _) = self.solve_1d(Resource::Cost, 0.0, false, tol, s, evals, best);
            if c.t.server <= self.server_budget {
                return c;
            }
        }
        if t0.server > self.server_budget {
            let (c, _) = self.solve_1d(Resource::Server, 0.0, false, tol, s, evals, best);
            if c.t.cost <= self.cost_budget {
                return c;
            }
        }
        self.solve_1d(Resource::Server, 0.0, true, tol, s, evals, best)
            .0
    }

    fn realise(&self, combo: &Combo, best: f64, evals: usize, s: &mut Scratch) -> Solution {
        let mut mixes: Vec<Vec<(u32, f64)>> = vec![Vec::new(); self.groups.len()];
        let mut pure = Vec::with_capacity(self.groups.len());
        let (mut mu, mut nu) = (0.0, 0.0);
        for &(w, m, n) in &combo.parts {
            pure.clear();
            self.eval(m, n, s, Some(&mut pure));
            if w >= 0.5 {
                (mu, nu) = (m, n);
            }
            for (mix, picks) in mixes.iter_mut().zip(&pure) {
                for &(opt, f) in picks {
                    if opt == DROP || f <= 0.0 {
                        continue;
                    }
                    match mix.iter_mut().find(|(o, _)| *o == opt) {
                        Some(e) => e.1 += w * f,
                        None => mix.push((opt, w * f)),
                    }
                }
            }
        }
        if combo.parts.len() > 1 {
            // The price pair the heavier part was solved at is the one to report.
            let heavy = combo
                .parts
                .iter()
                .fold((0.0, 0.0, 0.0), |a, p| if p.0 > a.0 { *p } else { a });
            (mu, nu) = (heavy.1, heavy.2);
        }
        Solution {
            value: combo.t.value,
            dual: best.max(combo.t.value),
            cost_price: mu,
            server_price: nu,
            cost_used: combo.t.cost,
            server_used: combo.t.server,
            energy_used: combo.t.energy,
            mixes,
            evaluations: evals,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opt(value: f64, energy: f64, cost: f64) -> Opt {
        Opt {
            value,
            energy,
            cost,
            server: if cost > 0.0 { 1.0 } else { 0.0 },
        }
    }

    #[test]
    fn energy_only_greedy_fills_best_ratio_first() {
        // Two groups of 10 requests; budget 10 J.
        let a = Table::new(vec![opt(66.0, 0.36, 0.0), opt(78.0, 3.3, 0.0)]);
        let b = Table::new(vec![opt(42.0, 1.24, 0.0)]);
        let groups = vec![
            Group {
                table: 0,
                weight: 10.0,
                server_weight: 0.0,
            },
            Group {
                table: 1,
                weight: 10.0,
                server_weight: 0.0,
            },
        ];
        let p = Problem::single(vec![a, b], groups, 10.0, f64::INFINITY);
        let sol = p.solve(1e-9);
        // 3.6 J for all of A at 66 (183/J), then B at 34/J vs A upgrade at 12/J/1 -> B.
        let expected = 10.0 * 66.0 + (10.0 - 3.6) / 1.24 * 42.0;
        assert!(
            (sol.value - expected).abs() < 1e-6,
            "{} vs {expected}",
            sol.value
        );
        assert!(sol.energy_used <= 10.0 + 1e-9);
        assert!(sol.gap() < 1e-9);
    }

    #[test]
    fn cost_budget_binds_and_gap_is_small() {
        let t = Table::new(vec![
            opt(60.0, 1.0, 0.0),
            opt(80.0, 0.01, 1e-6),
            opt(70.0, 0.01, 4e-7),
        ]);
        let groups = vec![Group {
            table: 0,
            weight: 1000.0,
            server_weight: 0.0,
        }];
        let p = Problem::single(vec![t], groups, 100.0, 5e-4);
        let sol = p.solve(1e-9);
        assert!(sol.cost_used <= 5e-4 * (1.0 + 1e-9));
        assert!(sol.energy_used <= 100.0 + 1e-9);
        assert!(sol.gap() < 1e-6, "gap {}", sol.gap());
        let total: f64 = sol.mixes[0].iter().map(|m| m.1).sum();
        assert!(total <= 1.0 + 1e-9);
    }

    #[test]
    fn both_coupling_constraints_bind() {
        let t = Table::new(vec![
            opt(50.0, 1.0, 0.0),
            opt(90.0, 0.0, 1e-6),
            opt(80.0, 0.0, 1e-7),
        ]);
        let groups = vec![Group {
            table: 0,
            weight: 1000.0,
            server_weight: 1.0,
        }];
        let mut p = Problem::single(vec![t], groups, 300.0, 2e-4);
        p.server_budget = 0.5;
        let sol = p.solve(1e-6);
        assert!(sol.cost_used <= 2e-4 * (1.0 + 1e-9));
        assert!(sol.server_used <= 0.5 + 1e-9);
        assert!(sol.gap() < 1e-3, "gap {}", sol.gap());
    }
}
