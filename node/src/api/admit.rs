//! Per-app admission for the local API: a token bucket filled at the app's configured rate.
//! The rate is what the coordinator planned the node's energy and accuracy with; a caller going
//! faster would spend the budget on requests the plan never priced. The burst is small (half a
//! second's worth, at least one request) so a camera app can send a frame and a retry back to
//! back, yet cannot bank minutes of idle time into a flood.

use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate_per_s: f64,
    burst: f64,
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    pub fn new(rate_per_s: f64, now: Instant) -> Self {
        let burst = (rate_per_s * 0.5).ceil().max(1.0);
        Self {
            rate_per_s,
            burst,
            tokens: burst,
            at: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + dt * self.rate_per_s).min(self.burst);
        self.at = now;
    }

    /// Takes `n` tokens, or none and says how long until `n` are there (`Retry-After`). A batch
    /// larger than the burst can never be admitted: `None` as the wait.
    pub fn take(&mut self, n: f64, now: Instant) -> Result<(), Option<Duration>> {
        self.refill(now);
        if n > self.burst || self.rate_per_s <= 0.0 {
            return Err(None);
        }
        if self.tokens >= n {
            self.tokens -= n;
            return Ok(());
        }
        Err(Some(Duration::from_secs_f64(
            (n - self.tokens) / self.rate_per_s,
        )))
    }

    /// Gives back tokens of a call refused after admission (the intake was full): a refused
    /// call changes nothing.
    pub fn give_back(&mut self, n: f64) {
        self.tokens = (self.tokens + n).min(self.burst);
    }

    pub fn burst(&self) -> f64 {
        self.burst
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_the_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(4.0, t0);
        assert_eq!(b.burst(), 2.0);
        assert!(b.take(1.0, t0).is_ok());
        assert!(b.take(1.0, t0).is_ok());
        let wait = b.take(1.0, t0).expect_err("over rate").expect("a wait");
        assert!((wait.as_secs_f64() - 0.25).abs() < 1e-9, "{wait:?}");
        assert!(b.take(1.0, t0 + Duration::from_millis(250)).is_ok());
        b.give_back(5.0);
        assert!(b.take(2.0, t0 + Duration::from_millis(250)).is_ok());
        assert_eq!(b.take(3.0, t0 + Duration::from_secs(60)), Err(None));
    }
}
