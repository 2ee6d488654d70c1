//! An image in memory, as every input path hands it to the serving loop: the local API (a PNG,
//! JPEG or raw upload), a decoded video frame, or a replayed data set image. Small on purpose:
//! cropping and resizing is what the models' preprocessing needs, nothing more.

/// How the bytes of a picture are laid out (row-major, no padding).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PixelFormat {
    /// One byte per pixel.
    Gray8,
    /// Three bytes per pixel, R, G, B.
    Rgb8,
}

impl PixelFormat {
    pub fn channels(self) -> usize {
        match self {
            PixelFormat::Gray8 => 1,
            PixelFormat::Rgb8 => 3,
        }
    }
}

/// Largest side accepted anywhere (8K video): bounds what an upload or a stream can make the
/// node allocate.
pub const MAX_SIDE: u32 = 8192;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PictureError {
    #[error("picture is {width}x{height}; each side must be 1..={MAX_SIDE}")]
    Size { width: u32, height: u32 },
    #[error("{got} bytes for a {width}x{height} {format:?} picture, which needs {expected}")]
    Length {
        width: u32,
        height: u32,
        format: PixelFormat,
        got: usize,
        expected: usize,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Picture {
    pub width: u32,
    pub height: u32,
    pub format: PixelFormat,
    pub pixels: Vec<u8>,
}

impl Picture {
    /// Checks the size and that `pixels` holds exactly `width x height` pixels of `format`.
    pub fn new(
        width: u32,
        height: u32,
        format: PixelFormat,
        pixels: Vec<u8>,
    ) -> Result<Self, PictureError> {
        let expected = byte_len(width, height, format)?;
        if pixels.len() != expected {
            return Err(PictureError::Length {
                width,
                height,
                format,
                got: pixels.len(),
                expected,
            });
        }
        Ok(Self {
            width,
            height,
            format,
            pixels,
        })
    }

    /// The same picture as one gray byte per pixel (ITU-R BT.601 luma).
    pub fn to_gray(&self) -> Picture {
        match self.format {
            PixelFormat::Gray8 => self.clone(),
            PixelFormat::Rgb8 => Picture {
                width: self.width,
                height: self.height,
                format: PixelFormat::Gray8,
                pixels: self
                    .pixels
                    .chunks_exact(3)
                    .map(|p| {
                        let y =
                            299 * u32::from(p[0]) + 587 * u32::from(p[1]) + 114 * u32::from(p[2]);
                        ((y + 500) / 1000) as u8
                    })
                    .collect(),
            },
        }
    }

    /// The same picture as three bytes per pixel (grey repeated), what the face models take.
    pub fn to_rgb(&self) -> Picture {
        match self.format {
            PixelFormat::Rgb8 => self.clone(),
            PixelFormat::Gray8 => Picture {
                width: self.width,
                height: self.height,
                format: PixelFormat::Rgb8,
                pixels: self.pixels.iter().flat_map(|&g| [g, g, g]).collect(),
            },
        }
    }

    /// The region `x, y, w, h` clamped to the picture, resized to `out_w x out_h` with bilinear
    /// sampling. A region partly outside the picture repeats its edge pixels, so a face box that
    /// pokes past the frame still gives a full crop.
    pub fn crop_resize(&self, x: f32, y: f32, w: f32, h: f32, out_w: u32, out_h: u32) -> Picture {
        let sx = w / out_w as f32;
        let sy = h / out_h as f32;
        self.warp(out_w, out_h, |ox, oy| {
            (x + (ox + 0.5) * sx - 0.5, y + (oy + 0.5) * sy - 0.5)
        })
    }

    /// A new `out_w x out_h` picture whose pixel (ox, oy) is this picture sampled (bilinear, edges
    /// repeated) at `map(ox, oy)`, in pixel-index coordinates. Crops, resizes and the face
    /// alignment's rotation are all this one loop.
    pub fn warp(&self, out_w: u32, out_h: u32, map: impl Fn(f32, f32) -> (f32, f32)) -> Picture {
        let c = self.format.channels();
        let mut pixels = Vec::with_capacity(out_w as usize * out_h as usize * c);
        let max_x = (self.width - 1) as f32;
        let max_y = (self.height - 1) as f32;
        for oy in 0..out_h {
            for ox in 0..out_w {
                let (fx, fy) = map(ox as f32, oy as f32);
                let fx = if fx.is_nan() {
                    0.0
                } else {
                    fx.clamp(0.0, max_x)
                };
                let fy = if fy.is_nan() {
                    0.0
                } else {
                    fy.clamp(0.0, max_y)
                };
                let (x0, tx) = (fx.floor() as usize, fx.fract());
                let (y0, ty) = (fy.floor() as usize, fy.fract());
                let x1 = (x0 + 1).min(self.width as usize - 1);
                let y1 = (y0 + 1).min(self.height as usize - 1);
                for ch in 0..c {
                    let at = |px: usize, py: usize| {
                        f32::from(self.pixels[(py * self.width as usize + px) * c + ch])
                    };
                    let top = at(x0, y0) * (1.0 - tx) + at(x1, y0) * tx;
                    let bottom = at(x0, y1) * (1.0 - tx) + at(x1, y1) * tx;
                    pixels.push((top * (1.0 - ty) + bottom * ty).round() as u8);
                }
            }
        }
        Picture {
            width: out_w,
            height: out_h,
            format: self.format,
            pixels,
        }
    }

    /// The whole picture resized to `out_w x out_h`.
    pub fn resize(&self, out_w: u32, out_h: u32) -> Picture {
        self.crop_resize(
            0.0,
            0.0,
            self.width as f32,
            self.height as f32,
            out_w,
            out_h,
        )
    }
}

/// Bytes a `width x height` picture of `format` takes, or why that size is refused.
pub fn byte_len(width: u32, height: u32, format: PixelFormat) -> Result<usize, PictureError> {
    if !(1..=MAX_SIDE).contains(&width) || !(1..=MAX_SIDE).contains(&height) {
        return Err(PictureError::Size { width, height });
    }
    Ok(width as usize * height as usize * format.channels())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_wrong_lengths_and_sizes() {
        assert!(matches!(
            Picture::new(2, 2, PixelFormat::Rgb8, vec![0; 11]),
            Err(PictureError::Length { expected: 12, .. })
        ));
        assert!(matches!(
            Picture::new(0, 2, PixelFormat::Gray8, vec![]),
            Err(PictureError::Size { .. })
        ));
        assert!(matches!(
            Picture::new(
                MAX_SIDE + 1,
                1,
                PixelFormat::Gray8,
                vec![0; MAX_SIDE as usize + 1]
            ),
            Err(PictureError::Size { .. })
        ));
    }

    #[test]
    fn gray_of_pure_colours() {
        let p = Picture::new(
            3,
            1,
            PixelFormat::Rgb8,
            vec![255, 0, 0, 0, 255, 0, 255, 255, 255],
        )
        .expect("valid");
        assert_eq!(p.to_gray().pixels, vec![76, 150, 255]);
    }

    #[test]
    fn resize_keeps_a_flat_picture_flat_and_halves_a_gradient() {
        let flat = Picture::new(4, 4, PixelFormat::Gray8, vec![9; 16]).expect("valid");
        assert_eq!(flat.resize(2, 3).pixels, vec![9; 6]);
        let ramp = Picture::new(4, 1, PixelFormat::Gray8, vec![0, 100, 200, 255]).expect("valid");
        // Each output pixel averages the two input pixels it covers.
        assert_eq!(ramp.resize(2, 1).pixels, vec![50, 228]);
    }

    #[test]
    fn crop_outside_the_picture_repeats_the_edge() {
        let p = Picture::new(2, 1, PixelFormat::Gray8, vec![10, 20]).expect("valid");
        let c = p.crop_resize(-2.0, 0.0, 2.0, 1.0, 2, 1);
        assert_eq!(c.pixels, vec![10, 10]);
    }
}
