//! Wire messages, framing, identity/TLS helpers and catalog types shared by every MCDNN process.
//! No I/O loops live here.

pub mod codec;
pub mod https;
pub mod identity;
pub mod manifest;
pub mod msg;
pub mod shutdown;
pub mod tls;
