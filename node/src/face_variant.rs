//! A face variant as the serving loop runs it: an RGB picture in, the watchlist entry of the
//! best-matching face (or unknown) out. The detector and the variant's descriptor network come
//! from a face catalog (`models/face/catalog.json`); every file is verified against its digest
//! before ONNX Runtime sees it, as the Fashion-MNIST engine does.
//! The serving loop holds it in the model cache beside `engine::LoadedVariant`s and runs it for
//! face apps (`agent::serve::face`).

use vision::face::{Descriptor, Face, FacePipeline, Gallery, Match};
use wire::manifest::{FileSpec, InputKind, Manifest, VariantSpec};

use crate::engine::{self, EngineError};
use crate::picture::Picture;

/// Whether `spec` is a face variant (detector + descriptor network, no heads).
pub fn is_face(manifest: &Manifest, spec: &VariantSpec) -> bool {
    manifest.variant_kind(spec) == InputKind::Face
}

/// Whether `app` is a face app (camera frames in, watchlist names out).
pub fn is_face_app(manifest: &Manifest, app: &str) -> bool {
    manifest.app_kind(app) == Some(InputKind::Face)
}

/// The label served when no face in the frame is within the threshold of a watchlist entry.
pub const UNKNOWN: u32 = u32::MAX;

#[derive(Debug, thiserror::Error)]
pub enum FaceVariantError {
    #[error("not a face variant of a face catalog (input kind face with a detector)")]
    NotFaceCatalog,
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Model(#[from] vision::model::ModelError),
}

/// One frame's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct FaceAnswer {
    /// Gallery entry nearest to any face of the frame, if within the threshold, else
    /// [`UNKNOWN`].
    pub label: u32,
    /// Distance of that nearest face to its nearest watchlist entry (infinite without faces).
    pub distance: f32,
    /// Faces the detector found.
    pub faces: usize,
    /// The gallery entry each named face matched (faces that are unknown are left out).
    pub named: Vec<usize>,
    /// Per face: its descriptor, and its nearest watchlist entry (within the threshold) and
    /// distance.
    pub descriptors: Vec<Descriptor>,
    pub matches: Vec<Match>,
    /// The face the answer is about (nearest to a watchlist entry), if the frame has any.
    pub best: Option<usize>,
}

impl FaceAnswer {
    /// Names each face of a frame (`descriptors`, one per face) against `watchlist`.
    pub fn matching(descriptors: Vec<Descriptor>, watchlist: &Gallery) -> Self {
        let found: Vec<_> = descriptors.iter().map(|d| watchlist.best(d)).collect();
        let best = (found.iter().enumerate())
            .min_by(|a, b| a.1.distance.total_cmp(&b.1.distance))
            .map(|(i, _)| i);
        let nearest = best.map(|i| &found[i]);
        Self {
            named: found.iter().filter_map(|m| m.entry).collect(),
            label: nearest
                .and_then(|m| m.entry)
                .and_then(|i| u32::try_from(i).ok())
                .unwrap_or(UNKNOWN),
            distance: nearest.map_or(f32::INFINITY, |m| m.distance),
            faces: descriptors.len(),
            descriptors,
            best,
            matches: found,
        }
    }
}

pub struct FaceVariant {
    pub name: String,
    pipeline: FacePipeline,
}

impl FaceVariant {
    /// Loads `spec` of a face catalog, asking `fetch` for each file (a folder or the sled store).
    pub fn load_with(
        manifest: &Manifest,
        spec: &VariantSpec,
        mut fetch: impl FnMut(&FileSpec) -> Result<Vec<u8>, EngineError>,
    ) -> Result<Self, FaceVariantError> {
        let detector = match &manifest.detector {
            Some(d) if is_face(manifest, spec) => &d.file,
            _ => return Err(FaceVariantError::NotFaceCatalog),
        };
        let mut verified = |file: &FileSpec| -> Result<Vec<u8>, EngineError> {
            let bytes = fetch(file)?;
            engine::verify(file, &bytes)?;
            Ok(bytes)
        };
        let detector_bytes = verified(detector)?;
        let trunk_bytes = verified(&spec.trunk)?;
        // One thread, like the Fashion-MNIST engine: a body camera serves a frame at a time.
        let pipeline = FacePipeline::from_bytes(&detector_bytes, &trunk_bytes, 1)?;
        Ok(Self {
            name: spec.name.clone(),
            pipeline,
        })
    }

    /// The faces the detector finds in `picture`.
    pub fn detect(&mut self, picture: &Picture) -> Result<Vec<Face>, FaceVariantError> {
        Ok(self.pipeline.faces(picture)?)
    }

    /// One descriptor per face (found by any face variant's detector: they share it).
    pub fn describe(
        &mut self,
        picture: &Picture,
        faces: &[Face],
    ) -> Result<Vec<Descriptor>, FaceVariantError> {
        Ok(self.pipeline.describe(picture, faces)?)
    }

    /// Detects, describes and matches every face of `picture` against `watchlist`; the frame's
    /// answer is its closest face.
    pub fn answer(
        &mut self,
        picture: &Picture,
        watchlist: &Gallery,
    ) -> Result<FaceAnswer, FaceVariantError> {
        let faces = self.detect(picture)?;
        let descriptors = self.describe(picture, &faces)?;
        Ok(FaceAnswer::matching(descriptors, watchlist))
    }
}
