//! Where shard bytes live in sled: [`BUCKETS`] trees chosen by the digest, not one tree.
//!
//! sled 0.34 rewrites a whole leaf (up to 16 values) every tenth update of it and on each split,
//! and writes a leaf whose log record is over ~128 KiB as a file of its own. With every shard in
//! one tree a fetch round wrote each shard about three times, the rewrites as new files; spread
//! over 64 trees, a node's few hundred shards sit a few to a leaf and a shard is written about
//! once (scratch benchmark, the repo catalog in 64 KiB shards: 7-12 ms of sled against 35-45 ms
//! in one tree). One tree per shard would do the same for sled but make thousands of trees.
//!
//! A store written before the buckets (one tree, [`LEGACY_TREE`]) is moved into them when it is
//! opened: each shard is copied to its bucket, then the old tree is cleared. A crash in between
//! leaves a shard in both, and the next open copies it again; the start-up scrub verifies every
//! shard of every complete variant either way.

use crate::store::{NodeStore, StoreError};

/// Trees the shards are spread over: enough that a node's shards sit a few to a leaf, few
/// enough to be a fixed, small part of sled's tree directory.
pub const BUCKETS: usize = 64;
/// The one tree every shard was kept in before the buckets.
pub const LEGACY_TREE: &str = "model_shards";

/// The bucket of a key: from its first bytes (hex of a sha256, so uniform), total for any key.
fn bucket(key: &[u8]) -> usize {
    key.iter().take(4).fold(0usize, |acc, b| {
        acc.wrapping_mul(31).wrapping_add(usize::from(*b))
    }) % BUCKETS
}

fn bucket_name(i: usize) -> String {
    format!("{LEGACY_TREE}/{i:02x}")
}

/// The tree holding the shard `digest` (fault-injection tools open it by this name).
pub fn tree_name(digest: &str) -> String {
    bucket_name(bucket(digest.as_bytes()))
}

/// Every shard tree's name.
pub fn tree_names() -> impl Iterator<Item = String> {
    (0..BUCKETS).map(bucket_name)
}

/// The shard trees of one store, keyed by hex sha256.
#[derive(Clone)]
pub struct ShardTrees {
    trees: Vec<sled::Tree>,
}

impl ShardTrees {
    /// Opens every bucket and moves a legacy single-tree store into them.
    pub fn open(store: &NodeStore) -> Result<Self, StoreError> {
        let trees = tree_names()
            .map(|name| store.tree(&name))
            .collect::<Result<Vec<_>, _>>()?;
        let s = Self { trees };
        s.migrate(&store.tree(LEGACY_TREE)?)?;
        Ok(s)
    }

    fn migrate(&self, legacy: &sled::Tree) -> Result<(), StoreError> {
        if legacy.is_empty() {
            return Ok(());
        }
        let mut moved = 0usize;
        for item in legacy.iter() {
            let (k, v) = item?;
            self.trees[bucket(&k)].insert(k, v)?;
            moved += 1;
        }
        // The copies are durable before the originals go.
        legacy.flush()?;
        legacy.clear()?;
        legacy.flush()?;
        tracing::info!(moved, "moved stored shards into their bucket trees");
        Ok(())
    }

    pub fn get(&self, digest: &str) -> sled::Result<Option<sled::IVec>> {
        self.tree(digest).get(digest)
    }

    pub fn contains(&self, digest: &str) -> sled::Result<bool> {
        self.tree(digest).contains_key(digest)
    }

    pub fn insert(&self, digest: &str, bytes: &[u8]) -> sled::Result<()> {
        self.tree(digest).insert(digest, bytes).map(drop)
    }

    pub fn remove(&self, digest: &str) -> sled::Result<()> {
        self.tree(digest).remove(digest).map(drop)
    }

    /// Makes every change so far durable (all trees share one log: one flush covers them).
    pub fn flush(&self) -> sled::Result<()> {
        self.trees[0].flush().map(drop)
    }

    /// Bytes of every stored shard.
    pub fn stored_bytes(&self) -> u64 {
        self.trees
            .iter()
            .flat_map(|t| t.iter().values())
            .filter_map(Result::ok)
            .map(|v| v.len() as u64)
            .sum()
    }

    fn tree(&self, digest: &str) -> &sled::Tree {
        &self.trees[bucket(digest.as_bytes())]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_legacy_store_is_moved_into_the_buckets_and_every_key_has_one_bucket() {
        let dir = tempfile::tempdir().expect("tmp");
        let store = NodeStore::open(dir.path()).expect("open");
        let legacy = store.tree(LEGACY_TREE).expect("legacy");
        let keys: Vec<String> = (0..200u32)
            .map(|i| hex::encode(<sha2::Sha256 as sha2::Digest>::digest(i.to_le_bytes())))
            .collect();
        for k in &keys {
            legacy
                .insert(k.as_bytes(), k.as_bytes())
                .expect("legacy shard");
        }
        // A key that is not hex, and one shorter than the bucket's prefix, have a bucket too.
        legacy.insert("é", &b"x"[..]).expect("odd key");
        legacy.insert("", &b"y"[..]).expect("empty key");
        let trees = ShardTrees::open(&store).expect("buckets");
        assert!(legacy.is_empty(), "the legacy tree is emptied");
        for k in &keys {
            assert_eq!(
                trees.get(k).expect("get").as_deref(),
                Some(k.as_bytes()),
                "{k} moved"
            );
            let name = tree_name(k);
            assert!(
                store
                    .tree(&name)
                    .expect("tree")
                    .contains_key(k)
                    .expect("get"),
                "{k} is in the tree its name says"
            );
        }
        assert_eq!(trees.get("é").expect("get").as_deref(), Some(&b"x"[..]));
        assert_eq!(trees.get("").expect("get").as_deref(), Some(&b"y"[..]));
        let used = tree_names()
            .filter(|n| !store.tree(n).expect("tree").is_empty())
            .count();
        assert!(
            used > BUCKETS / 2,
            "200 digests use {used} of {BUCKETS} buckets"
        );
        // Opening again finds nothing left to move and changes nothing.
        let again = ShardTrees::open(&store).expect("reopen");
        assert_eq!(again.stored_bytes(), trees.stored_bytes());
    }
}
