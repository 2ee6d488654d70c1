//! The chaos scenarios' operator: writes policies one after another through whichever replica
//! acknowledges, retrying a write with the same id until acknowledged, and keeps its own log of
//! what it was acknowledged (the client side of the writes verdict).
//!
//! It shares no lock with the thread that kills and restarts replicas: it knows only the
//! replicas' admin addresses (fixed for the cluster's life), so a write can be in flight at the
//! instant its leader dies, and the kill loop can see which write that is.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;

use crate::verdict::Ack;

/// Posts policy writes to replicas by index, as an operator (its certificate names the writer;
/// the coordinator records `<operator>/<label>`).
#[derive(Debug, Clone)]
pub struct PolicyClient {
    admins: Vec<String>,
    http: mcdnn_coordinator::ctl::http::Client,
}

impl PolicyClient {
    pub fn new(http: mcdnn_coordinator::ctl::http::Client, admins: Vec<String>) -> Self {
        Self { admins, http }
    }

    pub fn replicas(&self) -> usize {
        self.admins.len()
    }

    /// One attempt at replica `i`: Ok(index) when acknowledged (committed and applied); a
    /// follower's redirect is an error (the caller tries the next replica).
    pub fn post(
        &self,
        i: usize,
        writer: &str,
        write_id: u64,
        timeout: Duration,
    ) -> anyhow::Result<u64> {
        let admin = self.admins.get(i).context("no such replica")?;
        let body = serde_json::json!({
            // A key the schema knows, with a value in its range (0.5..1.5 USD).
            "key": "fleet.cost_budget_usd",
            "value": budget_for(write_id),
            "writer": writer,
            "write_id": write_id,
        })
        .to_string();
        // Not following a follower's 307: the attempt must go to the leader itself, so the
        // kill loop knows which process an in-flight write depends on.
        let r = self
            .http
            .request("POST", admin, "/policy", Some(&body), timeout)?;
        anyhow::ensure!(r.status == 200, "HTTP {}: {}", r.status, r.body.trim());
        let v: serde_json::Value = serde_json::from_str(&r.body)?;
        v["index"].as_u64().context("ack without index")
    }
}

/// No write in flight / no replica targeted.
const NONE: u64 = 0;

/// A writer thread and what it has been acknowledged.
pub struct Writer {
    stop: Arc<AtomicBool>,
    /// Id of the write being attempted (NONE between writes).
    in_flight: Arc<AtomicU64>,
    /// Replica index + 1 the current attempt is posted to (0: none).
    target: Arc<AtomicUsize>,
    acked: Arc<Mutex<Vec<Ack>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    pub fn start(client: PolicyClient, name: &'static str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let in_flight = Arc::new(AtomicU64::new(NONE));
        let target = Arc::new(AtomicUsize::new(0));
        let acked = Arc::new(Mutex::new(Vec::new()));
        let (s, f, t, a) = (
            stop.clone(),
            in_flight.clone(),
            target.clone(),
            acked.clone(),
        );
        let thread = std::thread::spawn(move || run(&client, name, &s, &f, &t, &a));
        Self {
            stop,
            in_flight,
            target,
            acked,
            thread: Some(thread),
        }
    }

    /// (write id, replica) of the attempt in flight right now, if any.
    pub fn in_flight(&self) -> Option<(u64, usize)> {
        let id = self.in_flight.load(Ordering::SeqCst);
        let target = self.target.load(Ordering::SeqCst);
        (id != NONE && target > 0).then(|| (id, target - 1))
    }

    /// Waits up to `timeout` for an attempt in flight to replica `replica`; its write id.
    pub fn wait_in_flight_to(&self, replica: usize, timeout: Duration) -> Option<u64> {
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if let Some((id, r)) = self.in_flight()
                && r == replica
            {
                return Some(id);
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        None
    }

    /// Stops after the write in flight (acknowledged or not) and returns the acknowledged log.
    pub fn finish(mut self) -> Vec<Ack> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.acked.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

fn run(
    client: &PolicyClient,
    name: &str,
    stop: &AtomicBool,
    in_flight: &AtomicU64,
    target: &AtomicUsize,
    acked: &Mutex<Vec<Ack>>,
) {
    let (mut id, mut attempts, mut prefer) = (1u64, 0u32, 0usize);
    while !stop.load(Ordering::Relaxed) {
        attempts += 1;
        in_flight.store(id, Ordering::SeqCst);
        let mut ack = None;
        // Start at the replica that acknowledged last (the leader, usually).
        for k in 0..client.replicas() {
            let i = (prefer + k) % client.replicas();
            target.store(i + 1, Ordering::SeqCst);
            if let Ok(index) = client.post(i, name, id, Duration::from_secs(3)) {
                ack = Some((i, index));
                break;
            }
        }
        target.store(0, Ordering::SeqCst);
        match ack {
            Some((i, index)) => {
                in_flight.store(NONE, Ordering::SeqCst);
                if let Ok(mut log) = acked.lock() {
                    log.push(Ack {
                        write_id: id,
                        index,
                        attempts,
                    });
                }
                prefer = i;
                id += 1;
                attempts = 0;
            }
            None => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// The cloud budget a chaos write sets: varies with the write, stays in the key's range.
pub(crate) fn budget_for(write_id: u64) -> f64 {
    0.5 + (write_id % 1000) as f64 / 1000.0
}
