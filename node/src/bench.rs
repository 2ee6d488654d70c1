//! `mcdnn-node bench overhead`: what the node's per-request path (policy decision, model cache,
//! engine, accounting) adds to plain ONNX Runtime calls on the same variant. Both run in this
//! process on the same images: each round the node path serves frames from its frame source, and
//! the direct path then runs exactly those images; rounds interleave so machine noise hits both
//! alike. A round in which the node path did not answer every frame is an error (a path that
//! drops requests would look cheap).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use anyhow::Context;
use ort::session::Session;
use ort::value::TensorRef;
use rand::SeedableRng;
use scheduler::catalog::Catalog;
use scheduler::state::{Budgets, Constraints, DeviceState};
use serde::Serialize;
use wire::manifest::Manifest;

use crate::agent::serve::{ServeConfig, ServeHandles, Server};
use crate::battery::EnergyAccount;
use crate::cache::ModelCache;
use crate::dataset::Dataset;
use crate::engine::{EngineError, preprocess};
use crate::frames::{ClassMix, FrameSource};
use crate::runtime;
use crate::stats::AppStats;

#[derive(Debug, Serialize)]
pub struct OverheadReport {
    pub variant: String,
    pub frames: usize,
    pub rounds: usize,
    /// Median over rounds of the mean time per frame.
    pub direct_us_per_frame: f64,
    pub node_us_per_frame: f64,
    pub ratio: f64,
    /// Requests the node path answered over all rounds (every one of `frames x rounds`).
    pub node_answered: u64,
}

fn session(dir: &Path, file: &str) -> anyhow::Result<Session> {
    let env = runtime::environment()?;
    let bytes = std::fs::read(dir.join(file)).with_context(|| format!("reading {file}"))?;
    Session::builder(env)
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .with_intra_threads(1)
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .commit_from_memory(&bytes)
        .map_err(|e| anyhow::anyhow!("loading {file}: {e}"))
}

/// Trunk + garment head through raw ort sessions, as an application would call them, on the
/// images `frames` (dataset indices).
fn direct_round(
    trunk: &mut Session,
    head: &mut Session,
    manifest: &Manifest,
    data: &Dataset,
    frames: &[usize],
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    for &i in frames {
        let x = preprocess(data.image(i), &manifest.input)?;
        let input = TensorRef::from_array_view((
            [1usize, 1, manifest.input.height, manifest.input.width],
            x.as_slice(),
        ))?;
        let out = trunk.run(ort::inputs!["image" => input])?;
        let (_, emb) = out[0].try_extract_tensor::<f32>()?;
        let emb = emb.to_vec();
        let e = TensorRef::from_array_view(([1usize, emb.len()], emb.as_slice()))?;
        let logits = head.run(ort::inputs!["embedding" => e])?;
        let (_, l) = logits[0].try_extract_tensor::<f32>()?;
        std::hint::black_box(l.iter().copied().fold(f32::MIN, f32::max));
    }
    Ok(started.elapsed())
}

/// One round of the node path: which images it served and how many requests it answered.
struct NodeRound {
    frames: Vec<usize>,
    answered: u64,
    elapsed: Duration,
}

/// Serves `frames` frames back to back (no arrival pacing): the whole per-request path (policy,
/// cache, inference, accounting), and fails unless every request was answered.
fn node_round(
    server: &mut Server<'_>,
    cfg: &ServeConfig,
    frames: usize,
) -> anyhow::Result<NodeRound> {
    let frame_rate: f64 = cfg.apps.iter().map(|(_, r)| *r).fold(0.0, f64::max);
    let mut stats: Vec<AppStats> = cfg
        .apps
        .iter()
        .map(|(name, _)| {
            AppStats::new(
                name,
                server.manifest.app(name).map_or(0, |a| a.classes.len()),
            )
        })
        .collect();
    let mut state = DeviceState::new(&cfg.budgets, 0.0);
    let mut served = Vec::with_capacity(frames);
    let started = Instant::now();
    for i in 0..frames {
        let now_s = i as f64 / frame_rate;
        served.push(server.serve_frame(now_s, frame_rate, cfg, &mut stats, &mut state)?);
    }
    let elapsed = started.elapsed();
    let requests: u64 = stats.iter().map(|s| s.requests).sum();
    let answered: u64 = stats.iter().flat_map(|s| s.by_variant.values()).sum();
    anyhow::ensure!(
        requests == frames as u64 && answered == requests,
        "the node path answered {answered} of {requests} requests for {frames} frames; \
         the comparison needs every frame answered"
    );
    Ok(NodeRound {
        frames: served,
        answered,
        elapsed,
    })
}

pub fn overhead(
    manifest: &Manifest,
    dir: &Path,
    data: &Dataset,
    variant: &str,
    frames: usize,
    rounds: usize,
) -> anyhow::Result<OverheadReport> {
    let spec = manifest
        .variant(variant)
        .with_context(|| format!("no variant {variant}"))?;
    let head_file = &spec
        .head("garment")
        .context("variant has no garment head")?
        .file
        .file;
    let mut trunk = session(dir, &spec.trunk.file)?;
    let mut head = session(dir, head_file)?;
    let catalog = Arc::new(Catalog::from_manifest(manifest, "laptop")?);
    let budgets = Budgets {
        energy_j: 1e12,
        cost_usd: 0.0,
        horizon_s: 1e9,
        memory_mb: 64.0,
    };
    let mut policy = scheduler::policy::by_name("mcdnn", &catalog, &budgets)?;
    let mut only = Constraints {
        offload_forbidden: true,
        ..Constraints::default()
    };
    only.allowed.insert(
        "garment".into(),
        [variant.to_string()].into_iter().collect(),
    );
    policy.set_constraints(only);
    let model_dir = dir.to_path_buf();
    let fetch: crate::cache::Fetch = Box::new(move |f| {
        std::fs::read(model_dir.join(&f.file)).map_err(|source| EngineError::Read {
            path: f.file.clone(),
            source,
        })
    });
    let cfg = ServeConfig {
        apps: vec![("garment".into(), 1.0)],
        budgets,
        duration: None,
        publish_every: Duration::from_secs(3600),
    };
    let mut server = Server {
        manifest,
        catalog,
        data,
        cache: ModelCache::new(manifest.clone(), fetch, 64_000_000),
        policy,
        frames: FrameSource::new(
            data,
            ClassMix::Uniform,
            rand::rngs::StdRng::seed_from_u64(1),
        ),
        energy: EnergyAccount::new(1e12, 1e12, 0, false),
        handles: ServeHandles::default(),
        results: Default::default(),
        offloader: None,
        stop: Arc::new(AtomicBool::new(false)),
        clock: net::clock::SystemClock::shared(),
        learning: Default::default(),
        follower: Default::default(),
    };
    anyhow::ensure!(
        frames > 0 && rounds > 0,
        "frames and rounds must be at least 1"
    );
    // Warm up both paths (model load, first-run allocations).
    let warm = node_round(&mut server, &cfg, 50)?;
    direct_round(&mut trunk, &mut head, manifest, data, &warm.frames)?;
    let (mut direct, mut node) = (Vec::new(), Vec::new());
    let mut node_answered = 0;
    for _ in 0..rounds {
        let round = node_round(&mut server, &cfg, frames)?;
        node_answered += round.answered;
        node.push(round.elapsed.as_secs_f64() * 1e6 / frames as f64);
        let d = direct_round(&mut trunk, &mut head, manifest, data, &round.frames)?;
        direct.push(d.as_secs_f64() * 1e6 / frames as f64);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (d, n) = (median(&mut direct), median(&mut node));
    Ok(OverheadReport {
        variant: variant.into(),
        frames,
        rounds,
        direct_us_per_frame: d,
        node_us_per_frame: n,
        ratio: n / d,
        node_answered,
    })
}
