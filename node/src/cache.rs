//! The model cache: variants loaded into ONNX Runtime within a memory budget. Loading is paging:
//! it costs time and energy, so the least recently used variant is evicted only when a new one
//! does not fit, and the per-request policy charges the swap before choosing it. Gray variants
//! (trunk + heads) and face variants (detector + descriptor network) share the one budget.

use std::collections::HashMap;
use std::time::Instant;

use wire::manifest::{FileSpec, Manifest, VariantSpec};

use crate::engine::{EngineError, LoadedVariant};
use crate::face_variant::{FaceVariant, FaceVariantError, is_face};

/// A loaded variant of either kind.
enum Model {
    Gray(LoadedVariant),
    /// `bytes`: the variant's files ([`loaded_bytes`]), detector included.
    Face {
        variant: FaceVariant,
        load_ms: f64,
        bytes: u64,
    },
}

impl Model {
    fn name(&self) -> &str {
        match self {
            Model::Gray(v) => &v.name,
            Model::Face { variant, .. } => &variant.name,
        }
    }

    fn bytes(&self) -> u64 {
        match self {
            Model::Gray(v) => v.model_bytes,
            Model::Face { bytes, .. } => *bytes,
        }
    }

    fn load_ms(&self) -> f64 {
        match self {
            Model::Gray(v) => v.load_ms,
            Model::Face { load_ms, .. } => *load_ms,
        }
    }
}

/// Bytes a variant occupies once loaded: all its files (a face variant's detector included).
fn loaded_bytes(manifest: &Manifest, spec: &VariantSpec) -> u64 {
    manifest.variant_files(spec).iter().map(|f| f.bytes).sum()
}

/// Where model bytes come from: a folder (the repo's models/) or the node's sled store.
pub type Fetch = Box<dyn FnMut(&FileSpec) -> Result<Vec<u8>, EngineError> + Send>;

pub struct ModelCache {
    manifest: Manifest,
    fetch: Fetch,
    budget_bytes: u64,
    loaded: Vec<Model>,
    /// Last measured load time per variant (ms). The serving loop folds every load into the
    /// smoothed profiles (`scheduler::load`) that the policy, the battery charge and telemetry
    /// use.
    pub load_ms: HashMap<String, f64>,
    pub loads: u64,
    /// Number of the frame being served: a variant's embedding is reused within one frame.
    frame: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("variant {0} is not in the catalog")]
    Unknown(String),
    #[error("variant {name} needs {need} bytes but the model memory budget is {budget}")]
    TooLarge {
        name: String,
        need: u64,
        budget: u64,
    },
    #[error("variant {name} is not a {wanted} variant")]
    WrongKind { name: String, wanted: &'static str },
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Face(#[from] FaceVariantError),
}

impl ModelCache {
    pub fn new(manifest: Manifest, fetch: Fetch, budget_bytes: u64) -> Self {
        Self {
            manifest,
            fetch,
            budget_bytes,
            loaded: Vec::new(),
            load_ms: HashMap::new(),
            loads: 0,
            frame: 0,
        }
    }

    /// Names of loaded variants, least recently used first.
    pub fn resident(&self) -> Vec<String> {
        self.resident_names().map(str::to_string).collect()
    }

    /// [`resident`](Self::resident) without copying the names.
    pub fn resident_names(&self) -> impl Iterator<Item = &str> {
        self.loaded.iter().map(Model::name)
    }

    /// A new frame begins: embeddings of the previous one are stale.
    pub fn begin_frame(&mut self) {
        self.frame += 1;
    }

    pub fn frame(&self) -> u64 {
        self.frame
    }

    pub fn used_bytes(&self) -> u64 {
        self.loaded.iter().map(Model::bytes).sum()
    }

    pub fn budget_bytes(&self) -> u64 {
        self.budget_bytes
    }

    /// The gray variant `name`, loading it (and evicting least recently used ones) if needed.
    /// Returns whether it had to be loaded.
    pub fn get(&mut self, name: &str) -> Result<(&mut LoadedVariant, bool), CacheError> {
        let (i, loaded) = self.slot(name)?;
        match &mut self.loaded[i] {
            Model::Gray(v) => Ok((v, loaded)),
            Model::Face { .. } => Err(CacheError::WrongKind {
                name: name.to_string(),
                wanted: "gray",
            }),
        }
    }

    /// The face variant `name`, as [`get`](Self::get) does for gray ones.
    pub fn get_face(&mut self, name: &str) -> Result<(&mut FaceVariant, bool), CacheError> {
        let (i, loaded) = self.slot(name)?;
        match &mut self.loaded[i] {
            Model::Face { variant, .. } => Ok((variant, loaded)),
            Model::Gray(_) => Err(CacheError::WrongKind {
                name: name.to_string(),
                wanted: "face",
            }),
        }
    }

    /// The index of `name` in `loaded` (most recently used, so last), loading it if needed.
    fn slot(&mut self, name: &str) -> Result<(usize, bool), CacheError> {
        if let Some(i) = self.loaded.iter().position(|v| v.name() == name) {
            let v = self.loaded.remove(i);
            self.loaded.push(v);
            return Ok((self.loaded.len() - 1, false));
        }
        let spec = self
            .manifest
            .variant(name)
            .ok_or_else(|| CacheError::Unknown(name.to_string()))?
            .clone();
        let need = loaded_bytes(&self.manifest, &spec);
        if need > self.budget_bytes {
            return Err(CacheError::TooLarge {
                name: name.to_string(),
                need,
                budget: self.budget_bytes,
            });
        }
        while self.used_bytes() + need > self.budget_bytes && !self.loaded.is_empty() {
            let gone = self.loaded.remove(0);
            tracing::debug!(variant = %gone.name(), "evicted from the model cache");
        }
        let model = if is_face(&self.manifest, &spec) {
            let started = Instant::now();
            let variant = FaceVariant::load_with(&self.manifest, &spec, &mut self.fetch)?;
            Model::Face {
                variant,
                load_ms: started.elapsed().as_secs_f64() * 1e3,
                bytes: need,
            }
        } else {
            Model::Gray(LoadedVariant::load_with(
                &spec,
                &self.manifest.input,
                &mut self.fetch,
            )?)
        };
        self.load_ms.insert(name.to_string(), model.load_ms());
        self.loads += 1;
        self.loaded.push(model);
        Ok((self.loaded.len() - 1, true))
    }
}
