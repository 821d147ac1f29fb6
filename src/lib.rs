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

pub mod capi;
pub mod cuda_libs;
pub mod edt;
pub mod error;
pub mod io;
pub mod measure;
pub mod metrics;
pub mod model;
pub mod postprocess;
pub mod preprocess;
mod quiet_panic;
pub mod runtime;
pub mod synth;
pub mod watershed;

use std::path::Path;

pub use error::{Error, Result};
pub use measure::{measure, Nucleus};
pub use metrics::{evaluate, Metrics};
pub use model::{Device, LoadOptions, Network, Precision, Progress};
pub use postprocess::{Landscape, MarkerMode, PostParams};
pub use watershed::Connectivity;

use error::voxel_count;

include!(concat!(env!("OUT_DIR"), "/default_model.rs"));

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Limits on sizes taken from callers and files (documented in the README's "Limits").
/// A volume needs this many z slices: a single 2-D image is refused.
pub const MIN_SLICES: usize = 2;
/// Largest factor between the input's voxel size and the model's, per axis (either way):
/// beyond it a voxel size is a typo or a wrong unit, and the resampled volume would be
/// absurd (a 1000 um voxel against 0.8 um asks for 10^9 times the voxels).
pub const MAX_RESAMPLING: f64 = 16.0;

/// Per-call settings. `None` means "as the model's metadata says".
#[derive(Clone, Debug, Default)]
pub struct SegmentParams {
    /// Voxel size of the input (z, y, x, micrometres). `None`: the input is taken to be
    /// on the model's training grid (no resampling).
    pub voxel_size: Option<[f64; 3]>,
    pub fg_threshold: Option<f32>,
    pub centre_threshold: Option<f32>,
    pub markers: Option<MarkerMode>,
    pub marker_sigma_um: Option<f32>,
    pub landscape: Option<Landscape>,
    pub fill_holes: Option<bool>,
    pub min_volume_um3: Option<f64>,
    pub connectivity: Option<Connectivity>,
    /// Tile size and overlap (voxels, on the model grid).
    pub tile: Option<[usize; 3]>,
    pub overlap: Option<[usize; 3]>,
}

impl SegmentParams {
    /// The post-processing parameters: each field given here, else `base`'s.
    pub fn post_over(&self, base: &PostParams) -> PostParams {
        PostParams {
            fg_threshold: self.fg_threshold.unwrap_or(base.fg_threshold),
            centre_threshold: self.centre_threshold.unwrap_or(base.centre_threshold),
            markers: self.markers.unwrap_or(base.markers),
            marker_sigma_um: self.marker_sigma_um.unwrap_or(base.marker_sigma_um),
            landscape: self.landscape.unwrap_or(base.landscape),
            fill_holes: self.fill_holes.unwrap_or(base.fill_holes),
            min_volume_um3: self.min_volume_um3.unwrap_or(base.min_volume_um3),
            connectivity: self.connectivity.unwrap_or(base.connectivity),
        }
    }
}

/// A segmentation: labels on the input grid (0 background, 1..=n nuclei).
#[derive(Clone, Debug)]
pub struct Segmentation {
    pub labels: Vec<u32>,
    pub dims: [usize; 3],
    pub n_nuclei: u32,
    /// Seconds spent in each stage of this call.
    pub timings: StageTimes,
}

/// Wall-clock seconds of each stage of one segmentation.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct StageTimes {
    /// Normalisation and resampling to the model grid.
    pub prepare_s: f64,
    /// The networks over all tiles (including host/device copies).
    pub network_s: f64,
    /// Thresholds, markers, distance transform, watershed, resampling back.
    pub post_s: f64,
}

/// Network outputs on the model grid, ready for post-processing ([`Model::finish`]).
pub struct Probabilities {
    pub foreground: Vec<f32>,
    pub centre: Vec<f32>,
    /// Model-grid dims and voxel size.
    pub dims: [usize; 3],
    pub voxel_size: [f64; 3],
    /// The input grid the labels go back to.
    pub input_dims: [usize; 3],
    pub timings: StageTimes,
}

/// A loaded NSN/NDN pair (or one joint network). Safe to share between threads.
pub struct Model {
    nsn: Network,
    ndn: Option<Network>,
    pub name: String,
}

impl Model {
    /// Loads an NSN file and an NDN file; `ndn` may be `None` when `nsn` is a joint model.
    pub fn load(nsn: &Path, ndn: Option<&Path>, opts: &LoadOptions) -> Result<Model> {
        let a = Network::from_file(nsn, opts)?;
        let b = match ndn {
            Some(p) if p != nsn || !a.is_joint() => Some(Network::from_file(p, opts)?),
            _ => None,
        };
        Self::assemble(a, b, format!("{}{}", nsn.display(), ndn.map(|p| format!(" + {}", p.display())).unwrap_or_default()))
    }

    /// The weights compiled into the library (see `models/`).
    pub fn load_default(opts: &LoadOptions) -> Result<Model> {
        let bytes = DEFAULT_MODEL.ok_or_else(|| {
            Error::Model(
                "this build of qcanet has no embedded default model (models/ was empty when it was built); \
                 pass NSN and NDN files"
                    .into(),
            )
        })?;
        let net = Network::from_bytes(bytes, DEFAULT_MODEL_NAME, opts)?;
        Self::assemble(net, None, format!("embedded default ({DEFAULT_MODEL_NAME})"))
    }

    fn assemble(nsn: Network, ndn: Option<Network>, name: String) -> Result<Model> {
        if ndn.is_none() && !nsn.is_joint() {
            return Err(Error::Model(format!("{name}: an NSN model alone is not enough; give the NDN model too")));
        }
        if let Some(d) = &ndn {
            if d.info.role == Some(model::Role::Nsn) {
                return Err(Error::Model(format!("{}: this is an NSN model, given as NDN", d.info.description)));
            }
            if nsn.info.role == Some(model::Role::Ndn) {
                return Err(Error::Model(format!("{}: this is an NDN model, given as NSN", nsn.info.description)));
            }
        }
        Ok(Model { nsn, ndn, name })
    }

    /// Metadata of the (first) network.
    pub fn info(&self) -> &model::NetInfo {
        &self.nsn.info
    }

    pub fn device_used(&self) -> Device {
        self.nsn.device_used
    }

    /// Why the automatic device choice runs on the CPU, if it does.
    pub fn fallback_note(&self) -> Option<&str> {
        self.nsn.fallback.as_deref()
    }

    /// The effective post-processing parameters for `p`.
    pub fn post_params(&self, p: &SegmentParams) -> PostParams {
        let mut base = self.nsn.info.post.clone();
        // a separate NDN model knows its own centre threshold
        if let Some(n) = &self.ndn {
            base.centre_threshold = n.info.post.centre_threshold;
        }
        p.post_over(&base)
    }

    /// Network probabilities (foreground, centre) on the model grid, and that grid's
    /// dims and voxel size.
    pub fn probabilities(&self, vol: &[f32], dims: [usize; 3], p: &SegmentParams, progress: Option<Progress>) -> Result<(Vec<f32>, Vec<f32>, [usize; 3], [f64; 3])> {
        let r = self.infer(vol, dims, p, progress)?;
        Ok((r.foreground, r.centre, r.dims, r.voxel_size))
    }

    /// The first half of [`Model::segment`]: normalise, resample, run the networks.
    /// Splitting here lets a caller post-process one volume while the next one runs on
    /// the device (`qcanet segment` over a folder does).
    pub fn infer(&self, vol: &[f32], dims: [usize; 3], p: &SegmentParams, progress: Option<Progress>) -> Result<Probabilities> {
        let t0 = std::time::Instant::now();
        let n = voxel_count(dims)?;
        if vol.len() != n {
            return Err(Error::invalid(format!("volume holds {} values, dims {dims:?} need {n}", vol.len())));
        }
        if let Some(v) = p.voxel_size {
            if v.iter().any(|a| !(a.is_finite() && *a > 0.0)) {
                return Err(Error::invalid(format!("voxel size must be positive, got {v:?}")));
            }
        }
        if dims[0] < MIN_SLICES {
            return Err(Error::invalid(format!(
                "a volume of {dims:?} (z, y, x) has fewer than {MIN_SLICES} slices: qcanet segments 3-D stacks"
            )));
        }
        let info = &self.nsn.info;
        let in_vox = p.voxel_size.or(info.voxel_size).unwrap_or([1.0; 3]);
        let model_vox = info.voxel_size.unwrap_or(in_vox);
        for k in 0..3 {
            let f = in_vox[k] / model_vox[k];
            if !(1.0 / MAX_RESAMPLING..=MAX_RESAMPLING).contains(&f) {
                return Err(Error::invalid(format!(
                    "the voxel size {in_vox:?} um is {f:.3} times the model's {model_vox:?} um along {}; qcanet resamples by at most {MAX_RESAMPLING}x \
                     (check --voxel-size / voxel_size and the file's length unit)",
                    ["z", "y", "x"][k]
                )));
            }
        }
        let norm = preprocess::normalise(vol, info.normalization)?;
        // resample only when the grids differ by more than 1 %
        let differs = (0..3).any(|k| (in_vox[k] / model_vox[k] - 1.0).abs() > 0.01);
        let (work, wdims) = if differs {
            let md = preprocess::resampled_dims(dims, in_vox, model_vox);
            voxel_count(md)?;
            (preprocess::resample_linear(&norm, dims, md), md)
        } else {
            (norm, dims)
        };
        let wvox = if differs { model_vox } else { in_vox };
        let tile = p.tile.unwrap_or(info.tile);
        let overlap = p.overlap.unwrap_or(info.overlap);
        if tile.iter().any(|&t| t == 0 || t > model::MAX_TILE) || overlap.iter().any(|&o| o > model::MAX_TILE) {
            return Err(Error::invalid(format!(
                "tile {tile:?} / overlap {overlap:?}: each must be 1..={} voxels (overlap 0..={})",
                model::MAX_TILE,
                model::MAX_TILE
            )));
        }
        let prepare_s = t0.elapsed().as_secs_f64();
        let t1 = std::time::Instant::now();
        let (fg, cen) = model::infer_tiled(&self.nsn, self.ndn.as_ref(), &work, wdims, tile, overlap, progress)?;
        let timings = StageTimes { prepare_s, network_s: t1.elapsed().as_secs_f64(), post_s: 0.0 };
        Ok(Probabilities { foreground: fg, centre: cen, dims: wdims, voxel_size: wvox, input_dims: dims, timings })
    }

    /// The second half of [`Model::segment`]: post-processing and labels on the input grid.
    pub fn finish(&self, r: Probabilities, p: &SegmentParams) -> Result<Segmentation> {
        let t0 = std::time::Instant::now();
        let (wdims, dims) = (r.dims, r.input_dims);
        let (lab, n) = postprocess::postprocess(&r.foreground, &r.centre, wdims, r.voxel_size, &self.post_params(p))?;
        drop(r.foreground);
        drop(r.centre);
        let (labels, n) = if wdims == dims {
            (lab, n)
        } else {
            let mut back = preprocess::resample_nearest(&lab, wdims, dims);
            // a nucleus thinner than one input voxel can vanish: renumber without gaps
            postprocess::remove_small_and_relabel(&mut back, [1.0; 3], 0.0)
        };
        let timings = StageTimes { post_s: t0.elapsed().as_secs_f64(), ..r.timings };
        Ok(Segmentation { labels, dims, n_nuclei: n, timings })
    }

    /// Segments one volume (z, y, x), any voxel type converted to f32.
    pub fn segment(&self, vol: &[f32], dims: [usize; 3], p: &SegmentParams, progress: Option<Progress>) -> Result<Segmentation> {
        let r = self.infer(vol, dims, p, progress)?;
        self.finish(r, p)
    }
}

/// Post-processing alone, for hosts that run their own networks.
pub fn postprocess_probabilities(fg: &[f32], centre: &[f32], dims: [usize; 3], voxel: [f64; 3], p: &PostParams) -> Result<(Vec<u32>, u32)> {
    postprocess::postprocess(fg, centre, dims, voxel, p)
}
