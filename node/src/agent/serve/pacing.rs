//! Frame pacing: frames arrive at the source's rate in the clock's time, and the loop stops when
//! the run's duration has passed or a stop was asked for.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use net::clock::Clock;

/// The longest single wait, so a stop is noticed promptly.
const MAX_WAIT: Duration = Duration::from_millis(100);

#[derive(Debug)]
pub struct Pacer {
    started: Instant,
    duration: Option<Duration>,
    /// When the next frame is due, in seconds since `started`.
    next_frame_s: f64,
}

impl Pacer {
    pub fn new(clock: &dyn Clock, duration: Option<Duration>) -> Self {
        Self {
            started: clock.now(),
            duration,
            next_frame_s: 0.0,
        }
    }

    /// Seconds since the run started.
    pub fn elapsed_s(&self, clock: &dyn Clock) -> f64 {
        clock.now().duration_since(self.started).as_secs_f64()
    }

    /// Waits until the next frame is due and returns its time (seconds since start), or `None`
    /// once the run is over. `interarrival_s` is asked for the gap to the frame after it.
    pub fn next_frame(
        &mut self,
        clock: &dyn Clock,
        stop: &AtomicBool,
        interarrival_s: impl FnOnce() -> f64,
    ) -> Option<f64> {
        loop {
            let now = clock.now();
            if stop.load(Ordering::Relaxed)
                || self
                    .duration
                    .is_some_and(|d| now.duration_since(self.started) >= d)
            {
                return None;
            }
            let now_s = now.duration_since(self.started).as_secs_f64();
            // A wait below the clock's resolution is no wait: sleeping for it would not move
            // a manual clock, and the loop would spin.
            let wait = Duration::try_from_secs_f64(self.next_frame_s - now_s).unwrap_or_default();
            if wait.is_zero() {
                self.next_frame_s += interarrival_s();
                return Some(now_s);
            }
            clock.sleep_until(now + wait.min(MAX_WAIT));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use net::clock::ManualClock;

    #[test]
    fn paces_frames_in_clock_time_and_stops_at_the_duration() {
        let clock = ManualClock::new(0);
        let stop = AtomicBool::new(false);
        let mut pacer = Pacer::new(&clock, Some(Duration::from_secs(1)));
        let mut times = Vec::new();
        while let Some(t) = pacer.next_frame(&clock, &stop, || 0.25) {
            times.push(t);
        }
        assert_eq!(times.len(), 4, "{times:?}");
        for (t, want) in times.iter().zip([0.0, 0.25, 0.5, 0.75]) {
            assert!((t - want).abs() < 1e-6, "{times:?}");
        }
        assert!((pacer.elapsed_s(&clock) - 1.0).abs() < 1e-6);
    }

    #[test]
    fn a_wait_below_a_nanosecond_does_not_spin() {
        let clock = ManualClock::new(0);
        let stop = AtomicBool::new(false);
        let mut pacer = Pacer::new(&clock, Some(Duration::from_secs(1)));
        let mut frames = 0;
        while pacer.next_frame(&clock, &stop, || 0.1 + 1e-12).is_some() {
            frames += 1;
        }
        assert_eq!(frames, 10);
    }

    #[test]
    fn a_stop_ends_the_run_without_a_frame() {
        let clock = ManualClock::new(0);
        let stop = AtomicBool::new(true);
        let mut pacer = Pacer::new(&clock, None);
        assert_eq!(pacer.next_frame(&clock, &stop, || 1.0), None);
    }
}
