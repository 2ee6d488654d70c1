//! `mcdnn` under the authors' evaluation model: an app pays its load energy every time it comes
//! back to the device (from the server, or after drops), so a plan that mixes the device with
//! anything else is followed in stretches: once on the device, requests stay there for a
//! stretch long enough to amortise the load, and the requests away then catch up with the mix
//! by the usual weighted round robin.

/// A stretch's load is at most this share of the device energy it serves...
const PAGING_SHARE: f64 = 0.01;
/// ...a stretch is at most this many requests...
pub(super) const MAX_STRETCH: f64 = 2000.0;
/// ...and, when the time away goes to the server, runs ahead of the plan by at most this share
/// of the device requests the energy left could pay for.
const SHARE_OF_ENERGY: f64 = 0.25;

/// Device requests per stretch for a group whose device choices have these (load J, steady J
/// per request).
pub(super) fn stretch_len(device: impl Iterator<Item = (f64, f64)>) -> f64 {
    device
        .map(|(load, steady)| load / (PAGING_SHARE * steady.max(1e-3)))
        .fold(1.0, f64::max)
        .min(MAX_STRETCH)
}

/// How far the device's credit may fall behind the mix before requests leave it: a stretch of
/// `len` device requests at device share `device_frac` (0 when the mix does not leave the
/// device, or never goes there). When the requests away go to the server, never more than a
/// share of the `affordable` device requests (energy left / energy per device request): a
/// stretch that outran the plan at the end of the shift would leave no energy to send them.
/// (Away to drops, running ahead only moves drops later.)
pub(super) fn credit_allowance(
    len: f64,
    device_frac: f64,
    affordable: f64,
    away_to_server: bool,
) -> f64 {
    if device_frac <= 1e-9 || device_frac >= 1.0 - 1e-9 {
        return 0.0;
    }
    let allowance = len * (1.0 - device_frac);
    if away_to_server {
        allowance.min(SHARE_OF_ENERGY * affordable)
    } else {
        allowance
    }
}

/// Loads to expect over `requests` requests of a group running `device_frac` of them on the
/// device in stretches of `len`: one per stretch.
pub(super) fn expected_loads(requests: f64, device_frac: f64, len: f64) -> f64 {
    if device_frac <= 1e-9 || device_frac >= 1.0 - 1e-9 {
        return 0.0;
    }
    requests * device_frac / len.max(1.0)
}
