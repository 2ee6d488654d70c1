//! The narrow handles the node's tasks share, one per kind of state, each cheap to clone and
//! holding only what its readers and writers need: the assignment (epochs never go back), the
//! variants present on disk, the telemetry snapshot, the offload server's counters, the
//! coordinator connection's blob streams and the watchlist. `agent::run` builds them and hands each task only the
//! ones it uses.

mod assignment;
mod availability;
mod coordinator;
mod heads;
mod offload_counters;
mod snapshot;
mod watchlist;

pub use assignment::AssignmentCell;
pub use availability::ModelAvailability;
pub use coordinator::{BlobStreams, CoordinatorLink};
pub use heads::HeadCell;
pub use offload_counters::OffloadCounters;
pub use snapshot::{Snapshot, TelemetryCell};
pub use watchlist::{
    DEFAULT_THRESHOLD as DEFAULT_WATCHLIST_THRESHOLD, Identified, Watchlist, WatchlistCell,
};

use std::sync::{Mutex, MutexGuard};

/// A panic while a lock was held leaves plain data behind: keep going with it.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
