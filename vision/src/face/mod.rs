//! The body-camera face workload: find faces (BlazeFace), cut each out aligned on its eyes,
//! describe it with a 128-number descriptor, and name it against a gallery by distance.

pub mod align;
pub mod decode;
pub mod describe;
pub mod detect;
pub mod gallery;
mod pipeline;
pub mod recent;

pub use describe::{DESCRIPTOR_DIM, Describer, Descriptor};
pub use detect::Detector;
pub use gallery::{Gallery, Match};
pub use pipeline::FacePipeline;
pub use recent::{RecentGallery, RecentLimits, Strangers};

/// An axis-aligned box in the frame's pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BBox {
    pub x: f32,
    pub y: f32,
    pub w: f32,
    pub h: f32,
}

impl BBox {
    pub fn area(&self) -> f32 {
        self.w.max(0.0) * self.h.max(0.0)
    }

    /// Intersection over union; 0 for boxes without area.
    pub fn iou(&self, other: &BBox) -> f32 {
        let ix = (self.x + self.w).min(other.x + other.w) - self.x.max(other.x);
        let iy = (self.y + self.h).min(other.y + other.h) - self.y.max(other.y);
        let inter = ix.max(0.0) * iy.max(0.0);
        let union = self.area() + other.area() - inter;
        if union > 0.0 { inter / union } else { 0.0 }
    }
}

/// BlazeFace's six keypoints, in this order (MediaPipe's): the subject's right eye (on the image's
/// left), left eye, nose tip, mouth centre, right ear tragion, left ear tragion.
pub const KEYPOINTS: usize = 6;
pub const RIGHT_EYE: usize = 0;
pub const LEFT_EYE: usize = 1;

/// One detected face, in the frame's pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Face {
    pub bbox: BBox,
    /// Detector confidence, 0..1.
    pub score: f32,
    pub keypoints: [[f32; 2]; KEYPOINTS],
}
