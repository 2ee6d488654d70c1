//! Seeded randomness. Every actor draws from its own stream derived from the seed and a stream
//! name, so adding a draw in one actor does not shift what every other actor sees.

use std::sync::{Arc, Mutex};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// One named random stream of a seed. Cheap to clone; clones share the stream.
#[derive(Clone)]
pub struct SimRng {
    inner: Arc<Mutex<StdRng>>,
}

/// SplitMix64 step: spreads (seed, stream) over the seed space.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl SimRng {
    /// The stream `name` of `seed`.
    pub fn stream(seed: u64, name: &str) -> Self {
        let named = name.bytes().fold(0xCBF2_9CE4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01B3)
        });
        SimRng {
            inner: Arc::new(Mutex::new(StdRng::seed_from_u64(mix(seed ^ mix(named))))),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut StdRng) -> R) -> R {
        f(&mut self.inner.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// True with probability `p`.
    pub fn chance(&self, p: f64) -> bool {
        p > 0.0 && self.with(|r| r.gen_bool(p.min(1.0)))
    }

    /// Uniform in `lo..=hi`.
    pub fn between(&self, lo: u64, hi: u64) -> u64 {
        self.with(|r| r.gen_range(lo..=hi.max(lo)))
    }

    /// Uniform in `lo..hi` (floats).
    pub fn uniform(&self, lo: f64, hi: f64) -> f64 {
        if hi <= lo {
            return lo;
        }
        self.with(|r| r.gen_range(lo..hi))
    }

    /// Index `0..n` (n > 0).
    pub fn index(&self, n: usize) -> usize {
        self.with(|r| r.gen_range(0..n.max(1)))
    }
}
