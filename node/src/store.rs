//! The node's sled database: the last assignment and catalog (so a node restarted offline resumes
//! on them). The result spool (module `spool`) and the model shards (module `models`) live in
//! their own trees of the same database.

use std::path::Path;

use wire::codec;
use wire::msg::Assignment;

const ASSIGNMENT_KEY: &[u8] = b"assignment";
const CATALOG_KEY: &[u8] = b"catalog";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the node store at {path}: {source}")]
    Open { path: String, source: sled::Error },
    #[error("node store: {0}")]
    Sled(#[from] sled::Error),
    #[error("node store holds an unreadable {what}: {source}")]
    Corrupt {
        what: &'static str,
        source: codec::CodecError,
    },
    /// A failpoint fired (tests only).
    #[error("injected failure at {0}")]
    Injected(&'static str),
    #[error("cannot encode {what}: {source}")]
    Encode {
        what: &'static str,
        source: codec::CodecError,
    },
}

#[derive(Clone)]
pub struct NodeStore {
    db: sled::Db,
}

impl NodeStore {
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let db = sled::open(dir).map_err(|source| StoreError::Open {
            path: dir.display().to_string(),
            source,
        })?;
        Ok(Self { db })
    }

    /// Writes and flushes: an acknowledged assignment survives a crash.
    pub fn save_assignment(&self, a: &Assignment) -> Result<(), StoreError> {
        let bytes = codec::encode(a).map_err(|source| StoreError::Encode {
            what: "assignment",
            source,
        })?;
        self.db.insert(ASSIGNMENT_KEY, bytes)?;
        self.db.flush()?;
        Ok(())
    }

    /// A named tree of the same database (spool, shards, ...).
    pub fn tree(&self, name: &str) -> Result<sled::Tree, StoreError> {
        Ok(self.db.open_tree(name)?)
    }

    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }

    /// Keeps the raw catalog manifest so a node restarted offline, without a model folder, knows
    /// its catalog.
    pub fn save_catalog(&self, bytes: &[u8]) -> Result<(), StoreError> {
        if self
            .db
            .get(CATALOG_KEY)?
            .is_some_and(|held| held.as_ref() == bytes)
        {
            return Ok(());
        }
        self.db.insert(CATALOG_KEY, bytes)?;
        self.db.flush()?;
        Ok(())
    }

    pub fn load_catalog(&self) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.db.get(CATALOG_KEY)?.map(|b| b.to_vec()))
    }

    pub fn load_assignment(&self) -> Result<Option<Assignment>, StoreError> {
        let Some(bytes) = self.db.get(ASSIGNMENT_KEY)? else {
            return Ok(None);
        };
        codec::decode(&bytes)
            .map(Some)
            .map_err(|source| StoreError::Corrupt {
                what: "assignment",
                source,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assignment_survives_reopen_and_corruption_is_an_error() {
        let dir = std::env::temp_dir().join(format!("mcdnn-store-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let a = Assignment {
            epoch: 9,
            node_id: "cam".into(),
            issued_unix_ms: 1,
            apps: vec![],
            energy_price: 0.5,
            cost_price: 0.0,
            plan_gap: 0.01,
        };
        {
            let s = NodeStore::open(&dir).expect("open");
            assert!(s.load_assignment().expect("empty").is_none());
            s.save_assignment(&a).expect("save");
        }
        let s = NodeStore::open(&dir).expect("reopen");
        assert_eq!(s.load_assignment().expect("load"), Some(a));
        s.db.insert(ASSIGNMENT_KEY, &b"garbage"[..])
            .expect("insert");
        assert!(matches!(
            s.load_assignment(),
            Err(StoreError::Corrupt { .. })
        ));
        drop(s);
        std::fs::remove_dir_all(&dir).ok();
    }
}
