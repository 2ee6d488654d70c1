//! What one answered request costs: the profiled energy the policy planned with, with paging
//! charged as measured (the profile's load energy is replaced by this load's measured energy,
//! never added to it), and the cloud cost only when it ran where it was planned (a failed
//! offload answered locally costs device energy, not server time).

use scheduler::catalog::Place;
use scheduler::policy::RunCost;

/// Energy (J) and cost (USD) to charge for a request planned with `cost` at `planned` that ran
/// at `ran`, `measured_load_j` being the energy of a load it caused (0 if none).
pub fn charged(cost: &RunCost, planned: Place, ran: Place, measured_load_j: f64) -> (f64, f64) {
    if ran == planned {
        (cost.energy_j - cost.load_j + measured_load_j, cost.usd)
    } else {
        (cost.energy_j + measured_load_j, 0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cost() -> RunCost {
        RunCost {
            energy_j: 3.0,
            usd: 0.5,
            latency_ms: 10.0,
            load_j: 2.0,
        }
    }

    #[test]
    fn a_load_is_charged_as_measured_once() {
        assert_eq!(
            charged(&cost(), Place::Device, Place::Device, 0.7),
            (1.7, 0.5)
        );
        assert_eq!(
            charged(&cost(), Place::Device, Place::Device, 0.0),
            (1.0, 0.5)
        );
    }

    #[test]
    fn a_fallback_pays_device_energy_and_no_cloud_cost() {
        assert_eq!(
            charged(&cost(), Place::Server, Place::Device, 0.25),
            (3.25, 0.0)
        );
    }
}
