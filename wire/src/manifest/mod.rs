//! The model catalog manifest (`models/catalog.json`): what a variant family is made of on disk and
//! what training measured. Written by `models/train.py`, read by the node (to load and verify ONNX
//! files), the scheduler (to build profiles) and the coordinator (to serve the catalog index).
//!
//! Device energy and latency are not measured by training; each device class gives per-operation
//! coefficients from which the scheduler derives per-variant profiles (`scheduler::catalog`).

use serde::{Deserialize, Serialize};

mod include;
mod load;
mod recent;

pub use load::{load, locate};
pub use recent::{MAX_RECENT_IDENTITIES, RecentSpec};

/// Top level of `models/catalog.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Free text: where the data came from, how the models were trained.
    pub source: String,
    /// How an image becomes the trunk's input tensor.
    pub input: InputSpec,
    pub apps: Vec<AppSpec>,
    pub variants: Vec<VariantSpec>,
    pub device_classes: Vec<DeviceClassSpec>,
    /// The face detector every variant of a face catalog runs first (`input.kind` = `face`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detector: Option<DetectorSpec>,
}

/// What a catalog's apps take as input.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InputKind {
    /// One grey image of `height x width` per request, normalised by `mean` and `std`; the trunk
    /// gives an embedding and one head per app classifies it (Fashion-MNIST).
    #[default]
    Gray,
    /// An RGB frame: the catalog's detector finds faces, the variant's trunk describes each
    /// (crop side from the ONNX file), and the app names it against a gallery by distance; no
    /// heads, the answer is a gallery index or unknown.
    Face,
}

/// A face catalog's detector (BlazeFace front 128: box decoding in `vision::face`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DetectorSpec {
    #[serde(flatten)]
    pub file: FileSpec,
    /// Floating-point operations per frame.
    pub ops: u64,
}

/// Input preprocessing: `x = (pixel / 255 - mean) / std`, shape `[batch, 1, height, width]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputSpec {
    pub height: usize,
    pub width: usize,
    pub mean: f32,
    pub std: f32,
    #[serde(default)]
    pub kind: InputKind,
}

/// One app served from the shared trunk: its class names and how dataset labels map onto them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppSpec {
    pub name: String,
    pub classes: Vec<String>,
    /// `label_map[dataset_label]` is this app's class index (identity for the 10-class app).
    pub label_map: Vec<usize>,
    /// The app's input when it differs from the catalog's `input.kind` (a fleet catalog that
    /// includes both the Fashion-MNIST and the face catalogs sets it on every app).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<InputKind>,
}

/// One ONNX file with its content address.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileSpec {
    /// Path relative to the manifest's folder.
    pub file: String,
    /// Hex sha256 of the file's bytes.
    pub sha256: String,
    pub bytes: u64,
}

/// A head: embedding -> logits for one app.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeadSpec {
    pub app: String,
    #[serde(flatten)]
    pub file: FileSpec,
    /// Floating-point operations (2 x multiply-adds) per request for this head.
    pub ops: u64,
    /// Top-1 accuracy in percent on the 10k test images, as training measured it.
    pub accuracy: f64,
}

/// A variant: one trunk and one head per app.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VariantSpec {
    pub name: String,
    /// full, narrow, shallow, lowrank, int8 ...: how the variant approximates the full model.
    pub kind: String,
    pub description: String,
    pub trunk: FileSpec,
    /// Floating-point operations per frame for the trunk (shared by every app's head).
    pub trunk_ops: u64,
    pub embedding_dim: usize,
    pub params: u64,
    /// One per app; empty in a face catalog, whose apps match the trunk's descriptor against a
    /// gallery instead of running a head.
    pub heads: Vec<HeadSpec>,
    /// Accuracy per app in percent for apps without a head (face catalogs: agreement with the
    /// reference variant's answers, see the manifest's `source`).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub accuracy: std::collections::BTreeMap<String, f64>,
    /// Face variants only: specialised to the people seen recently (a cheaper network against
    /// a small gallery of its own descriptors, falling back to a general variant); `accuracy`
    /// is then the whole cascade's as evaluated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recent: Option<RecentSpec>,
}

impl VariantSpec {
    /// Whether this variant answers `app`: a head for it, or (headless face variants) an accuracy.
    pub fn serves(&self, app: &str) -> bool {
        self.head(app).is_some() || self.accuracy.contains_key(app)
    }

    /// The head that serves `app`, if this variant has one.
    pub fn head(&self, app: &str) -> Option<&HeadSpec> {
        self.heads.iter().find(|h| h.app == app)
    }

    /// Operations for one request of `app` when the trunk runs for it alone.
    pub fn ops_for(&self, app: &str) -> Option<u64> {
        self.head(app).map(|h| self.trunk_ops + h.ops)
    }

    /// `app`'s accuracy in percent: its head's, or (headless face apps) the variant's own.
    pub fn app_accuracy(&self, app: &str) -> Option<f64> {
        self.head(app)
            .map(|h| h.accuracy)
            .or_else(|| self.accuracy.get(app).copied())
    }

    /// Bytes of the trunk and every head: what a node stores and loads.
    pub fn bytes(&self) -> u64 {
        self.trunk.bytes + self.heads.iter().map(|h| h.file.bytes).sum::<u64>()
    }
}

/// A class of device and the coefficients that turn a variant's size and operations into energy
/// and latency on it. Int8 variants run `int8_speedup` times faster per operation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceClassSpec {
    pub name: String,
    pub joules_per_gop: f64,
    pub ms_per_gop: f64,
    /// Fixed cost per request (sensor, wake-up, framework overhead).
    pub joules_per_request: f64,
    pub ms_per_request: f64,
    /// Loading a model from storage into memory.
    pub load_joules_per_mb: f64,
    pub load_ms_per_mb: f64,
    pub int8_speedup: f64,
}

/// Errors reading a manifest.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("catalog manifest is not valid JSON for this version: {0}")]
    Parse(String),
    #[error("catalog manifest is inconsistent: {0}")]
    Invalid(String),
}

impl Manifest {
    /// Parses and checks a manifest: every variant has a head for every app, label maps fit.
    pub fn from_json(text: &str) -> Result<Self, ManifestError> {
        let manifest: Manifest =
            serde_json::from_str(text).map_err(|e| ManifestError::Parse(e.to_string()))?;
        manifest.validate()?;
        Ok(manifest)
    }

    fn validate(&self) -> Result<(), ManifestError> {
        if self.apps.is_empty() || self.variants.is_empty() {
            return Err(ManifestError::Invalid("no apps or no variants".into()));
        }
        for app in &self.apps {
            if let Some(bad) = app.label_map.iter().find(|&&c| c >= app.classes.len()) {
                return Err(ManifestError::Invalid(format!(
                    "app {}: label map names class {bad} but it has {} classes",
                    app.name,
                    app.classes.len()
                )));
            }
            if self.apps.iter().filter(|a| a.name == app.name).count() > 1 {
                return Err(ManifestError::Invalid(format!(
                    "app {} appears twice",
                    app.name
                )));
            }
        }
        if let Some(v) = (self.variants.iter().enumerate())
            .find(|(i, v)| self.variants[..*i].iter().any(|w| w.name == v.name))
        {
            return Err(ManifestError::Invalid(format!(
                "variant {} appears twice",
                v.1.name
            )));
        }
        let has_face_app = self.apps.iter().any(|a| self.kind_of(a) == InputKind::Face);
        if has_face_app && self.detector.is_none() {
            return Err(ManifestError::Invalid(
                "a face catalog (input kind face) needs a detector".into(),
            ));
        }
        for variant in &self.variants {
            self.validate_variant(variant)?;
        }
        Ok(())
    }

    /// A variant serves apps of one input kind: a grey variant has a head for every grey app
    /// (they share its trunk run); a face variant has no heads and an accuracy for every face app.
    fn validate_variant(&self, variant: &VariantSpec) -> Result<(), ManifestError> {
        let kind = self.variant_kind(variant);
        for app in self.apps.iter().filter(|a| self.kind_of(a) == kind) {
            let missing = match kind {
                InputKind::Gray if variant.head(&app.name).is_none() => "no head",
                InputKind::Face if !variant.accuracy.contains_key(&app.name) => "no accuracy",
                _ => continue,
            };
            return Err(ManifestError::Invalid(format!(
                "variant {} has {missing} for app {}",
                variant.name, app.name
            )));
        }
        let strays = |app: &str| self.app_kind(app) != Some(kind);
        if let Some(recent) = &variant.recent {
            if kind != InputKind::Face {
                return Err(ManifestError::Invalid(format!(
                    "variant {}: only face variants keep a recent gallery",
                    variant.name
                )));
            }
            recent.validate(&variant.name)?;
        }
        if kind == InputKind::Face && !variant.heads.is_empty() {
            return Err(ManifestError::Invalid(format!(
                "variant {}: face catalogs have no heads (apps match descriptors)",
                variant.name
            )));
        }
        let stray = (variant.heads.iter().map(|h| h.app.as_str()))
            .chain(variant.accuracy.keys().map(String::as_str))
            .find(|app| strays(app));
        if let Some(app) = stray {
            return Err(ManifestError::Invalid(format!(
                "variant {} names app {app}, which is unknown or takes another input kind",
                variant.name
            )));
        }
        Ok(())
    }

    fn kind_of(&self, app: &AppSpec) -> InputKind {
        app.kind.unwrap_or(self.input.kind)
    }

    /// The input `app` takes (its own kind, else the catalog's); `None` for an unknown app.
    pub fn app_kind(&self, app: &str) -> Option<InputKind> {
        self.app(app).map(|a| self.kind_of(a))
    }

    /// What a variant takes as input: face if it serves a face app (or the catalog is a face
    /// catalog and it serves nothing yet), grey otherwise.
    pub fn variant_kind(&self, variant: &VariantSpec) -> InputKind {
        let face = |a: &AppSpec| self.kind_of(a) == InputKind::Face;
        match self.apps.iter().find(|a| variant.serves(&a.name)) {
            Some(app) if face(app) => InputKind::Face,
            Some(_) => InputKind::Gray,
            None if variant.heads.is_empty() && self.detector.is_some() => InputKind::Face,
            None => self.input.kind,
        }
    }

    /// The variants that answer `app`.
    pub fn variants_for<'a>(&'a self, app: &'a str) -> impl Iterator<Item = &'a VariantSpec> {
        self.variants.iter().filter(move |v| v.serves(app))
    }

    /// Every file a node needs to run `variant`: its trunk, its heads and, for a face variant,
    /// the catalog's detector. The coordinator shards exactly these, the node fetches and checks
    /// exactly these.
    pub fn variant_files<'a>(&'a self, variant: &'a VariantSpec) -> Vec<&'a FileSpec> {
        let mut files: Vec<&FileSpec> = std::iter::once(&variant.trunk)
            .chain(variant.heads.iter().map(|h| &h.file))
            .collect();
        if self.variant_kind(variant) == InputKind::Face {
            files.extend(self.detector.as_ref().map(|d| &d.file));
        }
        files
    }

    pub fn variant(&self, name: &str) -> Option<&VariantSpec> {
        self.variants.iter().find(|v| v.name == name)
    }

    pub fn app(&self, name: &str) -> Option<&AppSpec> {
        self.apps.iter().find(|a| a.name == name)
    }

    pub fn device_class(&self, name: &str) -> Option<&DeviceClassSpec> {
        self.device_classes.iter().find(|d| d.name == name)
    }
}
