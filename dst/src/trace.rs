//! The history of one seed: every event the harness sees (faults, acknowledgements, plans,
//! leader changes), stamped with simulated milliseconds, folded into a digest (same seed ->
//! same digest is asserted) and kept as a short tail to print when a seed fails.
//!
//! Events name things by what is stable across runs (replica ids, node numbers, incarnation
//! ordinals), never by the random ids the real code draws (spool incarnations, proposal nonces).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use sha2::{Digest, Sha256};
use tokio::time::Instant;

/// Lines of history kept for a failure report.
const TAIL: usize = 60;

struct Inner {
    start: Instant,
    /// Print every event as it happens (`MCDNN_DST_TRACE=1`, for replaying one seed).
    echo: bool,
    hasher: Sha256,
    events: u64,
    tail: VecDeque<String>,
    problems: Vec<String>,
}

/// Cheap to clone; every clone writes the same history.
#[derive(Clone)]
pub struct Trace {
    inner: Arc<Mutex<Inner>>,
}

impl Trace {
    /// A history starting now (simulated time).
    pub fn new() -> Self {
        Trace {
            inner: Arc::new(Mutex::new(Inner {
                start: Instant::now(),
                echo: std::env::var_os("MCDNN_DST_TRACE").is_some_and(|v| v != "0"),
                hasher: Sha256::new(),
                events: 0,
                tail: VecDeque::with_capacity(TAIL),
                problems: Vec::new(),
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Nothing panics while holding it; a poisoned lock still holds a usable history.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Simulated milliseconds since the seed started.
    pub fn now_ms(&self) -> u128 {
        self.lock().start.elapsed().as_millis()
    }

    /// Records one event.
    pub fn event(&self, what: impl AsRef<str>) {
        let mut g = self.lock();
        let line = format!("{:>7}ms {}", g.start.elapsed().as_millis(), what.as_ref());
        g.hasher.update(line.as_bytes());
        g.hasher.update(b"\n");
        g.events += 1;
        if g.echo {
            println!("{line}");
        }
        if g.tail.len() == TAIL {
            g.tail.pop_front();
        }
        g.tail.push_back(line);
    }

    /// Folds a routine event (a message sent) into the digest only, keeping the tail readable
    /// (printed too with `MCDNN_DST_TRACE=1`).
    pub fn fold(&self, what: &str) {
        let mut g = self.lock();
        let ms = g.start.elapsed().as_millis();
        g.hasher.update(ms.to_le_bytes());
        g.hasher.update(what.as_bytes());
        g.events += 1;
        if g.echo {
            println!("{ms:>7}ms   {what}");
        }
    }

    /// Records a broken invariant seen while the seed runs (also an event).
    pub fn violation(&self, what: impl Into<String>) {
        let what = what.into();
        self.event(format!("VIOLATION {what}"));
        self.lock().problems.push(what);
    }

    /// Violations recorded so far.
    pub fn problems(&self) -> Vec<String> {
        self.lock().problems.clone()
    }

    /// Number of events and the digest of the whole history so far.
    pub fn digest(&self) -> (u64, String) {
        let g = self.lock();
        (g.events, hex::encode(g.hasher.clone().finalize()))
    }

    /// The last events, oldest first.
    pub fn tail(&self) -> Vec<String> {
        self.lock().tail.iter().cloned().collect()
    }
}

impl Default for Trace {
    fn default() -> Self {
        Self::new()
    }
}
