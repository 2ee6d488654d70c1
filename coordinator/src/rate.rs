//! Token buckets: the one rate-limit rule of the coordinator (per node identity in
//! `fleet::limits`, enrollment attempts in `enrollment`). Time comes in as an argument.

use std::time::{Duration, Instant};

/// A token bucket: `rate` tokens a second, holding at most `burst`.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket as of `now`.
    pub fn new(rate: f64, burst: f64, now: Instant) -> Self {
        Self {
            rate,
            burst,
            tokens: burst,
            last: now,
        }
    }

    /// Takes a token if one is there (refilled for the time since the last call, as of `now`).
    pub fn try_take_at(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Changes the rate and burst from `now` on (tokens earned so far at the old rate are kept,
    /// up to the new burst).
    pub fn set_rate_at(&mut self, rate: f64, burst: f64, now: Instant) {
        if rate == self.rate && burst == self.burst {
            return;
        }
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(burst);
        self.last = now;
        self.rate = rate;
        self.burst = burst;
    }

    /// How long after `now` the next token will be there (zero if one is); takes nothing.
    pub fn wait_at(&self, now: Instant) -> Duration {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        let tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if tokens >= 1.0 || self.rate <= 0.0 {
            return Duration::ZERO;
        }
        // Rounded up, so a caller that sleeps this long finds the token there.
        Duration::from_micros(((1.0 - tokens) / self.rate * 1e6).ceil() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_a_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10.0, 3.0, t0);
        assert!((0..3).all(|_| b.try_take_at(t0)));
        assert!(!b.try_take_at(t0), "burst spent");
        assert!(
            b.try_take_at(t0 + Duration::from_millis(100)),
            "one token per 100 ms"
        );
        assert!(!b.try_take_at(t0 + Duration::from_millis(150)));
        // A long pause refills to the burst, not beyond.
        let later = t0 + Duration::from_secs(60);
        assert!((0..3).all(|_| b.try_take_at(later)));
        assert!(!b.try_take_at(later));
    }

    #[test]
    fn wait_says_when_the_next_token_comes() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10.0, 1.0, t0);
        assert_eq!(b.wait_at(t0), Duration::ZERO, "a full bucket needs no wait");
        assert!(b.try_take_at(t0));
        let wait = b.wait_at(t0);
        assert!(
            (wait.as_secs_f64() - 0.1).abs() < 1e-6,
            "one token per 100 ms, waited {wait:?}"
        );
        assert!(!b.try_take_at(t0 + wait / 2), "not before the wait is over");
        assert!(
            b.try_take_at(t0 + wait),
            "the token is there when the wait is over"
        );
    }
}
