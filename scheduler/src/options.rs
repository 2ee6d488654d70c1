//! Steady-state options of an app for planning (`mcdnn`, `bound`, `fleet`): every (variant,
//! place) that can meet the latency limit once loaded, with its per-request accuracy, energy,
//! cost and server use. Paging is not in here: planners charge it separately (or, for the
//! bound, not at all, which keeps the bound an upper bound).

use crate::catalog::{Catalog, EvalModel, Place};
use crate::lp::Opt;

/// How specialised variants enter the options.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Specialised {
    /// Not eligible (no skew).
    None,
    /// Cascades at this share of the specialised classes: the specialised variant runs on every
    /// request; its "other" answers (the out-of-set share) fall back to a general variant or are
    /// dropped. Expected accuracy, energy and cost over in-set and "other" requests.
    Cascade(f64),
    /// The bound's cascades for requests whose in-set fraction is `in_set` and whose active set
    /// has at most `share` of the window: as `Cascade`, with the specialised accuracy the best
    /// any share up to `share` gives.
    Observed { share: f64, in_set: f64 },
    /// The authors' model: at this top-N share each specialised variant runs alone and is
    /// credited the best profiled accuracy for any share up to it
    /// ([`crate::catalog::Variant::specialised_accuracy_upper`], which is the authors' rule).
    Standalone(f64),
}

/// `PlanOpt::fallback` of a cascade that drops its "other" answers.
pub const DROP_OTHER: usize = usize::MAX;

/// What the planner knows about the situation the options are for.
#[derive(Clone, Copy)]
pub struct OptionSpec<'a> {
    pub connected: bool,
    pub memory_mb: f64,
    pub specialised: Specialised,
    /// Requests in the frame sharing a trunk: the trunk's cost is split among them (the bound's
    /// relaxation of "a trunk's cost counts once per frame"). 1 for planners.
    pub trunk_split: f64,
    /// Coordinator constraints: whether (variant index, place) is admitted.
    pub admits: &'a dyn Fn(usize, Place) -> bool,
}

/// An option and what it stands for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlanOpt {
    pub variant: usize,
    /// General fallback of a cascade; `Some(DROP_OTHER)` when "other" answers are dropped.
    pub fallback: Option<usize>,
    pub place: Place,
    pub opt: Opt,
}

/// All steady-state options of `app` under `spec`.
pub fn steady_options(catalog: &Catalog, app: usize, spec: &OptionSpec<'_>) -> Vec<PlanOpt> {
    let c = &catalog.constants;
    let variants = &catalog.apps[app].variants;
    let split = spec.trunk_split.max(1.0);
    // Under the authors' model only a cold miss is latency-checked: once running, any variant.
    let limit = match c.model {
        EvalModel::Authors => f64::INFINITY,
        EvalModel::Cascade => c.latency_limit_ms,
    };
    let mut out = Vec::new();
    let places: &[Place] = if spec.connected && !catalog.apps[app].device_only {
        &[Place::Device, Place::Server]
    } else {
        &[Place::Device]
    };
    for &place in places {
        let first = out.len();
        let figures = |vi: usize| -> Option<Opt> {
            let v = &variants[vi];
            if !(spec.admits)(vi, place) {
                return None;
            }
            let trunk = v.trunk.map(|t| &catalog.trunks[t]);
            match place {
                Place::Device => {
                    let share = trunk.map_or(0.0, |t| t.device_energy_j * (1.0 - 1.0 / split));
                    let ok = v.device_latency_ms <= limit && v.memory_mb <= spec.memory_mb;
                    ok.then_some(Opt {
                        value: v.accuracy,
                        energy: (v.device_energy_j - share).max(0.0),
                        cost: 0.0,
                        server: 0.0,
                    })
                }
                Place::Server => {
                    let share = trunk.map_or(0.0, |t| t.server_ms * (1.0 - 1.0 / split));
                    let ms = (v.server_ms - share).max(0.0);
                    (c.rtt_ms + v.server_ms <= limit).then_some(Opt {
                        value: v.accuracy,
                        energy: c.send_energy_j,
                        cost: ms * c.server_cost_usd_per_ms,
                        server: 1.0,
                    })
                }
            }
        };
        for (vi, v) in variants.iter().enumerate() {
            if v.is_specialised() {
                continue;
            }
            if let Some(opt) = figures(vi) {
                out.push(PlanOpt {
                    variant: vi,
                    fallback: None,
                    place,
                    opt,
                });
            }
        }
        let general: Vec<PlanOpt> = out[first..].to_vec();
        for si in 0..variants.len() {
            let s = &variants[si];
            if !s.is_specialised() {
                continue;
            }
            let Some(so) = figures(si) else { continue };
            let (acc, in_set) = match spec.specialised {
                Specialised::None => continue,
                Specialised::Standalone(share) => {
                    out.push(PlanOpt {
                        variant: si,
                        fallback: None,
                        place,
                        opt: Opt {
                            value: s.specialised_accuracy_upper(share),
                            ..so
                        },
                    });
                    continue;
                }
                Specialised::Cascade(share) => (s.specialised_accuracy(share), share),
                Specialised::Observed { share, in_set } => {
                    (s.specialised_accuracy_upper(share), in_set)
                }
            };
            let in_set = in_set.clamp(0.0, 1.0);
            let other = 1.0 - in_set;
            // A recent gallery learns only from its fallback's answers (see `candidates`).
            if !s.recent_set {
                out.push(PlanOpt {
                    variant: si,
                    fallback: Some(DROP_OTHER),
                    place,
                    opt: Opt {
                        value: in_set * acc,
                        ..so
                    },
                });
            }
            for g in &general {
                if place == Place::Device
                    && s.memory_mb + variants[g.variant].memory_mb > spec.memory_mb
                {
                    continue;
                }
                // At the server the request is already there: the fallback sends nothing.
                let send = if place == Place::Server {
                    c.send_energy_j
                } else {
                    0.0
                };
                let opt = Opt {
                    value: in_set * acc + other * g.opt.value,
                    energy: so.energy + other * (g.opt.energy - send).max(0.0),
                    cost: so.cost + other * g.opt.cost,
                    server: so.server,
                };
                out.push(PlanOpt {
                    variant: si,
                    fallback: Some(g.variant),
                    place,
                    opt,
                });
            }
        }
    }
    out
}
