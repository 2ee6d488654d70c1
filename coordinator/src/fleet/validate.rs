//! Which connected nodes the planner may use. One node's bad hello or telemetry (an app the
//! catalog lacks, a non-finite or negative number, an absurd size) must not fail the solve for
//! the whole fleet: such a node is left out of the plan, with the reason shown in `/status` and
//! counted in `mcdnn_nodes_excluded`, and the rest of the fleet is planned as usual. A node
//! claiming the offload-server role is excluded unless an operator approved it.

use std::collections::BTreeMap;

use scheduler::catalog::Catalog;
use wire::msg::{Battery, Hello, Role, Telemetry};

use super::registry::Registry;
use crate::state::ServerApprovals;

/// Apps a node may run (far above any real device).
pub const MAX_APPS: usize = 64;
/// Entries in a class histogram, loaded-variant list or load-profile list.
pub const MAX_LIST: usize = 4096;
/// Largest believable request rate or server capacity, per second.
pub const MAX_RATE: f64 = 1.0e6;
/// Longest string a node reports (app, variant, address).
pub const MAX_TEXT: usize = 256;

/// Reasons by node id for every connected node the planner must leave out.
pub fn exclusions(
    registry: &Registry,
    catalogs: &[Catalog],
    approvals: &ServerApprovals,
) -> BTreeMap<String, String> {
    registry
        .iter()
        .filter(|(_, e)| e.connected)
        .filter_map(|(id, e)| {
            let why = check_hello(&e.hello, catalogs)
                .and_then(|()| match e.telemetry.as_ref() {
                    Some(t) => check_telemetry(t),
                    None => Ok(()),
                })
                .and_then(|()| {
                    if e.is_server() && !approvals.is_approved(id) {
                        Err(format!(
                            "claims the offload-server role without an operator's approval \
                             (`mcdnnctl node approve-server {id}`)"
                        ))
                    } else {
                        Ok(())
                    }
                })
                .err()?;
            Some((id.clone(), why))
        })
        .collect()
}

fn finite_non_negative(what: &str, v: f64) -> Result<(), String> {
    if v.is_finite() && v >= 0.0 {
        Ok(())
    } else {
        Err(format!("{what} is {v}, not a finite non-negative number"))
    }
}

fn at_most(what: &str, len: usize, max: usize) -> Result<(), String> {
    if len <= max {
        Ok(())
    } else {
        Err(format!("{what} has {len} entries, more than {max}"))
    }
}

fn short_text(what: &str, s: &str) -> Result<(), String> {
    if s.len() <= MAX_TEXT {
        Ok(())
    } else {
        Err(format!("{what} is {} bytes, more than {MAX_TEXT}", s.len()))
    }
}

fn check_battery(b: &Battery) -> Result<(), String> {
    finite_non_negative("battery capacity_j", b.capacity_j)?;
    finite_non_negative("battery energy_left_j", b.energy_left_j)?;
    finite_non_negative("battery drain_w", b.drain_w)
}

/// The hello's claims against the catalog of its device class.
pub fn check_hello(h: &Hello, catalogs: &[Catalog]) -> Result<(), String> {
    short_text("device class", &h.device_class)?;
    let catalog = catalogs
        .iter()
        .find(|c| c.device_class == h.device_class)
        .ok_or_else(|| format!("device class {:?} is not in the catalog", h.device_class))?;
    at_most("apps", h.apps.len(), MAX_APPS)?;
    for app in &h.apps {
        short_text("app name", app)?;
        if catalog.app_index(app).is_none() {
            return Err(format!(
                "app {app:?} is not in the catalog of class {:?}",
                h.device_class
            ));
        }
    }
    if let Some(addr) = &h.offload_addr {
        short_text("offload address", addr)?;
    }
    if let Role::Server { capacity_rps } = h.role
        && !(capacity_rps.is_finite() && capacity_rps > 0.0 && capacity_rps <= MAX_RATE)
    {
        return Err(format!(
            "server capacity {capacity_rps} is not in (0, {MAX_RATE}] requests/s"
        ));
    }
    check_battery(&h.battery)
}

/// Every number the planner or the status view reads from a report.
pub fn check_telemetry(t: &Telemetry) -> Result<(), String> {
    check_battery(&t.battery)?;
    at_most("apps", t.apps.len(), MAX_APPS)?;
    at_most("loaded variants", t.loaded_variants.len(), MAX_LIST)?;
    at_most("load profiles", t.load_profiles.len(), MAX_LIST)?;
    for a in &t.apps {
        short_text("app name", &a.app)?;
        at_most("class histogram", a.class_histogram.len(), MAX_LIST)?;
        finite_non_negative("request rate", a.rate_per_s)?;
        if a.rate_per_s > MAX_RATE {
            return Err(format!(
                "request rate {} is above {MAX_RATE}/s",
                a.rate_per_s
            ));
        }
        finite_non_negative("latency", a.latency_ms_p50)?;
        finite_non_negative("energy used", a.energy_used_j)?;
        finite_non_negative("cost used", a.cost_used_usd)?;
    }
    for p in &t.load_profiles {
        short_text("variant name", &p.variant)?;
        finite_non_negative("load time", p.load_ms)?;
        finite_non_negative("load energy", p.load_j)?;
    }
    finite_non_negative("link rtt", t.link.rtt_ms)?;
    finite_non_negative("link bandwidth", t.link.bandwidth_bps)
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{hello, telemetry};
    use super::*;
    use std::time::Instant;
    use tokio::sync::mpsc;

    fn join(r: &mut Registry, h: Hello, t: Option<Telemetry>) {
        let (tx, _rx) = mpsc::channel(1);
        let id = h.node_id.clone();
        let s = r.connect(h, tx, Instant::now());
        if let Some(t) = t {
            assert!(r.telemetry(&id, s, t, Instant::now()));
        }
    }

    #[test]
    fn bad_nodes_are_excluded_with_a_reason_and_good_ones_are_not() {
        let cat = Catalog::paper();
        let class = cat.device_class.clone();
        let app = cat.apps[0].name.clone();
        let catalogs = vec![cat];
        let mut r = Registry::default();
        let good = Hello {
            apps: vec![app.clone()],
            watchlist_version: 0,
            ..hello("good", &class, Role::Device)
        };
        join(&mut r, good.clone(), Some(telemetry(1)));
        join(
            &mut r,
            Hello {
                apps: vec!["no-such-app".into()],
                watchlist_version: 0,
                ..hello("unknown-app", &class, Role::Device)
            },
            None,
        );
        let mut inf = telemetry(1);
        inf.battery.energy_left_j = f64::INFINITY;
        join(&mut r, hello("inf", &class, Role::Device), Some(inf));
        let mut negative = telemetry(1);
        negative.link.rtt_ms = -1.0;
        join(
            &mut r,
            hello("negative", &class, Role::Device),
            Some(negative),
        );
        let mut huge = telemetry(1);
        huge.loaded_variants = vec![String::new(); MAX_LIST + 1];
        join(&mut r, hello("huge", &class, Role::Device), Some(huge));
        let server = Role::Server { capacity_rps: 10.0 };
        join(&mut r, hello("srv", &class, server.clone()), None);
        join(&mut r, hello("srv-ok", &class, server), None);
        join(
            &mut r,
            hello(
                "nan-cap",
                &class,
                Role::Server {
                    capacity_rps: f64::NAN,
                },
            ),
            None,
        );
        let mut approvals = ServerApprovals::default();
        approvals.apply(2, "srv-ok", true, "ops");
        approvals.apply(3, "nan-cap", true, "ops");

        let out = exclusions(&r, &catalogs, &approvals);
        let ids: Vec<&str> = out.keys().map(String::as_str).collect();
        assert_eq!(
            ids,
            vec!["huge", "inf", "nan-cap", "negative", "srv", "unknown-app"]
        );
        assert!(
            out["unknown-app"].contains("no-such-app"),
            "{}",
            out["unknown-app"]
        );
        assert!(out["inf"].contains("inf"), "{}", out["inf"]);
        assert!(out["srv"].contains("approval"), "{}", out["srv"]);
        assert!(check_hello(&good, &catalogs).is_ok());
    }
}
