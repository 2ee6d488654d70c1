//! A frame source that replays Fashion-MNIST test images as a camera stream: frames arrive as a
//! Poisson process, each app looks at a frame with probability rate/frame-rate, and the class mix
//! is uniform or follows skewed episodes (a few classes dominate for a while, as the people a
//! body camera sees do).

use rand::Rng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use crate::dataset::Dataset;

/// How classes are drawn.
#[derive(Debug, Clone, PartialEq)]
pub enum ClassMix {
    Uniform,
    /// Every `episode_s` a new set of `top` classes is drawn; `share` of frames come from them,
    /// from `from_s` until `until_s` seconds into the stream (uniform outside that window).
    Skewed {
        top: usize,
        share: f64,
        episode_s: f64,
        from_s: f64,
        until_s: f64,
    },
}

/// One frame: which test image, and its dataset label (the ground truth).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    pub index: usize,
    pub label: u8,
    /// Drawn while the skew was on (false for a uniform mix).
    pub skewed: bool,
}

pub struct FrameSource {
    by_label: Vec<Vec<usize>>,
    /// Labels with at least one image (fixed, so not recomputed per frame).
    labels: Vec<usize>,
    mix: ClassMix,
    episode: Option<(u64, Vec<usize>)>,
    rng: StdRng,
    /// Frames to hand out before drawing any (a benchmark replays images it chose).
    queued: std::collections::VecDeque<Frame>,
}

impl FrameSource {
    pub fn new(data: &Dataset, mix: ClassMix, rng: StdRng) -> Self {
        let by_label = data.indices_by_label();
        let labels = (0..by_label.len())
            .filter(|&l| !by_label[l].is_empty())
            .collect();
        Self {
            by_label,
            labels,
            mix,
            episode: None,
            rng,
            queued: Default::default(),
        }
    }

    /// The next frame at time `now_s` since the stream started.
    pub fn next(&mut self, now_s: f64) -> Frame {
        if let Some(f) = self.queued.pop_front() {
            return f;
        }
        let labels = &self.labels;
        let skewed = match &self.mix {
            ClassMix::Skewed {
                from_s, until_s, ..
            } => (*from_s..*until_s).contains(&now_s),
            ClassMix::Uniform => false,
        };
        let label = match self.mix.clone() {
            ClassMix::Skewed {
                top,
                share,
                episode_s,
                ..
            } if skewed => {
                let episode = (now_s / episode_s.max(1e-3)) as u64;
                if self.episode.as_ref().is_none_or(|(e, _)| *e != episode) {
                    let mut shuffled = labels.clone();
                    shuffled.shuffle(&mut self.rng);
                    shuffled.truncate(top.clamp(1, labels.len()));
                    self.episode = Some((episode, shuffled));
                }
                let dominant = self.episode.as_ref().map_or(&[][..], |(_, d)| d.as_slice());
                if self.rng.r#gen::<f64>() < share && !dominant.is_empty() {
                    dominant[self.rng.gen_range(0..dominant.len())]
                } else {
                    labels[self.rng.gen_range(0..labels.len())]
                }
            }
            _ => labels[self.rng.gen_range(0..labels.len())],
        };
        let pool = &self.by_label[label];
        let index = pool[self.rng.gen_range(0..pool.len())];
        Frame {
            index,
            label: label as u8,
            skewed,
        }
    }

    /// The next `frames` returned by [`next`](Self::next), ahead of any drawn ones.
    pub fn queue(&mut self, frames: impl IntoIterator<Item = Frame>) {
        self.queued.extend(frames);
    }

    /// Seconds until the next frame of a Poisson stream at `rate_per_s`.
    pub fn interarrival_s(&mut self, rate_per_s: f64) -> f64 {
        let u: f64 = self.rng.gen_range(f64::EPSILON..1.0);
        -u.ln() / rate_per_s.max(1e-9)
    }

    /// Whether an app with `app_rate` looks at a frame of a stream at `frame_rate`.
    pub fn app_due(&mut self, app_rate: f64, frame_rate: f64) -> bool {
        self.rng.r#gen::<f64>() < app_rate / frame_rate.max(1e-9)
    }
}
