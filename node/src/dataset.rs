//! Reader for the idx(.gz) files of MNIST-style data sets (Fashion-MNIST in Debian's
//! `dataset-fashion-mnist`), with validation: a bad file is a clear error naming the file, never a
//! panic or a silently short data set.

use std::io::Read;
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;

/// Where Debian's `dataset-fashion-mnist` installs its files.
pub const DEFAULT_DATA_DIR: &str = "/usr/share/datasets/fashion-mnist";

/// Idx magic: two zero bytes, type 0x08 (unsigned byte), then the number of dimensions.
const UBYTE_TYPE: u8 = 0x08;

#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error(
        "cannot read {path}: {source} (install it with `apt-get install dataset-fashion-mnist` or set MCDNN_DATA)"
    )]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path}: not an idx file of unsigned bytes with {want_dims} dimensions (magic {found:02x?})"
    )]
    BadMagic {
        path: PathBuf,
        want_dims: u8,
        found: [u8; 4],
    },
    #[error("{path}: truncated: header promises {expected} bytes of data, file has {got}")]
    Truncated {
        path: PathBuf,
        expected: usize,
        got: usize,
    },
    #[error("{path}: {got} bytes of data after the header, expected exactly {expected}")]
    TrailingBytes {
        path: PathBuf,
        expected: usize,
        got: usize,
    },
    #[error("{images} holds {image_count} images but {labels} holds {label_count} labels")]
    CountMismatch {
        images: PathBuf,
        labels: PathBuf,
        image_count: usize,
        label_count: usize,
    },
}

/// Labelled grey-scale images, row-major, one byte per pixel.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub rows: usize,
    pub cols: usize,
    pixels: Vec<u8>,
    labels: Vec<u8>,
}

impl Dataset {
    /// Loads `{split}-images-idx3-ubyte(.gz)` and `{split}-labels-idx1-ubyte(.gz)` from `dir`;
    /// split is `train` or `t10k`.
    pub fn load(dir: &Path, split: &str) -> Result<Self, DatasetError> {
        let images = find(dir, &format!("{split}-images-idx3-ubyte"));
        let labels = find(dir, &format!("{split}-labels-idx1-ubyte"));
        let (image_dims, pixels) = read_idx(&images, 3)?;
        let (label_dims, labels_data) = read_idx(&labels, 1)?;
        if image_dims[0] != label_dims[0] {
            return Err(DatasetError::CountMismatch {
                images,
                labels,
                image_count: image_dims[0],
                label_count: label_dims[0],
            });
        }
        Ok(Self {
            rows: image_dims[1],
            cols: image_dims[2],
            pixels,
            labels: labels_data,
        })
    }

    /// The Fashion-MNIST test split from `MCDNN_DATA` or Debian's location.
    pub fn test_split() -> Result<Self, DatasetError> {
        Self::load(&data_dir(), "t10k")
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Pixels of image `i` (rows x cols bytes). Panics only on an index out of range, which is a
    /// caller bug, not bad data.
    pub fn image(&self, i: usize) -> &[u8] {
        let size = self.rows * self.cols;
        &self.pixels[i * size..(i + 1) * size]
    }

    /// Image `i` as a gray picture, written into `out` (its allocation reused: the replay hands
    /// one picture per frame to the serving loop without allocating).
    pub fn picture_into(&self, i: usize, out: &mut crate::picture::Picture) {
        out.width = self.cols as u32;
        out.height = self.rows as u32;
        out.format = crate::picture::PixelFormat::Gray8;
        out.pixels.clear();
        out.pixels.extend_from_slice(self.image(i));
    }

    pub fn label(&self, i: usize) -> u8 {
        self.labels[i]
    }

    /// Indices of every image with `label`, for frame sources that follow a class mix.
    pub fn indices_by_label(&self) -> Vec<Vec<usize>> {
        let mut by_label = vec![Vec::new(); 256];
        for (i, &l) in self.labels.iter().enumerate() {
            by_label[l as usize].push(i);
        }
        let used = by_label
            .iter()
            .rposition(|v| !v.is_empty())
            .map_or(0, |p| p + 1);
        by_label.truncate(used);
        by_label
    }
}

/// The data folder: `MCDNN_DATA` if set, else Debian's.
pub fn data_dir() -> PathBuf {
    std::env::var_os("MCDNN_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR))
}

/// Prefers the gzip file, as Debian ships it; falls back to an uncompressed one.
fn find(dir: &Path, stem: &str) -> PathBuf {
    let gz = dir.join(format!("{stem}.gz"));
    if gz.exists() { gz } else { dir.join(stem) }
}

/// Reads an idx file, checking magic, dimension count and that the data is exactly as long as the
/// header says. Returns the dimensions and the data bytes.
pub fn read_idx(path: &Path, want_dims: u8) -> Result<(Vec<usize>, Vec<u8>), DatasetError> {
    let io = |source| DatasetError::Io {
        path: path.to_path_buf(),
        source,
    };
    let raw = std::fs::read(path).map_err(io)?;
    let bytes = if path.extension().is_some_and(|e| e == "gz") {
        let mut out = Vec::new();
        GzDecoder::new(raw.as_slice())
            .read_to_end(&mut out)
            .map_err(io)?;
        out
    } else {
        raw
    };
    parse_idx(path, &bytes, want_dims)
}

fn parse_idx(
    path: &Path,
    bytes: &[u8],
    want_dims: u8,
) -> Result<(Vec<usize>, Vec<u8>), DatasetError> {
    let header_len = 4 + 4 * want_dims as usize;
    let mut magic = [0u8; 4];
    let head_len = bytes.len().min(4);
    magic[..head_len].copy_from_slice(&bytes[..head_len]);
    if bytes.len() < header_len || magic != [0, 0, UBYTE_TYPE, want_dims] {
        return Err(DatasetError::BadMagic {
            path: path.to_path_buf(),
            want_dims,
            found: magic,
        });
    }
    let dims: Vec<usize> = bytes[4..header_len]
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .collect();
    let expected = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .unwrap_or(usize::MAX);
    let got = bytes.len() - header_len;
    if got < expected {
        return Err(DatasetError::Truncated {
            path: path.to_path_buf(),
            expected,
            got,
        });
    }
    if got > expected {
        return Err(DatasetError::TrailingBytes {
            path: path.to_path_buf(),
            expected,
            got,
        });
    }
    Ok((dims, bytes[header_len..].to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idx(dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut out = vec![0, 0, UBYTE_TYPE, dims.len() as u8];
        for d in dims {
            out.extend_from_slice(&d.to_be_bytes());
        }
        out.extend_from_slice(data);
        out
    }

    #[test]
    fn parses_a_well_formed_file() {
        let bytes = idx(&[2, 2, 2], &[1, 2, 3, 4, 5, 6, 7, 8]);
        let (dims, data) = parse_idx(Path::new("x"), &bytes, 3).expect("valid");
        assert_eq!(dims, vec![2, 2, 2]);
        assert_eq!(data, vec![1, 2, 3, 4, 5, 6, 7, 8]);
    }

    #[test]
    fn bad_magic_names_the_file() {
        let mut bytes = idx(&[1], &[7]);
        bytes[2] = 0x0D; // float data, not unsigned bytes
        let err = parse_idx(Path::new("labels.idx"), &bytes, 1).unwrap_err();
        assert!(matches!(err, DatasetError::BadMagic { .. }));
        assert!(err.to_string().contains("labels.idx"), "{err}");
    }

    #[test]
    fn wrong_dimension_count_is_bad_magic() {
        let bytes = idx(&[1, 1], &[7]);
        assert!(matches!(
            parse_idx(Path::new("x"), &bytes, 3),
            Err(DatasetError::BadMagic { .. })
        ));
    }

    #[test]
    fn truncated_data_is_reported_with_sizes() {
        let bytes = idx(&[3, 2, 2], &[0; 10]);
        let err = parse_idx(Path::new("images.idx"), &bytes, 3).unwrap_err();
        match err {
            DatasetError::Truncated { expected, got, .. } => assert_eq!((expected, got), (12, 10)),
            other => panic!("expected Truncated, got {other}"),
        }
    }

    #[test]
    fn short_header_is_bad_magic_not_a_panic() {
        assert!(parse_idx(Path::new("x"), &[0, 0], 3).is_err());
        assert!(parse_idx(Path::new("x"), &[], 1).is_err());
    }

    #[test]
    fn trailing_bytes_are_rejected() {
        let bytes = idx(&[1], &[1, 2]);
        assert!(matches!(
            parse_idx(Path::new("x"), &bytes, 1),
            Err(DatasetError::TrailingBytes { .. })
        ));
    }

    #[test]
    fn count_mismatch_between_images_and_labels() {
        let dir = std::env::temp_dir().join(format!("mcdnn-idx-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        std::fs::write(dir.join("t-images-idx3-ubyte"), idx(&[2, 1, 1], &[0, 0])).expect("write");
        std::fs::write(dir.join("t-labels-idx1-ubyte"), idx(&[3], &[0, 1, 2])).expect("write");
        let err = Dataset::load(&dir, "t").unwrap_err();
        assert!(matches!(
            err,
            DatasetError::CountMismatch {
                image_count: 2,
                label_count: 3,
                ..
            }
        ));
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn missing_file_says_how_to_install() {
        let err = Dataset::load(Path::new("/nonexistent-mcdnn"), "t10k").unwrap_err();
        assert!(err.to_string().contains("dataset-fashion-mnist"), "{err}");
    }
}
