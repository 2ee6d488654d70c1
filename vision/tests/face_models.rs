//! The face models on real frames: Debian's `opencv-doc` video Megamind.avi (installed with
//! ffmpeg by scripts/setup.sh), decoded here with an ffmpeg child process.

use std::path::{Path, PathBuf};
use std::process::Command;

use mcdnn_vision::face::{FacePipeline, Gallery, gallery::DEFAULT_THRESHOLD};
use mcdnn_vision::picture::{Picture, PixelFormat};

const MEGAMIND: &str = "/usr/share/doc/opencv-doc/examples/data/Megamind.avi";
const WIDTH: u32 = 720;
const HEIGHT: u32 = 528;

fn models() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/face")
}

fn pipeline(describer: &str) -> FacePipeline {
    FacePipeline::from_files(
        &models().join("blazeface_front_128.onnx"),
        &models().join(describer),
        1,
    )
    .expect("face models load (set ORT_DYLIB_PATH or run scripts/setup.sh)")
}

/// Frame number `n` of Megamind.avi as RGB.
fn frame(n: u32) -> Picture {
    let out = Command::new("ffmpeg")
        .args(["-loglevel", "error", "-i", MEGAMIND, "-vf"])
        .arg(format!("select=eq(n\\,{n})"))
        .args(["-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
        .output()
        .expect("ffmpeg runs (scripts/setup.sh installs it and opencv-doc)");
    assert!(out.status.success(), "ffmpeg failed on {MEGAMIND}");
    Picture::new(WIDTH, HEIGHT, PixelFormat::Rgb8, out.stdout).expect("a whole 720x528 frame")
}

#[test]
fn finds_the_face_in_megamind_frames_where_it_is() {
    let mut p = pipeline("face_recognition_150_int8.onnx");
    // Frames where one face fills the middle of the picture (checked by eye on the video).
    for (n, centre) in [
        (30, [294.0, 264.0]),
        (90, [298.0, 235.0]),
        (210, [400.0, 262.0]),
    ] {
        let faces = p.faces(&frame(n)).expect("detector runs");
        assert!(!faces.is_empty(), "frame {n}: no face");
        let f = faces[0];
        let (cx, cy) = (f.bbox.x + f.bbox.w / 2.0, f.bbox.y + f.bbox.h / 2.0);
        assert!(
            (cx - centre[0]).abs() < 40.0 && (cy - centre[1]).abs() < 40.0 && f.bbox.w > 80.0,
            "frame {n}: {f:?}"
        );
        // Eyes inside the box, the subject's right eye on the image's left, above the mouth.
        let [re, le, _, mouth, ..] = f.keypoints;
        assert!(
            re[0] < le[0] && re[1] < mouth[1] && le[1] < mouth[1],
            "frame {n}: {f:?}"
        );
        assert!(
            re[0] > f.bbox.x && le[0] < f.bbox.x + f.bbox.w,
            "frame {n}: {f:?}"
        );
    }
}

#[test]
fn same_face_in_consecutive_frames_matches_and_other_faces_do_not() {
    let mut p = pipeline("face_recognition_150.onnx");
    let mut describe = |n: u32| {
        let picture = frame(n);
        let faces = p.faces(&picture).expect("detector runs");
        assert!(!faces.is_empty(), "frame {n}: no face");
        p.describe(&picture, &faces[..1])
            .expect("descriptor runs")
            .remove(0)
    };
    // Frames 30-90 show the woman (Roxanne), 120-150 and 210-240 the man in glasses.
    let woman = describe(60);
    let mut gallery = Gallery::new(DEFAULT_THRESHOLD);
    gallery.add("woman", woman);
    let next_frame = gallery.best(&describe(61));
    let man = [describe(150), describe(210)];
    println!(
        "next frame {next_frame:?}, man {:?}",
        man.iter()
            .map(|d| gallery.best(d).distance)
            .collect::<Vec<_>>()
    );
    assert_eq!(next_frame.entry, Some(0), "{next_frame:?}");
    for d in man {
        assert_eq!(gallery.best(&d).entry, None, "{:?}", gallery.best(&d));
    }
}

#[test]
fn a_corrupt_model_is_an_error_not_a_panic() {
    let detector = std::fs::read(models().join("blazeface_front_128.onnx")).expect("detector file");
    let mut describer =
        std::fs::read(models().join("face_recognition_150_int8.onnx")).expect("file");
    describer.truncate(describer.len() / 2);
    let err = FacePipeline::from_bytes(&detector, &describer, 1)
        .err()
        .expect("refused");
    assert!(
        err.to_string()
            .contains("ONNX Runtime rejected face descriptor network"),
        "{err}"
    );
    // The detector where a descriptor network belongs: loads, but its shape is refused.
    let err = FacePipeline::from_bytes(&detector, &detector, 1)
        .err()
        .expect("refused");
    assert!(err.to_string().contains("expected [N, 3, S, S]"), "{err}");
}
