//! Pacing: replayed frames arrive at the replay's rate in the clock's time, outside requests
//! whenever the intake hands one over; the loop stops when the run's duration has passed, a stop
//! was asked for, or (with no replay) every outside client has gone.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use net::clock::Clock;

use crate::request::{Intake, Request};

/// What the loop serves next, and when (seconds since the run started).
pub enum Next {
    /// The replay's next frame is due.
    Replay(f64),
    /// An outside client's request.
    Request(Box<Request>, f64),
}

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

    /// Waits for the next replayed frame (if `replay`) or request from `intake`, whichever
    /// comes first. A replay-only run waits on the clock (a manual clock runs simulated time);
    /// with an intake, it waits on the intake in real time. An intake whose clients have all
    /// gone is closed (`*intake = None`).
    pub fn next(
        &mut self,
        clock: &dyn Clock,
        stop: &AtomicBool,
        replay: bool,
        intake: &mut Option<Intake>,
        interarrival_s: impl FnOnce() -> f64,
    ) -> Option<Next> {
        let Some(rx) = intake.as_ref() else {
            return if replay {
                self.next_frame(clock, stop, interarrival_s)
                    .map(Next::Replay)
            } else {
                None
            };
        };
        loop {
            let now = clock.now();
            if self.over(stop, now) {
                return None;
            }
            let now_s = now.duration_since(self.started).as_secs_f64();
            let mut wait = MAX_WAIT;
            if replay {
                let until =
                    Duration::try_from_secs_f64(self.next_frame_s - now_s).unwrap_or_default();
                if until.is_zero() {
                    self.next_frame_s += interarrival_s();
                    return Some(Next::Replay(now_s));
                }
                wait = wait.min(until);
            }
            match rx.0.recv_timeout(wait) {
                Ok(request) => {
                    return Some(Next::Request(Box::new(request), self.elapsed_s(clock)));
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    *intake = None;
                    return self.next(clock, stop, replay, intake, interarrival_s);
                }
            }
        }
    }

    fn over(&self, stop: &AtomicBool, now: Instant) -> bool {
        stop.load(Ordering::Relaxed)
            || self
                .duration
                .is_some_and(|d| now.duration_since(self.started) >= d)
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
            if self.over(stop, now) {
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
    fn outside_requests_are_served_between_replayed_frames_and_a_closed_intake_ends_a_run() {
        use crate::picture::{Picture, PixelFormat};
        use crate::request::{AppSet, intake};
        let clock = net::clock::SystemClock;
        let stop = AtomicBool::new(false);
        let mut pacer = Pacer::new(&clock, None);
        let (tx, rx) = intake(4);
        let mut rx = Some(rx);
        let now = Instant::now();
        tx.offer(Request {
            picture: Picture::new(1, 1, PixelFormat::Gray8, vec![7]).expect("valid"),
            apps: AppSet::one(0),
            truth: None,
            skewed: false,
            arrived: now,
            deadline: now,
            reply: None,
        })
        .expect("room");
        // The replay's first frame is due at once; the request comes next.
        assert!(matches!(
            pacer.next(&clock, &stop, true, &mut rx, || 3600.0),
            Some(Next::Replay(_))
        ));
        assert!(matches!(
            pacer.next(&clock, &stop, true, &mut rx, || 3600.0),
            Some(Next::Request(r, _)) if r.picture.pixels == [7]
        ));
        drop(tx);
        assert!(pacer.next(&clock, &stop, false, &mut rx, || 1.0).is_none());
        assert!(
            rx.is_none(),
            "the intake is closed once its clients are gone"
        );
    }

    #[test]
    fn a_stop_ends_the_run_without_a_frame() {
        let clock = ManualClock::new(0);
        let stop = AtomicBool::new(true);
        let mut pacer = Pacer::new(&clock, None);
        assert_eq!(pacer.next_frame(&clock, &stop, || 1.0), None);
    }
}
