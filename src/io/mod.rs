//! File formats, and the one way qcanet writes a file.
pub mod atomic;
pub mod ome_zarr;
pub mod tiff;
