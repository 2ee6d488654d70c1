//! The coordinator session as other tasks see it: whether one is up, and a way to open blob
//! streams on it (the model fetcher's only use of the connection). The connection itself stays
//! the link's.

use std::sync::{Arc, Mutex};

use super::lock;

/// Opens blob streams on the live coordinator connection.
#[derive(Debug, Clone)]
pub struct BlobStreams(quinn::Connection);

impl BlobStreams {
    pub fn new(connection: quinn::Connection) -> Self {
        Self(connection)
    }

    /// A new bidirectional stream for blob requests.
    pub async fn open(
        &self,
    ) -> Result<(quinn::SendStream, quinn::RecvStream), quinn::ConnectionError> {
        self.0.open_bi().await
    }
}

/// Cheap to clone; the link sets it, the fetcher reads it.
#[derive(Debug, Clone, Default)]
pub struct CoordinatorLink(Arc<Mutex<Option<BlobStreams>>>);

impl CoordinatorLink {
    pub fn connected(&self, streams: BlobStreams) {
        *lock(&self.0) = Some(streams);
    }

    pub fn disconnected(&self) {
        *lock(&self.0) = None;
    }

    /// Blob streams on the current session, if there is one.
    pub fn streams(&self) -> Option<BlobStreams> {
        lock(&self.0).clone()
    }
}
