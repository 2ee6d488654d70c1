//! `mcdnn-node catalog face-eval`: every face variant of `models/face/catalog.json` on every
//! frame of real videos. One pass per video: decode a frame, detect its faces once (the detector
//! is shared by every variant), then time each variant describing the same faces. Afterwards the
//! answers are compared with the reference variant's ([`protocol`]).
//!
//! Prints per variant: ms per frame (detector + that variant on the frame's faces), ms per face
//! (alignment + descriptor network), agreement with the reference in percent, and the distance of
//! its descriptors to the reference's (mean, p95).

pub mod cascade;
pub mod protocol;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use serde::Serialize;
use vision::face::{Describer, Descriptor, Detector, align::align};
use wire::manifest::{InputKind, Manifest};

use crate::video::{DecodeOptions, Decoder, VideoSource};
use cascade::{CascadeFigures, VideoFaces};
use protocol::Comparison;

/// Debian opencv-doc's real videos (faces; pedestrians).
pub const DEFAULT_VIDEOS: [&str; 2] = [
    "/usr/share/doc/opencv-doc/examples/data/Megamind.avi",
    "/usr/share/doc/opencv-doc/examples/data/vtest.avi",
];
/// The variant every other is compared with.
pub const REFERENCE: &str = "fp32-150";

#[derive(Debug, Clone, Serialize)]
pub struct VariantFigures {
    pub name: String,
    pub kind: String,
    pub crop: u32,
    pub bytes: u64,
    pub ms_per_frame: f64,
    pub ms_per_face: f64,
    pub agreement_pct: f64,
    /// Distance of its descriptors to the reference's; `None` for a recent-gallery variant,
    /// whose descriptors live in a space of their own.
    pub distance_mean: Option<f64>,
    pub distance_p95: Option<f64>,
    /// A recent-gallery variant's cascade figures (`agreement_pct` is then the cascade's).
    pub recent: Option<RecentFigures>,
}

/// The face specialisation cascade as replayed ([`cascade`]).
#[derive(Debug, Clone, Serialize)]
pub struct RecentFigures {
    pub fallback: String,
    pub hit_rate_pct: f64,
    pub hit_accuracy_pct: f64,
    /// Detector + cheap stage on every frame + the fallback on the frames that missed.
    pub cascade_ms_per_frame: f64,
    /// Cheap-space distance to the same person's nearest earlier face (p95), and to another
    /// person's (p5): where the threshold can sit.
    pub same_p95: f64,
    pub other_p5: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct VideoFigures {
    pub video: String,
    pub frames: usize,
    pub faces: usize,
    pub gallery_identities: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct FaceEval {
    pub videos: Vec<VideoFigures>,
    pub detector_ms_per_frame: f64,
    pub variants: Vec<VariantFigures>,
}

struct Timed {
    describer: Describer,
    seconds: f64,
    descriptors: Vec<Descriptor>,
    comparison: Comparison,
}

/// Runs the protocol on `videos` (every `stride`-th frame, at most `max_frames` per video).
pub fn run(
    manifest: &Manifest,
    dir: &Path,
    videos: &[PathBuf],
    stride: usize,
    max_frames: Option<usize>,
) -> anyhow::Result<FaceEval> {
    if manifest.input.kind != InputKind::Face {
        bail!(
            "not a face catalog (input kind is not \"face\"): pass --catalog models/face/catalog.json"
        );
    }
    let detector_spec = manifest
        .detector
        .as_ref()
        .context("face catalog without detector")?;
    crate::runtime::environment()?;
    let mut detector = Detector::from_bytes(&read_verified(dir, &detector_spec.file)?, 1)?;
    let mut timed = Vec::new();
    for v in &manifest.variants {
        let bytes = read_verified(dir, &v.trunk)?;
        let describer = Describer::from_bytes(&v.name, &bytes, 1)
            .with_context(|| format!("loading variant {}", v.name))?;
        timed.push(Timed {
            describer,
            seconds: 0.0,
            descriptors: Vec::new(),
            comparison: Comparison::default(),
        });
    }
    let reference = manifest
        .variants
        .iter()
        .position(|v| v.name == REFERENCE)
        .with_context(|| format!("the catalog has no reference variant {REFERENCE}"))?;
    let fallback = recent_fallback(manifest, reference);
    let mut cascades: Vec<CascadeFigures> = vec![CascadeFigures::default(); timed.len()];
    let (mut detector_s, mut frames_total, mut video_figures) = (0.0, 0usize, Vec::new());
    for video in videos {
        let mut decoder =
            Decoder::open(&VideoSource::File(video.clone()), DecodeOptions::default())
                .with_context(|| format!("opening {}", video.display()))?;
        for t in &mut timed {
            t.descriptors.clear();
        }
        let (mut frames, mut faces_seen) = (0usize, 0usize);
        let mut frame_faces = Vec::new();
        while let Some(frame) = decoder.next_frame()? {
            if !frame.index.is_multiple_of(stride.max(1) as u64) {
                continue;
            }
            if max_frames.is_some_and(|m| frames >= m) {
                break;
            }
            frames += 1;
            let started = Instant::now();
            let faces = detector.detect(&frame.picture)?;
            detector_s += started.elapsed().as_secs_f64();
            faces_seen += faces.len();
            frame_faces.push((frame.pts_s, faces.len()));
            for t in &mut timed {
                let started = Instant::now();
                let size = t.describer.size;
                let crops: Vec<_> = faces
                    .iter()
                    .map(|f| align(&frame.picture, f, size))
                    .collect();
                let descriptors = t.describer.describe(&crops)?;
                t.seconds += started.elapsed().as_secs_f64();
                t.descriptors.extend(descriptors);
            }
        }
        let name = video.file_name().map_or_else(
            || video.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        let gallery = protocol::gallery_from(&timed[reference].descriptors, &name);
        let reference_descriptors = timed[reference].descriptors.clone();
        for t in &mut timed {
            t.comparison
                .add(&gallery, &reference_descriptors, &t.descriptors);
        }
        for (i, spec) in manifest.variants.iter().enumerate() {
            if let Some(recent) = &spec.recent {
                let video = VideoFaces {
                    frames: &frame_faces,
                    reference: &reference_descriptors,
                    fallback: &timed[fallback].descriptors,
                    cheap: &timed[i].descriptors,
                };
                cascades[i].add(&video, &gallery, recent);
            }
        }
        frames_total += frames;
        video_figures.push(VideoFigures {
            video: name,
            frames,
            faces: faces_seen,
            gallery_identities: gallery.len(),
        });
    }
    let frames = frames_total.max(1) as f64;
    let detector_ms = 1e3 * detector_s / frames;
    let ms_per_frame = |t: &Timed| detector_ms + 1e3 * t.seconds / frames;
    let variants = (manifest.variants.iter().zip(&timed).zip(&cascades))
        .map(|((spec, t), c)| {
            let faces = t.comparison.faces.max(1) as f64;
            let recent = spec.recent.as_ref().map(|_| RecentFigures {
                fallback: manifest.variants[fallback].name.clone(),
                hit_rate_pct: round3(c.hit_rate()),
                hit_accuracy_pct: round3(c.hit_accuracy()),
                cascade_ms_per_frame: round3(
                    ms_per_frame(t)
                        + (1.0 - c.hit_rate() / 100.0) * 1e3 * timed[fallback].seconds / frames,
                ),
                same_p95: round3(protocol::percentile(&c.same, 0.95)),
                other_p5: round3(protocol::percentile(&c.other, 0.05)),
            });
            let distance = |x: f64| recent.is_none().then_some(round3(x));
            VariantFigures {
                name: spec.name.clone(),
                kind: spec.kind.clone(),
                crop: t.describer.size,
                bytes: spec.trunk.bytes,
                ms_per_frame: round3(ms_per_frame(t)),
                ms_per_face: round3(1e3 * t.seconds / faces),
                agreement_pct: round3(if recent.is_some() {
                    c.agreement()
                } else {
                    t.comparison.agreement()
                }),
                distance_mean: distance(t.comparison.mean_distance()),
                distance_p95: distance(t.comparison.distance_percentile(0.95)),
                recent,
            }
        })
        .collect();
    Ok(FaceEval {
        videos: video_figures,
        detector_ms_per_frame: round3(detector_ms),
        variants,
    })
}

/// The variant a recent-gallery cascade falls back to in the evaluation: the cheapest general
/// one (int8-150), else the reference.
fn recent_fallback(manifest: &Manifest, reference: usize) -> usize {
    (manifest.variants.iter().enumerate())
        .filter(|(_, v)| v.recent.is_none())
        .min_by_key(|(_, v)| v.trunk.bytes)
        .map_or(reference, |(i, _)| i)
}

/// A model file beside the catalog, checked against its digest before ONNX Runtime sees it.
fn read_verified(dir: &Path, spec: &wire::manifest::FileSpec) -> anyhow::Result<Vec<u8>> {
    let path = dir.join(&spec.file);
    let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    crate::engine::verify(spec, &bytes)?;
    Ok(bytes)
}

/// Writes each variant's measured agreement into the catalog as its accuracy for every app.
pub fn update_catalog(path: &Path, manifest: &Manifest, eval: &FaceEval) -> anyhow::Result<()> {
    let mut updated = manifest.clone();
    for v in &mut updated.variants {
        if let Some(f) = eval.variants.iter().find(|f| f.name == v.name) {
            for app in &manifest.apps {
                v.accuracy.insert(app.name.clone(), round2(f.agreement_pct));
            }
            if let (Some(spec), Some(r)) = (v.recent.as_mut(), &f.recent) {
                spec.hit_rate = round2(r.hit_rate_pct);
                spec.hit_accuracy = round2(r.hit_accuracy_pct);
            }
        }
    }
    let text = serde_json::to_string_pretty(&updated)? + "\n";
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// The human table.
pub fn table(eval: &FaceEval) -> String {
    let mut out = String::new();
    for v in &eval.videos {
        out += &format!(
            "{}: {} frames, {} faces, {} identities in the reference gallery\n",
            v.video, v.frames, v.faces, v.gallery_identities
        );
    }
    out += &format!(
        "detector (BlazeFace front 128): {:.3} ms/frame\n",
        eval.detector_ms_per_frame
    );
    out += &format!(
        "{:<10} {:<6} {:>5} {:>10} {:>9} {:>9} {:>11} {:>9} {:>9}\n",
        "variant",
        "kind",
        "crop",
        "bytes",
        "ms/frame",
        "ms/face",
        "agree fp32",
        "dist mean",
        "dist p95"
    );
    let dist = |d: Option<f64>| d.map_or_else(|| "-".to_string(), |d| format!("{d:.3}"));
    for v in &eval.variants {
        out += &format!(
            "{:<10} {:<6} {:>5} {:>10} {:>9.3} {:>9.3} {:>10.2}% {:>9} {:>9}\n",
            v.name,
            v.kind,
            v.crop,
            v.bytes,
            v.ms_per_frame,
            v.ms_per_face,
            v.agreement_pct,
            dist(v.distance_mean),
            dist(v.distance_p95)
        );
    }
    for v in &eval.variants {
        let Some(r) = &v.recent else { continue };
        out += &format!(
            "{}: recent-gallery cascade over {}: the gallery answered {:.1}% of frames with faces, \
             {:.2}% of its answers agree with {REFERENCE}, {:.2}% of all faces; {:.3} ms/frame \
             (detector, {} on every frame, {} on misses); same person p95 {:.3}, another p5 {:.3}\n",
            v.name,
            r.fallback,
            r.hit_rate_pct,
            r.hit_accuracy_pct,
            v.agreement_pct,
            r.cascade_ms_per_frame,
            v.name,
            r.fallback,
            r.same_p95,
            r.other_p5
        );
    }
    out
}

/// A 4-number descriptor at `x` on the first axis: distances in the protocol tests are plain
/// differences.
#[cfg(test)]
fn test_descriptor(x: f32) -> Descriptor {
    let mut d = vec![0.0; 4];
    d[0] = x;
    d
}
