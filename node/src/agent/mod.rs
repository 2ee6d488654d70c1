//! The node agent: a serving thread that follows the assignment request by request, and a link
//! task that keeps a QUIC session with the coordinator (hello, telemetry, assignments).

pub mod constraints;
pub mod inputs;
pub mod link;
pub mod renewal;
pub mod run;
pub mod serve;
