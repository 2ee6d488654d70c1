//! Plan epochs that never go back, across restarts: the newest committed epoch is kept in sled
//! and flushed before any assignment of it is pushed. (With Raft, the replicated `CommitPlan`
//! takes this role.)

use std::path::Path;

const EPOCH_KEY: &[u8] = b"plan_epoch";

#[derive(Clone)]
pub struct EpochStore {
    db: sled::Db,
}

impl EpochStore {
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        use anyhow::Context;
        let db = sled::open(dir)
            .with_context(|| format!("opening the coordinator store {}", dir.display()))?;
        Ok(Self { db })
    }

    pub fn current(&self) -> anyhow::Result<u64> {
        Ok(match self.db.get(EPOCH_KEY)? {
            Some(b) if b.len() == 8 => u64::from_be_bytes(b.as_ref().try_into()?),
            Some(_) => anyhow::bail!("coordinator store holds a malformed plan epoch"),
            None => 0,
        })
    }

    /// The next epoch, durably recorded before it is returned.
    pub fn next(&self) -> anyhow::Result<u64> {
        let next = self.current()? + 1;
        self.db.insert(EPOCH_KEY, &next.to_be_bytes())?;
        self.db.flush()?;
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_increase_across_reopen() {
        let dir = tempfile::tempdir().expect("tmp");
        {
            let s = EpochStore::open(dir.path()).expect("open");
            assert_eq!(s.next().expect("next"), 1);
            assert_eq!(s.next().expect("next"), 2);
        }
        let s = EpochStore::open(dir.path()).expect("reopen");
        assert_eq!(s.current().expect("current"), 2);
        assert_eq!(s.next().expect("next"), 3);
    }
}
