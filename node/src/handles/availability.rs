//! Which variants have verified bytes on this node. The fetcher publishes the set; the serving
//! thread chooses only among them and reports a variant it could not load, which leaves the set
//! until the fetcher has verified (or fetched) it again.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use super::lock;

#[derive(Debug, Default)]
struct Inner {
    /// `None` when models come from a local folder (every variant is present).
    present: Option<BTreeSet<String>>,
    /// Variants that failed verification or loading: the fetcher must get them again.
    broken: BTreeSet<String>,
    /// Bumped on every change of `present`, so readers notice a change without comparing sets.
    generation: u64,
}

/// Cheap to clone; every holder sees the same sets.
#[derive(Debug, Clone, Default)]
pub struct ModelAvailability(Arc<Mutex<Inner>>);

impl ModelAvailability {
    /// The fetcher's view of the complete variants.
    pub fn publish(&self, present: BTreeSet<String>) {
        let mut inner = lock(&self.0);
        if inner.present.as_ref() != Some(&present) {
            inner.present = Some(present);
            inner.generation += 1;
        }
    }

    pub fn present(&self) -> Option<BTreeSet<String>> {
        lock(&self.0).present.clone()
    }

    /// The present set if it changed since generation `seen` (which is updated).
    pub fn changed_since(&self, seen: &mut u64) -> Option<Option<BTreeSet<String>>> {
        let inner = lock(&self.0);
        if inner.generation == *seen {
            return None;
        }
        *seen = inner.generation;
        Some(inner.present.clone())
    }

    /// A variant whose bytes could not be loaded: out of the present set, on the fetcher's list.
    pub fn mark_broken(&self, variant: &str) {
        let mut inner = lock(&self.0);
        if inner
            .present
            .as_mut()
            .is_some_and(|set| set.remove(variant))
        {
            inner.generation += 1;
        }
        inner.broken.insert(variant.to_string());
    }

    /// The variants reported broken since the last call.
    pub fn take_broken(&self) -> Vec<String> {
        std::mem::take(&mut lock(&self.0).broken)
            .into_iter()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_are_seen_once_and_broken_variants_leave_the_set() {
        let a = ModelAvailability::default();
        let mut seen = 0;
        assert_eq!(a.changed_since(&mut seen), None);
        a.publish(["x".to_string(), "y".to_string()].into());
        assert_eq!(
            a.changed_since(&mut seen).flatten().map(|s| s.len()),
            Some(2)
        );
        a.publish(["x".to_string(), "y".to_string()].into());
        assert_eq!(a.changed_since(&mut seen), None, "same set is no change");
        a.mark_broken("x");
        let now = a.changed_since(&mut seen).flatten().expect("changed");
        assert!(!now.contains("x"));
        assert_eq!(a.take_broken(), vec!["x".to_string()]);
        assert!(a.take_broken().is_empty());
    }
}
