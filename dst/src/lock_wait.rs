//! Reopening a sled folder right after its previous user dropped it: sled's background
//! threads release the file lock shortly after, in real time, while simulated time can reopen
//! it within real microseconds. Waiting in real time changes nothing simulated (the runtime is
//! busy, so its clock does not move).

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
