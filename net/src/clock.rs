//! Time as a dependency: code that reads the clock or waits takes a [`Clock`], so tests drive it
//! with a [`ManualClock`] instead of real time.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A monotonic clock, the wall clock in Unix milliseconds, and a way to wait for a monotonic
/// instant.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> Instant;
    fn unix_ms(&self) -> u64;
    /// Blocks the calling thread until `deadline` (returns at once if it has passed).
    fn sleep_until(&self, deadline: Instant);
}

/// A shared clock handle.
pub type SharedClock = Arc<dyn Clock>;

/// The operating system's clocks.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl SystemClock {
    pub fn shared() -> SharedClock {
        Arc::new(Self)
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

    fn sleep_until(&self, deadline: Instant) {
        std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
    }
}

/// A clock that moves only when told (`advance`), or when a sleeper waits on it: `sleep_until`
/// jumps to the deadline, so a paced loop runs at full speed in simulated time.
#[derive(Debug, Clone)]
pub struct ManualClock {
    state: Arc<Mutex<(Instant, u64)>>,
}

impl ManualClock {
    /// Starts at the real monotonic instant of creation and the given Unix time.
    pub fn new(unix_ms: u64) -> Self {
        Self {
            state: Arc::new(Mutex::new((Instant::now(), unix_ms))),
        }
    }

    pub fn advance(&self, by: Duration) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.0 += by;
        s.1 =
            s.1.saturating_add(u64::try_from(by.as_millis()).unwrap_or(u64::MAX));
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).0
    }

    fn unix_ms(&self) -> u64 {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).1
    }

    fn sleep_until(&self, deadline: Instant) {
        let now = self.now();
        if deadline > now {
            self.advance(deadline - now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let clock = ManualClock::new(1_000);
        let t0 = clock.now();
        assert_eq!(clock.now(), t0);
        clock.advance(Duration::from_millis(250));
        assert_eq!(clock.now() - t0, Duration::from_millis(250));
        assert_eq!(clock.unix_ms(), 1_250);
        clock.sleep_until(t0 + Duration::from_secs(1));
        assert_eq!(
            (clock.now() - t0, clock.unix_ms()),
            (Duration::from_secs(1), 2_000)
        );
        // A deadline in the past does not move the clock back.
        clock.sleep_until(t0);
        assert_eq!(clock.unix_ms(), 2_000);
    }

    #[test]
    fn system_clock_reads_real_time() {
        let c = SystemClock;
        assert!(c.unix_ms() > 1_600_000_000_000);
        let t = c.now();
        c.sleep_until(t + Duration::from_millis(5));
        assert!(c.now() >= t + Duration::from_millis(5));
    }
}
