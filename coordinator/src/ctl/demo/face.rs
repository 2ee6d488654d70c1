//! `mcdnnctl demo --workload face`: the body-camera face workload. Every node plays
//! Megamind.avi (Debian's opencv-doc) as its camera, looping for the whole run; the coordinator
//! computes the watchlist's descriptors from two of its frames (Roxanne, frames 30 and 90) and
//! pushes them to the nodes, whose face app names whoever it recognises. The summary says per
//! node who was seen, which variants ran, how often they agreed with the reference variant in
//! the audit, and the energy used against the budget.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::ctl::http;
use crate::ctl::watchlist::add_body_of;

/// The video every node plays.
pub const VIDEO: &str = "/usr/share/doc/opencv-doc/examples/data/Megamind.avi";
/// Who is enrolled, and from which frames of [`VIDEO`] (one face each).
pub const ENROLLED: (&str, [u32; 2]) = ("Roxanne", [30, 90]);
/// The admin operator identity that enrols the watchlist.
pub const DEMO_ADMIN: &str = "demo-admin";
/// Model memory for a face node, MB: the audit's fp32 reference (22.4 MB + the 0.4 MB
/// detector) beside the int8 variant (5.7 MB), so the audit does not page the served variant out.
pub const MODEL_MEMORY_MB: f64 = 40.0;

/// The catalog the face demo plans: both catalogs together (`models/fleet.json`) when it
/// exists, else the face catalog alone.
pub fn default_catalog() -> PathBuf {
    let fleet = PathBuf::from("models/fleet.json");
    if fleet.is_file() {
        fleet
    } else {
        PathBuf::from("models/face/catalog.json")
    }
}

/// The face models folder the coordinator computes descriptors with: beside a face catalog, or
/// `face/` beside a fleet catalog.
pub fn models_dir(catalog: &Path) -> PathBuf {
    let dir = catalog.parent().unwrap_or(Path::new("."));
    if dir.join("blazeface_front_128.onnx").is_file() {
        dir.to_path_buf()
    } else {
        dir.join("face")
    }
}

/// Frame `n` of [`VIDEO`] as PNG bytes (ffmpeg).
fn frame_png(n: u32) -> anyhow::Result<Vec<u8>> {
    let out = std::process::Command::new("ffmpeg")
        .args(["-loglevel", "error", "-i", VIDEO, "-vf"])
        .arg(format!("select=eq(n\\,{n})"))
        .args(["-frames:v", "1", "-f", "image2pipe", "-vcodec", "png", "-"])
        .output()
        .context("running ffmpeg (scripts/setup.sh installs it)")?;
    if !out.status.success() || out.stdout.is_empty() {
        bail!(
            "ffmpeg made no PNG of frame {n} of {VIDEO} (apt-get install opencv-doc): {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out.stdout)
}

/// Puts [`ENROLLED`] on the watchlist through the operator API at `admin`, retrying while the
/// coordinator has no leader yet.
pub fn enrol(client: &http::Client, admin: &str, within: Duration) -> anyhow::Result<()> {
    let (name, frames) = ENROLLED;
    let photos = frames
        .iter()
        .map(|&n| frame_png(n))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let body = add_body_of(name, &photos)?;
    let started = Instant::now();
    loop {
        let last = match client.post_json(admin, "/v1/watchlist/add", &body, within) {
            Ok(r) if r.status == 200 => return Ok(()),
            Ok(r) => format!("{} {}", r.status, r.body),
            Err(e) => format!("{e:#}"),
        };
        if started.elapsed() > within {
            bail!("could not enrol {name} on the watchlist: {last}");
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}
