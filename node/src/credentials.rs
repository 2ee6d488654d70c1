//! The node's own identity for its whole life: the current certificate and key (replaced live
//! when renewed), the schedule of the next renewal (two thirds into the certificate's life),
//! and the fleet's revoked list as the coordinator pushes it (the offload server refuses those
//! peers). Endpoints follow the identity through a `watch` channel: a renewed certificate is
//! used by every new connection without a restart.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use net::clock::{SharedClock, SystemClock};
use net::identity::{CertificateRequest, Identity, RevokedSet, store_issued};
use tokio::sync::watch;

/// Retry delay after a refused or failed renewal (the certificate is still valid for a third of
/// its life, so there is time; a revoked node keeps being refused).
const RETRY: Duration = Duration::from_secs(5);

/// A renewal in flight: the key made for it, waiting for the coordinator's chain.
pub struct PendingRenewal {
    key_pem: String,
}

pub struct Credentials {
    dir: PathBuf,
    name: String,
    current: watch::Sender<Arc<Identity>>,
    clock: SharedClock,
    /// Revoked node names, as the coordinator last pushed them.
    pub revoked: RevokedSet,
}

impl Credentials {
    pub fn new(dir: PathBuf, name: String, identity: Identity) -> Arc<Self> {
        Self::with_clock(dir, name, identity, SystemClock::shared())
    }

    /// `clock` tells when the certificate is due for renewal.
    pub fn with_clock(
        dir: PathBuf,
        name: String,
        identity: Identity,
        clock: SharedClock,
    ) -> Arc<Self> {
        Arc::new(Credentials {
            dir,
            name,
            clock,
            current: watch::channel(Arc::new(identity)).0,
            revoked: RevokedSet::default(),
        })
    }

    /// The identity in use now.
    pub fn current(&self) -> Arc<Identity> {
        self.current.borrow().clone()
    }

    /// A client config presenting the current certificate (built per connection: cheap next to
    /// a handshake, and a renewed certificate is picked up without touching the endpoint).
    pub fn client_config(&self) -> anyhow::Result<quinn::ClientConfig> {
        net::tls::client_config(&self.current()).context("building the QUIC client config")
    }

    /// [`Self::client_config`] for the session with the coordinator: no transport keep-alive
    /// (the link pings the leader at the interval it sets; their answers are how the link
    /// hears it lives) and the node-session idle timeout.
    pub fn coordinator_client_config(&self) -> anyhow::Result<quinn::ClientConfig> {
        net::tls::coordinator_client_config(&self.current())
            .context("building the QUIC client config")
    }

    /// Sees every replacement of the identity.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Identity>> {
        self.current.subscribe()
    }

    /// How long until the current certificate should be renewed: two thirds into its life
    /// (zero if that has passed). `None` if its dates cannot be read (then it is never renewed
    /// here and expires as issued).
    pub fn renew_in(&self) -> Option<Duration> {
        let (not_before, not_after) = self.current().validity().ok()?;
        let life = not_after.duration_since(not_before).ok()?;
        let due = not_before + life.mul_f64(2.0 / 3.0);
        Some(due.duration_since(self.wall_now()).unwrap_or_default())
    }

    /// Makes a fresh key and its certificate request; the key stays here until the chain comes.
    pub fn start_renewal(&self) -> anyhow::Result<(PendingRenewal, String)> {
        let (key_pem, request) =
            CertificateRequest::generate().context("making a key for renewal")?;
        Ok((PendingRenewal { key_pem }, request.pem().to_owned()))
    }

    /// Stores the renewed key and chain (0600, atomically), loads them back the way a restart
    /// would, and hands the new identity to every endpoint.
    pub fn finish_renewal(&self, pending: PendingRenewal, chain_pem: &str) -> anyhow::Result<()> {
        store_issued(&self.dir, &self.name, &pending.key_pem, chain_pem)
            .context("storing the renewed certificate")?;
        let identity =
            Identity::load(&self.dir, &self.name).context("loading the renewed certificate")?;
        if let Ok((_, not_after)) = identity.validity() {
            let days = not_after
                .duration_since(self.wall_now())
                .unwrap_or_default()
                .as_secs_f64()
                / 86_400.0;
            tracing::info!(node = %self.name, valid_days = days, "certificate renewed");
        }
        self.current.send_replace(Arc::new(identity));
        Ok(())
    }

    fn wall_now(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.clock.unix_ms())
    }

    /// How long to wait before trying again after a refused renewal.
    pub fn retry_delay(&self) -> Duration {
        RETRY
    }
}

/// Keeps a server endpoint's config on the current identity, refusing `revoked` peers.
pub fn follow_server(
    endpoint: quinn::Endpoint,
    mut rx: watch::Receiver<Arc<Identity>>,
    revoked: RevokedSet,
) {
    tokio::spawn(async move {
        while rx.changed().await.is_ok() {
            let identity = rx.borrow_and_update().clone();
            match net::tls::server_config_revoking(&identity, &revoked) {
                Ok(config) => endpoint.set_server_config(Some(config)),
                Err(e) => tracing::warn!(error = %e, "renewed identity unusable for serving"),
            }
        }
    });
}
