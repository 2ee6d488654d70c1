//! Face descriptors from an operator's photos, computed on the coordinator that receives them
//! (`mcdnnctl watchlist add`). Only the descriptors go on: the photos are decoded here, in
//! memory, and dropped when the request ends; they are never written to disk or replicated.
//!
//! Decoding is bounded before it allocates (format sniffed from the bytes, PNG or JPEG only;
//! dimensions read from the header and capped), and describing runs one request at a time on
//! a blocking thread, so a burst of uploads queues instead of starving the replica's runtime.

use std::io::Cursor;
use std::sync::Arc;

use tokio::sync::Semaphore;

/// Largest photo side accepted, pixels.
pub const MAX_SIDE: u32 = 8192;
/// Largest photo accepted, pixels (24 MP: a phone camera's full frame).
pub const MAX_PIXELS: u64 = 24_000_000;

/// A decoded photo: RGB, 8 bits per channel, row-major.
#[derive(Debug, Clone)]
pub struct Photo {
    pub width: u32,
    pub height: u32,
    pub rgb: Vec<u8>,
}

/// Decodes a PNG or JPEG photo, refusing anything else, anything over [`MAX_SIDE`] or
/// [`MAX_PIXELS`], and anything that does not decode, with the reason.
pub fn decode_photo(bytes: &[u8]) -> Result<Photo, String> {
    let reader = image::ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| format!("cannot read the photo: {e}"))?;
    match reader.format() {
        Some(image::ImageFormat::Png | image::ImageFormat::Jpeg) => {}
        Some(other) => {
            return Err(format!(
                "{other:?} photos are not accepted; send PNG or JPEG"
            ));
        }
        None => return Err("not a PNG or JPEG photo".into()),
    }
    let (width, height) = reader
        .into_dimensions()
        .map_err(|e| format!("cannot read the photo's header: {e}"))?;
    if width == 0
        || height == 0
        || width > MAX_SIDE
        || height > MAX_SIDE
        || u64::from(width) * u64::from(height) > MAX_PIXELS
    {
        return Err(format!(
            "the photo is {width}x{height}; at most {MAX_SIDE} pixels a side and {MAX_PIXELS} pixels"
        ));
    }
    let mut reader = image::ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| format!("cannot read the photo: {e}"))?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_PIXELS * 4);
    reader.limits(limits);
    let img = reader
        .decode()
        .map_err(|e| format!("the photo does not decode: {e}"))?;
    let rgb = img.to_rgb8();
    Ok(Photo {
        width: rgb.width(),
        height: rgb.height(),
        rgb: rgb.into_raw(),
    })
}

/// What the models made of a photo.
#[derive(Debug, Clone, PartialEq)]
pub enum Found {
    /// Exactly one face, and its descriptor.
    One(Vec<f32>),
    /// Not exactly one face: how many were found (nothing was described).
    Faces(usize),
}

/// What computes descriptors: the face models (`--face-models`).
pub trait DescribeFaces: Send + Sync {
    /// The descriptor of the one face in `photo`, or how many faces it shows instead.
    fn describe_one(&self, photo: &Photo) -> Result<Found, String>;
}

/// The detector and descriptor network in a face model folder (`models/face`): the fp32
/// descriptor network, the fleet's reference, so enrolled descriptors are the best the models
/// give whatever variant a node matches with.
pub const DETECTOR_FILE: &str = "blazeface_front_128.onnx";
pub const DESCRIBER_FILE: &str = "face_recognition_150.onnx";

/// Loads the face models from `dir` (`models/face`); an error names the missing file or the
/// missing ONNX Runtime library.
pub fn load(dir: &std::path::Path) -> anyhow::Result<Arc<FaceService>> {
    let pipeline = vision::face::FacePipeline::from_files(
        &dir.join(DETECTOR_FILE),
        &dir.join(DESCRIBER_FILE),
        1,
    )
    .map_err(|e| {
        anyhow::anyhow!(
            "loading the face models from {} (--face-models): {e}",
            dir.display()
        )
    })?;
    tracing::info!(dir = %dir.display(), "face models loaded for watchlist descriptors");
    Ok(FaceService::new(Box::new(Models(std::sync::Mutex::new(
        pipeline,
    )))))
}

/// The real models: detect, align on the eyes, describe.
struct Models(std::sync::Mutex<vision::face::FacePipeline>);

impl DescribeFaces for Models {
    fn describe_one(&self, photo: &Photo) -> Result<Found, String> {
        let picture = vision::picture::Picture::new(
            photo.width,
            photo.height,
            vision::picture::PixelFormat::Rgb8,
            photo.rgb.clone(),
        )
        .map_err(|e| e.to_string())?;
        // One request describes at a time (FaceService's gate); a poisoned lock only means an
        // earlier call panicked, and the sessions hold no partial state.
        let mut models = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let faces = models.faces(&picture).map_err(|e| e.to_string())?;
        if faces.len() != 1 {
            return Ok(Found::Faces(faces.len()));
        }
        let mut described = models
            .describe(&picture, &faces)
            .map_err(|e| e.to_string())?;
        match (described.pop(), described.is_empty()) {
            (Some(d), true) => Ok(Found::One(d)),
            _ => Err("the descriptor network did not describe the one face".into()),
        }
    }
}

/// The coordinator's face models behind a one-at-a-time gate.
pub struct FaceService {
    describer: Box<dyn DescribeFaces>,
    busy: Semaphore,
}

/// Why photos gave no descriptors: the operator's fault (a bad photo) or ours.
#[derive(Debug, Clone, PartialEq)]
pub enum DescribeError {
    /// A photo that does not decode or does not show exactly one face; says which and why.
    BadPhoto(String),
    /// The models failed or the worker died.
    Internal(String),
}

impl FaceService {
    pub fn new(describer: Box<dyn DescribeFaces>) -> Arc<Self> {
        Arc::new(FaceService {
            describer,
            busy: Semaphore::new(1),
        })
    }

    /// One descriptor per photo, in order. Each photo must show exactly one face: with none
    /// or several, which one is meant is the operator's call, not ours.
    pub async fn one_per_photo(
        self: &Arc<Self>,
        photos: Vec<Vec<u8>>,
    ) -> Result<Vec<Vec<f32>>, DescribeError> {
        let _turn = self
            .busy
            .acquire()
            .await
            .map_err(|e| DescribeError::Internal(e.to_string()))?;
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.describe_all(&photos))
            .await
            .map_err(|e| DescribeError::Internal(format!("the describing thread failed: {e}")))?
    }

    fn describe_all(&self, photos: &[Vec<u8>]) -> Result<Vec<Vec<f32>>, DescribeError> {
        let mut out = Vec::with_capacity(photos.len());
        for (i, bytes) in photos.iter().enumerate() {
            let n = i + 1;
            let photo = decode_photo(bytes)
                .map_err(|e| DescribeError::BadPhoto(format!("photo {n}: {e}")))?;
            let found = self
                .describer
                .describe_one(&photo)
                .map_err(|e| DescribeError::Internal(format!("photo {n}: {e}")))?;
            match found {
                Found::One(d) => out.push(d),
                Found::Faces(0) => {
                    return Err(DescribeError::BadPhoto(format!(
                        "photo {n}: no face found; send a photo with one clear, frontal face"
                    )));
                }
                Found::Faces(k) => {
                    return Err(DescribeError::BadPhoto(format!(
                        "photo {n}: {k} faces found; crop it to the one person to enrol"
                    )));
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn png(width: u32, height: u32) -> Vec<u8> {
        let img = image::RgbImage::from_pixel(width, height, image::Rgb([10, 20, 30]));
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png).unwrap();
        out.into_inner()
    }

    #[test]
    fn photos_decode_within_bounds_and_garbage_is_refused() {
        let p = decode_photo(&png(4, 3)).unwrap();
        assert_eq!((p.width, p.height, p.rgb.len()), (4, 3, 36));
        assert!(decode_photo(b"not an image at all").is_err());
        let mut truncated = png(64, 64);
        truncated.truncate(truncated.len() / 2);
        assert!(decode_photo(&truncated).is_err());
        // A header claiming a huge image is refused before any pixel buffer is made.
        let mut huge = png(1, 1);
        // IHDR width/height sit at bytes 16..24 of a PNG.
        huge[16..20].copy_from_slice(&100_000u32.to_be_bytes());
        huge[20..24].copy_from_slice(&100_000u32.to_be_bytes());
        let e = decode_photo(&huge).unwrap_err();
        assert!(e.contains("100000x100000") || e.contains("header"), "{e}");
    }

    /// Finds one face less than the photo is wide, so each count can be tried (the real
    /// models' answers are tested across processes: tests/tests/watchlist.rs).
    struct CountByWidth;
    impl DescribeFaces for CountByWidth {
        fn describe_one(&self, photo: &Photo) -> Result<Found, String> {
            Ok(match photo.width - 1 {
                1 => Found::One(vec![0.5; 128]),
                k => Found::Faces(k as usize),
            })
        }
    }

    #[tokio::test]
    async fn exactly_one_face_per_photo_or_a_reason() {
        let s = FaceService::new(Box::new(CountByWidth));
        let d = s.one_per_photo(vec![png(2, 2), png(2, 5)]).await.unwrap();
        assert_eq!(d.len(), 2);
        let none = s.one_per_photo(vec![png(2, 2), png(1, 2)]).await;
        assert!(matches!(none, Err(DescribeError::BadPhoto(m)) if m.contains("photo 2: no face")));
        let many = s.one_per_photo(vec![png(4, 2)]).await;
        assert!(matches!(many, Err(DescribeError::BadPhoto(m)) if m.contains("3 faces")));
        let garbage = s.one_per_photo(vec![b"GIF89a".to_vec()]).await;
        assert!(matches!(garbage, Err(DescribeError::BadPhoto(_))));
    }
}
