//! qcanet: 3D nuclear segmentation of fluorescence microscopy (QCANet: NSN + NDN
//! networks through ONNX Runtime, then a marker watershed), with a stable C API.
//!
//! ```no_run
//! let model = qcanet::Model::load_default(&qcanet::LoadOptions::default())?;
//! let stack = qcanet::io::tiff::read("embryo.tif")?;
//! let vol = stack.volume(0, 0)?.to_f32();
//! let params = qcanet::SegmentParams { voxel_size: Some([1.75, 0.8, 0.8]), ..Default::default() };
//! let seg = model.segment(&vol, stack.dims, &params, None)?;
//! println!("{} nuclei", seg.n_nuclei);
//! # Ok::<(), qcanet::Error>(())
//! ```

pub mod blocks;
pub mod capi;
pub mod contract;
pub mod criteria;
pub mod cuda_libs;
pub mod edt;
pub mod error;
pub mod files;
pub mod io;
pub mod job;
pub mod measure;
pub mod metrics;
pub mod model;
pub mod plan;
pub mod plots;
pub mod postprocess;
pub mod preprocess;
mod quiet_panic;
pub mod runtime;
pub mod session;
pub mod synth;
pub mod synth_series;
pub mod tiling;
pub mod timelapse;
pub mod track;
pub mod vocab;
pub mod watershed;

pub use error::{Error, Result};
pub use measure::{measure, Nucleus};
pub use metrics::{evaluate, Matching, Metrics};
pub use model::{Model, Probabilities, Segmentation, StageTimes};
pub use plan::{Plan, SegmentParams, VoxelSource, MAX_RESAMPLING, MIN_SLICES};
pub use postprocess::{Landscape, MarkerMode, PostParams};
pub use session::{Device, LoadOptions, Precision};
pub use tiling::Progress;
pub use watershed::Connectivity;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// Version of the C interface (`QCA_ABI_VERSION`).
pub const ABI_VERSION: u32 = capi::QCA_ABI_VERSION;

/// Post-processing alone, for hosts that run their own networks: probabilities on a grid
/// of `voxel` micrometres in, labels and their count out. `p` is checked here.
pub fn postprocess_probabilities(fg: &[f32], centre: &[f32], dims: [usize; 3], voxel: [f64; 3], p: &PostParams) -> Result<(Vec<u32>, u32)> {
    p.validate(voxel)?;
    postprocess::postprocess(fg, centre, dims, voxel, p)
}
