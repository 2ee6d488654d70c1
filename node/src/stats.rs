//! Per-app counters the node keeps while serving: what telemetry reports and the demo shows.

use std::collections::VecDeque;

use wire::msg::AppTelemetry;
use wire::summary::{FaceTiming, RecentSummary};

/// Recent latencies kept for the median.
const LATENCY_WINDOW: usize = 512;
/// Window over which the request rate is computed.
pub const RATE_WINDOW_S: f64 = 30.0;
/// Window of the class histogram (the labels the node answered), the leader's input for
/// specialisation: short enough that a skew is seen within seconds, long enough to hold the
/// leader's minimum sample at a few requests per second.
pub const CLASS_WINDOW_S: f64 = 10.0;
/// Most labels the histogram window keeps (bounds memory at any request rate).
const CLASS_WINDOW_MAX: usize = 4096;

/// Counters at one moment, to report a phase of the run as a difference.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Totals {
    pub requests: u64,
    pub correct: u64,
    pub dropped: u64,
    pub energy_used_j: f64,
}

/// What the specialised cascade did for one app.
#[derive(Debug, Clone, Default)]
pub struct CascadeStats {
    /// Requests the specialised head answered.
    pub answered: u64,
    /// Requests it called "other", answered by the general variant.
    pub fell_back: u64,
    /// Seconds into the stream of its first answer.
    pub first_answer_s: Option<f64>,
    /// Totals when the stream's skew began and ended (a replayed skew window).
    pub skew_start: Option<Totals>,
    pub skew_end: Option<Totals>,
}

/// A face app's counters (the summary's `face`).
#[derive(Debug, Clone, Default)]
pub struct FaceStats {
    /// The variant the audit runs (the catalog's `full`-kind face variant for the app), if any.
    pub reference: Option<String>,
    /// Audit every this many face requests (0: never).
    pub audit_every: u64,
    /// Face requests answered since the last audit.
    pub since_audit: u64,
    pub faces: u64,
    /// Name -> requests it was recognised in.
    pub seen: std::collections::BTreeMap<String, u64>,
    pub audited: u64,
    pub agreed: u64,
    pub timing: std::collections::BTreeMap<String, FaceTiming>,
    pub recent: RecentSummary,
}

impl FaceStats {
    /// One run of `variant` that took `ms` and found `faces`.
    pub fn timed(&mut self, variant: &str, faces: usize, ms: f64) {
        let t = self.timing.entry(variant.to_string()).or_default();
        t.runs += 1;
        t.faces += faces as u64;
        t.ms += ms;
    }

    /// One answered frame with `faces` faces, in which `names` were recognised (a name counts
    /// once per frame however many of its faces matched).
    pub fn saw<'a>(&mut self, faces: usize, names: impl IntoIterator<Item = &'a str>) {
        self.faces += faces as u64;
        let names: std::collections::BTreeSet<&str> = names.into_iter().collect();
        for name in names {
            *self.seen.entry(name.to_string()).or_default() += 1;
        }
    }

    /// Whether this answered request is the one to audit (every `audit_every`-th).
    pub fn audit_due(&mut self) -> bool {
        if self.audit_every == 0 || self.reference.is_none() {
            return false;
        }
        self.since_audit += 1;
        if self.since_audit >= self.audit_every {
            self.since_audit = 0;
            return true;
        }
        false
    }
}

#[derive(Debug, Clone)]
pub struct AppStats {
    pub app: String,
    pub requests: u64,
    /// Requests answered with the right label (ground truth known for replayed data).
    pub correct: u64,
    pub dropped: u64,
    /// Of `dropped`: requests whose deadline passed before the loop reached them.
    pub late: u64,
    /// Requests with a ground truth (the replay's); accuracy is over these alone.
    pub labelled_requests: u64,
    pub offloaded: u64,
    /// Requests meant for the offload server that were answered locally instead.
    pub offload_fallbacks: u64,
    /// Answered requests the spool could not hold (not accepted, so not reported).
    pub spool_failures: u64,
    pub energy_used_j: f64,
    pub cost_used_usd: f64,
    latencies_ms: VecDeque<f64>,
    arrivals: VecDeque<f64>,
    /// Labels answered over the last [`CLASS_WINDOW_S`].
    labels: VecDeque<(f64, usize)>,
    classes: usize,
    pub cascade: CascadeStats,
    /// Requests per variant name, for "variants in use".
    pub by_variant: std::collections::BTreeMap<String, u64>,
    /// Set for a face app (its requests are answered from the watchlist, without labels).
    pub face: Option<FaceStats>,
}

impl AppStats {
    pub fn new(app: &str, classes: usize) -> Self {
        Self {
            app: app.to_string(),
            requests: 0,
            correct: 0,
            dropped: 0,
            late: 0,
            labelled_requests: 0,
            offloaded: 0,
            offload_fallbacks: 0,
            spool_failures: 0,
            energy_used_j: 0.0,
            cost_used_usd: 0.0,
            latencies_ms: VecDeque::new(),
            arrivals: VecDeque::new(),
            labels: VecDeque::new(),
            classes,
            cascade: CascadeStats::default(),
            by_variant: Default::default(),
            face: None,
        }
    }

    pub fn totals(&self) -> Totals {
        Totals {
            requests: self.requests,
            correct: self.correct,
            dropped: self.dropped,
            energy_used_j: self.energy_used_j,
        }
    }

    /// A request arrived at `now_s`; `skewed` tells whether the replay drew it while its skew
    /// was on (the phase's totals are taken at its edges).
    pub fn arrival(&mut self, now_s: f64, skewed: bool) {
        let now = self.totals();
        let c = &mut self.cascade;
        if skewed && c.skew_start.is_none() {
            c.skew_start = Some(now);
        } else if !skewed && c.skew_start.is_some() && c.skew_end.is_none() {
            c.skew_end = Some(now);
        }
        self.requests += 1;
        self.arrivals.push_back(now_s);
        while self
            .arrivals
            .front()
            .is_some_and(|&t| t < now_s - RATE_WINDOW_S)
        {
            self.arrivals.pop_front();
        }
    }

    /// The node answered `class` (this app's class index) at `now_s`.
    pub fn labelled(&mut self, now_s: f64, class: usize) {
        self.labels.push_back((now_s, class));
        while self.labels.len() > CLASS_WINDOW_MAX
            || self
                .labels
                .front()
                .is_some_and(|&(t, _)| t < now_s - CLASS_WINDOW_S)
        {
            self.labels.pop_front();
        }
    }

    /// The request was answered.
    pub fn answered(&mut self, variant: &str, correct: bool, latency_ms: f64, offloaded: bool) {
        self.correct += u64::from(correct);
        self.offloaded += u64::from(offloaded);
        // The name is copied only the first time a variant answers.
        match self.by_variant.get_mut(variant) {
            Some(n) => *n += 1,
            None => {
                self.by_variant.insert(variant.to_string(), 1);
            }
        }
        if self.latencies_ms.len() == LATENCY_WINDOW {
            self.latencies_ms.pop_front();
        }
        self.latencies_ms.push_back(latency_ms);
    }

    pub fn accuracy_pct(&self) -> f64 {
        if self.labelled_requests == 0 {
            0.0
        } else {
            100.0 * self.correct as f64 / self.labelled_requests as f64
        }
    }

    pub fn rate_per_s(&self, now_s: f64) -> f64 {
        let span = now_s.clamp(1.0, RATE_WINDOW_S);
        self.arrivals.iter().filter(|&&t| t >= now_s - span).count() as f64 / span
    }

    pub fn telemetry(&self, now_s: f64) -> AppTelemetry {
        let mut histogram = vec![0u32; self.classes];
        for &(t, c) in &self.labels {
            if t < now_s - CLASS_WINDOW_S {
                continue;
            }
            if let Some(slot) = histogram.get_mut(c) {
                *slot += 1;
            }
        }
        let mut sorted: Vec<f64> = self.latencies_ms.iter().copied().collect();
        sorted.sort_by(f64::total_cmp);
        AppTelemetry {
            app: self.app.clone(),
            rate_per_s: self.rate_per_s(now_s),
            class_histogram: histogram,
            requests: self.requests,
            correct: self.correct,
            labelled: self.labelled_requests,
            dropped: self.dropped,
            offloaded: self.offloaded,
            latency_ms_p50: sorted.get(sorted.len() / 2).copied().unwrap_or(0.0),
            energy_used_j: self.energy_used_j,
            cost_used_usd: self.cost_used_usd,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_accuracy_rate_and_histogram() {
        let mut s = AppStats::new("garment", 3);
        for i in 0..20 {
            s.arrival(i as f64 * 0.5, (5..15).contains(&i));
            s.labelled_requests += 1;
            s.answered("full", i % 2 == 0, 1.0, false);
            s.labelled(i as f64 * 0.5, i % 3);
        }
        assert_eq!(s.requests, 20);
        assert_eq!(s.accuracy_pct(), 50.0);
        let t = s.telemetry(10.0);
        // Labels of the last CLASS_WINDOW_S seconds only: t in [0, 9.5], all inside.
        assert_eq!(t.class_histogram.iter().sum::<u32>(), 20);
        assert_eq!(s.telemetry(14.9).class_histogram.iter().sum::<u32>(), 10);
        let (start, end) = (s.cascade.skew_start.unwrap(), s.cascade.skew_end.unwrap());
        assert_eq!(
            (start.requests, end.requests),
            (5, 15),
            "the skew phase's edges"
        );
        assert!((t.rate_per_s - 2.0).abs() < 0.11, "{}", t.rate_per_s);
        assert_eq!(s.by_variant["full"], 20);
    }

    #[test]
    fn every_kth_face_request_is_audited_and_never_without_a_reference() {
        let mut f = FaceStats {
            reference: Some("fp32-150".into()),
            audit_every: 3,
            ..FaceStats::default()
        };
        let due: Vec<bool> = (0..7).map(|_| f.audit_due()).collect();
        assert_eq!(due, [false, false, true, false, false, true, false]);
        f.audit_every = 0;
        assert!((0..5).all(|_| !f.audit_due()), "0 turns the audit off");
        let mut none = FaceStats {
            audit_every: 1,
            ..FaceStats::default()
        };
        assert!(!none.audit_due(), "no reference variant, no audit");
        f.timed("int8-150", 2, 10.0);
        f.timed("int8-150", 0, 4.0);
        assert_eq!(f.timing["int8-150"].ms_per_face(), Some(7.0));
    }
}
