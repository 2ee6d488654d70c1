//! An uploaded image into a [`Picture`]: PNG or JPEG (their size is read from the header and
//! checked before anything is decoded), or raw pixels whose shape the query gives.

use std::io::Cursor;

use image::{ImageFormat, ImageReader, Limits};

use crate::picture::{Picture, PixelFormat};

/// Most pixels an upload may have (a 4K frame is 8.3 M): bounds the decode's memory.
pub const MAX_PIXELS: u64 = 16 * 1024 * 1024;

/// The shape of raw pixels, from the query string (`width=W&height=H&format=gray8|rgb8`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawShape {
    pub width: u32,
    pub height: u32,
    pub format: PixelFormat,
}

impl RawShape {
    pub fn from_query(query: &str) -> Result<Self, String> {
        let (mut w, mut h, mut f) = (None, None, PixelFormat::Gray8);
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let num = || {
                v.parse::<u32>()
                    .map_err(|_| format!("query parameter {k}={v:?} is not a number"))
            };
            match k {
                "width" => w = Some(num()?),
                "height" => h = Some(num()?),
                "format" => {
                    f = match v {
                        "gray8" => PixelFormat::Gray8,
                        "rgb8" => PixelFormat::Rgb8,
                        _ => return Err(format!("format={v:?}: use gray8 or rgb8")),
                    }
                }
                _ => {}
            }
        }
        match (w, h) {
            (Some(width), Some(height)) => Ok(Self {
                width,
                height,
                format: f,
            }),
            _ => Err("raw pixels need width and height query parameters".into()),
        }
    }

    pub fn bytes(&self) -> Result<usize, String> {
        if u64::from(self.width) * u64::from(self.height) > MAX_PIXELS {
            return Err(format!(
                "{}x{} is over {MAX_PIXELS} pixels",
                self.width, self.height
            ));
        }
        crate::picture::byte_len(self.width, self.height, self.format).map_err(|e| e.to_string())
    }

    /// One picture of this shape from exactly its bytes.
    pub fn picture(&self, bytes: &[u8]) -> Result<Picture, String> {
        self.bytes()?;
        Picture::new(self.width, self.height, self.format, bytes.to_vec())
            .map_err(|e| e.to_string())
    }
}

/// Decodes a PNG or JPEG upload; the error says why it is refused.
pub fn decode(bytes: &[u8], format: ImageFormat) -> Result<Picture, String> {
    let what = format!("{format:?}").to_uppercase();
    let (w, h) = ImageReader::with_format(Cursor::new(bytes), format)
        .into_dimensions()
        .map_err(|e| format!("not a readable {what}: {e}"))?;
    if u64::from(w) * u64::from(h) > MAX_PIXELS {
        return Err(format!("{what} is {w}x{h}, over {MAX_PIXELS} pixels"));
    }
    crate::picture::byte_len(w, h, PixelFormat::Rgb8).map_err(|e| e.to_string())?;
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut limits = Limits::default();
    limits.max_image_width = Some(w);
    limits.max_image_height = Some(h);
    // RGBA at 16 bits per channel is the largest a decoder asks for.
    limits.max_alloc = Some(u64::from(w) * u64::from(h) * 8 + (1 << 20));
    reader.limits(limits);
    let image = reader
        .decode()
        .map_err(|e| format!("cannot decode the {what}: {e}"))?;
    let gray = !image.color().has_color();
    let picture = if gray {
        Picture::new(w, h, PixelFormat::Gray8, image.into_luma8().into_raw())
    } else {
        Picture::new(w, h, PixelFormat::Rgb8, image.into_rgb8().into_raw())
    };
    picture.map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(w: u32, h: u32) -> Vec<u8> {
        let img = image::GrayImage::from_fn(w, h, |x, _| image::Luma([x as u8]));
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, ImageFormat::Png).expect("encode");
        out.into_inner()
    }

    #[test]
    fn decodes_a_gray_png_and_refuses_garbage() {
        let p = decode(&png(3, 2), ImageFormat::Png).expect("png");
        assert_eq!((p.width, p.height, p.format), (3, 2, PixelFormat::Gray8));
        assert_eq!(p.pixels, vec![0, 1, 2, 0, 1, 2]);
        let err = decode(b"not a png", ImageFormat::Png).expect_err("garbage");
        assert!(err.contains("PNG"), "{err}");
    }

    fn crc32(data: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &b in data {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    #[test]
    fn a_huge_header_is_refused_before_decoding() {
        // A PNG whose header claims 60000x60000: refused from the header alone.
        let mut bytes = png(1, 1);
        bytes[16..20].copy_from_slice(&60000u32.to_be_bytes());
        bytes[20..24].copy_from_slice(&60000u32.to_be_bytes());
        // A valid header: the IHDR chunk's CRC over its type and data.
        let crc = crc32(&bytes[12..29]);
        bytes[29..33].copy_from_slice(&crc.to_be_bytes());
        let err = decode(&bytes, ImageFormat::Png).expect_err("too big");
        assert!(err.contains("over"), "{err}");
    }

    #[test]
    fn raw_shapes_from_the_query() {
        let s = RawShape::from_query("width=28&height=28&format=gray8").expect("shape");
        assert_eq!(s.bytes(), Ok(784));
        assert!(RawShape::from_query("width=28").is_err());
        assert!(RawShape::from_query("width=2&height=2&format=cmyk").is_err());
        assert!(s.picture(&[0; 783]).is_err());
    }
}
