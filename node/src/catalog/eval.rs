//! `mcdnn-node catalog eval`: loads every variant with ONNX Runtime and measures it on the 10k
//! Fashion-MNIST test images: accuracy per app, batch-1 latency per frame (trunk + every head),
//! model bytes and resident memory added by loading.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use serde::Serialize;
use wire::manifest::{Manifest, VariantSpec};

use crate::dataset::Dataset;
use crate::engine::LoadedVariant;

#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p99: f64,
}

/// Measured figures for one variant.
#[derive(Debug, Clone, Serialize)]
pub struct VariantEval {
    pub name: String,
    pub kind: String,
    /// Operations per frame: the trunk once plus every app's head.
    pub ops: u64,
    pub params: u64,
    pub bytes: u64,
    /// Resident memory the process grew by while loading the variant.
    pub memory_bytes: u64,
    pub load_ms: f64,
    /// Percent top-1 per app, measured here.
    pub accuracy: BTreeMap<String, f64>,
    /// What training measured (the manifest), for comparison.
    pub manifest_accuracy: BTreeMap<String, f64>,
    pub latency_ms: Latency,
    pub images: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct CatalogEval {
    pub variants: Vec<VariantEval>,
}

/// Evaluates `only` (or every variant) on the first `limit` test images (all when None).
pub fn run(
    manifest: &Manifest,
    dir: &Path,
    data: &Dataset,
    only: &[String],
    limit: Option<usize>,
) -> anyhow::Result<CatalogEval> {
    let images = limit.unwrap_or(data.len()).min(data.len());
    // Initialise ONNX Runtime first so its own start-up is not charged to the first variant.
    crate::runtime::environment()?;
    let variants = manifest
        .variants
        .iter()
        .filter(|v| only.is_empty() || only.contains(&v.name))
        .map(|v| eval_variant(manifest, dir, v, data, images))
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(CatalogEval { variants })
}

fn eval_variant(
    manifest: &Manifest,
    dir: &Path,
    spec: &VariantSpec,
    data: &Dataset,
    images: usize,
) -> anyhow::Result<VariantEval> {
    let mut model = LoadedVariant::load_dir(dir, spec, &manifest.input)
        .with_context(|| format!("loading variant {}", spec.name))?;
    // In this process the allocator reuses memory freed by earlier variants, so each variant's
    // footprint is measured in a fresh child process (falls back to 0 if that fails).
    let memory_bytes = probe_in_child(dir, spec).unwrap_or(0);
    let apps: Vec<&str> = manifest.apps.iter().map(|a| a.name.as_str()).collect();
    let mut correct = vec![0usize; apps.len()];
    let mut latencies = Vec::with_capacity(images);
    for i in 0..images {
        let started = Instant::now();
        let predictions = model.infer(data.image(i), &apps)?;
        latencies.push(started.elapsed().as_secs_f64() * 1e3);
        for (a, (app, p)) in manifest.apps.iter().zip(&predictions).enumerate() {
            let truth = app.label_map.get(data.label(i) as usize).copied();
            if truth == Some(p.label as usize) {
                correct[a] += 1;
            }
        }
    }
    latencies.sort_by(f64::total_cmp);
    let accuracy = apps
        .iter()
        .zip(&correct)
        .map(|(app, &c)| {
            (
                app.to_string(),
                round2(100.0 * c as f64 / images.max(1) as f64),
            )
        })
        .collect();
    Ok(VariantEval {
        name: spec.name.clone(),
        kind: spec.kind.clone(),
        ops: spec.trunk_ops + spec.heads.iter().map(|h| h.ops).sum::<u64>(),
        params: spec.params,
        bytes: spec.bytes(),
        memory_bytes,
        load_ms: round2(model.load_ms),
        accuracy,
        manifest_accuracy: spec
            .heads
            .iter()
            .map(|h| (h.app.clone(), h.accuracy))
            .collect(),
        latency_ms: Latency {
            p50: round3(percentile(&latencies, 0.50)),
            p99: round3(percentile(&latencies, 0.99)),
        },
        images,
    })
}

/// Nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Runs `mcdnn-node catalog probe-memory` for one variant and reads the bytes it reports.
fn probe_in_child(dir: &Path, spec: &VariantSpec) -> Option<u64> {
    let exe = std::env::current_exe().ok()?;
    let out = std::process::Command::new(exe)
        .args([
            "catalog",
            "probe-memory",
            "--variant",
            &spec.name,
            "--catalog",
        ])
        .arg(dir.join("catalog.json"))
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

/// Resident memory one variant adds once loaded and run once, after ONNX Runtime itself is up:
/// what `probe-memory` prints in its own process.
pub fn probe_memory(
    manifest: &Manifest,
    dir: &Path,
    variant: &str,
    data: &Dataset,
) -> anyhow::Result<u64> {
    crate::runtime::environment()?;
    let spec = manifest
        .variant(variant)
        .with_context(|| format!("no variant {variant}"))?;
    let apps: Vec<&str> = manifest.apps.iter().map(|a| a.name.as_str()).collect();
    let before = resident_bytes();
    let mut model = LoadedVariant::load_dir(dir, spec, &manifest.input)?;
    model.infer(data.image(0), &apps)?;
    Ok(resident_bytes().saturating_sub(before))
}

/// Resident set size from /proc/self/statm (0 where there is no procfs).
fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<u64>().ok())
        })
        .map_or(0, |pages| pages * 4096)
}

/// The human table.
pub fn table(eval: &CatalogEval) -> String {
    let mut apps: Vec<&String> = eval
        .variants
        .iter()
        .flat_map(|v| v.accuracy.keys())
        .collect();
    apps.sort();
    apps.dedup();
    let mut out = format!(
        "{:<10} {:<8} {:>10} {:>9} {:>10} {:>8}",
        "variant", "kind", "MFLOP", "params", "bytes", "mem MB"
    );
    for app in &apps {
        out += &format!(" {:>10}", format!("{app} %"));
    }
    out += &format!(" {:>8} {:>8}\n", "p50 ms", "p99 ms");
    for v in &eval.variants {
        out += &format!(
            "{:<10} {:<8} {:>10.2} {:>9} {:>10} {:>8.1}",
            v.name,
            v.kind,
            v.ops as f64 / 1e6,
            v.params,
            v.bytes,
            v.memory_bytes as f64 / 1e6
        );
        for app in &apps {
            out += &format!(" {:>10.2}", v.accuracy.get(*app).copied().unwrap_or(0.0));
        }
        out += &format!(" {:>8.3} {:>8.3}\n", v.latency_ms.p50, v.latency_ms.p99);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), 50.0);
        assert_eq!(percentile(&v, 0.99), 99.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
        assert_eq!(percentile(&[3.0], 0.99), 3.0);
    }
}
