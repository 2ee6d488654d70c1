//! The MCDNN node agent: ONNX inference, model catalog, data sources, and (in later modules) the
//! assignment follower, telemetry and offload.

pub mod agent;
pub mod api;
pub mod battery;
pub mod bench;
pub mod bench_api;
pub mod cache;
pub mod catalog;
pub mod config;
pub mod credentials;
pub mod dataset;
pub mod engine;
pub mod enroll;
pub mod face_memory;
pub mod face_variant;
pub mod frames;
pub mod handles;
pub mod input;
pub mod meminfo;
pub mod models;
pub mod offload;
pub mod picture;
pub mod request;
pub mod runtime;
pub mod spool;
pub mod stats;
pub mod store;
pub mod video;
