//! BlazeFace (front camera, 128x128) output decoding: the anchor grid, box and keypoint offsets,
//! and MediaPipe's weighted non-maximum suppression. Pure arithmetic, tested without a model.
//!
//! The network predicts, per anchor, a score logit and 16 numbers: box centre offset (x, y),
//! box size (w, h) and six keypoints (x, y), all in input pixels relative to the anchor centre.
//! Anchors (MediaPipe's `face_detection_front` options): stride 8 -> a 16x16 grid with 2 anchors
//! per cell, stride 16 -> an 8x8 grid with 6 per cell; 512 + 384 = 896 anchors, fixed size 1.

use super::{BBox, Face, KEYPOINTS};

/// The detector's input side.
pub const INPUT: usize = 128;
/// Numbers per anchor in the regression output.
pub const COORDS: usize = 16;
/// (grid side, anchors per cell) of the two output heads, in output order.
pub const GRIDS: [(usize, usize); 2] = [(16, 2), (8, 6)];

/// Anchor centres in 0..1 of the input, in the network's output order.
pub fn anchors() -> Vec<[f32; 2]> {
    let mut out = Vec::with_capacity(896);
    for (grid, per_cell) in GRIDS {
        for y in 0..grid {
            for x in 0..grid {
                let centre = [
                    (x as f32 + 0.5) / grid as f32,
                    (y as f32 + 0.5) / grid as f32,
                ];
                out.extend(std::iter::repeat_n(centre, per_cell));
            }
        }
    }
    out
}

/// Where the 128x128 input sits in the frame: input pixel `p` is frame pixel
/// `p * scale - offset`. Letterboxing keeps the aspect ratio, so faces are not squashed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Letterbox {
    pub scale: f32,
    pub offset_x: f32,
    pub offset_y: f32,
}

impl Letterbox {
    /// The frame's longer side fills the input; the shorter one is centred with padding.
    pub fn for_frame(width: u32, height: u32) -> Self {
        let side = width.max(height) as f32;
        Self {
            scale: side / INPUT as f32,
            offset_x: (side - width as f32) / 2.0,
            offset_y: (side - height as f32) / 2.0,
        }
    }

    fn to_frame(self, unit: [f32; 2]) -> [f32; 2] {
        let side = INPUT as f32 * self.scale;
        [
            unit[0] * side - self.offset_x,
            unit[1] * side - self.offset_y,
        ]
    }
}

/// What a detection must clear: score (after the sigmoid) and the overlap that merges boxes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DecodeOptions {
    pub min_score: f32,
    pub min_suppression_iou: f32,
    /// Most faces reported per frame (the largest scores win); bounds the descriptor work.
    pub max_faces: usize,
}

impl Default for DecodeOptions {
    /// MediaPipe's front-model thresholds.
    fn default() -> Self {
        Self {
            min_score: 0.75,
            min_suppression_iou: 0.3,
            max_faces: 16,
        }
    }
}

/// Turns the raw outputs (one logit per anchor; `COORDS` numbers per anchor) into faces in the
/// frame's pixels. Lengths that do not match the anchor count give no faces (the model is
/// checked at load, so this only guards arithmetic).
pub fn decode(
    logits: &[f32],
    regressions: &[f32],
    letterbox: Letterbox,
    options: DecodeOptions,
) -> Vec<Face> {
    let anchors = anchors();
    if logits.len() != anchors.len() || regressions.len() != anchors.len() * COORDS {
        return Vec::new();
    }
    let px = 1.0 / INPUT as f32;
    let mut candidates = Vec::new();
    for (i, anchor) in anchors.iter().enumerate() {
        let score = sigmoid(logits[i]);
        if score < options.min_score {
            continue;
        }
        let r = &regressions[i * COORDS..(i + 1) * COORDS];
        let centre = [anchor[0] + r[0] * px, anchor[1] + r[1] * px];
        let size = [r[2] * px, r[3] * px];
        let top_left = letterbox.to_frame([centre[0] - size[0] / 2.0, centre[1] - size[1] / 2.0]);
        let side = INPUT as f32 * letterbox.scale;
        let mut keypoints = [[0.0; 2]; KEYPOINTS];
        for (k, point) in keypoints.iter_mut().enumerate() {
            *point =
                letterbox.to_frame([anchor[0] + r[4 + 2 * k] * px, anchor[1] + r[5 + 2 * k] * px]);
        }
        candidates.push(Face {
            bbox: BBox {
                x: top_left[0],
                y: top_left[1],
                w: size[0] * side,
                h: size[1] * side,
            },
            score,
            keypoints,
        });
    }
    weighted_nms(candidates, options)
}

/// Clamped so extreme logits cannot overflow `exp`.
fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x.clamp(-80.0, 80.0)).exp())
}

/// MediaPipe's weighted NMS: the best remaining detection and every detection overlapping it by
/// more than the threshold are merged into one face whose box and keypoints are the
/// score-weighted mean (steadier from frame to frame than keeping the single best box).
pub fn weighted_nms(mut candidates: Vec<Face>, options: DecodeOptions) -> Vec<Face> {
    candidates.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut faces = Vec::new();
    while let Some(best) = candidates.first().copied() {
        if faces.len() >= options.max_faces {
            break;
        }
        let (overlapping, rest): (Vec<Face>, Vec<Face>) = candidates
            .into_iter()
            .partition(|c| c.bbox.iou(&best.bbox) > options.min_suppression_iou);
        candidates = rest;
        let total: f32 = overlapping.iter().map(|f| f.score).sum();
        let mut merged = Face {
            bbox: BBox {
                x: 0.0,
                y: 0.0,
                w: 0.0,
                h: 0.0,
            },
            score: best.score,
            keypoints: [[0.0; 2]; KEYPOINTS],
        };
        for f in &overlapping {
            let w = f.score / total;
            merged.bbox.x += f.bbox.x * w;
            merged.bbox.y += f.bbox.y * w;
            merged.bbox.w += f.bbox.w * w;
            merged.bbox.h += f.bbox.h * w;
            for (m, k) in merged.keypoints.iter_mut().zip(&f.keypoints) {
                m[0] += k[0] * w;
                m[1] += k[1] * w;
            }
        }
        // The best box overlaps itself, so `overlapping` is never empty; an empty one (NaN
        // boxes) keeps the best detection as it is.
        faces.push(if overlapping.is_empty() { best } else { merged });
    }
    faces
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchor_grid_matches_the_model_outputs() {
        let a = anchors();
        assert_eq!(a.len(), 512 + 384);
        assert_eq!(a[0], [0.5 / 16.0, 0.5 / 16.0]);
        assert_eq!(a[1], a[0]);
        assert_eq!(a[512], [0.5 / 8.0, 0.5 / 8.0]);
        assert_eq!(a[895], [7.5 / 8.0, 7.5 / 8.0]);
    }

    #[test]
    fn letterbox_maps_the_input_back_onto_the_frame() {
        let lb = Letterbox::for_frame(720, 528);
        // The input's corners are the padded square's; the frame sits in its middle.
        assert_eq!(lb.to_frame([0.0, 0.0]), [0.0, -96.0]);
        assert_eq!(lb.to_frame([1.0, 1.0]), [720.0, 624.0]);
    }

    /// One confident anchor with a known offset decodes to the box and keypoints it encodes.
    #[test]
    fn decodes_one_anchor_and_merges_its_neighbour() {
        let n = anchors().len();
        let mut logits = vec![-10.0; n];
        let mut reg = vec![0.0; n * COORDS];
        // Anchor 0 (centre 4,4 in input pixels) says: centre +12,+12, size 16x16, eyes at +-4.
        logits[0] = 5.0;
        logits[1] = 3.0; // same cell, slightly lower score, same box: merged away
        for a in [0, 1] {
            let r = &mut reg[a * COORDS..(a + 1) * COORDS];
            r[..4].copy_from_slice(&[12.0, 12.0, 16.0, 16.0]);
            r[4..8].copy_from_slice(&[8.0, 10.0, 16.0, 10.0]);
        }
        let lb = Letterbox::for_frame(256, 256); // scale 2
        let faces = decode(&logits, &reg, lb, DecodeOptions::default());
        assert_eq!(faces.len(), 1);
        let f = faces[0];
        assert!((f.score - sigmoid(5.0)).abs() < 1e-6);
        assert!(
            (f.bbox.x - 16.0).abs() < 1e-3 && (f.bbox.w - 32.0).abs() < 1e-3,
            "{f:?}"
        );
        assert!((f.keypoints[0][0] - 24.0).abs() < 1e-3 && (f.keypoints[1][0] - 40.0).abs() < 1e-3);
    }

    #[test]
    fn wrong_output_lengths_give_no_faces_and_extreme_logits_do_not_overflow() {
        assert!(
            decode(
                &[1.0; 3],
                &[0.0; 48],
                Letterbox::for_frame(1, 1),
                DecodeOptions::default()
            )
            .is_empty()
        );
        assert_eq!(sigmoid(f32::MAX), 1.0);
        assert!(sigmoid(f32::MIN) >= 0.0);
    }

    #[test]
    fn separate_faces_stay_separate_and_the_cap_holds() {
        let face = |x: f32, score: f32| Face {
            bbox: BBox {
                x,
                y: 0.0,
                w: 10.0,
                h: 10.0,
            },
            score,
            keypoints: [[x, 0.0]; KEYPOINTS],
        };
        let options = DecodeOptions {
            max_faces: 2,
            ..DecodeOptions::default()
        };
        let out = weighted_nms(
            vec![face(0.0, 0.9), face(100.0, 0.8), face(200.0, 0.95)],
            options,
        );
        assert_eq!(
            out.iter().map(|f| f.bbox.x).collect::<Vec<_>>(),
            vec![200.0, 0.0]
        );
    }
}
