//! One source of time for a daemon, injected: production code reads [`SystemClock`]; tests drive
//! a [`ManualClock`] by hand, so time-dependent logic (rate limits, timeouts, staleness) can be
//! tested without sleeping. Sleeping itself stays with tokio's timers.

use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Monotonic time for intervals and wall time (Unix milliseconds) for what leaves the process.
pub trait Clock: Debug + Send + Sync {
    /// Monotonic now.
    fn now(&self) -> Instant;
    /// Milliseconds since the Unix epoch (0 for a clock set before 1970).
    fn unix_ms(&self) -> u64;
}

/// A clock handle shared by every part of a daemon.
pub type SharedClock = Arc<dyn Clock>;

/// The operating system's clocks.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl SystemClock {
    /// The system clock as a shared handle.
    pub fn shared() -> SharedClock {
        Arc::new(SystemClock)
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn unix_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }
}

/// A clock that moves only when told ([`ManualClock::advance`]), for tests.
#[derive(Debug)]
pub struct ManualClock {
    start: Instant,
    start_unix_ms: u64,
    elapsed: Mutex<Duration>,
}

impl ManualClock {
    /// A clock standing at `unix_ms` (its monotonic reading starts at the moment of creation).
    pub fn at_unix_ms(unix_ms: u64) -> Arc<Self> {
        Arc::new(ManualClock {
            start: Instant::now(),
            start_unix_ms: unix_ms,
            elapsed: Mutex::new(Duration::ZERO),
        })
    }

    /// Moves both readings forward by `by`.
    pub fn advance(&self, by: Duration) {
        *self.elapsed.lock().unwrap_or_else(|p| p.into_inner()) += by;
    }

    fn elapsed(&self) -> Duration {
        *self.elapsed.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.start + self.elapsed()
    }

    fn unix_ms(&self) -> u64 {
        self.start_unix_ms
            .saturating_add(u64::try_from(self.elapsed().as_millis()).unwrap_or(u64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_advanced() {
        let clock = ManualClock::at_unix_ms(1_000);
        let t0 = clock.now();
        assert_eq!(clock.now(), t0);
        clock.advance(Duration::from_millis(1_500));
        assert_eq!(clock.now() - t0, Duration::from_millis(1_500));
        assert_eq!(clock.unix_ms(), 2_500);
    }

    #[test]
    fn the_system_clock_is_past_2020() {
        assert!(SystemClock.unix_ms() > 1_577_836_800_000);
    }
}
