//! The daemon's workers under one supervisor. Every worker is critical: a replica without its
//! Raft driver, node endpoint, solver or operator API is not a replica worth routing to. When one
//! ends before shutdown was asked for, the supervisor marks the replica unready at once, cancels
//! the rest, waits for them briefly, and returns the cause, so the process exits non-zero and its
//! supervisor (Kubernetes, systemd) restarts it.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// How long workers get to stop after a cancellation before they are abandoned.
const DRAIN: Duration = Duration::from_secs(5);

/// Whether every worker is still running; `/readyz` fails as soon as one is not.
#[derive(Debug, Clone)]
pub struct Health(Arc<AtomicBool>);

impl Default for Health {
    fn default() -> Self {
        Self(Arc::new(AtomicBool::new(true)))
    }
}

impl Health {
    pub fn is_healthy(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    fn fail(&self) {
        self.0.store(false, Ordering::Release);
    }
}

/// Named workers that live and die together.
pub struct Supervisor {
    workers: JoinSet<(&'static str, anyhow::Result<()>)>,
    cancel: CancellationToken,
    health: Health,
}

impl Supervisor {
    pub fn new(cancel: CancellationToken, health: Health) -> Self {
        Self {
            workers: JoinSet::new(),
            cancel,
            health,
        }
    }

    /// Starts a worker; its end (even `Ok`) before shutdown stops the daemon.
    pub fn spawn<F>(&mut self, name: &'static str, worker: F)
    where
        F: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        self.workers.spawn(async move { (name, worker.await) });
    }

    /// Runs until shutdown is asked for (then `Ok`, once the workers stopped or the drain time
    /// passed) or a worker ends on its own (then the worker's name and cause as the error).
    pub async fn run(mut self) -> anyhow::Result<()> {
        let failure = tokio::select! {
            // Shutdown first: workers end because of it, and that is no failure.
            biased;
            _ = self.cancel.cancelled() => None,
            ended = self.workers.join_next() => Some(match ended {
                Some(Ok((name, Ok(())))) => anyhow::anyhow!("worker {name} stopped unexpectedly"),
                Some(Ok((name, Err(e)))) => e.context(format!("worker {name} failed")),
                Some(Err(e)) => anyhow::anyhow!("a worker panicked or was aborted: {e}"),
                None => anyhow::anyhow!("no workers were started"),
            }),
        };
        if let Some(e) = &failure {
            self.health.fail();
            tracing::error!(error = format!("{e:#}"), "stopping the replica");
        }
        self.cancel.cancel();
        let drained = tokio::time::timeout(DRAIN, async {
            while let Some(done) = self.workers.join_next().await {
                if let Ok((name, Err(e))) = done {
                    tracing::warn!(
                        worker = name,
                        error = format!("{e:#}"),
                        "worker ended with an error while stopping"
                    );
                }
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!("some workers did not stop within {DRAIN:?}; exiting anyway");
            self.workers.abort_all();
        }
        failure.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_failing_worker_stops_the_others_and_is_the_error() {
        let cancel = CancellationToken::new();
        let health = Health::default();
        let mut s = Supervisor::new(cancel.clone(), health.clone());
        let other = cancel.clone();
        s.spawn("steady", async move {
            other.cancelled().await;
            Ok(())
        });
        s.spawn("raft", async { anyhow::bail!("disk full") });
        let err = s.run().await.expect_err("a worker failed");
        assert!(
            format!("{err:#}").contains("worker raft failed: disk full"),
            "{err:#}"
        );
        assert!(cancel.is_cancelled(), "the other workers are cancelled");
        assert!(!health.is_healthy(), "readiness fails");
    }

    #[tokio::test]
    async fn shutdown_is_clean_and_a_worker_returning_early_is_a_failure() {
        let cancel = CancellationToken::new();
        let mut s = Supervisor::new(cancel.clone(), Health::default());
        let stop = cancel.clone();
        s.spawn("admin", async move {
            stop.cancelled().await;
            Ok(())
        });
        cancel.cancel();
        s.run().await.expect("asked to stop: clean");

        let mut s = Supervisor::new(CancellationToken::new(), Health::default());
        s.spawn("solver", async { Ok(()) });
        assert!(s.run().await.is_err(), "a worker must not end on its own");
    }
}
