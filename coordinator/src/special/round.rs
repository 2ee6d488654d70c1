//! One round of the leader's specialiser, without I/O: from every node's latest class
//! histogram, which node runs which registered head, which heads must be trained, and which
//! registered heads no node has used for long enough to be collected.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use wire::msg::SpecialisedRun;

use super::trigger::{Rules, dominant, still_skewed};
use super::{run_of, variant_name};
use crate::state::{MAX_SPECIALISED_PER_APP, SpecialisedVariant};

/// (node, app).
pub type Key = (String, String);
/// app -> variant -> metadata, as replicated.
pub type Registered = BTreeMap<String, BTreeMap<String, SpecialisedVariant>>;

/// One node's window for one app (already checked against the catalog).
#[derive(Debug, Clone)]
pub struct Observation {
    pub node: String,
    pub app: String,
    pub histogram: Vec<u32>,
    /// Each class's share of the corpus ([`super::prior`]).
    pub prior: Vec<f64>,
}

/// A head to train for `app` over `classes`, weighted by the histogram that asked for it.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainJob {
    pub app: String,
    pub variant: String,
    pub classes: Vec<u32>,
    pub histogram: Vec<u32>,
}

#[derive(Debug, Default)]
pub struct Outcome {
    /// Who runs what after this round.
    pub active: BTreeMap<Key, SpecialisedRun>,
    pub train: Vec<TrainJob>,
}

/// Decides who runs which head. A running head is kept while its classes hold the trigger
/// share; a node without one gets the registered head for its dominant set, or a job to train
/// it (one per set; none while the app is at its cap of live variants).
pub fn decide(
    observations: &[Observation],
    registered: &Registered,
    active: &BTreeMap<Key, SpecialisedRun>,
    base: &str,
    rules: &Rules,
) -> Outcome {
    let mut out = Outcome::default();
    for o in observations {
        let key = (o.node.clone(), o.app.clone());
        let live = |name: &str| registered.get(&o.app).and_then(|vs| vs.get(name));
        if let Some(run) = active.get(&key)
            && live(&run.variant).is_some()
            && still_skewed(&o.histogram, &run.classes, rules)
        {
            out.active.insert(key, run.clone());
            continue;
        }
        let Some(classes) = dominant(&o.histogram, &o.prior, rules) else {
            continue;
        };
        let name = variant_name(base, &classes);
        if let Some(v) = live(&name) {
            out.active.insert(key, run_of(v));
        } else if registered.get(&o.app).map_or(0, BTreeMap::len) < MAX_SPECIALISED_PER_APP
            && !out
                .train
                .iter()
                .any(|j| j.app == o.app && j.variant == name)
        {
            out.train.push(TrainJob {
                app: o.app.clone(),
                variant: name,
                classes,
                histogram: o.histogram.clone(),
            });
        }
    }
    out
}

/// Registered heads no node has run for `after`; `idle` remembers since when each was idle.
pub fn collectable(
    registered: &Registered,
    active: &BTreeMap<Key, SpecialisedRun>,
    idle: &mut BTreeMap<(String, String), Instant>,
    now: Instant,
    after: Duration,
) -> Vec<(String, String)> {
    let used: BTreeSet<(&str, &str)> = active
        .iter()
        .map(|((_, app), run)| (app.as_str(), run.variant.as_str()))
        .collect();
    let mut out = Vec::new();
    let mut still_idle = BTreeMap::new();
    for (app, vs) in registered {
        for name in vs.keys() {
            if used.contains(&(app.as_str(), name.as_str())) {
                continue;
            }
            let key = (app.clone(), name.clone());
            let since = idle.get(&key).copied().unwrap_or(now);
            if now.saturating_duration_since(since) >= after {
                out.push(key.clone());
            }
            still_idle.insert(key, since);
        }
    }
    *idle = still_idle;
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn skewed(classes: &[usize]) -> Vec<u32> {
        let mut h = vec![3u32; 10];
        for &c in classes {
            h[c] = 93;
        }
        h
    }

    fn obs(node: &str, histogram: Vec<u32>) -> Observation {
        Observation {
            node: node.into(),
            app: "garment".into(),
            histogram,
            prior: vec![0.1; 10],
        }
    }

    fn registered_with(name: &str, classes: Vec<u32>) -> Registered {
        let mut v = crate::state::tests_support::variant("garment", name);
        v.classes = classes;
        BTreeMap::from([("garment".into(), BTreeMap::from([(name.into(), v)]))])
    }

    #[test]
    fn skew_asks_for_training_once_then_attaches_the_registered_head() {
        let r = Rules::default();
        let o = [obs("a", skewed(&[1, 4, 6])), obs("b", skewed(&[1, 4, 6]))];
        let first = decide(&o, &Registered::new(), &BTreeMap::new(), "quarter", &r);
        assert!(first.active.is_empty());
        assert_eq!(first.train.len(), 1, "one job for the shared set");
        assert_eq!(first.train[0].classes, vec![1, 4, 6]);
        let reg = registered_with("spec-quarter-1_4_6", vec![1, 4, 6]);
        let second = decide(&o, &reg, &first.active, "quarter", &r);
        assert!(second.train.is_empty());
        assert_eq!(second.active.len(), 2);
        assert_eq!(
            second.active[&("a".into(), "garment".into())].variant,
            "spec-quarter-1_4_6"
        );
    }

    #[test]
    fn a_passing_skew_detaches_and_the_idle_head_is_collected_later() {
        let r = Rules::default();
        let reg = registered_with("spec-quarter-1_4_6", vec![1, 4, 6]);
        let on = decide(
            &[obs("a", skewed(&[1, 4, 6]))],
            &reg,
            &BTreeMap::new(),
            "quarter",
            &r,
        );
        assert_eq!(on.active.len(), 1);
        let mut idle = BTreeMap::new();
        let t0 = Instant::now();
        let after = Duration::from_secs(30);
        assert!(collectable(&reg, &on.active, &mut idle, t0, after).is_empty());
        let off = decide(&[obs("a", vec![30; 10])], &reg, &on.active, "quarter", &r);
        assert!(
            off.active.is_empty(),
            "uniform again: the node stops using it"
        );
        assert!(collectable(&reg, &off.active, &mut idle, t0, after).is_empty());
        let later = t0 + Duration::from_secs(31);
        assert_eq!(
            collectable(&reg, &off.active, &mut idle, later, after),
            vec![("garment".to_string(), "spec-quarter-1_4_6".to_string())]
        );
        // A node gone from the observations loses its head too.
        assert!(
            decide(&[], &reg, &on.active, "quarter", &r)
                .active
                .is_empty()
        );
    }

    #[test]
    fn no_training_past_the_cap_of_live_variants() {
        let r = Rules::default();
        let mut reg = Registered::new();
        for i in 0..MAX_SPECIALISED_PER_APP {
            let name = format!("spec-quarter-x{i}");
            reg.entry("garment".into()).or_default().insert(
                name.clone(),
                crate::state::tests_support::variant("garment", &name),
            );
        }
        let o = [obs("a", skewed(&[1, 4, 6]))];
        assert!(
            decide(&o, &reg, &BTreeMap::new(), "quarter", &r)
                .train
                .is_empty()
        );
    }
}
