//! Video input: frames decoded by Debian's ffmpeg running as a child process (`decode`).

pub mod decode;

pub use decode::{DecodeOptions, Decoder, VideoError, VideoInfo, VideoSource};
