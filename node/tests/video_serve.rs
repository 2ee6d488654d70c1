//! A real video through the real serving loop: Megamind.avi (Debian's opencv-doc) decoded by
//! ffmpeg, played at its frame rate for a few seconds, each app sampling at its own rate; every
//! sampled (frame, app) is answered, dropped by the loop, or refused at the intake. Needs
//! `scripts/setup.sh` (ffmpeg, opencv-doc, ONNX Runtime and the data set).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use mcdnn_node::input::video::{self, VideoCounters};
use mcdnn_node::video::{DecodeOptions, Decoder, VideoSource};

const MEGAMIND: &str = "/usr/share/doc/opencv-doc/examples/data/Megamind.avi";

/// A video player feeding `node`'s intake on its own thread, as `mcdnn-node run --source` does.
struct Player {
    thread: std::thread::JoinHandle<Result<(), mcdnn_node::video::VideoError>>,
    stop: Arc<AtomicBool>,
    counters: Arc<VideoCounters>,
}

fn play(
    node: &mut common::Running,
    decoder: Decoder,
    reopen: Option<video::Reopen>,
    rates: Vec<f64>,
) -> Player {
    let counters = Arc::new(VideoCounters::default());
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, halt, c) = (
        node.intake.take().expect("intake"),
        stop.clone(),
        counters.clone(),
    );
    let thread = std::thread::spawn(move || video::play(decoder, reopen, rates, tx, halt, c));
    Player {
        thread,
        stop,
        counters,
    }
}

#[test]
fn a_real_video_is_decoded_and_every_sampled_frame_is_accounted_for() {
    let mut node = common::start(&[("garment", 10.0), ("category", 2.0)], 4);
    let decoder = Decoder::open(
        &VideoSource::File(MEGAMIND.into()),
        DecodeOptions::default(),
    )
    .expect("Megamind.avi (install opencv-doc)");
    let fps = decoder.info().fps;
    let Player {
        thread: player,
        stop,
        counters,
    } = play(&mut node, decoder, None, vec![10.0, 2.0]);
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    player.join().expect("player").expect("decoded");
    // The player is gone, so the loop's intake closes and the run ends by itself.
    let summary = node.finish();
    let frames = counters.frames.load(Ordering::Relaxed);
    let sampled = counters.sampled.load(Ordering::Relaxed);
    let refused = counters.intake_full.load(Ordering::Relaxed);
    let answered: u64 = summary
        .apps
        .values()
        .flat_map(|a| a.by_variant.values())
        .sum();
    eprintln!(
        "{frames} frames at {fps} frames/s (decoded at {:.0} frames/s): {sampled} sampled, {answered} answered, {} dropped in the loop ({} late), {refused} refused at the intake",
        counters.decode_fps(),
        summary.dropped,
        summary.apps.values().map(|a| a.late).sum::<u64>()
    );
    // About 3 s of a stream played in real time, not the whole file at decoding speed.
    assert!(
        (fps * 2.0..=fps * 4.0).contains(&(frames as f64)),
        "{frames} frames in 3 s at {fps} frames/s"
    );
    assert_eq!(answered + summary.dropped + refused, sampled);
    assert_eq!(summary.requests + refused, sampled);
    assert!(answered > 0, "{summary:?}");
    // garment at 10/s and category at 2/s over ~3 s of video.
    let garment = summary.apps["garment"].requests;
    assert!(garment >= 20, "{summary:?}");
}

#[test]
fn a_looping_source_plays_a_short_clip_again_at_its_rate() {
    // Half a second of Megamind.avi (12 frames at 23.976 frames/s), played for 2 s.
    let tmp = tempfile::tempdir().expect("tmp");
    let clip = tmp.path().join("clip.avi");
    let made = std::process::Command::new("ffmpeg")
        .args([
            "-loglevel",
            "error",
            "-i",
            MEGAMIND,
            "-frames:v",
            "12",
            "-c",
            "copy",
        ])
        .arg(&clip)
        .status()
        .expect("ffmpeg runs");
    assert!(made.success(), "ffmpeg cut no clip");
    let source = VideoSource::File(clip);
    let decoder = Decoder::open(&source, DecodeOptions::default()).expect("the clip opens");
    let fps = decoder.info().fps;
    let reopen: video::Reopen = Box::new(move || Decoder::open(&source, DecodeOptions::default()));
    let mut node = common::start(&[("garment", 4.0)], 4);
    let Player {
        thread: player,
        stop,
        counters,
    } = play(&mut node, decoder, Some(reopen), vec![4.0]);
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    player.join().expect("player").expect("decoded");
    let summary = node.finish();
    let frames = counters.frames.load(Ordering::Relaxed);
    // Played more than once (a pass has 12 frames), and paced: a pass restarting the stream's
    // clock would find all its frames due and deliver them at decoding speed (hundreds a
    // second). Reopening costs a probe and a process, so a loaded machine gets fewer passes.
    assert!(
        frames > 12 && frames as f64 <= fps * 3.0,
        "{frames} frames in 2 s at {fps} frames/s"
    );
    // garment at 4/s: 2 frames of each half-second pass, more over several, at most 4/s.
    let sampled = counters.sampled.load(Ordering::Relaxed);
    assert!((3..=12).contains(&sampled), "{sampled} sampled");
    assert_eq!(
        summary.requests + counters.intake_full.load(Ordering::Relaxed),
        sampled
    );
}
