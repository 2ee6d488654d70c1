//! The model cache: variants loaded into ONNX Runtime within a memory budget. Loading is paging:
//! it costs time and energy, so the least recently used variant is evicted only when a new one
//! does not fit, and the per-request policy charges the swap before choosing it.

use std::collections::HashMap;

use wire::manifest::{FileSpec, Manifest};

use crate::engine::{EngineError, LoadedVariant};

/// Where model bytes come from: a folder (the repo's models/) or the node's sled store.
pub type Fetch = Box<dyn FnMut(&FileSpec) -> Result<Vec<u8>, EngineError> + Send>;

pub struct ModelCache {
    manifest: Manifest,
    fetch: Fetch,
    budget_bytes: u64,
    loaded: Vec<LoadedVariant>,
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
    #[error(transparent)]
    Engine(#[from] EngineError),
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
        self.loaded.iter().map(|v| v.name.as_str())
    }

    /// A new frame begins: embeddings of the previous one are stale.
    pub fn begin_frame(&mut self) {
        self.frame += 1;
    }

    pub fn frame(&self) -> u64 {
        self.frame
    }

    pub fn used_bytes(&self) -> u64 {
        self.loaded.iter().map(|v| v.model_bytes).sum()
    }

    pub fn budget_bytes(&self) -> u64 {
        self.budget_bytes
    }

    /// The variant, loading it (and evicting least recently used ones) if needed. Returns whether
    /// it had to be loaded.
    pub fn get(&mut self, name: &str) -> Result<(&mut LoadedVariant, bool), CacheError> {
        if let Some(i) = self.loaded.iter().position(|v| v.name == name) {
            let v = self.loaded.remove(i);
            self.loaded.push(v);
            let last = self.loaded.len() - 1;
            return Ok((&mut self.loaded[last], false));
        }
        let spec = self
            .manifest
            .variant(name)
            .ok_or_else(|| CacheError::Unknown(name.to_string()))?
            .clone();
        let need = spec.bytes();
        if need > self.budget_bytes {
            return Err(CacheError::TooLarge {
                name: name.to_string(),
                need,
                budget: self.budget_bytes,
            });
        }
        while self.used_bytes() + need > self.budget_bytes && !self.loaded.is_empty() {
            let gone = self.loaded.remove(0);
            tracing::debug!(variant = %gone.name, "evicted from the model cache");
        }
        let variant = LoadedVariant::load_with(&spec, &self.manifest.input, &mut self.fetch)?;
        self.load_ms.insert(name.to_string(), variant.load_ms);
        self.loads += 1;
        self.loaded.push(variant);
        let last = self.loaded.len() - 1;
        Ok((&mut self.loaded[last], true))
    }
}
