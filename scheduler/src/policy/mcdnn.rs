//! `mcdnn`: ours. Instead of splitting the budget by f^2 and choosing request by request, plan
//! a per-app mix of (variant, place) from the fractional optimum over the expected workload
//! (rates x remaining time, split by the observed connected fraction), with the device's
//! remaining energy and money as the budgets; re-plan as budgets, rates, skew and connectivity
//! drift. Requests follow the mix by smooth weighted round robin. Paging is charged twice: the
//! plan reserves the load energy of the variants it will page in, and a swap that would evict
//! another variant waits until the variant has enough credit to amortise its load (blocks), so
//! the schedule never thrashes.

use super::candidates::{Candidate, Core, most_accurate};
use super::{Decision, Outcome, Policy};
use crate::catalog::{Place, VariantKey};
use crate::lp::{Group, Problem, Table};
use crate::options::{DROP_OTHER, OptionSpec, Specialised, steady_options};
use crate::state::{Constraints, DeviceState};

use super::mcdnn_history::{Connectivity, SkewHistory};
use super::stretch::{MAX_STRETCH, credit_allowance, expected_loads, stretch_len};

/// Longest time between plans.
const REPLAN_MAX_S: f64 = 30.0;
/// A swap that evicts must be amortised to at most this share of the energy it serves.
const PAGING_SHARE: f64 = 0.05;
/// Longest block a swap may wait for.
const MAX_BLOCK: f64 = 50.0;

#[derive(Debug, Clone)]
struct Choice {
    variant: usize,
    fallback: Option<usize>,
    place: Place,
    frac: f64,
    credit: f64,
    steady_j: f64,
    usd: f64,
}

#[derive(Debug, Clone, Default)]
struct PlanGroup {
    choices: Vec<Choice>,
    drop_frac: f64,
    drop_credit: f64,
    /// Authors' model: how far (in credit) a place may run ahead of the mix before requests
    /// move to another place.
    stretch: f64,
}

/// The planning policy.
#[derive(Debug, Clone)]
pub struct Mcdnn {
    core: Core,
    cands: Vec<Candidate>,
    /// Indexed by (app * 2 + connected) * 2 + skewed.
    plan: Vec<Option<PlanGroup>>,
    next_plan_s: f64,
    conn: Connectivity,
    skew: Vec<SkewHistory>,
}

impl Mcdnn {
    pub fn new(mut core: Core) -> Mcdnn {
        let n = core.catalog.apps.len();
        core.cascade_drop = true;
        Mcdnn {
            core,
            cands: Vec::new(),
            plan: vec![None; 4 * n],
            next_plan_s: f64::NEG_INFINITY,
            conn: Connectivity::default(),
            skew: vec![SkewHistory::default(); n],
        }
    }

    fn skew_share(&self, app: usize) -> Option<f64> {
        if self.core.authors() {
            return self.core.spec_share[app];
        }
        self.core.skew[app]
            .as_ref()
            .and_then(|t| t.active())
            .map(|(_, s)| s)
    }

    fn plan_index(&self, app: usize, connected: bool) -> usize {
        (app * 2 + connected as usize) * 2 + self.skew_share(app).is_some() as usize
    }

    fn replan(&mut self, now_s: f64, state: &DeviceState) {
        let cat = self.core.catalog.clone();
        let t_left = (state.end_s - now_s).max(1.0);
        let p_conn = self.conn.fraction();
        let mut tables = Vec::new();
        let mut groups = Vec::new();
        let mut meta = Vec::new();
        for a in 0..cat.apps.len() {
            let rate = self.core.rates.rate(a, now_s);
            if rate <= 0.0 {
                continue;
            }
            let has_skew = self.core.skew[a].is_some();
            let trigger = cat.constants.skew_trigger_share;
            let p_skew = if has_skew {
                self.skew[a].fraction()
            } else {
                0.0
            };
            let skew_share = self.skew[a].share(trigger);
            let name = &cat.apps[a].name;
            let admits = |vi: usize, place: Place| {
                self.core
                    .constraints
                    .admits(name, &cat.apps[a].variants[vi].name, place)
            };
            for (connected, skewed) in [(false, false), (false, true), (true, false), (true, true)]
            {
                let share = if connected { p_conn } else { 1.0 - p_conn };
                let in_skew = if skewed { p_skew } else { 1.0 - p_skew };
                let weight = rate * t_left * share * in_skew;
                if weight <= 0.0 {
                    continue;
                }
                let specialised = if skewed && self.core.authors() {
                    Specialised::Standalone(skew_share)
                } else if skewed {
                    Specialised::Cascade(skew_share)
                } else {
                    Specialised::None
                };
                let spec = OptionSpec {
                    connected,
                    memory_mb: state.memory_mb,
                    specialised,
                    trunk_split: 1.0,
                    admits: &admits,
                };
                let mut opts = steady_options(&cat, a, &spec);
                let caps = &self.core.constraints;
                opts.retain(|o| {
                    caps.energy_cap_j.is_none_or(|c| o.opt.energy <= c)
                        && caps.cost_cap_usd.is_none_or(|c| o.opt.cost <= c)
                });
                tables.push(Table::new(opts.iter().map(|o| o.opt).collect()));
                groups.push(Group {
                    table: (tables.len() - 1) as u32,
                    weight,
                    server_weight: 0.0,
                });
                meta.push((a, connected, skewed, opts));
            }
        }
        let mut problem = Problem::single(tables, groups, state.energy_left_j, state.cost_left_usd);
        // A one-node problem is solved on this thread, so the solver's only error (a worker
        // thread's panic) cannot happen here; if it ever did, the previous plan stays.
        let Ok(mut sol) = problem.solve(1e-6) else {
            return;
        };
        // Reserve the load energy of the device variants the plan will page in, and re-plan.
        let mut pages: Vec<VariantKey> = Vec::new();
        for ((a, _, _, opts), mix) in meta.iter().zip(&sol.mixes) {
            for &(o, _) in mix {
                let po = &opts[o as usize];
                if po.place == Place::Device {
                    let fallback = po.fallback.filter(|&g| g != DROP_OTHER);
                    for v in std::iter::once(po.variant).chain(fallback) {
                        let key = VariantKey {
                            app: *a,
                            variant: v,
                        };
                        if !state.is_resident(key) && !pages.contains(&key) {
                            pages.push(key);
                        }
                    }
                }
            }
        }
        let mut reserve: f64 = pages.iter().map(|k| cat.variant(*k).load_energy_j).sum();
        if self.core.authors() {
            // Every return to the device pays a load again.
            for (((a, _, _, opts), mix), g) in meta.iter().zip(&sol.mixes).zip(&problem.groups) {
                let device = || {
                    mix.iter()
                        .filter(|m| opts[m.0 as usize].place == Place::Device)
                        .map(|m| {
                            (
                                cat.apps[*a].variants[opts[m.0 as usize].variant].load_energy_j,
                                opts[m.0 as usize].opt.energy,
                                m.1,
                            )
                        })
                };
                let len = stretch_len(device().map(|d| (d.0, d.1)));
                let frac: f64 = device().map(|d| d.2).sum();
                let load = device().map(|d| d.0).fold(0.0, f64::max);
                reserve += load * expected_loads(g.weight, frac, len);
            }
        }
        if reserve > 0.0 {
            problem.nodes[0].energy_budget = (state.energy_left_j - reserve).max(0.0);
            let Ok(replanned) = problem.solve(1e-6) else {
                return;
            };
            sol = replanned;
        }
        // Credits carry over so a choice that keeps its place in the mix keeps its turn.
        let old: Vec<Option<PlanGroup>> = self.plan.iter_mut().map(Option::take).collect();
        for ((a, connected, skewed, opts), mix) in meta.iter().zip(&sol.mixes) {
            let choices: Vec<Choice> = mix
                .iter()
                .filter(|m| m.1 > 1e-9)
                .map(|&(o, frac)| {
                    let po = &opts[o as usize];
                    Choice {
                        variant: po.variant,
                        fallback: po.fallback,
                        place: po.place,
                        frac,
                        credit: 0.0,
                        steady_j: po.opt.energy,
                        usd: po.opt.cost,
                    }
                })
                .collect();
            let idx = (a * 2 + *connected as usize) * 2 + *skewed as usize;
            let mut choices = choices;
            let stretch = if self.core.authors() {
                let device = || choices.iter().filter(|c| c.place == Place::Device);
                let len = stretch_len(
                    device().map(|c| (cat.apps[*a].variants[c.variant].load_energy_j, c.steady_j)),
                );
                let to_server = choices.iter().any(|c| c.place == Place::Server);
                let frac: f64 = device().map(|c| c.frac).sum();
                let steady = device().map(|c| c.frac * c.steady_j).sum::<f64>() / frac.max(1e-12);
                let ahead = state.energy_left_j / steady.max(1e-6);
                credit_allowance(len, frac, ahead, to_server)
            } else {
                0.0
            };
            let keep = MAX_BLOCK.max(stretch).min(MAX_STRETCH);
            let mut drop_credit = 0.0;
            if let Some(prev) = &old[idx] {
                drop_credit = prev.drop_credit.clamp(-keep, keep);
                for c in choices.iter_mut() {
                    if let Some(p) = prev.choices.iter().find(|p| {
                        p.variant == c.variant && p.fallback == c.fallback && p.place == c.place
                    }) {
                        c.credit = p.credit.clamp(-keep, keep);
                    }
                }
            }
            let served: f64 = choices.iter().map(|c| c.frac).sum();
            self.plan[idx] = Some(PlanGroup {
                choices,
                drop_frac: (1.0 - served).max(0.0),
                drop_credit,
                stretch,
            });
        }
        let elapsed = now_s - self.core.start_s.unwrap_or(now_s);
        self.next_plan_s = now_s + (elapsed / 5.0).clamp(1.0, REPLAN_MAX_S);
        self.core.skew_changed = false;
    }

    /// Requests a swap that evicts must wait for, so its load is a small share of what it serves.
    fn block(&self, app: usize, c: &Candidate, state: &DeviceState) -> f64 {
        if c.load_j <= 0.0 || c.place != Place::Device {
            return 0.0;
        }
        if self.core.authors() {
            // Paging follows the place, not residency: stretches amortise it instead.
            return 0.0;
        }
        let cat = &self.core.catalog;
        let vs = &cat.apps[app].variants;
        let need = vs[c.variant].memory_mb
            + c.fallback
                .and_then(|g| vs.get(g))
                .map_or(0.0, |g| g.memory_mb);
        // Which variants the load would evict (least recently used first); evicting variants the
        // plan no longer uses costs nothing later, so only evicting planned ones must wait.
        let mut used: f64 = state
            .resident
            .iter()
            .map(|k| cat.variant(*k).memory_mb)
            .sum();
        let mut evicts_planned = false;
        for k in &state.resident {
            if used + need <= state.memory_mb {
                break;
            }
            used -= cat.variant(*k).memory_mb;
            evicts_planned |= self.in_plan(*k);
        }
        if !evicts_planned {
            return 0.0;
        }
        (c.load_j / (PAGING_SHARE * c.steady_j.max(1e-3))).min(MAX_BLOCK)
    }

    /// Whether the current plan runs `key` on the device (directly or as a cascade fallback).
    fn in_plan(&self, key: VariantKey) -> bool {
        self.plan.iter().enumerate().any(|(idx, g)| {
            idx / 4 == key.app
                && g.as_ref().is_some_and(|g| {
                    g.choices.iter().any(|c| {
                        c.place == Place::Device
                            && (c.variant == key.variant || c.fallback == Some(key.variant))
                    })
                })
        })
    }

    /// Follows the plan for one request of `app`.
    fn follow(&mut self, a: usize, state: &DeviceState) -> Decision {
        let idx = self.plan_index(a, state.connected);
        let Some(group) = self.plan[idx].as_mut() else {
            return Decision::Drop;
        };
        // Smooth weighted round robin over the mix and "drop".
        for c in group.choices.iter_mut() {
            c.credit += c.frac;
        }
        group.drop_credit += group.drop_frac;
        let top = |place: Option<Option<Place>>| {
            group
                .choices
                .iter()
                .enumerate()
                .filter(|(_, c)| place.is_none_or(|p| p == Some(c.place)))
                .max_by(|x, y| x.1.credit.total_cmp(&y.1.credit).then(y.0.cmp(&x.0)))
                .map(|(i, c)| (i, c.credit))
        };
        // Authors' model: once on the device, stay for a stretch (see `stretch`).
        let stay = (group.stretch > 0.0 && state.running_at(a) == Some(Place::Device))
            .then(|| top(Some(Some(Place::Device))))
            .flatten()
            .filter(|&(_, credit)| credit > -group.stretch);
        let target = match (stay, top(None)) {
            (Some((i, _)), _) => i,
            (None, Some((i, credit))) if credit >= group.drop_credit => i,
            _ => {
                group.drop_credit -= 1.0;
                return Decision::Drop;
            }
        };
        let t = group.choices[target].clone();
        let exact = self
            .cands
            .iter()
            .find(|c| c.variant == t.variant && c.fallback == t.fallback && c.place == t.place);
        if let Some(c) = exact {
            if t.credit >= self.block(a, c, state) {
                let d = self.core.decision(a, c);
                if let Some(g) = self.plan[idx].as_mut() {
                    g.choices[target].credit -= 1.0;
                }
                return d;
            }
            // Waiting to amortise a swap: serve from what is resident, keep the credit.
            let sub = most_accurate(
                &self.cands,
                |c| c.accuracy,
                |c| c.load_j == 0.0 && c.steady_j <= t.steady_j && c.steady_usd <= t.usd + 1e-15,
            );
            return match sub {
                Some(s) => {
                    let d = self.core.decision(a, s);
                    let s = s.clone();
                    self.charge_substitute(idx, &s);
                    d
                }
                None => Decision::Drop,
            };
        }
        // Not feasible now (cold start latency, budget): the best cheaper substitute.
        let sub = most_accurate(
            &self.cands,
            |c| c.accuracy,
            |c| c.steady_j <= t.steady_j + 1e-12 && c.steady_usd <= t.usd + 1e-15,
        );
        if let Some(g) = self.plan[idx].as_mut() {
            g.choices[target].credit -= 1.0;
        }
        match sub {
            Some(s) => self.core.decision(a, s),
            None => Decision::Drop,
        }
    }

    /// A substitute that is itself in the mix uses up its own credit.
    fn charge_substitute(&mut self, idx: usize, s: &Candidate) {
        let Some(g) = self.plan[idx].as_mut() else {
            return;
        };
        if let Some(c) = g
            .choices
            .iter_mut()
            .find(|c| c.variant == s.variant && c.fallback == s.fallback && c.place == s.place)
        {
            c.credit -= 1.0;
        }
    }
}

impl Policy for Mcdnn {
    fn name(&self) -> &str {
        "mcdnn"
    }

    fn decide(&mut self, now_s: f64, app: &str, state: &DeviceState) -> Decision {
        let Some(a) = self.core.arrive(now_s, app) else {
            return Decision::Drop;
        };
        self.conn.update(now_s, state.connected);
        let share = self.skew_share(a);
        self.skew[a].update(now_s, share);
        let missing = self.plan[self.plan_index(a, state.connected)].is_none();
        if now_s >= self.next_plan_s || self.core.skew_changed || missing {
            self.replan(now_s, state);
        }
        let mut cands = std::mem::take(&mut self.cands);
        self.core.candidates(a, state, &mut cands);
        self.cands = cands;
        self.follow(a, state)
    }

    fn observe(&mut self, now_s: f64, app: &str, outcome: &Outcome<'_>) {
        self.core.observe(now_s, app, outcome);
    }

    fn set_constraints(&mut self, constraints: Constraints) {
        self.core.constraints = constraints;
        self.next_plan_s = f64::NEG_INFINITY;
    }

    fn update_load_profile(&mut self, variant: &str, load_ms: f64, load_j: f64) -> bool {
        self.core.update_load_profile(variant, load_ms, load_j)
    }
}
