//! The picture type lives in the `vision` crate (the coordinator uses it too); this path stays so
//! the node's input code keeps its imports.
pub use vision::picture::*;
