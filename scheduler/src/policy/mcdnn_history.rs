//! What `mcdnn` remembers between plans: how often the device was connected and how often (and
//! how strongly) the stream was skewed, so a plan keeps budget for what is likely to come.

/// Connected share of time, with a prior of "connected" so the first plan offloads.
#[derive(Debug, Clone, Default)]
pub(super) struct Connectivity {
    last: Option<(f64, bool)>,
    connected_s: f64,
    total_s: f64,
}

impl Connectivity {
    const PRIOR_S: f64 = 60.0;

    pub(super) fn update(&mut self, now_s: f64, connected: bool) {
        if let Some((t, c)) = self.last {
            let dt = (now_s - t).max(0.0);
            self.total_s += dt;
            if c {
                self.connected_s += dt;
            }
        }
        self.last = Some((now_s, connected));
    }

    pub(super) fn fraction(&self) -> f64 {
        (self.connected_s + Self::PRIOR_S) / (self.total_s + Self::PRIOR_S)
    }
}

/// Per app with specialised variants: the share of time a specialised set was active and the
/// mean share it had, so the plan keeps energy for the skewed stretches still to come.
#[derive(Debug, Clone, Default)]
pub(super) struct SkewHistory {
    last: Option<(f64, Option<f64>)>,
    active_s: f64,
    share_s: f64,
    total_s: f64,
}

impl SkewHistory {
    /// Prior: half the time skewed, worth this many seconds of history.
    const PRIOR_S: f64 = 900.0;

    pub(super) fn update(&mut self, now_s: f64, share: Option<f64>) {
        if let Some((t, s)) = self.last {
            let dt = (now_s - t).max(0.0);
            self.total_s += dt;
            if let Some(s) = s {
                self.active_s += dt;
                self.share_s += dt * s;
            }
        }
        self.last = Some((now_s, share));
    }

    pub(super) fn fraction(&self) -> f64 {
        (self.active_s + 0.5 * Self::PRIOR_S) / (self.total_s + Self::PRIOR_S)
    }

    /// Share to plan the skewed stretches with: the current one, else the mean seen.
    pub(super) fn share(&self, trigger: f64) -> f64 {
        match self.last {
            Some((_, Some(s))) => s,
            _ if self.active_s > 0.0 => self.share_s / self.active_s,
            _ => trigger,
        }
    }
}
