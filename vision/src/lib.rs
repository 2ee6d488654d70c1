//! Pictures and the face models, shared by the node (serving) and the coordinator (watchlist
//! descriptors): no networking, no async runtime, so either side can link it.
//!
//! - [`picture`]: the one image type every input path hands over;
//! - [`runtime`]: finding and loading the ONNX Runtime library (a missing library is an error);
//! - [`face`]: BlazeFace detection with its box decoding, alignment on the eyes, the descriptor
//!   network, and matching descriptors against a named gallery.

pub mod face;
pub mod model;
pub mod picture;
pub mod runtime;
