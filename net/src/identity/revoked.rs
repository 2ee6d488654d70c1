//! The set of revoked node names, shared by every TLS verifier and session of a process and
//! updated live: a coordinator copies it from the replicated fleet state, a node from the
//! coordinator's `Revocations` pushes. Readers never block writers for long (one `RwLock`
//! around an `Arc`), and a `watch` channel wakes whoever must close revoked sessions.

use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};

use tokio::sync::watch;

/// Most names a revocation list holds. Bounded so a flood of revocations cannot grow every
/// replica's state and every node's memory without limit; 65,536 names of at most 63 bytes is
/// ~4 MiB. Far above any fleet's lost devices; when reached, new revocations are refused with
/// this figure in the reason.
pub const MAX_REVOKED: usize = 65_536;

/// Shared, live-updated revoked node names. Cloning shares the same set.
#[derive(Debug, Clone)]
pub struct RevokedSet {
    names: Arc<RwLock<Arc<BTreeSet<String>>>>,
    changed: Arc<watch::Sender<u64>>,
}

impl Default for RevokedSet {
    fn default() -> Self {
        RevokedSet {
            names: Arc::default(),
            changed: Arc::new(watch::channel(0).0),
        }
    }
}

impl RevokedSet {
    /// Whether the node `name` is revoked.
    pub fn contains(&self, name: &str) -> bool {
        self.snapshot().contains(name)
    }

    /// The current set (cheap: shares the set).
    pub fn snapshot(&self) -> Arc<BTreeSet<String>> {
        self.names.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Replaces the set; wakes subscribers if it changed. Names beyond [`MAX_REVOKED`] are
    /// dropped (the coordinator never sends more; a node must not be made to hold more).
    pub fn replace(&self, names: impl IntoIterator<Item = String>) {
        let next: BTreeSet<String> = names.into_iter().take(MAX_REVOKED).collect();
        {
            let mut guard = self.names.write().unwrap_or_else(|p| p.into_inner());
            if **guard == next {
                return;
            }
            *guard = Arc::new(next);
        }
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// A receiver that sees every change after this call.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Resolves once `name` is revoked (at once if it already is). Sessions race this against
    /// their work to close within moments of a revocation.
    pub async fn revoked(&self, name: &str) {
        let mut rx = self.subscribe();
        loop {
            if self.contains(name) {
                return;
            }
            if rx.changed().await.is_err() {
                // The sender lives as long as any clone of the set: unreachable in practice;
                // never resolve rather than report a revocation that did not happen.
                std::future::pending::<()>().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn waiters_wake_on_revocation_only() {
        let set = RevokedSet::default();
        let waiter = {
            let set = set.clone();
            tokio::spawn(async move { set.revoked("cam-1").await })
        };
        set.replace(["cam-2".to_owned()]);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "woke for another name");
        set.replace(["cam-2".to_owned(), "cam-1".to_owned()]);
        tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .expect("woke")
            .expect("joined");
        assert!(set.contains("cam-1"));
    }

    #[test]
    fn the_set_is_bounded() {
        let set = RevokedSet::default();
        set.replace((0..MAX_REVOKED + 10).map(|i| format!("n{i}")));
        assert_eq!(set.snapshot().len(), MAX_REVOKED);
    }
}
