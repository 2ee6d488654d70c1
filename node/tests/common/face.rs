//! Real frames of Megamind.avi (Debian's opencv-doc, decoded by ffmpeg) for the face tests.

use mcdnn_node::picture::Picture;
use mcdnn_node::video::{DecodeOptions, Decoder, VideoSource};

pub const MEGAMIND: &str = "/usr/share/doc/opencv-doc/examples/data/Megamind.avi";

/// Frames `wanted` (ascending) of Megamind.avi.
pub fn frames(wanted: &[u64]) -> Vec<Picture> {
    let mut decoder = Decoder::open(
        &VideoSource::File(MEGAMIND.into()),
        DecodeOptions::default(),
    )
    .expect("Megamind.avi opens (install opencv-doc)");
    let mut out = Vec::new();
    while let Some(f) = decoder.next_frame().expect("decodes") {
        if wanted.contains(&f.index) {
            out.push(f.picture);
        }
        if out.len() == wanted.len() {
            break;
        }
    }
    out
}
