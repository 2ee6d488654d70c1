//! What running one variant once costs right now, under the catalog's evaluation model.

use crate::catalog::{Catalog, EvalModel, Place, VariantKey};
use crate::state::DeviceState;

/// What running one variant once costs right now.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct RunCost {
    /// Device energy including a load if the variant must be paged in.
    pub energy_j: f64,
    pub usd: f64,
    /// Latency the request would see (load included on a cold start).
    pub latency_ms: f64,
    /// The part of `energy_j` that is paging.
    pub load_j: f64,
}

/// Whether a request of `app` at `place` costing `rc` meets the latency limit. Under the
/// cascade model every request must; under the authors' model only a cold miss is checked (a
/// running app keeps answering while another variant loads), with the authors' comparisons:
/// on the device load + compute + RTT strictly below the limit, at the server load + compute
/// + RTT at most the limit.
pub fn meets_latency(
    catalog: &Catalog,
    app: usize,
    place: Place,
    state: &DeviceState,
    rc: &RunCost,
) -> bool {
    let limit = catalog.constants.latency_limit_ms;
    match (catalog.constants.model, place) {
        (EvalModel::Cascade, _) => rc.latency_ms <= limit,
        (EvalModel::Authors, _) if state.running_at(app).is_some() => true,
        (EvalModel::Authors, Place::Device) => rc.latency_ms < limit,
        (EvalModel::Authors, Place::Server) => rc.latency_ms <= limit,
    }
}

/// Cost of running `key` at `place` given what is resident and which trunks this frame has
/// already computed.
///
/// Cascade model: a cold start (nothing of the app warm at that place) pays load latency;
/// otherwise a swap is assumed to load in the background while the warm variant answers; a
/// variant not resident pays its load energy. Authors' model: cold means the app is not
/// running anywhere ([`DeviceState::running_at`]); the device pays the load energy when the app
/// moves onto it, not when it changes variant there; a cold device start also counts the RTT
/// (as the authors' `check_device` does).
pub fn run_cost(catalog: &Catalog, key: VariantKey, place: Place, state: &DeviceState) -> RunCost {
    let v = catalog.variant(key);
    let c = &catalog.constants;
    let authors = c.model == EvalModel::Authors;
    let trunk = v
        .trunk
        .filter(|&t| state.trunk_done(t, place))
        .map(|t| &catalog.trunks[t]);
    let running = state.running_at(key.app);
    let cold = if authors {
        running.is_none()
    } else {
        !state.app_warm(key.app, place)
    };
    match place {
        Place::Device => {
            let (mut e, mut ms) = (v.device_energy_j, v.device_latency_ms);
            if let Some(t) = trunk {
                e = (e - t.device_energy_j).max(0.0);
                ms = (ms - t.device_latency_ms).max(0.0);
            }
            let pays_load = if authors {
                running != Some(Place::Device)
            } else {
                !state.is_resident(key)
            };
            let load_j = if pays_load { v.load_energy_j } else { 0.0 };
            if cold {
                ms += v.load_latency_ms;
                if authors {
                    ms += c.rtt_ms;
                }
            }
            RunCost {
                energy_j: e + load_j,
                usd: 0.0,
                latency_ms: ms,
                load_j,
            }
        }
        Place::Server => {
            let mut ms = v.server_ms;
            if let Some(t) = trunk {
                ms = (ms - t.server_ms).max(0.0);
            }
            let mut latency = c.rtt_ms + ms;
            if cold && (authors || !state.is_loaded(key, Place::Server)) {
                latency += v.server_load_ms;
            }
            RunCost {
                energy_j: c.send_energy_j,
                usd: ms * c.server_cost_usd_per_ms,
                latency_ms: latency,
                load_j: 0.0,
            }
        }
    }
}
