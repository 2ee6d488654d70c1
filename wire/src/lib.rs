//! What MCDNN processes say to each other, with no I/O: the wire messages, their encoding, and the
//! catalog manifest. The scheduler and the simulator depend on this crate alone, so they compile
//! without tokio, quinn or rustls; moving frames over QUIC is `mcdnn-net`'s job.

pub mod codec;
pub mod corpus;
pub mod head;
pub mod manifest;
pub mod msg;
pub mod shard_head;
pub mod summary;
