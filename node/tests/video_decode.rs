//! Decodes Debian's real test videos (`opencv-doc`, installed by scripts/setup.sh) with the
//! ffmpeg child process, and feeds it garbage.

use mcdnn_node::video::{DecodeOptions, Decoder, VideoSource};

const MEGAMIND: &str = "/usr/share/doc/opencv-doc/examples/data/Megamind.avi";

#[test]
fn decodes_megamind_at_its_size_and_rate() {
    let mut d = Decoder::open(
        &VideoSource::File(MEGAMIND.into()),
        DecodeOptions::default(),
    )
    .expect("Megamind.avi opens (scripts/setup.sh installs opencv-doc and ffmpeg)");
    let info = d.info();
    assert_eq!((info.width, info.height), (720, 528));
    assert!((info.fps - 23.976).abs() < 0.01, "{}", info.fps);
    let mut frames = Vec::new();
    while let Some(f) = d.next_frame().expect("decodes") {
        frames.push(f);
        if frames.len() == 48 {
            break;
        }
    }
    assert_eq!(frames.len(), 48);
    assert_eq!(frames[47].index, 47);
    assert!((frames[24].pts_s - 24.0 / info.fps).abs() < 1e-9);
    // Real content: frames differ from each other and are not flat.
    assert_ne!(frames[0].picture.pixels, frames[47].picture.pixels);
    let p = &frames[10].picture.pixels;
    assert!(p.iter().max() > p.iter().min());
}

#[test]
fn reads_to_the_end_and_scales_down() {
    let mut d = Decoder::open(
        &VideoSource::File(MEGAMIND.into()),
        DecodeOptions {
            max_width: 160,
            ..Default::default()
        },
    )
    .expect("opens");
    assert_eq!((d.info().width, d.info().height), (160, 116));
    let mut n = 0;
    while d.next_frame().expect("decodes").is_some() {
        n += 1;
    }
    // The container says 270 frames; ffmpeg decodes 271 (one duplicated at a timestamp gap).
    assert!(
        (265..=275).contains(&n),
        "Megamind.avi holds about 270 frames, got {n}"
    );
}

#[test]
fn garbage_is_a_clear_error() {
    let dir = std::env::temp_dir().join(format!("mcdnn-video-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp");
    let junk = dir.join("junk.avi");
    std::fs::write(&junk, vec![0x5au8; 64 * 1024]).expect("write");
    let e = Decoder::open(&VideoSource::File(junk.clone()), DecodeOptions::default())
        .err()
        .expect("junk must not open");
    assert!(e.to_string().contains("junk.avi"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}
