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
    start: Instant,
    start_unix_ms: u64,
    /// How far the clock has moved since creation.
    elapsed: Arc<Mutex<Duration>>,
}

impl ManualClock {
    /// Starts at the real monotonic instant of creation and the given Unix time.
    pub fn new(unix_ms: u64) -> Self {
        Self {
            start: Instant::now(),
            start_unix_ms: unix_ms,
            elapsed: Arc::new(Mutex::new(Duration::ZERO)),
        }
    }

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
        let ms = u64::try_from(self.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.start_unix_ms.saturating_add(ms)
    }

    fn sleep_until(&self, deadline: Instant) {
        let mut elapsed = self.elapsed.lock().unwrap_or_else(|p| p.into_inner());
        let target = deadline.saturating_duration_since(self.start);
        if target > *elapsed {
            *elapsed = target;
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
        // Many sub-millisecond steps add up in Unix time too.
        for _ in 0..1000 {
            clock.advance(Duration::from_micros(500));
        }
        assert_eq!(clock.unix_ms(), 2_500);
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
