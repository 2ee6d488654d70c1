//! Renewing the node's certificate over its coordinator session: at two thirds of the
//! certificate's life the link sends a request for a fresh key, and stores the chain the
//! coordinator signs; a refusal (revoked, no issuing CA, too soon) is retried later.

use std::pin::Pin;
use std::time::Duration;

use tokio::time::{Instant, Sleep};

use crate::credentials::{Credentials, PendingRenewal};

/// Far enough to mean "never" for a session (which lasts far less).
const NEVER: Duration = Duration::from_secs(100 * 365 * 86_400);

/// One session's renewal state: when to ask, and the key of a request in flight.
pub struct Renewal {
    timer: Pin<Box<Sleep>>,
    pending: Option<PendingRenewal>,
}

impl Renewal {
    pub fn new(credentials: &Credentials) -> Self {
        let mut renewal = Renewal {
            timer: Box::pin(tokio::time::sleep(NEVER)),
            pending: None,
        };
        renewal.schedule(credentials.renew_in().unwrap_or(NEVER));
        renewal
    }

    fn schedule(&mut self, after: Duration) {
        let at = Instant::now()
            .checked_add(after)
            .unwrap_or_else(|| Instant::now() + NEVER);
        self.timer.as_mut().reset(at);
    }

    /// Resolves when a renewal should be asked for (never while one is in flight).
    pub async fn due(&mut self) {
        if self.pending.is_some() {
            std::future::pending::<()>().await;
        }
        self.timer.as_mut().await;
    }

    /// Makes the key and returns the request to send.
    pub fn start(&mut self, credentials: &Credentials) -> anyhow::Result<String> {
        let (pending, csr_pem) = credentials.start_renewal()?;
        self.pending = Some(pending);
        // If no answer comes on this session, the next session schedules afresh.
        self.schedule(NEVER);
        Ok(csr_pem)
    }

    /// Stores the renewed chain and schedules the next renewal from it.
    pub fn finish(&mut self, credentials: &Credentials, chain_pem: &str) {
        let Some(pending) = self.pending.take() else {
            tracing::warn!("ignored a renewed certificate nobody asked for");
            return;
        };
        match credentials.finish_renewal(pending, chain_pem) {
            Ok(()) => self.schedule(credentials.renew_in().unwrap_or(NEVER)),
            Err(e) => {
                tracing::warn!(
                    error = format!("{e:#}"),
                    "could not use the renewed certificate"
                );
                self.schedule(credentials.retry_delay());
            }
        }
    }

    /// The coordinator refused: try again later with a new key.
    pub fn refused(&mut self, credentials: &Credentials, reason: &str) {
        tracing::warn!(%reason, "certificate renewal refused");
        self.pending = None;
        self.schedule(credentials.retry_delay());
    }
}
