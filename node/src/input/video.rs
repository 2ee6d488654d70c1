//! A video source as a client of the serving loop: frames are decoded by ffmpeg
//! ([`crate::video`]) and handed over at the stream's frame rate by their presentation time (a
//! file plays in real time, as a camera would deliver it). Each app samples frames at its own
//! rate; a frame not served before the next one is due is dropped as late by the loop, and one
//! the intake has no room for is dropped here: nothing waits behind a stream.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::request::{AppSet, IntakeSender, Refused, Request};
use crate::video::{Decoder, VideoError};

/// What the source did, read by the summary.
#[derive(Debug, Default)]
pub struct VideoCounters {
    pub frames: AtomicU64,
    /// Time spent waiting on the decoder (µs): frames / this is the decode rate.
    pub decode_us: AtomicU64,
    /// (frame, app) pairs sampled, and refused at a full intake.
    pub sampled: AtomicU64,
    pub intake_full: AtomicU64,
}

impl VideoCounters {
    pub fn decode_fps(&self) -> f64 {
        let us = self.decode_us.load(Ordering::Relaxed);
        if us == 0 {
            return 0.0;
        }
        self.frames.load(Ordering::Relaxed) as f64 / (us as f64 / 1e6)
    }
}

/// Which apps sample a frame: app `i` at `rates[i]` takes the first frame of each of its
/// `1 / rate` slots (an app at or above the stream's rate takes every frame).
#[derive(Debug)]
pub struct Sampler {
    rates: Vec<f64>,
    last_slot: Vec<Option<u64>>,
}

impl Sampler {
    pub fn new(rates: Vec<f64>) -> Self {
        let n = rates.len();
        Self {
            rates,
            last_slot: vec![None; n],
        }
    }

    pub fn due(&mut self, pts_s: f64) -> AppSet {
        let mut apps = AppSet::default();
        for (i, rate) in self.rates.iter().enumerate() {
            if *rate <= 0.0 {
                continue;
            }
            let slot = (pts_s * rate).floor() as u64;
            if self.last_slot[i] != Some(slot) {
                self.last_slot[i] = Some(slot);
                apps.insert(i);
            }
        }
        apps
    }
}

/// Opens the file again when it ends (`--source-loop`), so a short clip plays for a whole run.
pub type Reopen = Box<dyn FnMut() -> Result<Decoder, VideoError> + Send>;

/// Plays `decoder` into `intake` until the stream ends (then from the start again with
/// `reopen`) or `stop` is set.
pub fn play(
    mut decoder: Decoder,
    mut reopen: Option<Reopen>,
    rates: Vec<f64>,
    intake: IntakeSender,
    stop: Arc<AtomicBool>,
    counters: Arc<VideoCounters>,
) -> Result<(), VideoError> {
    let info = decoder.info();
    let interval = Duration::from_secs_f64(1.0 / info.fps);
    let mut sampler = Sampler::new(rates);
    let started = Instant::now();
    // A replay of the file continues the clock where the last pass ended.
    let (mut offset_s, mut last_s) = (0.0, None::<f64>);
    while !stop.load(Ordering::Relaxed) {
        let t = Instant::now();
        let frame = match decoder.next_frame()? {
            Some(frame) => frame,
            None => match (reopen.as_mut(), last_s) {
                // An empty pass would spin: only a file that gave frames is played again.
                (Some(open), Some(last)) => {
                    decoder = open()?;
                    offset_s = last + interval.as_secs_f64();
                    last_s = None;
                    continue;
                }
                _ => break,
            },
        };
        counters
            .decode_us
            .fetch_add(t.elapsed().as_micros() as u64, Ordering::Relaxed);
        counters.frames.fetch_add(1, Ordering::Relaxed);
        let pts_s = offset_s + frame.pts_s;
        last_s = Some(pts_s);
        let due_at = started + Duration::from_secs_f64(pts_s);
        if let Some(wait) = due_at.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let apps = sampler.due(pts_s);
        if apps.is_empty() {
            continue;
        }
        counters
            .sampled
            .fetch_add(apps.len() as u64, Ordering::Relaxed);
        let offered = intake.offer(Request {
            picture: frame.picture,
            apps,
            truth: None,
            skewed: false,
            arrived: due_at,
            // Served after the next frame is due, a frame is stale: the camera has moved on.
            deadline: due_at + interval,
            reply: None,
        });
        match offered {
            Ok(()) => {}
            Err(Refused::Full) => {
                counters
                    .intake_full
                    .fetch_add(apps.len() as u64, Ordering::Relaxed);
            }
            Err(Refused::Closed) => break,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_app_samples_at_its_own_rate() {
        // A 25 frames/s stream for 2 s: an app at 5/s takes 10 frames, one at 50/s all 50.
        let mut s = Sampler::new(vec![5.0, 50.0, 0.0]);
        let mut counts = [0; 3];
        for i in 0..50 {
            let due = s.due(f64::from(i) / 25.0);
            for (a, c) in counts.iter_mut().enumerate() {
                *c += usize::from(due.contains(a));
            }
        }
        assert_eq!(counts, [10, 50, 0]);
    }
}
