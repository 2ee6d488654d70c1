//! The offload server (`mcdnn-node run --role server`): accepts connections from fleet nodes
//! (mutual TLS; only node certificates), reads [`OffloadRequest`]s on any bi stream and answers
//! each with an [`OffloadReply`]. One inference worker thread owns the model cache; a bounded
//! queue in front of it refuses work beyond what the server can take, so a client hears "busy"
//! at once and falls back instead of waiting out its timeout.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Instant;

use net::identity::{Kind, RevokedSet};
use net::tls;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use wire::codec::MAX_FRAME_BYTES;
use wire::msg::{OffloadReply, OffloadRequest};

use crate::cache::ModelCache;
use crate::handles::OffloadCounters;

/// Deadlines on an offload stream: a client that stops sending for 30 s, or takes more than 5 s
/// to finish a frame (a camera frame is a few kilobytes), loses the stream.
const OFFLOAD_STREAM: net::framing::Deadlines = net::framing::Deadlines {
    idle: std::time::Duration::from_secs(30),
    frame: std::time::Duration::from_secs(5),
};

struct Job {
    req: OffloadRequest,
    reply: oneshot::Sender<OffloadReply>,
}

/// Handle to the inference worker: submit jobs, read the queue and served counters.
#[derive(Clone)]
pub struct Worker {
    tx: std::sync::mpsc::SyncSender<Job>,
    queued: Arc<AtomicU32>,
    served: Arc<AtomicU64>,
    max_queue: u32,
}

impl Worker {
    /// Starts the worker thread. `max_queue` requests may wait; more are refused.
    pub fn start(mut cache: ModelCache, max_queue: u32) -> std::io::Result<Self> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Job>(max_queue as usize + 1);
        let queued = Arc::new(AtomicU32::new(0));
        let served = Arc::new(AtomicU64::new(0));
        let (q, s) = (queued.clone(), served.clone());
        std::thread::Builder::new()
            .name("offload-worker".into())
            .spawn(move || {
                while let Ok(job) = rx.recv() {
                    let started = Instant::now();
                    let result = run(&mut cache, &job.req).map(|(label, score)| {
                        (label, score, started.elapsed().as_secs_f64() * 1e3)
                    });
                    q.fetch_sub(1, Ordering::Relaxed);
                    s.fetch_add(1, Ordering::Relaxed);
                    let _ = job.reply.send(OffloadReply {
                        id: job.req.id,
                        result,
                    });
                }
            })?;
        Ok(Self {
            tx,
            queued,
            served,
            max_queue,
        })
    }

    pub fn queued(&self) -> u32 {
        self.queued.load(Ordering::Relaxed)
    }

    pub fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }

    /// Runs one request, or refuses it at once when the queue is full.
    pub async fn submit(&self, req: OffloadRequest) -> OffloadReply {
        let id = req.id;
        if self.queued.fetch_add(1, Ordering::Relaxed) >= self.max_queue {
            self.queued.fetch_sub(1, Ordering::Relaxed);
            return OffloadReply {
                id,
                result: Err("server busy: offload queue full".into()),
            };
        }
        let (reply, rx) = oneshot::channel();
        if self.tx.try_send(Job { req, reply }).is_err() {
            self.queued.fetch_sub(1, Ordering::Relaxed);
            return OffloadReply {
                id,
                result: Err("server busy: offload queue full".into()),
            };
        }
        rx.await.unwrap_or(OffloadReply {
            id,
            result: Err("offload worker stopped".into()),
        })
    }
}

fn run(cache: &mut ModelCache, req: &OffloadRequest) -> Result<(u32, f32), String> {
    let (model, _) = cache.get(&req.variant).map_err(|e| e.to_string())?;
    let embedding = model.embed(&req.pixels).map_err(|e| e.to_string())?;
    let p = model
        .classify(&req.app, &embedding)
        .map_err(|e| e.to_string())?;
    Ok((p.label, p.score))
}

/// Accepts offload connections until `cancel`, publishing queue and served counts for telemetry.
pub async fn serve(
    endpoint: quinn::Endpoint,
    worker: Worker,
    counters: OffloadCounters,
    revoked: RevokedSet,
    cancel: CancellationToken,
) {
    let publisher = {
        let (worker, cancel) = (worker.clone(), cancel.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_millis(200));
            while !cancel.is_cancelled() {
                tick.tick().await;
                counters.set(worker.queued(), worker.served());
            }
        })
    };
    loop {
        let incoming = tokio::select! {
            _ = cancel.cancelled() => break,
            i = endpoint.accept() => match i { Some(i) => i, None => break },
        };
        let Some(incoming) = tls::validated(incoming) else {
            continue;
        };
        let worker = worker.clone();
        let revoked = revoked.clone();
        tokio::spawn(async move {
            let remote = incoming.remote_address();
            let conn = match incoming.await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(%remote, error = %e, "refused an offload connection at the TLS handshake");
                    return;
                }
            };
            let peer = match tls::peer(&conn) {
                Ok(p) if p.kind == Kind::Node => p,
                Ok(p) => {
                    conn.close(1u32.into(), b"only fleet nodes may offload");
                    tracing::warn!(peer = %p.dns_name(), "refused a non-node offload client");
                    return;
                }
                Err(e) => {
                    conn.close(1u32.into(), b"no fleet identity");
                    tracing::warn!(error = %e, "refused an offload client without identity");
                    return;
                }
            };
            // The handshake already refused names revoked then; one revoked later is cut off
            // as soon as the coordinator's list arrives.
            let serving = async {
                while let Ok((send, recv)) = conn.accept_bi().await {
                    tokio::spawn(stream(send, recv, worker.clone()));
                }
            };
            tokio::select! {
                () = serving => {}
                () = revoked.revoked(&peer.name) => {
                    tracing::warn!(peer = %peer.name, "closed the offload connection of a revoked node");
                    conn.close(2u32.into(), b"revoked");
                }
            }
        });
    }
    publisher.abort();
    endpoint.close(0u32.into(), b"offload server stopping");
}

async fn stream(mut send: quinn::SendStream, mut recv: quinn::RecvStream, worker: Worker) {
    loop {
        let req = match net::framing::read_frame_within::<_, OffloadRequest>(
            &mut recv,
            MAX_FRAME_BYTES,
            OFFLOAD_STREAM,
        )
        .await
        {
            Ok(Some(r)) => r,
            Ok(None) => break,
            Err(e) => {
                tracing::debug!(error = %e, "offload stream ended");
                break;
            }
        };
        let reply = worker.submit(req).await;
        if net::framing::write_frame(&mut send, &reply).await.is_err() {
            break;
        }
    }
    let _ = send.finish();
}
