//! Reopening a sled folder right after its previous user dropped it in the same process (tests,
//! the deterministic simulation's restarts): sled's background threads release the file lock
//! shortly after the last handle goes, in real time, so an immediate reopen can find it held.
//! Waiting in real time changes nothing simulated (the runtime is busy, so its clock does not
//! move). A real restart is a new process and never needs this.

use std::time::Duration;

/// How long to wait for the lock at most (real time).
const PATIENCE: Duration = Duration::from_secs(5);
const STEP: Duration = Duration::from_millis(10);

/// Runs `open` until it does not fail for a held file lock (or `PATIENCE` ran out).
pub fn when_unlocked<T, E: std::fmt::Display>(
    mut open: impl FnMut() -> Result<T, E>,
) -> Result<T, E> {
    let mut waited = Duration::ZERO;
    loop {
        match open() {
            Err(e) if e.to_string().contains("could not acquire lock") && waited < PATIENCE => {
                std::thread::sleep(STEP);
                waited += STEP;
            }
            other => return other,
        }
    }
}
