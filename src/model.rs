//! A loaded QCANet model (NSN + NDN, or one joint network) and one segmentation through
//! it: plan ([`crate::plan`]), normalise and resample, tiled inference
//! ([`crate::tiling`] over [`crate::session`]), post-processing, labels back on the
//! input grid.

use std::path::Path;

use crate::contract::{NetInfo, Role};
use crate::error::{voxel_count, Error, Result};
use crate::plan::{Plan, SegmentParams};
use crate::preprocess::Scaling;
use crate::session::{Device, LoadOptions, Network};
use crate::tiling::{run_tiled, Progress};
use crate::{postprocess, preprocess};

include!(concat!(env!("OUT_DIR"), "/default_model.rs"));

/// A segmentation: labels on the input grid (0 background, 1..=n nuclei).
#[derive(Clone, Debug)]
pub struct Segmentation {
    pub labels: Vec<u32>,
    pub dims: [usize; 3],
    pub n_nuclei: u32,
    /// Seconds spent in each stage of this call.
    pub timings: StageTimes,
    /// What was done.
    pub plan: Plan,
}

/// Wall-clock seconds of each stage of one segmentation.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct StageTimes {
    /// Normalisation and resampling to the model grid (`normalise_s + resample_s`).
    pub prepare_s: f64,
    pub normalise_s: f64,
    pub resample_s: f64,
    /// The networks over all tiles (including host/device copies).
    pub network_s: f64,
    /// Everything after the networks (the steps below plus resampling back).
    pub post_s: f64,
    /// The steps of the post-processing on the model grid.
    pub post: crate::postprocess::PostTimes,
    /// Labels back to the input grid.
    pub resample_back_s: f64,
}

/// Network outputs on the model grid, ready for post-processing ([`Model::finish`]).
pub struct Probabilities {
    pub foreground: Vec<f32>,
    pub centre: Vec<f32>,
    /// The plan they were made under (model grid: `plan.model_dims`).
    pub plan: Plan,
    pub timings: StageTimes,
}

/// A loaded NSN/NDN pair (or one joint network). Safe to share between threads.
pub struct Model {
    nsn: Network,
    ndn: Option<Network>,
    pub name: String,
    /// [`Model::context`], once measured.
    context: std::sync::OnceLock<std::result::Result<[usize; 3], String>>,
}

/// A change of a log-odds larger than this (the odds change by e) is "the network saw
/// it" ([`Model::context`]). Log-odds, not probabilities: in the background a
/// probability is saturated near 0 and hides large changes. Any change at all reaches
/// the whole theoretical receptive field (the default model's: 29 x 47 x 47 voxels);
/// this threshold gives 19 x 27 x 30, at which blocks agree with the whole volume on
/// 99.5 % of the foreground (tests/blocks.rs).
pub const CONTEXT_THRESHOLD: f64 = 1.0;

/// The one check that a volume has the voxels its plan is for.
fn check_len(vol: &[f32], plan: &Plan) -> Result<()> {
    let n = voxel_count(plan.input_dims)?;
    if vol.len() != n {
        return Err(Error::invalid(format!("volume holds {} values, dims {:?} need {n}", vol.len(), plan.input_dims)));
    }
    Ok(())
}

/// The tile [`Model::context`] probes with, at most (z, y, x model voxels).
const PROBE_TILE: [usize; 3] = [64, 96, 96];

fn logit(p: f32) -> f64 {
    let p = (p as f64).clamp(1e-7, 1.0 - 1e-7);
    (p / (1.0 - p)).ln()
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
        let variants = crate::session::ModelBytes { fp32: bytes, int8: DEFAULT_MODEL_INT8 };
        let net = Network::from_variants(variants, DEFAULT_MODEL_NAME, opts)?;
        Self::assemble(net, None, format!("embedded default ({DEFAULT_MODEL_NAME})"))
    }

    fn assemble(nsn: Network, ndn: Option<Network>, name: String) -> Result<Model> {
        if ndn.is_none() && !nsn.is_joint() {
            return Err(Error::Model(format!("{name}: an NSN model alone is not enough; give the NDN model too")));
        }
        if let Some(d) = &ndn {
            if d.info.role == Some(Role::Nsn) {
                return Err(Error::Model(format!("{}: this is an NSN model, given as NDN", d.info.description)));
            }
            if nsn.info.role == Some(Role::Ndn) {
                return Err(Error::Model(format!("{}: this is an NDN model, given as NSN", nsn.info.description)));
            }
        }
        Ok(Model { nsn, ndn, name, context: Default::default() })
    }

    /// Metadata of the (first) network.
    pub fn info(&self) -> &NetInfo {
        &self.nsn.info
    }

    pub fn device_used(&self) -> Device {
        self.nsn.device_used
    }

    /// The arithmetic the networks run in (`Fp32`, `Tf32` or `Int8`; see [`Precision`]).
    pub fn precision_used(&self) -> crate::session::Precision {
        self.nsn.precision_used
    }

    /// The ONNX Runtime execution provider the networks run on (of both, the one without
    /// OpenVINO or CUDA, when a separate NDN network fell back).
    pub fn provider(&self) -> crate::session::Provider {
        match &self.ndn {
            Some(d) if d.provider != self.nsn.provider => crate::session::Provider::Default,
            _ => self.nsn.provider,
        }
    }

    /// Why the automatic device choice runs on the CPU, if it does.
    pub fn fallback_note(&self) -> Option<String> {
        let mut notes: Vec<&str> = self.nsn.fallback.as_deref().into_iter().collect();
        if let Some(n) = self.ndn.as_ref().and_then(|d| d.fallback.as_deref()) {
            if !notes.contains(&n) {
                notes.push(n);
            }
        }
        (!notes.is_empty()).then(|| notes.join("; "))
    }

    /// The plan for a volume of `dims` under `p`: every default filled in, every value
    /// checked. [`Model::segment`] runs exactly this plan.
    pub fn plan(&self, dims: [usize; 3], p: &SegmentParams) -> Result<Plan> {
        crate::plan::resolve(&self.nsn.info, self.ndn.as_ref().map(|d| &d.info), dims, p)
    }

    /// The tiles of a model grid of `model_dims` under `p` (as [`Model::plan`] lays them;
    /// no limit on the volume's size: a block's lattice over a whole large volume).
    pub fn tile_grid(&self, model_dims: [usize; 3], p: &SegmentParams) -> Result<crate::tiling::TileGrid> {
        crate::plan::tile_grid(&self.nsn.info, self.ndn.as_ref().map(|d| &d.info), model_dims, p)
    }

    /// Tiles per network call for tiles of `tile` voxels (the same for a whole volume and
    /// its blocks: batching must not change a result).
    pub fn batch_size(&self, tile: [usize; 3]) -> usize {
        let tile_n: usize = tile.iter().product();
        self.nsn.batch_size(tile_n).min(self.ndn.as_ref().map_or(usize::MAX, |d| d.batch_size(tile_n)))
    }

    /// Both outputs (foreground, centre) of `b` tiles of `shape`, one after the other in
    /// `tiles` (scaled as the networks want).
    pub fn run_tiles(&self, tiles: &[f32], b: usize, shape: [usize; 3]) -> Result<(Vec<f32>, Vec<f32>)> {
        let n = b * shape.iter().product::<usize>();
        if tiles.len() != n {
            return Err(Error::Internal(format!("{b} tiles of {shape:?} in {} values", tiles.len())));
        }
        let (p, c) = self.run_networks(tiles, b, shape)?;
        if p.len() != n || c.len() != n {
            return Err(Error::Internal(format!("{b} tiles of {n} voxels in all gave outputs of {} and {} values", p.len(), c.len())));
        }
        Ok((p, c))
    }

    /// The first half of [`Model::segment`]: normalise, resample, run the networks.
    /// Splitting here lets a caller post-process one volume while the next one runs on
    /// the device (`qcanet segment` over a folder does).
    pub fn infer(&self, vol: &[f32], plan: Plan, progress: Option<Progress>) -> Result<Probabilities> {
        let t0 = std::time::Instant::now();
        check_len(vol, &plan)?;
        // scaling_of checks the values are finite: not scanned a second time below
        let scaling = preprocess::scaling_of(vol, self.nsn.info.normalization)?;
        let scaling_s = t0.elapsed().as_secs_f64();
        let mut r = self.infer_checked(vol.to_vec(), plan, scaling, progress)?;
        r.timings.normalise_s += scaling_s;
        r.timings.prepare_s += scaling_s;
        Ok(r)
    }

    /// The normalisation the networks want, resolved for `vol` as a whole.
    pub fn scaling_of(&self, vol: &[f32]) -> Result<Scaling> {
        preprocess::scaling_of(vol, self.nsn.info.normalization)
    }

    /// The normalisation the networks want, resolved for a volume streamed plane by plane
    /// (see [`preprocess::scaling_streamed`]).
    pub fn scaling_streamed(&self, planes: &mut dyn FnMut(&mut dyn FnMut(&[f32]) -> Result<()>) -> Result<()>) -> Result<Scaling> {
        preprocess::scaling_streamed(self.nsn.info.normalization, planes)
    }

    /// [`Model::infer`] with the intensity scaling given: a block of a larger volume is
    /// scaled as the whole volume is ([`crate::blocks`]).
    /// `vol` is scaled in place (a block's buffer is not copied).
    pub fn infer_scaled(&self, vol: Vec<f32>, plan: Plan, scaling: Scaling, progress: Option<Progress>) -> Result<Probabilities> {
        check_len(&vol, &plan)?;
        preprocess::check_finite(&vol)?;
        self.infer_checked(vol, plan, scaling, progress)
    }

    /// [`Model::infer_scaled`] on a volume whose length and values are checked.
    fn infer_checked(&self, mut vol: Vec<f32>, plan: Plan, scaling: Scaling, progress: Option<Progress>) -> Result<Probabilities> {
        let t0 = std::time::Instant::now();
        scaling.apply_in_place(&mut vol);
        let norm = vol;
        let normalise_s = t0.elapsed().as_secs_f64();
        let t_resample = std::time::Instant::now();
        let work = if plan.resampled { preprocess::resample_linear(&norm, plan.input_dims, plan.model_dims) } else { norm };
        let resample_s = t_resample.elapsed().as_secs_f64();
        let prepare_s = t0.elapsed().as_secs_f64();
        let t1 = std::time::Instant::now();
        let shape = plan.tiles.tile;
        let batch = self.batch_size(shape);
        let (foreground, centre) = run_tiled(&plan.tiles, &work, batch, |tiles, b| self.run_networks(tiles, b, shape), progress)?;
        let timings = StageTimes { prepare_s, normalise_s, resample_s, network_s: t1.elapsed().as_secs_f64(), ..StageTimes::default() };
        Ok(Probabilities { foreground, centre, plan, timings })
    }

    /// Both outputs (foreground, centre) for `b` tiles of `shape`.
    fn run_networks(&self, tiles: &[f32], b: usize, shape: [usize; 3]) -> Result<(Vec<f32>, Vec<f32>)> {
        let (p, c) = self.nsn.run_batch(tiles, b, shape)?;
        let c = match (c, &self.ndn) {
            (Some(c), _) => c,
            (None, Some(d)) => d.run_batch(tiles, b, shape)?.0,
            (None, None) => return Err(Error::Model("an NDN model is needed (the NSN model is not a joint model)".into())),
        };
        Ok((p, c))
    }

    /// How far the networks look (model-grid voxels, z y x): their effective receptive
    /// field, measured once per model. A bright 3x3x3 spot is put in the middle of a
    /// tile of background, and the context is the farthest voxel, per axis, whose
    /// foreground or centre log-odds move by more than [`CONTEXT_THRESHOLD`].
    /// Measured rather than read from metadata so that any model, however it was built,
    /// gets blocks with enough context ([`crate::blocks`]). Costs two tiles' inference.
    pub fn context(&self) -> Result<[usize; 3]> {
        self.context.get_or_init(|| self.probe_context().map_err(|e| e.to_string())).clone().map_err(Error::Model)
    }

    fn probe_context(&self) -> Result<[usize; 3]> {
        let info = &self.nsn.info;
        let multiple = match &self.ndn {
            Some(d) => std::array::from_fn(|k| info.spatial_multiple[k].max(d.info.spatial_multiple[k])),
            None => info.spatial_multiple,
        };
        // a tile large enough for the default model's reach (19 x 27 x 30 voxels, well
        // inside 32 x 48 x 48) at a quarter of a full tile's cost; a reach at the tile's
        // half is as far as it can measure
        let size: [usize; 3] = std::array::from_fn(|k| info.tile[k].min(PROBE_TILE[k]));
        let grid = crate::tiling::TileGrid::new(size, size, [0; 3], multiple)?;
        let shape = grid.tile;
        let n: usize = shape.iter().product();
        let (background, spot) = (0.1f32, 0.9f32);
        let mut probe = vec![background; n];
        let mid = shape.map(|d| d / 2);
        // the spot: 3 voxels across where the tile allows (a tile of 1 or 2 voxels too)
        let span = |k: usize| mid[k].saturating_sub(1)..(mid[k] + 2).min(shape[k]);
        for z in span(0) {
            for y in span(1) {
                for x in span(2) {
                    probe[(z * shape[1] + y) * shape[2] + x] = spot;
                }
            }
        }
        let (p0, c0) = self.run_networks(&vec![background; n], 1, shape)?;
        let (p1, c1) = self.run_networks(&probe, 1, shape)?;
        let mut reach = [0usize; 3];
        for i in 0..n {
            if (logit(p1[i]) - logit(p0[i])).abs() > CONTEXT_THRESHOLD || (logit(c1[i]) - logit(c0[i])).abs() > CONTEXT_THRESHOLD {
                let at = [i / (shape[1] * shape[2]), (i / shape[2]) % shape[1], i % shape[2]];
                for k in 0..3 {
                    reach[k] = reach[k].max(at[k].abs_diff(mid[k]) + 1);
                }
            }
        }
        Ok(reach)
    }

    /// The second half of [`Model::segment`]: post-processing and labels on the input grid.
    pub fn finish(&self, r: Probabilities) -> Result<Segmentation> {
        let t0 = std::time::Instant::now();
        let plan = r.plan;
        let (wdims, dims) = (plan.model_dims, plan.input_dims);
        let (lab, n, post) = postprocess::postprocess_timed(&r.foreground, &r.centre, wdims, plan.model_voxel_size, &plan.post)?;
        let t1 = std::time::Instant::now();
        drop(r.foreground);
        drop(r.centre);
        let (labels, n) = if !plan.resampled {
            (lab, n)
        } else {
            let mut back = preprocess::resample_nearest(&lab, wdims, dims);
            // a nucleus thinner than one input voxel can vanish: renumber without gaps
            postprocess::remove_small_and_relabel(&mut back, [1.0; 3], 0.0)
        };
        let timings = StageTimes { post_s: t0.elapsed().as_secs_f64(), post, resample_back_s: t1.elapsed().as_secs_f64(), ..r.timings };
        Ok(Segmentation { labels, dims, n_nuclei: n, timings, plan })
    }

    /// Segments one volume (z, y, x), any voxel type converted to f32.
    pub fn segment(&self, vol: &[f32], dims: [usize; 3], p: &SegmentParams, progress: Option<Progress>) -> Result<Segmentation> {
        let plan = self.plan(dims, p)?;
        self.infer(vol, plan, progress).and_then(|r| self.finish(r))
    }
}
