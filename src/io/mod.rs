//! File formats.
pub mod tiff;
