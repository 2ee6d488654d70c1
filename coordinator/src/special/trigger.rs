//! When a node's stream is skewed enough to specialise for, and when it no longer is. Input is
//! the class histogram the node reports over its recent window (counts of the labels it
//! answered, index = the app's class id).

/// The rules (`mcdnn-coordinator --specialise-*`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rules {
    /// The dominant classes together must hold at least this share of the window.
    pub trigger: f64,
    /// A class is dominant when it alone holds at least this share (a uniform stream over ten
    /// classes gives each about 0.1, so 0.15 keeps noise out).
    pub min_class_share: f64,
    /// At most this many dominant classes (the seed: fewer than ten dominate).
    pub max_classes: usize,
    /// Requests the window must hold before its shares are believed.
    pub min_sample: u32,
    /// The set's share must be at least this many times its share in the corpus: a set that is
    /// common anyway (3 of 4 coarse classes) is not a skew worth a model.
    pub min_lift: f64,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            trigger: 0.6,
            min_class_share: 0.15,
            max_classes: 5,
            min_sample: 50,
            min_lift: 1.5,
        }
    }
}

/// The dominant classes (ascending ids) if the window is skewed past the trigger; `prior` is
/// each class's share of the corpus (uniform when unknown).
pub fn dominant(histogram: &[u32], prior: &[f64], rules: &Rules) -> Option<Vec<u32>> {
    let total: u64 = histogram.iter().map(|&n| u64::from(n)).sum();
    if total < u64::from(rules.min_sample) || total == 0 {
        return None;
    }
    let share = |n: u32| f64::from(n) / total as f64;
    let mut top: Vec<(u32, u32)> = histogram
        .iter()
        .enumerate()
        .filter(|&(_, &n)| share(n) >= rules.min_class_share)
        .map(|(c, &n)| (c as u32, n))
        .collect();
    // Largest first, ties by id, so the set is deterministic.
    top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    top.truncate(rules.max_classes);
    let covered: u32 = top.iter().map(|&(_, n)| n).sum();
    let uniform = 1.0 / histogram.len().max(1) as f64;
    let expected: f64 = top
        .iter()
        .map(|&(c, _)| prior.get(c as usize).copied().unwrap_or(uniform))
        .sum();
    if top.is_empty()
        || share(covered) < rules.trigger
        || share(covered) < rules.min_lift * expected
    {
        return None;
    }
    let mut classes: Vec<u32> = top.into_iter().map(|(c, _)| c).collect();
    classes.sort_unstable();
    Some(classes)
}

/// Whether a node running a head for `classes` should keep it: the set still holds the
/// trigger share of a believable window.
pub fn still_skewed(histogram: &[u32], classes: &[u32], rules: &Rules) -> bool {
    let total: u64 = histogram.iter().map(|&n| u64::from(n)).sum();
    if total < u64::from(rules.min_sample) {
        return false;
    }
    let covered: u64 = classes
        .iter()
        .filter_map(|&c| histogram.get(c as usize))
        .map(|&n| u64::from(n))
        .sum();
    covered as f64 / total as f64 >= rules.trigger
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_uniform_stream_never_triggers() {
        let r = Rules::default();
        assert_eq!(dominant(&[30; 10], &[], &r), None);
        assert_eq!(
            dominant(&[38, 25, 30, 33, 29, 27, 31, 30, 28, 29], &[], &r),
            None
        );
    }

    #[test]
    fn ninety_percent_on_three_classes_picks_those_three() {
        let r = Rules::default();
        // 90 % from {1, 4, 6} plus 10 % spread over all ten.
        let mut h = [3u32; 10];
        for c in [1, 4, 6] {
            h[c] = 93;
        }
        assert_eq!(dominant(&h, &[0.1; 10], &r), Some(vec![1, 4, 6]));
        assert!(still_skewed(&h, &[1, 4, 6], &r));
        assert!(!still_skewed(&[30; 10], &[1, 4, 6], &r));
    }

    #[test]
    fn too_few_requests_or_too_many_classes_do_not_trigger() {
        let r = Rules::default();
        assert_eq!(dominant(&[20, 20, 0, 0], &[], &r), None, "40 requests");
        assert!(!still_skewed(&[20, 20, 0, 0], &[0, 1], &r));
        let capped = Rules {
            max_classes: 2,
            ..r
        };
        // Three equal dominant classes, but only two may be kept: 2/3 share still triggers.
        assert_eq!(
            dominant(&[50, 50, 50, 0, 0, 0, 0, 0, 0, 0], &[], &capped),
            Some(vec![0, 1])
        );
        let strict = Rules {
            trigger: 0.9,
            ..capped
        };
        assert_eq!(
            dominant(&[50, 50, 50, 0, 0, 0, 0, 0, 0, 0], &[], &strict),
            None
        );
    }

    #[test]
    fn a_set_that_is_common_anyway_is_no_skew() {
        let r = Rules::default();
        // A coarse app whose classes hold 40/20/30/10 % of the corpus, seen at those shares:
        // three classes hold 90 %, but that is its normal stream.
        let prior = [0.4, 0.2, 0.3, 0.1];
        assert_eq!(dominant(&[40, 20, 30, 10], &prior, &r), None);
        // Bottoms and footwear at 95 % against 50 % in the corpus is a skew.
        assert_eq!(dominant(&[3, 60, 35, 2], &prior, &r), Some(vec![1, 2]));
    }
}
