//! Outside inputs that feed the serving loop's intake besides the local API: video sources.

pub mod video;
