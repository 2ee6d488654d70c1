//! From soft state to a plan: the fleet problem built from the latest telemetry of every
//! connected node, solved with the scheduler's price-based fleet solver, and cut into one
//! assignment per node.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use scheduler::catalog::{Catalog, Place};
use scheduler::fleet::{FleetPlan, FleetProblem, NodeState};
use wire::manifest::Manifest;
use wire::msg::{AppAssignment, Assignment, MixEntry as WireMix, PlaceTag};

use super::registry::Registry;

/// Request rate assumed for an app before its first telemetry arrives.
const DEFAULT_RATE: f64 = 1.0;

/// One catalog per device class of the manifest, built once.
pub fn catalogs(manifest: &Manifest) -> Vec<Catalog> {
    manifest
        .device_classes
        .iter()
        .filter_map(|dc| match Catalog::from_manifest(manifest, &dc.name) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::error!(class = %dc.name, error = %e, "device class unusable; its nodes cannot be planned");
                None
            }
        })
        .collect()
}

/// Policy key of the fleet's cloud budget (USD over the shift), written by operators.
pub use crate::state::COST_BUDGET_KEY;

/// Fleet-wide knobs: configuration defaults, overridden by replicated policy writes.
#[derive(Debug, Clone)]
pub struct FleetPolicy {
    /// Cloud budget over the nodes' remaining shift, USD.
    pub cost_budget_usd: f64,
}

/// A server whose latest telemetry is older than this (or that has sent none this long into its
/// session) is planned with no capacity: five intervals of the node's default 1 s telemetry.
pub const SERVER_STALE_AFTER: Duration = Duration::from_secs(5);

/// Offload capacity a server can take on in the next epoch, requests/s.
///
/// The rule: a server admits about one second of work (`queue_limit = ceil(capacity)`, clamped
/// to 1..=10 000, the node's own admission limit in `node/src/agent/run.rs`). A backlog of
/// `queue` requests takes `queue / capacity` s of that second to drain, so what is left for new
/// requests is `capacity * max(0, 1 - queue / queue_limit)`: equivalently, the Hello capacity
/// minus the backlog drained over one second. A full queue leaves nothing. Before the first
/// report (`queue` None) the Hello capacity stands. A report older than
/// [`SERVER_STALE_AFTER`] means the server may be gone or wedged: capacity 0.
pub fn effective_capacity(hello_rps: f64, queue: Option<u32>, report_age: Duration) -> f64 {
    if !hello_rps.is_finite() || hello_rps <= 0.0 || report_age > SERVER_STALE_AFTER {
        return 0.0;
    }
    let Some(queue) = queue else {
        return hello_rps;
    };
    let limit = hello_rps.ceil().clamp(1.0, 10_000.0);
    hello_rps * (1.0 - f64::from(queue) / limit).max(0.0)
}

/// The class catalogs with each variant's paging cost replaced by the fleet mean of what the
/// class's nodes measured and reported (`Telemetry::load_profiles`). Deterministic: nodes in id
/// order, variants by name, a plain mean over the nodes that loaded the variant at least once.
/// Variants nobody has loaded keep the profiled figures; `excluded` nodes' reports do not count.
pub fn measured_catalogs(
    registry: &Registry,
    catalogs: &[Catalog],
    excluded: &BTreeMap<String, String>,
) -> Vec<Catalog> {
    catalogs
        .iter()
        .map(|c| {
            // variant -> (sum ms, sum J, nodes)
            let mut sums: BTreeMap<&str, (f64, f64, u32)> = BTreeMap::new();
            let reports = registry
                .iter()
                .filter(|(id, e)| {
                    e.hello.device_class == c.device_class && !excluded.contains_key(*id)
                })
                .filter_map(|(_, e)| e.telemetry.as_ref());
            for t in reports {
                for p in &t.load_profiles {
                    let usable = p.loads > 0
                        && p.load_ms.is_finite()
                        && p.load_j.is_finite()
                        && p.load_ms >= 0.0
                        && p.load_j >= 0.0;
                    if usable {
                        let s = sums.entry(p.variant.as_str()).or_default();
                        s.0 += p.load_ms;
                        s.1 += p.load_j;
                        s.2 += 1;
                    }
                }
            }
            let mut c = c.clone();
            for (variant, (ms, j, n)) in sums {
                let n = f64::from(n);
                c.set_load_profile(variant, ms / n, j / n);
            }
            c
        })
        .collect()
}

/// Where offloaded requests go: the server's address and the certificate name the client must
/// find there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffloadTarget {
    pub addr: String,
    pub name: String,
}

/// The problem for every connected device node whose class has a catalog and that is not in
/// `excluded` ([`super::validate::exclusions`]), as of `at` (monotonic, telemetry ages are
/// measured to it) and `at_unix_ms` (wall time, shift ends are measured to it). Returns it with
/// the offload target (the first connected, approved server node with capacity left) if any.
pub fn problem_at(
    registry: &Registry,
    catalogs: &[Catalog],
    policy: &FleetPolicy,
    excluded: &BTreeMap<String, String>,
    at: Instant,
    at_unix_ms: u64,
) -> (FleetProblem, Option<OffloadTarget>) {
    let now = at_unix_ms;
    let servers: Vec<(&String, f64, Option<String>)> = registry
        .iter()
        .filter(|(id, e)| e.connected && e.is_server() && !excluded.contains_key(*id))
        .map(|(id, e)| {
            let hello_cap = match e.hello.role {
                wire::msg::Role::Server { capacity_rps } => capacity_rps,
                wire::msg::Role::Device => 0.0,
            };
            let queue = e.telemetry.as_ref().map(|t| t.offload_queue);
            let age = at.saturating_duration_since(e.telemetry_at);
            (
                id,
                effective_capacity(hello_cap, queue, age),
                e.hello.offload_addr.clone(),
            )
        })
        .filter(|(_, cap, _)| *cap > 0.0)
        .collect();
    let target = servers.iter().find_map(|(id, _, addr)| {
        addr.as_ref().map(|addr| OffloadTarget {
            addr: addr.clone(),
            name: (*id).clone(),
        })
    });
    let capacity: f64 = servers.iter().map(|(_, c, _)| *c).sum();
    let nodes = registry
        .iter()
        .filter(|(id, e)| e.connected && !e.is_server() && !excluded.contains_key(*id))
        .filter(|(_, e)| {
            catalogs
                .iter()
                .any(|c| c.device_class == e.hello.device_class)
        })
        .map(|(id, e)| {
            let battery = e
                .telemetry
                .as_ref()
                .map_or(&e.hello.battery, |t| &t.battery);
            let rates = e
                .hello
                .apps
                .iter()
                .map(|app| {
                    let measured = e
                        .telemetry
                        .as_ref()
                        .and_then(|t| t.apps.iter().find(|a| &a.app == app))
                        .map(|a| a.rate_per_s)
                        .filter(|r| *r > 0.0);
                    (app.clone(), measured.unwrap_or(DEFAULT_RATE))
                })
                .collect();
            NodeState {
                id: id.clone(),
                device_class: e.hello.device_class.clone(),
                energy_left_j: battery.energy_left_j.max(0.0),
                remaining_s: (battery.shift_end_unix_ms.saturating_sub(now) as f64 / 1000.0)
                    .max(1.0),
                rates,
                connected: target.is_some(),
            }
        })
        .collect();
    let problem = FleetProblem {
        catalogs: measured_catalogs(registry, catalogs, excluded),
        nodes,
        cost_budget_usd: if target.is_some() {
            policy.cost_budget_usd
        } else {
            0.0
        },
        server_capacity_rps: if target.is_some() { capacity } else { 0.0 },
        tolerance: 1e-3,
    };
    (problem, target)
}

/// One node's assignment from the plan. The allowed set is the plan's variants plus the app's
/// cheapest one, so the node can still degrade gracefully if its budget drains faster than the
/// plan expected before the next epoch arrives.
pub fn assignments(
    plan: &FleetPlan,
    catalogs: &[Catalog],
    problem: &FleetProblem,
    epoch: u64,
    target: Option<&OffloadTarget>,
    issued: u64,
) -> Vec<Assignment> {
    plan.nodes
        .iter()
        .zip(&problem.nodes)
        .map(|(np, ns)| {
            let catalog = catalogs.iter().find(|c| c.device_class == ns.device_class);
            let apps = np
                .apps
                .iter()
                .map(|ap| {
                    let mix: Vec<WireMix> = ap
                        .mix
                        .iter()
                        .filter(|m| m.fraction > 1e-9)
                        .map(|m| WireMix {
                            variant: m.variant.to_string(),
                            place: match m.place {
                                Place::Device => PlaceTag::Device,
                                Place::Server => PlaceTag::Server,
                            },
                            fraction: m.fraction,
                        })
                        .collect();
                    let mut allowed: Vec<String> = mix.iter().map(|m| m.variant.clone()).collect();
                    if let Some(cheapest) = catalog.and_then(|c| cheapest_variant(c, &ap.app)) {
                        allowed.push(cheapest);
                    }
                    // The node's policy decides per request when a recent-gallery cascade pays
                    // off (it sees the identities in its stream; the plan's caps still bind).
                    allowed.extend(
                        catalog
                            .map(|c| recent_variants(c, &ap.app))
                            .unwrap_or_default(),
                    );
                    allowed.sort();
                    allowed.dedup();
                    let offloads = mix.iter().any(|m| m.place == PlaceTag::Server);
                    AppAssignment {
                        app: ap.app.to_string(),
                        mix,
                        allowed_variants: allowed,
                        offload_target: target.filter(|_| offloads).map(|t| t.addr.clone()),
                        offload_server: target.filter(|_| offloads).map(|t| t.name.clone()),
                        energy_budget_j_per_request: per_served_request(
                            ap.energy_per_request_j,
                            ap.drop_fraction,
                        ),
                        cost_budget_usd_per_request: per_served_request(
                            ap.cost_per_request_usd,
                            ap.drop_fraction,
                        ),
                        // Set by the specialiser after the solve (`crate::special::attach`).
                        specialised: None,
                    }
                })
                .collect();
            Assignment {
                epoch,
                node_id: np.id.clone(),
                issued_unix_ms: issued,
                apps,
                energy_price: 0.0,
                cost_price: plan.cost_price,
                plan_gap: plan.gap,
            }
        })
        .collect()
}

/// A node checks each request against its caps, so the cap is the plan's figure per *served*
/// request: the plan's average over all requests counts the dropped ones at zero, and as a
/// per-request cap it would refuse the very variant the plan mixes with drops (a node planned
/// "int8 for 95 %, drop 5 %" could then run nothing, and dropped every request). The node's
/// own pacing decides what to drop. 0 (no cap) when the plan serves nothing.
fn per_served_request(per_request: f64, drop_fraction: f64) -> f64 {
    let served = 1.0 - drop_fraction;
    if served > 1e-9 {
        per_request / served
    } else {
        0.0
    }
}

/// `app`'s variants specialised to the identities seen recently (face specialisation).
fn recent_variants(catalog: &Catalog, app: &str) -> Vec<String> {
    let Some(a) = catalog.app_index(app) else {
        return Vec::new();
    };
    (catalog.apps[a].variants.iter())
        .filter(|v| v.recent_set)
        .map(|v| v.name.clone())
        .collect()
}

fn cheapest_variant(catalog: &Catalog, app: &str) -> Option<String> {
    let a = catalog.app_index(app)?;
    catalog.apps[a]
        .variants
        .iter()
        .filter(|v| !v.is_specialised())
        .min_by(|x, y| x.device_energy_j.total_cmp(&y.device_energy_j))
        .map(|v| v.name.clone())
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{self, hello, unix_ms};
    use super::*;
    use tokio::sync::mpsc;

    #[test]
    fn the_cap_is_per_served_request_so_a_mix_with_drops_still_admits_its_variant() {
        // int8 at 1.2 J for 95 % of requests, 5 % dropped: the plan's average is 1.14 J.
        let average = 0.95 * 1.2;
        assert!((per_served_request(average, 0.05) - 1.2).abs() < 1e-12);
        assert_eq!(per_served_request(2.0, 0.0), 2.0);
        assert_eq!(per_served_request(0.0, 1.0), 0.0, "nothing served: no cap");
    }
    use wire::msg::{CoordMsg, Hello, LoadProfile, Role, Telemetry};

    fn telemetry(seq: u64, queue: u32, load_profiles: Vec<LoadProfile>) -> Telemetry {
        Telemetry {
            offload_queue: queue,
            load_profiles,
            ..fixtures::telemetry(seq)
        }
    }

    fn join(r: &mut Registry, h: Hello, t: Option<Telemetry>) -> mpsc::Receiver<CoordMsg> {
        let (tx, rx) = mpsc::channel(1);
        let id = h.node_id.clone();
        let session = r.connect(h, tx, Instant::now());
        if let Some(t) = t {
            assert!(r.telemetry(&id, session, t, Instant::now()));
        }
        rx
    }

    fn policy() -> FleetPolicy {
        FleetPolicy {
            cost_budget_usd: 1.0,
        }
    }

    #[test]
    fn capacity_shrinks_with_the_backlog_and_stale_servers_have_none() {
        let fresh = Duration::from_secs(1);
        assert_eq!(effective_capacity(10.0, None, fresh), 10.0);
        assert_eq!(effective_capacity(10.0, Some(0), fresh), 10.0);
        assert_eq!(effective_capacity(10.0, Some(5), fresh), 5.0);
        assert_eq!(effective_capacity(10.0, Some(10), fresh), 0.0);
        assert_eq!(effective_capacity(10.0, Some(500), fresh), 0.0);
        // Queue limit ceil(2.5) = 3: one queued leaves two thirds.
        assert!((effective_capacity(2.5, Some(1), fresh) - 2.5 * 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(effective_capacity(10.0, Some(0), SERVER_STALE_AFTER), 10.0);
        let stale = SERVER_STALE_AFTER + Duration::from_millis(1);
        assert_eq!(effective_capacity(10.0, Some(0), stale), 0.0);
        assert_eq!(effective_capacity(10.0, None, stale), 0.0);
        assert_eq!(effective_capacity(f64::NAN, None, fresh), 0.0);
    }

    #[test]
    fn planner_uses_the_servers_latest_telemetry() {
        let cat = Catalog::paper();
        let class = cat.device_class.clone();
        let catalogs = vec![cat];
        let mut r = Registry::default();
        let _d = join(&mut r, hello("dev", &class, Role::Device), None);
        let server = |cap| Role::Server { capacity_rps: cap };
        let _a = join(
            &mut r,
            hello("srv-a", "laptop", server(10.0)),
            Some(telemetry(1, 4, vec![])),
        );
        let _b = join(
            &mut r,
            hello("srv-b", "laptop", server(8.0)),
            Some(telemetry(1, 8, vec![])),
        );
        let now = Instant::now();
        let (p, target) = problem_at(&r, &catalogs, &policy(), &BTreeMap::new(), now, unix_ms());
        // srv-a: 10 * (1 - 4/10) = 6; srv-b's queue is full.
        assert!((p.server_capacity_rps - 6.0).abs() < 1e-9);
        assert_eq!(
            target,
            Some(OffloadTarget {
                addr: "srv-a:7000".into(),
                name: "srv-a".into()
            })
        );
        assert!(p.nodes.iter().all(|n| n.connected));

        // The backlog drains: the next report restores the capacity.
        let session = r.get("srv-b").map(|e| e.session).unwrap();
        assert!(r.telemetry("srv-b", session, telemetry(2, 0, vec![]), Instant::now()));
        let (p, _) = problem_at(
            &r,
            &catalogs,
            &policy(),
            &BTreeMap::new(),
            Instant::now(),
            unix_ms(),
        );
        assert!((p.server_capacity_rps - 14.0).abs() < 1e-9);

        // No report for a few intervals: no server counts, nothing is offloaded.
        let later = Instant::now() + SERVER_STALE_AFTER + Duration::from_secs(1);
        let (p, target) = problem_at(&r, &catalogs, &policy(), &BTreeMap::new(), later, unix_ms());
        assert_eq!(p.server_capacity_rps, 0.0);
        assert_eq!(target, None);
        assert_eq!(p.cost_budget_usd, 0.0);
        assert!(p.nodes.iter().all(|n| !n.connected));
    }

    #[test]
    fn reported_load_costs_replace_the_class_profile() {
        let cat = Catalog::paper();
        let class = cat.device_class.clone();
        let v = cat.apps[0].variants[0].name.clone();
        let other = cat.apps[0].variants[1].name.clone();
        let profiled_other = cat.load_profile(&other);
        let catalogs = vec![cat];
        let lp = |variant: &str, ms: f64, j: f64, loads: u64| LoadProfile {
            variant: variant.into(),
            load_ms: ms,
            load_j: j,
            loads,
        };
        let mut r = Registry::default();
        let _a = join(
            &mut r,
            hello("a", &class, Role::Device),
            Some(telemetry(1, 0, vec![lp(&v, 30.0, 3.0, 2)])),
        );
        let _b = join(
            &mut r,
            hello("b", &class, Role::Device),
            Some(telemetry(
                1,
                0,
                vec![lp(&v, 50.0, 5.0, 1), lp(&other, 1.0, 1.0, 0)],
            )),
        );
        // Another class's measurements and unusable figures do not count.
        let _c = join(
            &mut r,
            hello("c", "elsewhere", Role::Device),
            Some(telemetry(1, 0, vec![lp(&v, 900.0, 90.0, 5)])),
        );
        let _d = join(
            &mut r,
            hello("d", &class, Role::Device),
            Some(telemetry(1, 0, vec![lp(&v, f64::NAN, 1.0, 3)])),
        );
        let (p, _) = problem_at(
            &r,
            &catalogs,
            &policy(),
            &BTreeMap::new(),
            Instant::now(),
            unix_ms(),
        );
        let measured = &p.catalogs[0];
        assert_eq!(measured.load_profile(&v), Some((40.0, 4.0)));
        for app in &measured.apps {
            if let Some(k) = measured.key(&app.name, &v) {
                let var = measured.variant(k);
                assert_eq!((var.load_latency_ms, var.load_energy_j), (40.0, 4.0));
            }
        }
        assert_eq!(
            measured.load_profile(&other),
            profiled_other,
            "never loaded"
        );
        assert_ne!(
            catalogs[0].load_profile(&v),
            Some((40.0, 4.0)),
            "profiles untouched"
        );
    }
}
