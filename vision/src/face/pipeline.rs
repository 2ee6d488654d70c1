//! Detector and descriptor network together: what the node serves per frame and what the
//! coordinator runs on a watchlist photo.

use std::path::Path;

use super::{Describer, Descriptor, Detector, Face, align::align};
use crate::model::{self, ModelError};
use crate::picture::Picture;

pub struct FacePipeline {
    pub detector: Detector,
    pub describer: Describer,
}

impl FacePipeline {
    /// Loads both models from their ONNX bytes.
    pub fn from_bytes(
        detector: &[u8],
        describer: &[u8],
        threads: usize,
    ) -> Result<Self, ModelError> {
        Ok(Self {
            detector: Detector::from_bytes(detector, threads)?,
            describer: Describer::from_bytes("face descriptor network", describer, threads)?,
        })
    }

    /// Loads both models from files (e.g. `models/face/blazeface_front_128.onnx` and
    /// `models/face/face_recognition_150.onnx`).
    pub fn from_files(
        detector: &Path,
        describer: &Path,
        threads: usize,
    ) -> Result<Self, ModelError> {
        Self::from_bytes(&model::read(detector)?, &model::read(describer)?, threads)
    }

    /// The faces in a frame, best first.
    pub fn faces(&mut self, picture: &Picture) -> Result<Vec<Face>, ModelError> {
        self.detector.detect(picture)
    }

    /// One descriptor per face, from crops aligned on the eyes.
    pub fn describe(
        &mut self,
        picture: &Picture,
        faces: &[Face],
    ) -> Result<Vec<Descriptor>, ModelError> {
        let crops: Vec<Picture> = faces
            .iter()
            .map(|f| align(picture, f, self.describer.size))
            .collect();
        self.describer.describe(&crops)
    }
}
