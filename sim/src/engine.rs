//! Trace-driven simulation of one policy: the device's budgets, memory and connectivity, and
//! the accuracy credited per request. Deterministic: expected accuracy (the profile's figure)
//! is credited instead of sampling correct/incorrect.
//!
//! The engine is the referee: it re-checks every decision (budget, connectivity, latency) and
//! refuses any that would break a rule, counting it as a violation and a drop.

use std::collections::BTreeMap;

use anyhow::Result;
use scheduler::bound::{BoundRequest, BoundResult, bound};
use scheduler::catalog::EvalModel;
use scheduler::policy::{Decision, Outcome, by_name, meets_latency, run_cost};
use scheduler::specialise::{SkewWindow, eligible_share, tracker_for};
use scheduler::{Budgets, Catalog, DeviceState, Place};
use serde::Serialize;

use crate::trace::{Connectivity, Request};

/// Per-app figures of a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AppReport {
    pub requests: usize,
    pub dropped: usize,
    pub mean_accuracy: f64,
    pub on_device: usize,
    pub offloaded: usize,
    pub specialised: usize,
}

/// What `mcdnn-sim run --json` prints.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RunReport {
    pub policy: String,
    /// Percent; dropped requests count 0.
    pub mean_accuracy: f64,
    pub requests: usize,
    pub dropped: usize,
    pub energy_used_j: f64,
    pub cost_used_usd: f64,
    pub per_app: BTreeMap<String, AppReport>,
    /// Decisions the engine refused (would have broken a budget or a rule). Always 0 for the
    /// shipped policies.
    pub violations: usize,
    /// Variants paged into device memory.
    pub swaps: usize,
    /// Wall-clock time spent inside `Policy::decide` (for `bench`; not part of the result).
    #[serde(skip)]
    pub decide_ns: u128,
}

/// Splits a trace by node (requests without a node form one device).
fn by_node(trace: &[Request]) -> Vec<Vec<&Request>> {
    let mut nodes: BTreeMap<Option<&str>, Vec<&Request>> = BTreeMap::new();
    for r in trace {
        nodes.entry(r.node.as_deref()).or_default().push(r);
    }
    nodes.into_values().collect()
}

/// What became of one request: the variant and place it ran at, or None when dropped.
pub type Served = Option<(String, Place)>;

/// Runs `policy` over the trace; each node has its own device and budgets.
pub fn run(
    catalog: &Catalog,
    trace: &[Request],
    conn: &Connectivity,
    policy: &str,
    budgets: &Budgets,
) -> Result<RunReport> {
    run_logged(catalog, trace, conn, policy, budgets, None)
}

/// Top-N of an app's specialised variants (0 when it has none).
fn top_n(catalog: &Catalog, app: usize) -> usize {
    catalog.apps[app]
        .variants
        .iter()
        .map(|v| v.top_n())
        .max()
        .unwrap_or(0)
}

/// The declared frequency of each app on a node: its mean rate over the horizon, which is what
/// a trace generated at a rate declares.
fn declare_rates(p: &mut dyn scheduler::policy::Policy, node: &[&Request], horizon_s: f64) {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for r in node {
        *counts.entry(r.app.as_str()).or_default() += 1;
    }
    for (app, n) in counts {
        p.declare_rate(app, n as f64 / horizon_s.max(1.0));
    }
}

/// As [`run`]; with `log`, also what became of each request (per node, in trace order).
pub fn run_logged(
    catalog: &Catalog,
    trace: &[Request],
    conn: &Connectivity,
    policy: &str,
    budgets: &Budgets,
    mut log: Option<&mut Vec<Served>>,
) -> Result<RunReport> {
    let authors = catalog.constants.model == EvalModel::Authors;
    let mut report = RunReport {
        policy: policy.to_string(),
        ..RunReport::default()
    };
    let mut acc_sum = 0.0;
    let mut app_acc: BTreeMap<String, f64> = BTreeMap::new();
    for node in by_node(trace) {
        let mut p = by_name(policy, catalog, budgets)?;
        declare_rates(&mut *p, &node, budgets.horizon_s);
        let mut state = DeviceState::new(budgets, 0.0);
        let mut windows: Vec<SkewWindow> = catalog
            .apps
            .iter()
            .map(|_| SkewWindow::new(catalog.constants.skew_window_s))
            .collect();
        let mut frame_t = f64::NAN;
        for r in node {
            report.requests += 1;
            let entry = report.per_app.entry(r.app.clone()).or_default();
            entry.requests += 1;
            state.connected = conn.at(r.time_s);
            if r.time_s != frame_t {
                state.frame_trunks.clear();
                frame_t = r.time_s;
            }
            let t0 = std::time::Instant::now();
            let decision = p.decide(r.time_s, &r.app, &state);
            report.decide_ns += t0.elapsed().as_nanos();
            let app = catalog.app_index(&r.app);
            // The authors' share is judged on the requests before this one.
            let mut share = None;
            if let Some(a) = app {
                if authors {
                    let n = top_n(catalog, a);
                    let trigger = catalog.constants.skew_trigger_share;
                    share = eligible_share(&mut windows[a], r.time_s, n, trigger);
                }
                windows[a].record(r.time_s, r.class.as_deref());
            }
            let result = match (app, &decision) {
                (Some(a), Decision::Run(run)) => {
                    execute(catalog, &mut state, &windows[a], share, r, run)
                }
                _ => Executed::Dropped,
            };
            if let Some(a) = app {
                let place = match result {
                    Executed::Ran { place, .. } => Some(place),
                    _ => None,
                };
                state.set_running(a, place);
            }
            if let Some(log) = log.as_deref_mut() {
                log.push(match (&result, &decision) {
                    (Executed::Ran { place, .. }, Decision::Run(run)) => {
                        Some((run.variant.clone(), *place))
                    }
                    _ => None,
                });
            }
            let mut outcome = Outcome {
                class: r.class.as_deref(),
                ..Outcome::default()
            };
            match result {
                Executed::Ran {
                    accuracy,
                    energy_j,
                    usd,
                    place,
                    swapped,
                    specialised,
                } => {
                    acc_sum += accuracy;
                    *app_acc.entry(r.app.clone()).or_default() += accuracy;
                    report.energy_used_j += energy_j;
                    report.cost_used_usd += usd;
                    report.swaps += swapped as usize;
                    match place {
                        Place::Device => entry.on_device += 1,
                        Place::Server => entry.offloaded += 1,
                    }
                    entry.specialised += specialised as usize;
                    outcome.place = Some(place);
                    outcome.energy_j = energy_j;
                    outcome.cost_usd = usd;
                    outcome.swapped_in = swapped;
                    if let Decision::Run(run) = &decision {
                        outcome.variant = Some(run.variant.as_str());
                    }
                }
                Executed::Refused => {
                    report.violations += 1;
                    report.dropped += 1;
                    entry.dropped += 1;
                }
                Executed::Dropped => {
                    report.dropped += 1;
                    entry.dropped += 1;
                }
            }
            p.observe(r.time_s, &r.app, &outcome);
        }
    }
    if report.requests > 0 {
        report.mean_accuracy = acc_sum / report.requests as f64;
    }
    for (app, a) in report.per_app.iter_mut() {
        if a.requests > 0 {
            a.mean_accuracy = app_acc.get(app).copied().unwrap_or(0.0) / a.requests as f64;
        }
    }
    Ok(report)
}

enum Executed {
    Ran {
        accuracy: f64,
        energy_j: f64,
        usd: f64,
        place: Place,
        swapped: bool,
        specialised: bool,
    },
    Refused,
    Dropped,
}

fn execute(
    catalog: &Catalog,
    state: &mut DeviceState,
    window: &SkewWindow,
    authors_share: Option<f64>,
    r: &Request,
    run: &scheduler::policy::Run,
) -> Executed {
    let Some(key) = catalog.key(&r.app, &run.variant) else {
        return Executed::Refused;
    };
    if run.place == Place::Server && !state.connected {
        return Executed::Refused;
    }
    let main = run_cost(catalog, key, run.place, state);
    if !meets_latency(catalog, key.app, run.place, state, &main) {
        return Executed::Refused;
    }
    let authors = catalog.constants.model == EvalModel::Authors;
    let v = catalog.variant(key);
    let mut energy = main.energy_j;
    let mut usd = main.usd;
    let mut touched = vec![key];
    let mut specialised = false;
    let accuracy = match (&run.cascade, v.is_specialised()) {
        (None, false) => v.accuracy,
        // The authors' model: a specialised variant alone, worth its profile at the share (or
        // nothing while the stream is not skewed).
        (None, true) if authors => {
            specialised = true;
            authors_share.map_or(0.0, |s| v.specialised_accuracy_upper(s))
        }
        (Some(c), true) if !authors => {
            let in_set = r
                .class
                .as_deref()
                .is_some_and(|cl| c.classes.iter().any(|k| &**k == cl));
            if in_set {
                specialised = true;
                v.specialised_accuracy(window.share_of(&c.classes))
            } else if c.drop_other {
                // "Other" and no fallback: the specialised model ran, nothing is answered.
                0.0
            } else {
                let Some(g) = catalog.key(&r.app, &c.fallback) else {
                    return Executed::Refused;
                };
                if catalog.variant(g).is_specialised() {
                    return Executed::Refused;
                }
                let fc = run_cost(catalog, g, run.place, state);
                // At the server the request is already there: no second send.
                let send = if run.place == Place::Server {
                    catalog.constants.send_energy_j
                } else {
                    0.0
                };
                energy += fc.energy_j - send;
                usd += fc.usd;
                touched.push(g);
                catalog.variant(g).accuracy
            }
        }
        _ => return Executed::Refused,
    };
    if energy > state.energy_left_j + 1e-9 || usd > state.cost_left_usd + 1e-15 {
        return Executed::Refused;
    }
    state.energy_left_j = (state.energy_left_j - energy).max(0.0);
    state.cost_left_usd = (state.cost_left_usd - usd).max(0.0);
    // Paging paid (under the authors' model a move onto the device, not residency).
    let mut swapped = main.load_j > 0.0;
    for k in touched {
        let loaded = state.touch(catalog, k, run.place);
        swapped |= loaded && run.place == Place::Device;
        if let Some(t) = catalog.variant(k).trunk
            && !state.trunk_done(t, run.place)
        {
            state.frame_trunks.push((t, run.place));
        }
    }
    Executed::Ran {
        accuracy,
        energy_j: energy,
        usd,
        place: run.place,
        swapped,
        specialised,
    }
}

/// What the bound needs for each request of a trace (per node, in trace order).
pub fn bound_requests(
    catalog: &Catalog,
    trace: &[Request],
    conn: &Connectivity,
) -> Vec<Vec<BoundRequest>> {
    let trunked: Vec<bool> = catalog
        .apps
        .iter()
        .map(|a| a.variants.iter().any(|v| v.trunk.is_some()))
        .collect();
    let authors = catalog.constants.model == EvalModel::Authors;
    let mut out = Vec::new();
    for node in by_node(trace) {
        let mut windows: Vec<SkewWindow> = catalog
            .apps
            .iter()
            .map(|_| SkewWindow::new(catalog.constants.skew_window_s))
            .collect();
        // The skew tracker every policy keeps, replayed: its active set is what a cascade
        // would run with.
        let mut trackers: Vec<_> = (0..catalog.apps.len())
            .map(|a| tracker_for(catalog, a))
            .collect();
        let mut reqs: Vec<BoundRequest> = Vec::with_capacity(node.len());
        let mut frame_start = 0;
        for (i, r) in node.iter().enumerate() {
            let Some(a) = catalog.app_index(&r.app) else {
                // Unknown apps are always dropped; count them with no options.
                reqs.push(BoundRequest {
                    app: usize::MAX,
                    connected: false,
                    spec_share: 0.0,
                    in_set: false,
                    trunk_split: 1,
                });
                continue;
            };
            let (mut spec_share, mut in_set) = (0.0, false);
            if authors {
                let n = top_n(catalog, a);
                let trigger = catalog.constants.skew_trigger_share;
                if let Some(s) = eligible_share(&mut windows[a], r.time_s, n, trigger) {
                    (spec_share, in_set) = (s, true);
                }
            }
            windows[a].record(r.time_s, r.class.as_deref());
            if let Some(t) = trackers[a].as_mut().filter(|_| !authors) {
                if let Some((set, _)) = t.active() {
                    spec_share = windows[a].share_of(set);
                    in_set = r
                        .class
                        .as_deref()
                        .is_some_and(|cl| set.iter().any(|k| &**k == cl));
                }
                t.record(r.time_s, r.class.as_deref());
            }
            if i > 0 && node[i - 1].time_s != r.time_s {
                frame_start = reqs.len();
            }
            reqs.push(BoundRequest {
                app: a,
                connected: conn.at(r.time_s),
                spec_share,
                in_set,
                trunk_split: 1,
            });
            // Frame sharing: every trunked request in this frame splits the trunk.
            if trunked[a] {
                let n = reqs[frame_start..]
                    .iter()
                    .filter(|q| q.app < trunked.len() && trunked[q.app])
                    .count() as u32;
                for q in reqs[frame_start..].iter_mut() {
                    if q.app < trunked.len() && trunked[q.app] {
                        q.trunk_split = n;
                    }
                }
            }
        }
        out.push(reqs);
    }
    out
}

/// The bound over all nodes (each with its own budgets).
pub fn trace_bound(
    catalog: &Catalog,
    per_node: &[Vec<BoundRequest>],
    budgets: &Budgets,
) -> Result<BoundResult> {
    let mut total = BoundResult {
        mean_accuracy: 0.0,
        requests: 0,
        energy_used_j: 0.0,
        cost_used_usd: 0.0,
        gap: 0.0,
    };
    let mut sum = 0.0;
    for reqs in per_node {
        let b = bound(catalog, budgets, reqs)?;
        sum += b.mean_accuracy * b.requests as f64;
        total.requests += b.requests;
        total.energy_used_j += b.energy_used_j;
        total.cost_used_usd += b.cost_used_usd;
        // The worst gap either way: a negative one (a broken bound) must not hide behind max.
        if b.gap.abs() > total.gap.abs() {
            total.gap = b.gap;
        }
    }
    if total.requests > 0 {
        total.mean_accuracy = sum / total.requests as f64;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use scheduler::policy::POLICY_NAMES;

    /// A generated trace; a generator error fails the test case (an empty trace would make
    /// every property below hold vacuously).
    fn trace(seed: u64, horizon: f64) -> Result<(Vec<Request>, Connectivity), TestCaseError> {
        let spec = ["two-apps", "specialisation", "outages", "one-app"][(seed % 4) as usize];
        let g = crate::generators::generate(&format!("{spec}@{seed}"), horizon)
            .map_err(|e| TestCaseError::fail(format!("generating {spec}@{seed}: {e:#}")))?;
        if g.requests.is_empty() {
            return Err(TestCaseError::fail(format!(
                "{spec}@{seed} generated no requests"
            )));
        }
        Ok((g.requests, g.connectivity))
    }

    /// The paper catalog under the authors' model or the cascade model.
    fn paper_as(authors: bool) -> Catalog {
        let mut cat = Catalog::paper();
        if !authors {
            cat.constants.model = EvalModel::Cascade;
        }
        cat
    }

    fn budgets(e: f64, c: f64, horizon: f64, mem: f64) -> Budgets {
        Budgets {
            energy_j: e,
            cost_usd: c,
            horizon_s: horizon,
            memory_mb: mem,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// No policy ever exceeds a budget, and the engine never has to refuse a decision.
        #[test]
        fn budgets_never_exceeded(seed in 0u64..1000, e in 0.0f64..300.0, c in 0.0f64..0.003, mem in 50.0f64..1200.0, authors in any::<bool>()) {
            let horizon = 900.0;
            let (reqs, conn) = trace(seed, horizon)?;
            let cat = paper_as(authors);
            let b = budgets(e, c, horizon, mem);
            for p in POLICY_NAMES {
                let r = run(&cat, &reqs, &conn, p, &b).map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert!(r.energy_used_j <= e + 1e-6, "{p}: energy {} > {e}", r.energy_used_j);
                prop_assert!(r.cost_used_usd <= c + 1e-12, "{p}: cost {} > {c}", r.cost_used_usd);
                prop_assert_eq!(r.violations, 0, "{} made refused decisions", p);
            }
        }

        /// The bound is never below any policy, under either evaluation model.
        #[test]
        fn bound_dominates_every_policy(seed in 0u64..1000, e in 0.0f64..400.0, c in 0.0f64..0.004, authors in any::<bool>()) {
            let horizon = 900.0;
            let (reqs, conn) = trace(seed, horizon)?;
            let cat = paper_as(authors);
            let b = budgets(e, c, horizon, 1024.0);
            let bound = trace_bound(&cat, &bound_requests(&cat, &reqs, &conn), &b)
                .map_err(|e| TestCaseError::fail(e.to_string()))?
                .mean_accuracy;
            for p in POLICY_NAMES {
                let r = run(&cat, &reqs, &conn, p, &b).map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert!(r.mean_accuracy <= bound + 1e-6, "{p}: {} > bound {bound}", r.mean_accuracy);
            }
        }

        /// More budget never lowers the bound.
        #[test]
        fn more_budget_never_lowers_the_bound(seed in 0u64..1000, e in 0.0f64..400.0, c in 0.0f64..0.004, de in 0.0f64..400.0, dc in 0.0f64..0.004) {
            let horizon = 900.0;
            let (reqs, conn) = trace(seed, horizon)?;
            let cat = Catalog::paper();
            let per_node = bound_requests(&cat, &reqs, &conn);
            let at = |e: f64, c: f64| {
                trace_bound(&cat, &per_node, &budgets(e, c, horizon, 1024.0))
                    .map(|b| b.mean_accuracy)
                    .map_err(|err| TestCaseError::fail(err.to_string()))
            };
            let (lo, hi) = (at(e, c)?, at(e + de, c + dc)?);
            prop_assert!(hi >= lo - 1e-6 * lo.max(1.0), "{hi} < {lo}");
        }
    }

    /// `mcdnn` beats `paper` under either model, and comes close to the bound under the
    /// cascade model. (Under the authors' model the bound charges no paging, which that model
    /// charges on every return to the device; the gap is in the sweep tables.)
    #[test]
    fn mcdnn_beats_paper_on_two_apps() -> Result<()> {
        let g = crate::generators::generate("two-apps", 7200.0)?;
        let b = budgets(400.0, 0.004, 7200.0, 1024.0);
        for authors in [false, true] {
            let cat = paper_as(authors);
            let paper = run(&cat, &g.requests, &g.connectivity, "paper", &b)?;
            let ours = run(&cat, &g.requests, &g.connectivity, "mcdnn", &b)?;
            let bound = trace_bound(
                &cat,
                &bound_requests(&cat, &g.requests, &g.connectivity),
                &b,
            )?;
            assert!(
                ours.mean_accuracy >= paper.mean_accuracy,
                "authors {authors}: {} < paper {}",
                ours.mean_accuracy,
                paper.mean_accuracy
            );
            assert!(ours.mean_accuracy <= bound.mean_accuracy + 1e-6);
            if !authors {
                assert!(
                    ours.mean_accuracy >= 0.95 * bound.mean_accuracy,
                    "{} vs {}",
                    ours.mean_accuracy,
                    bound.mean_accuracy
                );
            }
        }
        Ok(())
    }

    #[test]
    fn sharing_counts_the_trunk_once_per_frame() -> Result<()> {
        let cat = Catalog::paper();
        let reqs: Vec<Request> = ["age", "gender"]
            .iter()
            .map(|a| Request {
                time_s: 1.0,
                app: (*a).into(),
                class: None,
                node: None,
            })
            .collect();
        let b = budgets(1000.0, 0.0, 100.0, 1024.0);
        let r = run(&cat, &reqs, &Connectivity::default(), "best-device", &b)?;
        assert_eq!(r.dropped, 0);
        // Both pick D6 (D0 cannot cold-start in 1 s): one trunk (0.54 J) for two heads, plus
        // two loads.
        let loads: f64 = ["age", "gender"]
            .iter()
            .filter_map(|a| cat.key(a, "D6"))
            .map(|k| cat.variant(k).load_energy_j)
            .sum();
        assert!(
            (r.energy_used_j - (0.54 + loads)).abs() < 1e-9,
            "{}",
            r.energy_used_j
        );
        Ok(())
    }
}
