//! Specialisation: skew detection on a sliding window of class labels, and the class set a
//! specialised variant is built for. The cascade rule (the specialised head answers; its "other"
//! class falls back to the general variant, or is dropped when the plan cannot afford the
//! fallback) is applied by whoever runs the request: a request whose class is outside the set
//! costs both models and gets the general variant's accuracy (or costs the specialised model
//! and gets nothing).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

/// Requests the window must hold before skew is believed.
pub const MIN_SAMPLE: usize = 50;

/// Class counts over the last `window_s` seconds.
#[derive(Debug, Clone)]
pub struct SkewWindow {
    window_s: f64,
    ids: HashMap<String, u32>,
    names: Vec<Arc<str>>,
    counts: Vec<u32>,
    events: VecDeque<(f64, u32)>,
}

impl SkewWindow {
    pub fn new(window_s: f64) -> SkewWindow {
        SkewWindow {
            window_s,
            ids: HashMap::new(),
            names: Vec::new(),
            counts: Vec::new(),
            events: VecDeque::new(),
        }
    }

    /// Records one labelled request (requests without a label count as "other").
    pub fn record(&mut self, now_s: f64, class: Option<&str>) {
        let id = match class {
            Some(c) => match self.ids.get(c) {
                Some(&id) => id,
                None => {
                    let id = self.names.len() as u32;
                    self.ids.insert(c.to_string(), id);
                    self.names.push(Arc::from(c));
                    self.counts.push(0);
                    id
                }
            },
            None => u32::MAX,
        };
        if let Some(n) = self.counts.get_mut(id as usize) {
            *n += 1;
        }
        self.events.push_back((now_s, id));
        self.expire(now_s);
    }

    /// Forgets requests older than the window.
    pub fn expire(&mut self, now_s: f64) {
        while let Some(&(t, id)) = self.events.front() {
            if t > now_s - self.window_s {
                break;
            }
            self.events.pop_front();
            if let Some(n) = self.counts.get_mut(id as usize) {
                *n = n.saturating_sub(1);
            }
        }
    }

    /// Requests in the window.
    pub fn total(&self) -> usize {
        self.events.len()
    }

    fn sorted_ids(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = (0..self.counts.len() as u32)
            .filter(|&i| self.counts[i as usize] > 0)
            .collect();
        // Ties broken by id so the chosen set is deterministic.
        ids.sort_by(|&a, &b| {
            self.counts[b as usize]
                .cmp(&self.counts[a as usize])
                .then(a.cmp(&b))
        });
        ids
    }

    /// The top-`n` classes and their share of the window.
    pub fn top(&self, n: usize) -> (Vec<Arc<str>>, f64) {
        let total = self.total();
        if total == 0 {
            return (Vec::new(), 0.0);
        }
        let ids = self.sorted_ids();
        let top: Vec<u32> = ids.into_iter().take(n).collect();
        let hits: u32 = top.iter().map(|&i| self.counts[i as usize]).sum();
        (
            top.iter()
                .map(|&i| self.names[i as usize].clone())
                .collect(),
            hits as f64 / total as f64,
        )
    }

    /// Share of the window whose class is in `set`.
    pub fn share_of(&self, set: &[Arc<str>]) -> f64 {
        let total = self.total();
        if total == 0 {
            return 0.0;
        }
        let hits: u32 = set
            .iter()
            .filter_map(|c| self.ids.get(&**c))
            .map(|&i| self.counts[i as usize])
            .sum();
        hits as f64 / total as f64
    }

    /// The largest share any `n`-class set containing `class` can have: what a specialised
    /// variant could at best be credited with for this request (used by the bound).
    pub fn best_share_with(&self, class: Option<&str>, n: usize) -> f64 {
        let total = self.total();
        if total == 0 || n == 0 {
            return 0.0;
        }
        let Some(&cid) = class.and_then(|c| self.ids.get(c)) else {
            return 0.0;
        };
        let ids = self.sorted_ids();
        let others: u32 = ids
            .iter()
            .filter(|&&i| i != cid)
            .take(n - 1)
            .map(|&i| self.counts[i as usize])
            .sum();
        (others + self.counts[cid as usize]) as f64 / total as f64
    }
}

/// The authors' specialisation test, on the window of the requests before `now_s`: the share of
/// the top `top_n` classes, when it reaches `trigger` over a meaningful sample ([`MIN_SAMPLE`]).
/// While it does, the authors run only specialised variants and credit each its profiled
/// accuracy at that share. (The authors count classes 0-6 of their trace, the people their
/// generator made frequent, and start counting after 300 s; the current top-N is what a device
/// can know, and the sample floor replaces the 300 s start. They include the request being
/// decided, whose class a device does not know before answering; this does not.)
pub fn eligible_share(
    window: &mut SkewWindow,
    now_s: f64,
    top_n: usize,
    trigger: f64,
) -> Option<f64> {
    window.expire(now_s);
    if window.total() < MIN_SAMPLE {
        return None;
    }
    let (top, share) = window.top(top_n);
    (top.len() == top_n && share >= trigger).then_some(share)
}

/// The skew tracker every policy keeps for `app` (None when the app has no specialised
/// variant); the bound replays the same one so both agree on when a cascade can run.
pub fn tracker_for(catalog: &crate::catalog::Catalog, app: usize) -> Option<SkewTracker> {
    let c = &catalog.constants;
    catalog
        .apps
        .get(app)?
        .variants
        .iter()
        .find(|v| v.is_specialised())
        .map(|v| {
            let t = SkewTracker::new(c.skew_window_s, v.top_n().max(1), c.skew_trigger_share);
            if v.recent_set { t.up_to() } else { t }
        })
}

/// Per-app skew state a policy keeps: the window and the set a specialised variant serves.
/// The set is sticky: it is kept while its share stays above the trigger, so a specialised model
/// is not rebuilt for every small reshuffle of the top classes.
#[derive(Debug, Clone)]
pub struct SkewTracker {
    pub window: SkewWindow,
    top_n: usize,
    trigger: f64,
    set: Option<Arc<[Arc<str>]>>,
    share: f64,
    /// Whether fewer than `top_n` labels may form the set (a gallery of up to N people seen
    /// lately; one person filling the stream is the best case, not "no skew").
    up_to: bool,
}

impl SkewTracker {
    pub fn new(window_s: f64, top_n: usize, trigger: f64) -> SkewTracker {
        SkewTracker {
            window: SkewWindow::new(window_s),
            top_n,
            trigger,
            set: None,
            share: 0.0,
            up_to: false,
        }
    }

    /// The same tracker, satisfied by at most `top_n` labels instead of exactly `top_n`.
    pub fn up_to(self) -> SkewTracker {
        SkewTracker {
            up_to: true,
            ..self
        }
    }

    /// Records a label and updates the active set; returns true when the set changed.
    pub fn record(&mut self, now_s: f64, class: Option<&str>) -> bool {
        self.window.record(now_s, class);
        self.refresh()
    }

    fn refresh(&mut self) -> bool {
        if let Some(set) = &self.set {
            let share = self.window.share_of(set);
            if share >= self.trigger {
                self.share = share;
                return false;
            }
        }
        let had = self.set.is_some();
        let (top, share) = self.window.top(self.top_n);
        // A handful of requests always looks skewed; wait for a meaningful sample.
        let enough = if self.up_to {
            !top.is_empty()
        } else {
            top.len() == self.top_n
        };
        if share >= self.trigger && enough && self.window.total() >= MIN_SAMPLE {
            self.set = Some(top.into());
            self.share = share;
            true
        } else {
            self.set = None;
            self.share = 0.0;
            had
        }
    }

    /// [`eligible_share`] of this tracker's window.
    pub fn eligible_share(&mut self, now_s: f64) -> Option<f64> {
        eligible_share(&mut self.window, now_s, self.top_n, self.trigger)
    }

    /// The active specialised set and its share, when the stream is skewed enough.
    pub fn active(&self) -> Option<(&Arc<[Arc<str>]>, f64)> {
        self.set.as_ref().map(|s| (s, self.share))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_skew_and_drops_it_when_the_window_moves_on() {
        let mut t = SkewTracker::new(300.0, 2, 0.6);
        for i in 0..100 {
            let class = if i % 4 == 3 {
                format!("rare{i}")
            } else {
                format!("top{}", i % 2)
            };
            t.record(i as f64, Some(&class));
        }
        let Some((set, share)) = t.active() else {
            panic!("skew not detected");
        };
        assert_eq!(set.len(), 2);
        assert!((share - 0.75).abs() < 1e-9);
        for i in 0..400 {
            t.record(100.0 + i as f64, Some(&format!("u{i}")));
        }
        assert!(t.active().is_none());
    }

    #[test]
    fn an_up_to_tracker_takes_fewer_labels_than_its_n() {
        let mut exact = SkewTracker::new(300.0, 4, 0.6);
        let mut up_to = SkewTracker::new(300.0, 4, 0.6).up_to();
        for i in 0..60 {
            let who = if i % 3 == 0 { "ann" } else { "bob" };
            exact.record(i as f64, Some(who));
            up_to.record(i as f64, Some(who));
        }
        assert!(exact.active().is_none(), "two labels are not four classes");
        let (set, share) = up_to.active().expect("two people fill the stream");
        assert_eq!(set.len(), 2);
        assert_eq!(share, 1.0);
        for i in 0..200 {
            up_to.record(60.0 + i as f64, Some(&format!("stranger#{i}")));
        }
        assert!(up_to.active().is_none(), "a crowd of strangers is no skew");
    }

    #[test]
    fn best_share_with_counts_the_class_itself() {
        let mut w = SkewWindow::new(100.0);
        for c in ["a", "a", "a", "b", "b", "c"] {
            w.record(0.0, Some(c));
        }
        assert!((w.best_share_with(Some("c"), 2) - 4.0 / 6.0).abs() < 1e-9);
        assert!((w.best_share_with(Some("a"), 2) - 5.0 / 6.0).abs() < 1e-9);
        assert_eq!(w.best_share_with(None, 2), 0.0);
    }
}
