//! The BlazeFace front-camera detector: letterbox the frame into its 128x128 input, run it, and
//! decode the anchors ([`super::decode`]) back into the frame's pixels.

use ort::session::Session;
use ort::value::TensorRef;

use super::Face;
use super::decode::{self, COORDS, DecodeOptions, INPUT, Letterbox};
use crate::model::{self, ModelError, ort_err};
use crate::picture::Picture;

const WHAT: &str = "face detector (BlazeFace front 128)";

pub struct Detector {
    session: Session,
    pub options: DecodeOptions,
    /// The normalised input, reused from frame to frame.
    input: Vec<f32>,
}

impl Detector {
    /// Loads the detector from its ONNX bytes and checks it has BlazeFace's input and outputs
    /// (`[1,128,128,3]` in; per-anchor scores and 16 coordinates for the 16x16 and 8x8 grids).
    pub fn from_bytes(bytes: &[u8], threads: usize) -> Result<Self, ModelError> {
        let session = model::session(WHAT, bytes, threads)?;
        let dims = model::input_dims(&session);
        let side = INPUT as i64;
        if dims != [1, side, side, 3] {
            return Err(shape_error(format!(
                "input is {dims:?}, expected [1, 128, 128, 3]"
            )));
        }
        if session.outputs().len() != 4 {
            return Err(shape_error(format!(
                "{} outputs, expected 4 (scores and boxes of two grids)",
                session.outputs().len()
            )));
        }
        Ok(Self {
            session,
            options: DecodeOptions::default(),
            input: vec![0.0; INPUT * INPUT * 3],
        })
    }

    /// The faces in `picture` (grey or RGB), best first, at most `options.max_faces`.
    pub fn detect(&mut self, picture: &Picture) -> Result<Vec<Face>, ModelError> {
        let letterbox = self.fill_input(picture);
        let shape = [1usize, INPUT, INPUT, 3];
        let tensor = TensorRef::from_array_view((shape, self.input.as_slice()))
            .map_err(ort_err("detector input tensor"))?;
        let outputs = self
            .session
            .run(ort::inputs![tensor])
            .map_err(ort_err(WHAT))?;
        let mut parts: Vec<&[f32]> = Vec::with_capacity(4);
        for i in 0..4 {
            let (_, data) = outputs[i]
                .try_extract_tensor::<f32>()
                .map_err(ort_err("detector output"))?;
            parts.push(data);
        }
        // Output order: scores 16x16, scores 8x8, boxes 16x16, boxes 8x8.
        let logits = [parts[0], parts[1]].concat();
        let boxes = [parts[2], parts[3]].concat();
        if boxes.len() != logits.len() * COORDS {
            return Err(shape_error(format!(
                "{} scores but {} box numbers",
                logits.len(),
                boxes.len()
            )));
        }
        Ok(decode::decode(&logits, &boxes, letterbox, self.options))
    }

    /// Letterboxes `picture` into the input as RGB scaled to -1..1 (MediaPipe's range); the
    /// padding is black (-1), as in MediaPipe, rather than repeated edges that could look like a
    /// stretched face.
    fn fill_input(&mut self, picture: &Picture) -> Letterbox {
        let lb = Letterbox::for_frame(picture.width, picture.height);
        let square = picture.to_rgb().crop_resize(
            -lb.offset_x,
            -lb.offset_y,
            INPUT as f32 * lb.scale,
            INPUT as f32 * lb.scale,
            INPUT as u32,
            INPUT as u32,
        );
        let inside = |p: usize, offset: f32, len: u32| {
            let at = (p as f32 + 0.5) * lb.scale - offset;
            at >= 0.0 && at < len as f32
        };
        for y in 0..INPUT {
            let row_inside = inside(y, lb.offset_y, picture.height);
            for x in 0..INPUT {
                let keep = row_inside && inside(x, lb.offset_x, picture.width);
                for c in 0..3 {
                    let i = (y * INPUT + x) * 3 + c;
                    self.input[i] = if keep {
                        f32::from(square.pixels[i]) / 127.5 - 1.0
                    } else {
                        -1.0
                    };
                }
            }
        }
        lb
    }
}

fn shape_error(message: String) -> ModelError {
    ModelError::Shape {
        what: WHAT.to_string(),
        message,
    }
}
