//! The local inference API, for the camera's own apps (processes on this device only): HTTP/1.1
//! on a loopback address (`--api-listen`) and on a Unix socket (`--api-socket`, mode 0600, so
//! only the node's own user may call it). Nothing here is reachable from the network: a
//! non-loopback address is refused at start.
//!
//! - `POST /v1/apps/{app}/infer`: one image, `image/png`, `image/jpeg`, or
//!   `application/octet-stream` raw pixels with `?width=W&height=H&format=gray8|rgb8`. Answers
//!   `{label, class, score, variant, place, latency_ms, plan_epoch}`.
//! - `POST /v1/apps/{app}/infer?...&count=N`: a batch of N raw pictures of that shape, back to
//!   back in the body (at most the app's burst); admitted all or none, each one a request of
//!   its own; answers `{"answers": [...]}` in order, an item the loop could not serve as
//!   `{"error": ...}`.
//! - `GET /v1/apps`: the apps, their admitted rate and their current assignment.
//!
//! Errors: 404 unknown app or path, 400 bad image (with the reason), 413 body too large, 429
//! over the app's admitted rate (with `Retry-After`), 503 the serving loop's intake is full,
//! 504 the request's deadline passed in the loop. A refused call (400, 404, 413, 429, 503)
//! reaches nothing: no serving counters, no energy, no spool.

mod admit;
mod handler;
mod listen;
pub mod upload;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wire::manifest::Manifest;

use crate::handles::AssignmentCell;
use crate::request::IntakeSender;

pub use listen::{bind_socket, check_loopback, serve_tcp, serve_unix};

/// Bounds on what the API accepts.
#[derive(Debug, Clone)]
pub struct ApiLimits {
    pub max_body_bytes: usize,
    pub max_connections: usize,
    /// Time to send the request head, and then the body.
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    /// How long an admitted call may wait in the serving loop before it is dropped as late.
    pub deadline: Duration,
}

impl Default for ApiLimits {
    fn default() -> Self {
        Self {
            // A 4K PNG screenshot is about 8 MB; a raw 1080p RGB frame 6 MB.
            max_body_bytes: 8 << 20,
            max_connections: 32,
            header_timeout: Duration::from_secs(5),
            body_timeout: Duration::from_secs(10),
            deadline: Duration::from_secs(2),
        }
    }
}

/// What the API tells apart when it refuses or admits calls (the summary's input figures).
#[derive(Debug, Default)]
pub struct ApiCounters {
    pub accepted: AtomicU64,
    pub over_rate: AtomicU64,
    pub intake_full: AtomicU64,
}

/// Everything a call needs; shared by every connection.
pub struct Api {
    /// The node's apps and their admitted rates, in the serving loop's order.
    apps: Vec<(String, f64)>,
    buckets: Mutex<Vec<admit::TokenBucket>>,
    manifest: Arc<Manifest>,
    intake: IntakeSender,
    assignment: AssignmentCell,
    limits: ApiLimits,
    pub counters: ApiCounters,
}

impl Api {
    pub fn new(
        apps: Vec<(String, f64)>,
        manifest: Arc<Manifest>,
        intake: IntakeSender,
        assignment: AssignmentCell,
        limits: ApiLimits,
    ) -> Arc<Self> {
        let now = Instant::now();
        Arc::new(Self {
            buckets: Mutex::new(
                apps.iter()
                    .map(|(_, r)| admit::TokenBucket::new(*r, now))
                    .collect(),
            ),
            apps,
            manifest,
            intake,
            assignment,
            limits,
            counters: ApiCounters::default(),
        })
    }

    pub fn limits(&self) -> &ApiLimits {
        &self.limits
    }

    fn app_index(&self, app: &str) -> Option<usize> {
        self.apps.iter().position(|(a, _)| a == app)
    }

    /// Admits `n` calls for app `i`, or says when to retry.
    fn admit(&self, i: usize, n: usize) -> Result<(), Option<Duration>> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        buckets[i].take(n as f64, Instant::now())
    }

    fn give_back(&self, i: usize, n: usize) {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        buckets[i].give_back(n as f64);
    }

    fn burst(&self, i: usize) -> usize {
        let buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        buckets[i].burst() as usize
    }

    /// The summary's API figures.
    pub fn figures(&self) -> (u64, u64, u64) {
        let c = &self.counters;
        (
            c.accepted.load(Ordering::Relaxed),
            c.over_rate.load(Ordering::Relaxed),
            c.intake_full.load(Ordering::Relaxed),
        )
    }
}

/// Where the API listens.
#[derive(Debug, Clone, Default)]
pub struct ApiAddrs {
    pub listen: Option<SocketAddr>,
    pub socket: Option<PathBuf>,
}
