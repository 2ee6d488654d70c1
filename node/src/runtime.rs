//! Loading ONNX Runtime lives in the `vision` crate (the coordinator computes face descriptors
//! too); this path stays so the node's engine, bench and catalog code keep their imports.
pub use vision::runtime::*;
