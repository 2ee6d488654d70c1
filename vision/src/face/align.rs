//! Cutting a face out aligned on its eyes: rotated so the eyes are level, scaled so they sit at
//! fixed places in the crop. The descriptor network (dlib's ResNet) was trained on such chips,
//! and a loose detector box separates people far worse.
//!
//! The eye positions are dlib's: the mean of its 68-point template's eye landmarks, with the
//! 0.25 padding `get_face_chip_details` uses for 150x150 chips, as fractions of the crop side.

use super::{Face, LEFT_EYE, RIGHT_EYE};
use crate::picture::Picture;

/// The subject's right eye (image left) in the crop, as fractions of its side.
pub const RIGHT_EYE_AT: [f32; 2] = [0.3163, 0.3129];
/// The subject's left eye (image right).
pub const LEFT_EYE_AT: [f32; 2] = [0.6837, 0.3129];

/// A `size x size` RGB crop of `face` with its eyes at [`RIGHT_EYE_AT`] and [`LEFT_EYE_AT`].
pub fn align(picture: &Picture, face: &Face, size: u32) -> Picture {
    let side = size as f32;
    let out_right = [RIGHT_EYE_AT[0] * side, RIGHT_EYE_AT[1] * side];
    let out_span = (LEFT_EYE_AT[0] - RIGHT_EYE_AT[0]) * side;
    let right = face.keypoints[RIGHT_EYE];
    let left = face.keypoints[LEFT_EYE];
    // The crop's x axis runs along the eye line; one crop pixel is `|v|` frame pixels. Degenerate
    // keypoints (both eyes on one spot) fall back to the box's width so the crop is still a face.
    let mut v = [
        (left[0] - right[0]) / out_span,
        (left[1] - right[1]) / out_span,
    ];
    let span = v[0].hypot(v[1]);
    if span.is_nan() || span <= 1e-3 {
        v = [face.bbox.w / side, 0.0];
    }
    let rgb = picture.to_rgb();
    rgb.warp(size, size, |ox, oy| {
        // Crop pixel centre -> offset from the right eye in crop pixels -> frame coordinates
        // (continuous), then to the pixel-index coordinates `warp` samples at.
        let dx = ox + 0.5 - out_right[0];
        let dy = oy + 0.5 - out_right[1];
        (
            right[0] + dx * v[0] - dy * v[1] - 0.5,
            right[1] + dx * v[1] + dy * v[0] - 0.5,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::face::{BBox, KEYPOINTS};
    use crate::picture::PixelFormat;

    /// A picture that is dark except two bright eye dots; after aligning a tilted pair, the dots
    /// land on the template positions.
    #[test]
    fn tilted_eyes_end_up_level_at_the_template() {
        let (w, h) = (200u32, 200u32);
        let mut pixels = vec![0u8; (w * h) as usize];
        let eyes = [[80.0f32, 110.0], [120.0, 90.0]];
        for e in eyes {
            for dy in -1..=1 {
                for dx in -1..=1 {
                    let (x, y) = ((e[0] as i32 + dx) as u32, (e[1] as i32 + dy) as u32);
                    pixels[(y * w + x) as usize] = 255;
                }
            }
        }
        let picture = Picture::new(w, h, PixelFormat::Gray8, pixels).expect("valid");
        let mut keypoints = [[0.0; 2]; KEYPOINTS];
        keypoints[RIGHT_EYE] = [eyes[0][0] + 0.5, eyes[0][1] + 0.5];
        keypoints[LEFT_EYE] = [eyes[1][0] + 0.5, eyes[1][1] + 0.5];
        let face = Face {
            bbox: BBox {
                x: 60.0,
                y: 60.0,
                w: 80.0,
                h: 80.0,
            },
            score: 1.0,
            keypoints,
        };
        let crop = align(&picture, &face, 150);
        assert_eq!(
            (crop.width, crop.height, crop.format),
            (150, 150, PixelFormat::Rgb8)
        );
        let brightest_near = |at: [f32; 2]| {
            let (cx, cy) = ((at[0] * 150.0) as i32, (at[1] * 150.0) as i32);
            let mut best = 0u8;
            for y in cy - 2..=cy + 2 {
                for x in cx - 2..=cx + 2 {
                    best = best.max(crop.pixels[((y * 150 + x) * 3) as usize]);
                }
            }
            best
        };
        assert!(brightest_near(RIGHT_EYE_AT) > 100 && brightest_near(LEFT_EYE_AT) > 100);
        // Far from the eyes the crop is dark.
        assert_eq!(crop.pixels[((140 * 150 + 75) * 3) as usize], 0);
    }
}
