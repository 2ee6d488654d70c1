//! The node's model store: variants as content-addressed shards in sled, fetched from the
//! coordinator, verified before use, resumable after a crash, collected under a disk budget.

pub mod fetch;
pub mod heads;
pub mod shard_trees;
pub mod shards;
pub mod transfer;

pub use shards::{ModelStoreError, ShardStore, StoreStats};
