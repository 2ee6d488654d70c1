//! Networking shared by every MCDNN daemon: TLS and identities, framing over async streams (QUIC),
//! the operator API's HTTPS configuration, certificate revocation and shutdown signals. The
//! messages themselves live in `mcdnn-wire`, which has no I/O.

pub mod clock;
pub mod framing;
pub mod https;
pub mod identity;
pub mod revocation;
pub mod shutdown;
pub mod tls;
