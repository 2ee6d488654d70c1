//! `mcdnn-node catalog corpus`: the labelled embedding corpus the coordinator trains
//! specialised heads on. Training-split images go through one variant's trunk with ONNX Runtime
//! (the same load and preprocessing as serving, so the head sees what the node will compute),
//! plus held-out test images to measure heads on; the replay serves test images, which the
//! head never trains on.

use std::path::Path;

use anyhow::Context;
use wire::corpus::{Corpus, MAX_IMAGES, Split};
use wire::manifest::Manifest;

use crate::dataset::Dataset;
use crate::engine::LoadedVariant;

/// Embeds every `stride`-th image of `data` until `limit` images.
fn embed(model: &mut LoadedVariant, data: &Dataset, limit: usize) -> anyhow::Result<Split> {
    let n = limit.min(data.len());
    let stride = (data.len() / n.max(1)).max(1);
    let mut split = Split::default();
    for i in (0..data.len()).step_by(stride).take(n) {
        split.labels.push(data.label(i));
        split.embeddings.extend(model.embed(data.image(i))?);
    }
    Ok(split)
}

/// Builds the corpus of `variant` from `train` (training) and `test` (held-out) images.
pub fn build(
    manifest: &Manifest,
    dir: &Path,
    variant: &str,
    (train, train_n): (&Dataset, usize),
    (test, test_n): (&Dataset, usize),
) -> anyhow::Result<Corpus> {
    anyhow::ensure!(
        train_n > 0 && test_n > 0 && train_n + test_n <= MAX_IMAGES,
        "want 1+ training and held-out images, at most {MAX_IMAGES} in all"
    );
    let spec = manifest
        .variant(variant)
        .with_context(|| format!("the catalog has no variant {variant}"))?;
    let mut model = LoadedVariant::load_dir(dir, spec, &manifest.input)?;
    let train = embed(&mut model, train, train_n)?;
    let test = embed(&mut model, test, test_n)?;
    let dim = train.embeddings.len() / train.len().max(1);
    let corpus = Corpus {
        variant: variant.to_string(),
        trunk_sha256: spec.trunk.sha256.clone(),
        dim,
        train,
        test,
    };
    corpus.validate()?;
    Ok(corpus)
}
