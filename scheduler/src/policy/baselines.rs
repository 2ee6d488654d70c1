//! Baselines: always the most accurate device variant, always offload, always the cheapest.

use super::candidates::{Candidate, Core, most_accurate};
use super::{Decision, Outcome, Policy};
use crate::catalog::Place;
use crate::state::{Constraints, DeviceState};

/// Defines a baseline policy from a choice function over the feasible candidates.
macro_rules! baseline {
    ($(#[$doc:meta])* $name:ident, $label:literal, $choose:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone)]
        pub struct $name {
            core: Core,
            cands: Vec<Candidate>,
        }

        impl $name {
            pub fn new(core: Core) -> $name {
                $name { core, cands: Vec::new() }
            }
        }

        impl Policy for $name {
            fn name(&self) -> &str {
                $label
            }

            fn decide(&mut self, now_s: f64, app: &str, state: &DeviceState) -> Decision {
                let Some(a) = self.core.arrive(now_s, app) else {
                    return Decision::Drop;
                };
                self.core.candidates(a, state, &mut self.cands);
                let choose: fn(&Core, &[Candidate]) -> Option<usize> = $choose;
                match choose(&self.core, &self.cands) {
                    Some(i) => self.core.decision(a, &self.cands[i]),
                    None => Decision::Drop,
                }
            }

            fn observe(&mut self, now_s: f64, app: &str, outcome: &Outcome<'_>) {
                self.core.observe(now_s, app, outcome);
            }

            fn set_constraints(&mut self, constraints: Constraints) {
                self.core.constraints = constraints;
            }

            fn update_load_profile(&mut self, variant: &str, load_ms: f64, load_j: f64) -> bool {
                self.core.update_load_profile(variant, load_ms, load_j)
            }
        }
    };
}

fn index_of(cands: &[Candidate], c: Option<&Candidate>) -> Option<usize> {
    let c = c?;
    cands.iter().position(|x| std::ptr::eq(x, c))
}

fn general_at(place: Place) -> impl Fn(&Candidate) -> bool {
    move |c| c.place == place && !c.specialised
}

baseline!(
    /// Always the most accurate general variant on the device while energy lasts, else drop.
    BestDevice,
    "best-device",
    |_, cands| index_of(cands, most_accurate(cands, |c| c.accuracy, general_at(Place::Device)))
);

baseline!(
    /// Always offload the most accurate general variant while connected and money lasts.
    Cloud,
    "cloud",
    |_, cands| index_of(cands, most_accurate(cands, |c| c.accuracy, general_at(Place::Server)))
);

baseline!(
    /// Always the cheapest device variant, else the cheapest server variant, else drop.
    Cheapest,
    "cheapest",
    |core, cands| index_of(cands, core.cheapest(cands))
);
