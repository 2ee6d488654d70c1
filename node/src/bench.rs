//! `mcdnn-node bench overhead`: what the node's per-request path (policy decision, model cache,
//! engine, accounting) adds to plain ONNX Runtime calls on the same variant. Everything runs in
//! this process on the same images, in blocks of [`BLOCK`] frames: the node path (its frame
//! source replaying images drawn for the block), the direct path (raw `ort` sessions, as an
//! application would call them) and the engine alone (`LoadedVariant`, no policy or accounting)
//! run exactly those images, in an order that cycles through all six from block to block, so
//! machine noise and cold images (the first path to read a block's images pays the cache misses)
//! hit every path alike. Reported: the old estimator (median over rounds of each path's mean time
//! per frame) and the median over blocks of the per-block ratio, which a preempted block cannot
//! move. The engine path splits the overhead into what our engine wrapper costs and what serving
//! (policy, cache, accounting) costs. A node path that did not answer every frame is an error (a
//! path that drops requests would look cheap).

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
use crate::engine::{EngineError, LoadedVariant, preprocess};
use crate::frames::{ClassMix, Frame, FrameSource};
use crate::picture::PixelFormat;
use crate::runtime;
use crate::stats::AppStats;

/// The six orders of (node, direct, engine) that blocks cycle through.
const ORDERS: [[usize; 3]; 6] = [
    [0, 1, 2],
    [1, 2, 0],
    [2, 0, 1],
    [0, 2, 1],
    [2, 1, 0],
    [1, 0, 2],
];

/// Frames per block: long enough that timer reads are noise, short enough that a preemption
/// spoils only a few blocks.
pub const BLOCK: usize = 50;

#[derive(Debug, Serialize)]
pub struct OverheadReport {
    pub variant: String,
    pub frames: usize,
    pub rounds: usize,
    /// Median over rounds of the mean time per frame.
    pub direct_us_per_frame: f64,
    pub node_us_per_frame: f64,
    /// The engine alone (`LoadedVariant`: preprocessing, trunk, head, softmax).
    pub engine_us_per_frame: f64,
    /// `node_us_per_frame / direct_us_per_frame`.
    pub ratio: f64,
    /// Median over blocks of (node block time / direct block time).
    pub ratio_block_median: f64,
    /// Median over blocks of (engine / direct) and (node / engine).
    pub engine_ratio_block_median: f64,
    pub node_over_engine_block_median: f64,
    /// Node path minus direct path per frame (us), from the block medians.
    pub overhead_us_per_frame: f64,
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

/// The engine alone on the images `frames`: what `LoadedVariant` adds to raw sessions.
fn engine_round(
    model: &mut LoadedVariant,
    data: &Dataset,
    frames: &[usize],
    frame_no: &mut u64,
) -> anyhow::Result<Duration> {
    let mut picture = crate::picture::Picture::new(1, 1, PixelFormat::Gray8, vec![0])?;
    let started = Instant::now();
    for &i in frames {
        *frame_no += 1;
        data.picture_into(i, &mut picture);
        model.embed_frame(*frame_no, &picture)?;
        std::hint::black_box(model.classify_frame("garment")?);
    }
    Ok(started.elapsed())
}

/// The node path's state across blocks: counters and the device state persist, as in a run.
struct NodeRun {
    stats: Vec<AppStats>,
    state: DeviceState,
    served: u64,
    /// The replay's picture, reused from frame to frame as in a run.
    picture: crate::picture::Picture,
}

impl NodeRun {
    fn new(server: &Server<'_>, cfg: &ServeConfig) -> Self {
        let stats = cfg
            .apps
            .iter()
            .map(|(name, _)| {
                AppStats::new(
                    name,
                    server.manifest.app(name).map_or(0, |a| a.classes.len()),
                )
            })
            .collect();
        Self {
            stats,
            state: DeviceState::new(&cfg.budgets, 0.0),
            served: 0,
            picture: crate::picture::Picture {
                width: 0,
                height: 0,
                format: PixelFormat::Gray8,
                pixels: Vec::new(),
            },
        }
    }

    /// Serves `frames` frames back to back (no arrival pacing): the whole per-request path
    /// (policy, cache, inference, accounting). Returns the images served and the time taken.
    fn block(
        &mut self,
        server: &mut Server<'_>,
        cfg: &ServeConfig,
        frames: usize,
    ) -> anyhow::Result<(Vec<usize>, Duration)> {
        let frame_rate: f64 = cfg.apps.iter().map(|(_, r)| *r).fold(0.0, f64::max);
        let mut served = Vec::with_capacity(frames);
        let started = Instant::now();
        for _ in 0..frames {
            let now_s = self.served as f64 / frame_rate;
            self.served += 1;
            served.push(server.serve_frame(
                &mut self.picture,
                now_s,
                frame_rate,
                cfg,
                &mut self.stats,
                &mut self.state,
            )?);
        }
        Ok((served, started.elapsed()))
    }

    /// Fails unless every request so far was answered.
    fn answered(&self) -> anyhow::Result<u64> {
        let requests: u64 = self.stats.iter().map(|s| s.requests).sum();
        let answered: u64 = self.stats.iter().flat_map(|s| s.by_variant.values()).sum();
        anyhow::ensure!(
            requests == self.served && answered == requests,
            "the node path answered {answered} of {requests} requests for {} frames; \
             the comparison needs every frame answered",
            self.served
        );
        Ok(answered)
    }
}

/// Budgets no benchmark run can exhaust: what is measured is the path, not the scheduler's
/// trade-offs.
pub(crate) fn unbounded_budgets() -> Budgets {
    Budgets {
        energy_j: 1e12,
        cost_usd: 0.0,
        horizon_s: 1e9,
        memory_mb: 64.0,
    }
}

/// The middle value (the upper one of an even count); sorts `v`.
pub(crate) fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
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
    let budgets = unbounded_budgets();
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
        replay: true,
        duration: None,
        publish_every: Duration::from_secs(3600),
        face_audit_every: 0,
    };
    let mut server = Server {
        manifest,
        catalog,
        data,
        cache: ModelCache::new(manifest.clone(), fetch, 64_000_000),
        policy,
        intake: None,
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
        faces: Default::default(),
    };
    anyhow::ensure!(
        frames > 0 && rounds > 0,
        "frames and rounds must be at least 1"
    );
    let mut engine = LoadedVariant::load_dir(dir, spec, &manifest.input)?;
    let mut frame_no = 0u64;
    let mut run = NodeRun::new(&server, &cfg);
    // The images of every block are drawn up front from their own source, so each path can go
    // first (and meet the images cold) in a third of the blocks.
    let mut draw = FrameSource::new(
        data,
        ClassMix::Uniform,
        rand::rngs::StdRng::seed_from_u64(2),
    );
    // Warm up every path (model load, first-run allocations).
    let (warm, _) = run.block(&mut server, &cfg, BLOCK)?;
    direct_round(&mut trunk, &mut head, manifest, data, &warm)?;
    engine_round(&mut engine, data, &warm, &mut frame_no)?;
    let (mut direct, mut node, mut eng) = (Vec::new(), Vec::new(), Vec::new());
    let mut ratios = BlockRatios::default();
    let mut block_no = 0usize;
    for _ in 0..rounds {
        let mut t = [Duration::ZERO; 3];
        let mut left = frames;
        while left > 0 {
            let n = left.min(BLOCK);
            left -= n;
            let drawn: Vec<Frame> = (0..n).map(|_| draw.next(0.0)).collect();
            let images: Vec<usize> = drawn.iter().map(|f| f.index).collect();
            server.frames.queue(drawn);
            let mut times = [Duration::ZERO; 3];
            // Every order of the three paths in turn, so each goes first, second and third
            // equally often and after each of the others equally often.
            for path in ORDERS[block_no % ORDERS.len()] {
                match path {
                    0 => {
                        let (served, elapsed) = run.block(&mut server, &cfg, n)?;
                        anyhow::ensure!(served == images, "the node path served other images");
                        times[0] = elapsed;
                    }
                    1 => times[1] = direct_round(&mut trunk, &mut head, manifest, data, &images)?,
                    _ => times[2] = engine_round(&mut engine, data, &images, &mut frame_no)?,
                }
            }
            ratios.record(&mut t, times);
            block_no += 1;
        }
        let per_frame = |d: Duration| d.as_secs_f64() * 1e6 / frames as f64;
        node.push(per_frame(t[0]));
        direct.push(per_frame(t[1]));
        eng.push(per_frame(t[2]));
    }
    let node_answered = run.answered()? - warm.len() as u64;
    let (d, n, e) = (median(&mut direct), median(&mut node), median(&mut eng));
    let ratio_block_median = median(&mut ratios.node_direct);
    Ok(OverheadReport {
        variant: variant.into(),
        frames,
        rounds,
        direct_us_per_frame: d,
        node_us_per_frame: n,
        engine_us_per_frame: e,
        ratio: n / d,
        ratio_block_median,
        engine_ratio_block_median: median(&mut ratios.engine_direct),
        node_over_engine_block_median: median(&mut ratios.node_engine),
        overhead_us_per_frame: d * (ratio_block_median - 1.0),
        node_answered,
    })
}

/// Per-block ratios of the three paths' times.
#[derive(Default)]
struct BlockRatios {
    node_direct: Vec<f64>,
    engine_direct: Vec<f64>,
    node_engine: Vec<f64>,
}

impl BlockRatios {
    /// Adds one block's times (node, direct, engine) to the round totals and the ratios.
    fn record(&mut self, totals: &mut [Duration; 3], block: [Duration; 3]) {
        for (t, b) in totals.iter_mut().zip(block) {
            *t += b;
        }
        let [n, d, e] = block.map(|b| b.as_secs_f64().max(1e-12));
        self.node_direct.push(n / d);
        self.engine_direct.push(e / d);
        self.node_engine.push(n / e);
    }
}
