//! One error type for the whole library; the C API maps each variant to a status code.
use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("input contains NaN or infinite values ({0} voxels)")]
    NonFinite(usize),
    #[error("I/O error on {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("cannot read TIFF {path}: {msg}")]
    Tiff { path: String, msg: String },
    #[error("cannot write {path}: {msg}")]
    Write { path: String, msg: String },
    #[error("unsupported image format: {0}")]
    Unsupported(String),
    #[error("ONNX Runtime not available: {0}")]
    Runtime(String),
    #[error("model error: {0}")]
    Model(String),
    #[error("inference failed: {0}")]
    Inference(String),
    #[error("cancelled by the caller")]
    Cancelled,
    #[error("internal error: {0}")]
    Internal(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::InvalidArgument(msg.into())
    }
    pub fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        Error::Io { path: path.as_ref().display().to_string(), source }
    }
}

/// Number of voxels of a (z, y, x) volume, refusing zero and overflowing sizes.
pub fn voxel_count(dims: [usize; 3]) -> Result<usize> {
    if dims.iter().any(|&d| d == 0) {
        return Err(Error::invalid(format!("dimensions must be non-zero, got {dims:?}")));
    }
    let n =
        dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).ok_or_else(|| Error::invalid(format!("dimensions {dims:?} overflow")))?;
    // labels are u32 and the flood uses u32 indices
    if n >= u32::MAX as usize / 2 {
        return Err(Error::invalid(format!("volume {dims:?} is too large ({n} voxels)")));
    }
    Ok(n)
}

/// Most voxels of one volume segmented block by block (labels go through a scratch file of
/// 4 bytes a voxel: 4 TiB at this limit).
pub const MAX_STREAMED_VOXELS: u64 = 1 << 40;

/// Number of voxels of a (z, y, x) volume streamed block by block, refusing zero and
/// sizes over [`MAX_STREAMED_VOXELS`].
pub fn voxel_count_u64(dims: [usize; 3]) -> Result<u64> {
    if dims.iter().any(|&d| d == 0) {
        return Err(Error::invalid(format!("dimensions must be non-zero, got {dims:?}")));
    }
    dims.iter()
        .try_fold(1u64, |a, &d| a.checked_mul(d as u64))
        .filter(|&n| n <= MAX_STREAMED_VOXELS)
        .ok_or_else(|| Error::invalid(format!("volume {dims:?} is too large (limit {MAX_STREAMED_VOXELS} voxels)")))
}
