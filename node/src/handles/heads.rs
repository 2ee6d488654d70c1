//! Specialised heads the node holds, by digest: the head fetcher fills it from the
//! assignment, the serving thread reads it. Heads are a few KiB and kept only in memory; one the
//! assignment no longer names is dropped (collected) at the fetcher's next round.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use wire::head::Head;

use super::lock;

#[derive(Debug, Clone, Default)]
pub struct HeadCell(Arc<Mutex<BTreeMap<String, Arc<Head>>>>);

impl HeadCell {
    pub fn get(&self, digest: &str) -> Option<Arc<Head>> {
        lock(&self.0).get(digest).cloned()
    }

    pub fn insert(&self, digest: String, head: Head) {
        lock(&self.0).insert(digest, Arc::new(head));
    }

    /// Drops every head not in `keep`; returns how many were dropped.
    pub fn retain(&self, keep: &BTreeSet<String>) -> usize {
        let mut heads = lock(&self.0);
        let before = heads.len();
        heads.retain(|d, _| keep.contains(d));
        before - heads.len()
    }

    pub fn digests(&self) -> BTreeSet<String> {
        lock(&self.0).keys().cloned().collect()
    }
}
