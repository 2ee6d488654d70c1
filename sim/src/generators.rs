//! Synthetic traces and connectivity: Poisson arrivals per app, skewed episodes, outages.
//! Deterministic for a given seed.
//!
//! Specs (`--trace`): `one-app`, `two-apps`, `specialisation`, `outages`, or
//! `poisson:APP=RATE,APP=RATE`; any of them may end in `@SEED`.

use anyhow::{Context, Result, bail};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::trace::{Connectivity, Request};

/// People in the face stream.
const PEOPLE: usize = 200;
/// Skewed episodes: length, people in the episode's favourite set, and their share.
const EPISODE_S: f64 = 25.0 * 60.0;
const EPISODE_TOP: usize = 7;
const EPISODE_SHARE: f64 = 0.65;
/// Outages: mean connected and disconnected stretch.
const MEAN_UP_S: f64 = 3600.0;
const MEAN_DOWN_S: f64 = 900.0;

/// A generated scenario: trace plus connectivity.
#[derive(Debug, Clone)]
pub struct Generated {
    pub requests: Vec<Request>,
    pub connectivity: Connectivity,
}

fn exp(rng: &mut StdRng, mean: f64) -> f64 {
    let u: f64 = rng.r#gen::<f64>();
    -mean * (1.0 - u).ln()
}

/// Class labels of a stream.
#[derive(Debug, Clone, Copy)]
enum Classes {
    None,
    Uniform,
    Episodes,
}

fn poisson(rng: &mut StdRng, app: &str, rate: f64, horizon: f64, classes: Classes) -> Vec<Request> {
    let mut out = Vec::new();
    if rate <= 0.0 {
        return out;
    }
    let mut t = exp(rng, 1.0 / rate);
    let mut episode = usize::MAX;
    let mut favourites: Vec<usize> = Vec::new();
    while t < horizon {
        let class = match classes {
            Classes::None => None,
            Classes::Uniform => Some(rng.gen_range(0..PEOPLE)),
            Classes::Episodes => {
                let e = (t / EPISODE_S) as usize;
                if e != episode {
                    episode = e;
                    favourites.clear();
                    while favourites.len() < EPISODE_TOP {
                        let p = rng.gen_range(0..PEOPLE);
                        if !favourites.contains(&p) {
                            favourites.push(p);
                        }
                    }
                }
                // Skewed episodes alternate with ordinary stretches.
                let skewed = e.is_multiple_of(2);
                if skewed && rng.r#gen::<f64>() < EPISODE_SHARE {
                    Some(favourites[rng.gen_range(0..EPISODE_TOP)])
                } else {
                    Some(rng.gen_range(0..PEOPLE))
                }
            }
        };
        out.push(Request {
            time_s: t,
            app: app.to_string(),
            class: class.map(|c| format!("person{c}")),
            node: None,
        });
        t += exp(rng, 1.0 / rate);
    }
    out
}

/// Random outages: exponential up and down stretches.
pub fn outages(seed: u64, horizon: f64) -> Connectivity {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed_0a7a);
    let mut changes = Vec::new();
    let mut t = exp(&mut rng, MEAN_UP_S);
    while t < horizon {
        changes.push((t, false));
        t += exp(&mut rng, MEAN_DOWN_S);
        changes.push((t, true));
        t += exp(&mut rng, MEAN_UP_S);
    }
    Connectivity { changes }
}

fn merge(mut parts: Vec<Vec<Request>>) -> Vec<Request> {
    let mut all: Vec<Request> = parts.drain(..).flatten().collect();
    all.sort_by(|a, b| a.time_s.total_cmp(&b.time_s));
    all
}

/// Generates the trace a spec names over `horizon_s`.
pub fn generate(spec: &str, horizon_s: f64) -> Result<Generated> {
    let (name, seed) = match spec.split_once('@') {
        Some((n, s)) => (
            n,
            s.parse::<u64>()
                .with_context(|| format!("seed in {spec:?}"))?,
        ),
        None => (spec, 1),
    };
    if !(horizon_s.is_finite() && horizon_s > 0.0) {
        bail!("{spec:?}: the horizon must be a positive number of seconds, got {horizon_s}");
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let face = |rng: &mut StdRng, rate, classes| poisson(rng, "deepface", rate, horizon_s, classes);
    let connected = Connectivity::default();
    let g = match name {
        "one-app" => Generated {
            requests: face(&mut rng, 1.0, Classes::Uniform),
            connectivity: connected,
        },
        "two-apps" => Generated {
            requests: merge(vec![
                face(&mut rng, 0.2, Classes::Uniform),
                poisson(&mut rng, "object_alexnet", 1.0, horizon_s, Classes::None),
            ]),
            connectivity: connected,
        },
        "specialisation" => Generated {
            requests: face(&mut rng, 1.0, Classes::Episodes),
            connectivity: connected,
        },
        "outages" => Generated {
            requests: merge(vec![
                face(&mut rng, 0.2, Classes::Uniform),
                poisson(&mut rng, "object_alexnet", 1.0, horizon_s, Classes::None),
            ]),
            connectivity: outages(seed, horizon_s),
        },
        _ => {
            let Some(list) = name.strip_prefix("poisson:") else {
                bail!(
                    "{spec:?} is neither a file nor a generator (one-app, two-apps, \
                     specialisation, outages, poisson:APP=RATE,...)"
                );
            };
            let mut parts = Vec::new();
            for item in list.split(',').filter(|s| !s.is_empty()) {
                let (app, rate) = item
                    .split_once('=')
                    .with_context(|| format!("{item:?}: want APP=RATE"))?;
                let rate: f64 = rate
                    .parse()
                    .with_context(|| format!("{item:?}: rate is not a number"))?;
                if !rate.is_finite() || rate < 0.0 {
                    bail!("{item:?}: rate must be a non-negative number");
                }
                let classes = if app == "deepface" {
                    Classes::Uniform
                } else {
                    Classes::None
                };
                parts.push(poisson(&mut rng, app, rate, horizon_s, classes));
            }
            if parts.is_empty() {
                bail!("{spec:?} names no app: want poisson:APP=RATE,...");
            }
            Generated {
                requests: merge(parts),
                connectivity: connected,
            }
        }
    };
    Ok(g)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_apps_has_the_expected_rates() -> Result<()> {
        let g = generate("two-apps", 36_000.0)?;
        let face = g.requests.iter().filter(|r| r.app == "deepface").count() as f64;
        let obj = g
            .requests
            .iter()
            .filter(|r| r.app == "object_alexnet")
            .count() as f64;
        assert!((face / 36_000.0 - 0.2).abs() < 0.01);
        assert!((obj / 36_000.0 - 1.0).abs() < 0.02);
        assert!(g.requests.windows(2).all(|w| w[0].time_s <= w[1].time_s));
        Ok(())
    }

    #[test]
    fn deterministic_and_seeded() -> Result<()> {
        let a = generate("specialisation@3", 3600.0)?;
        let b = generate("specialisation@3", 3600.0)?;
        let c = generate("specialisation@4", 3600.0)?;
        assert_eq!(a.requests, b.requests);
        assert_ne!(a.requests, c.requests);
        Ok(())
    }

    #[test]
    fn outages_take_about_a_fifth_of_the_time() -> Result<()> {
        let g = generate("outages", 36_000.0 * 10.0)?;
        let f = g.connectivity.fraction(360_000.0);
        assert!(f > 0.65 && f < 0.92, "{f}");
        Ok(())
    }

    #[test]
    fn bad_specs_are_errors() {
        assert!(generate("nonsense", 10.0).is_err());
        assert!(generate("poisson:deepface=x", 10.0).is_err());
        assert!(generate("poisson:deepface=-1", 10.0).is_err());
        assert!(generate("poisson:", 10.0).is_err());
        assert!(generate("one-app", f64::NAN).is_err());
        assert!(generate("one-app", 0.0).is_err());
        assert!(generate("one-app@x", 10.0).is_err());
    }
}
