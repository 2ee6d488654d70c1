//! Decodes a video file or a V4L2 camera into RGB frames with Debian's `ffmpeg` as a child
//! process piping raw `rgb24` frames on its stdout. A child process rather than a binding to
//! libav: no unsafe code and no build-time dependency on libav's headers, a decoder crash cannot
//! take the node down, and the node can kill a stuck decoder. `ffprobe` reads the stream's size
//! and frame rate first, so every frame read is exactly `width x height x 3` bytes.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::str::FromStr;

use crate::picture::{MAX_SIDE, Picture, PixelFormat};

/// Where frames come from: `file:PATH` or `v4l2:DEVICE` (as `--source` spells it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VideoSource {
    File(PathBuf),
    V4l2(PathBuf),
}

impl FromStr for VideoSource {
    type Err = VideoError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || VideoError::Source(s.to_string());
        let (kind, path) = s.split_once(':').ok_or_else(bad)?;
        if path.is_empty() {
            return Err(bad());
        }
        match kind {
            "file" => Ok(VideoSource::File(path.into())),
            "v4l2" => Ok(VideoSource::V4l2(path.into())),
            _ => Err(bad()),
        }
    }
}

impl VideoSource {
    fn path(&self) -> &Path {
        match self {
            VideoSource::File(p) | VideoSource::V4l2(p) => p,
        }
    }

    /// ffmpeg's input arguments for this source.
    fn input_args(&self) -> Vec<String> {
        let path = self.path().display().to_string();
        match self {
            VideoSource::File(_) => vec!["-i".into(), path],
            VideoSource::V4l2(_) => vec!["-f".into(), "v4l2".into(), "-i".into(), path],
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum VideoError {
    #[error("video source {0:?} is not file:PATH or v4l2:DEVICE")]
    Source(String),
    #[error("cannot run {tool} (install Debian's ffmpeg): {source}")]
    Tool {
        tool: &'static str,
        source: std::io::Error,
    },
    #[error("cannot read {path}: {message}")]
    Probe { path: String, message: String },
    #[error("reading decoded frames: {0}")]
    Read(std::io::Error),
    #[error("ffmpeg failed on {path}: {message}")]
    Decode { path: String, message: String },
}

/// What the decoder produces.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VideoInfo {
    /// Size of the frames handed out (after any downscale).
    pub width: u32,
    pub height: u32,
    /// The stream's frame rate (frames per second).
    pub fps: f64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DecodeOptions {
    /// Frames wider than this are scaled down (keeping the aspect ratio): a node never holds
    /// more pixels per frame than its models can use.
    pub max_width: u32,
    /// Frame rate assumed when the stream does not say (a camera that reports none).
    pub default_fps: f64,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        Self {
            max_width: 1280,
            default_fps: 30.0,
        }
    }
}

/// One decoded frame and where it sits in the stream.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoFrame {
    /// 0 for the first frame.
    pub index: u64,
    /// Presentation time in seconds from the stream's start (`index / fps`).
    pub pts_s: f64,
    pub picture: Picture,
}

pub struct Decoder {
    info: VideoInfo,
    path: String,
    child: Child,
    stdout: ChildStdout,
    next_index: u64,
}

impl Decoder {
    pub fn open(source: &VideoSource, opts: DecodeOptions) -> Result<Self, VideoError> {
        let path = source.path().display().to_string();
        let probed = probe(source)?;
        let (width, height) = output_size(probed.width, probed.height, opts.max_width);
        let fps = probed
            .fps
            .filter(|f| f.is_finite() && *f > 0.0 && *f <= 1000.0)
            .unwrap_or(opts.default_fps);
        let mut cmd = Command::new("ffmpeg");
        cmd.args(["-nostdin", "-hide_banner", "-loglevel", "error"])
            .args(source.input_args())
            .args(["-an", "-sn", "-vf"])
            .arg(format!("scale={width}:{height}"))
            .args(["-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|source| VideoError::Tool {
            tool: "ffmpeg",
            source,
        })?;
        let stdout = child.stdout.take().ok_or_else(|| VideoError::Decode {
            path: path.clone(),
            message: "no stdout pipe".into(),
        })?;
        Ok(Self {
            info: VideoInfo { width, height, fps },
            path,
            child,
            stdout,
            next_index: 0,
        })
    }

    pub fn info(&self) -> VideoInfo {
        self.info
    }

    /// The next frame, or `None` at the end of the stream. A decoder that dies mid-stream (a
    /// corrupt file, an unplugged camera) is an error carrying ffmpeg's own message.
    pub fn next_frame(&mut self) -> Result<Option<VideoFrame>, VideoError> {
        let len = self.info.width as usize * self.info.height as usize * 3;
        let mut buf = vec![0u8; len];
        let mut filled = 0;
        while filled < len {
            match self.stdout.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(VideoError::Read(e)),
            }
        }
        if filled < len {
            // End of stream: a clean exit is the end; anything else is ffmpeg's error.
            return self.finish(filled).map(|()| None);
        }
        let picture = Picture::new(self.info.width, self.info.height, PixelFormat::Rgb8, buf)
            .map_err(|e| VideoError::Decode {
                path: self.path.clone(),
                message: e.to_string(),
            })?;
        let index = self.next_index;
        self.next_index += 1;
        Ok(Some(VideoFrame {
            index,
            pts_s: index as f64 / self.info.fps,
            picture,
        }))
    }

    fn finish(&mut self, partial: usize) -> Result<(), VideoError> {
        let status = self.child.wait().map_err(VideoError::Read)?;
        let mut message = String::new();
        if let Some(mut err) = self.child.stderr.take() {
            // Bounded: a decoder that floods its stderr cannot make the node buffer it all.
            let _ = err.by_ref().take(4096).read_to_string(&mut message);
        }
        if status.success() && partial == 0 {
            return Ok(());
        }
        Err(VideoError::Decode {
            path: self.path.clone(),
            message: if message.trim().is_empty() {
                format!("{status}, {partial} bytes of a partial frame")
            } else {
                message.trim().to_string()
            },
        })
    }
}

impl Drop for Decoder {
    fn drop(&mut self) {
        // A source dropped before the end (the node stops) must not leave ffmpeg running.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Probed {
    width: u32,
    height: u32,
    fps: Option<f64>,
}

fn probe(source: &VideoSource) -> Result<Probed, VideoError> {
    let path = source.path().display().to_string();
    let mut cmd = Command::new("ffprobe");
    cmd.args(["-v", "error", "-select_streams", "v:0"]);
    if matches!(source, VideoSource::V4l2(_)) {
        cmd.args(["-f", "v4l2"]);
    }
    let out = cmd
        .args([
            "-show_entries",
            "stream=width,height,r_frame_rate",
            "-of",
            "default=noprint_wrappers=1",
        ])
        .arg(source.path())
        .stdin(Stdio::null())
        .output()
        .map_err(|source| VideoError::Tool {
            tool: "ffprobe",
            source,
        })?;
    let text = String::from_utf8_lossy(&out.stdout);
    let fail = |message: String| VideoError::Probe {
        path: path.clone(),
        message,
    };
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(fail(err.trim().chars().take(500).collect()));
    }
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .map(str::trim)
    };
    let side = |key: &str| {
        field(key)
            .and_then(|v| v.parse::<u32>().ok())
            .filter(|v| (1..=MAX_SIDE).contains(v))
            .ok_or_else(|| fail(format!("no video stream with a valid {key}")))
    };
    Ok(Probed {
        width: side("width")?,
        height: side("height")?,
        fps: field("r_frame_rate").and_then(parse_rate),
    })
}

/// `30000/1001` or `25` as frames per second.
fn parse_rate(s: &str) -> Option<f64> {
    match s.split_once('/') {
        Some((n, d)) => {
            let (n, d) = (n.parse::<f64>().ok()?, d.parse::<f64>().ok()?);
            (d > 0.0).then_some(n / d)
        }
        None => s.parse().ok(),
    }
}

/// The decoded size: scaled down to `max_width` if wider, both sides even (what rgb24 scalers
/// expect of most codecs' chroma).
fn output_size(width: u32, height: u32, max_width: u32) -> (u32, u32) {
    if width <= max_width.max(2) {
        return (width, height);
    }
    let h = (u64::from(height) * u64::from(max_width) / u64::from(width)) as u32;
    (max_width & !1, (h & !1).max(2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sources() {
        assert_eq!(
            "file:/a/b.avi".parse::<VideoSource>().ok(),
            Some(VideoSource::File("/a/b.avi".into()))
        );
        assert_eq!(
            "v4l2:/dev/video0".parse::<VideoSource>().ok(),
            Some(VideoSource::V4l2("/dev/video0".into()))
        );
        for bad in ["", "file:", "/a/b.avi", "http://x/y", "rtsp:x"] {
            assert!(bad.parse::<VideoSource>().is_err(), "{bad}");
        }
    }

    #[test]
    fn parses_rates_and_scales_down() {
        assert_eq!(parse_rate("2997/125"), Some(23.976));
        assert_eq!(parse_rate("10/1"), Some(10.0));
        assert_eq!(parse_rate("0/0"), None);
        assert_eq!(output_size(720, 528, 1280), (720, 528));
        assert_eq!(output_size(1920, 1080, 640), (640, 360));
    }

    #[test]
    fn a_missing_file_is_a_clear_error() {
        let e = Decoder::open(
            &VideoSource::File("/nonexistent/video.avi".into()),
            DecodeOptions::default(),
        )
        .err()
        .expect("must fail");
        let text = e.to_string();
        assert!(
            text.contains("/nonexistent/video.avi") || text.contains("ffprobe"),
            "{text}"
        );
    }
}
