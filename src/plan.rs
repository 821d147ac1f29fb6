//! The plan of one segmentation, resolved once: from (input dims, input calibration and
//! where it came from, the model's metadata, the caller's overrides) to the grids, the
//! resampling, the tiles after every clamp and the post-processing parameters with
//! every default filled in. Every parameter is defaulted and validated here and nowhere
//! else; the rest of the pipeline takes a [`Plan`] as given. `qcanet plan FILE`, the C
//! API's `qca_plan_json`, Python's `Model.plan` and Fiji's Log show it.

use serde::Serialize;

use crate::contract::NetInfo;
use crate::error::{voxel_count, Error, Result};
use crate::postprocess::{Landscape, MarkerMode, PostParams};
use crate::tiling::TileGrid;
use crate::Connectivity;

/// A volume needs this many z slices: a single 2-D image is refused.
pub const MIN_SLICES: usize = 2;
/// Largest factor between the input's voxel size and the model's, per axis (either way):
/// beyond it a voxel size is a typo or a wrong unit, and the resampled volume would be
/// absurd (a 1000 um voxel against 0.8 um asks for 10^9 times the voxels).
pub const MAX_RESAMPLING: f64 = 16.0;
/// Grids closer than this (relative, per axis) are taken as equal: no resampling.
const SAME_GRID: f64 = 0.01;

/// Where the input's voxel size came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum VoxelSource {
    /// The caller gave it (`--voxel-size`, `voxel_size=`, the C struct).
    #[default]
    Caller,
    /// The file's calibration.
    File,
    /// None was known: the input is assumed to be on the model's training grid.
    Model,
    /// Neither the input nor the model has one: 1 um per voxel is assumed.
    Unknown,
}

crate::vocabulary!(VoxelSource, "voxel size source", [
    VoxelSource::Caller => "caller",
    VoxelSource::File => "file",
    VoxelSource::Model => "model",
    VoxelSource::Unknown => "unknown",
]);

/// Per-call settings. `None` means "as the model's metadata says" (and, where the model
/// says nothing, the one defaults table, [`PostParams::default`]).
#[derive(Clone, Debug, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct SegmentParams {
    /// Voxel size of the input (z, y, x, micrometres). `None`: the input is taken to be
    /// on the model's training grid (no resampling).
    pub voxel_size: Option<[f64; 3]>,
    /// Where `voxel_size` came from (a file's calibration or the caller).
    pub voxel_size_source: VoxelSource,
    pub fg_threshold: Option<f64>,
    pub centre_threshold: Option<f64>,
    pub markers: Option<MarkerMode>,
    pub marker_sigma_um: Option<f64>,
    pub landscape: Option<Landscape>,
    pub fill_holes: Option<bool>,
    pub min_volume_um3: Option<f64>,
    pub connectivity: Option<Connectivity>,
    /// Tile size and overlap (voxels, on the model grid).
    pub tile: Option<[usize; 3]>,
    pub overlap: Option<[usize; 3]>,
}

impl SegmentParams {
    /// These parameters for an input whose file says its voxel size is `file_voxel`: a
    /// voxel size given by the caller wins, else the file's is used (and said to be).
    pub fn calibrated(mut self, file_voxel: Option<[f64; 3]>) -> SegmentParams {
        if let (None, Some(v)) = (self.voxel_size, file_voxel) {
            self.voxel_size = Some(v);
            self.voxel_size_source = VoxelSource::File;
        }
        self
    }

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

/// Everything one segmentation will do, resolved. Only [`resolve`] makes one and nothing
/// changes it afterwards (the fields are read through the methods), so a plan handed to
/// [`crate::Model::infer`] has passed every check.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Plan {
    pub(crate) input_dims: [usize; 3],
    pub(crate) input_voxel_size: [f64; 3],
    pub(crate) voxel_size_source: VoxelSource,
    pub(crate) model_dims: [usize; 3],
    pub(crate) model_voxel_size: [f64; 3],
    pub(crate) resampled: bool,
    pub(crate) normalization: String,
    pub(crate) tiles: TileGrid,
    pub(crate) post: PostParams,
}

impl Plan {
    /// The input volume (z, y, x voxels).
    pub fn input_dims(&self) -> [usize; 3] {
        self.input_dims
    }
    /// The voxel size the input is taken to have (z, y, x um).
    pub fn input_voxel_size(&self) -> [f64; 3] {
        self.input_voxel_size
    }
    /// Where that voxel size came from.
    pub fn voxel_size_source(&self) -> VoxelSource {
        self.voxel_size_source
    }
    /// The grid the networks and the post-processing run on.
    pub fn model_dims(&self) -> [usize; 3] {
        self.model_dims
    }
    pub fn model_voxel_size(&self) -> [f64; 3] {
        self.model_voxel_size
    }
    /// Whether the input is resampled to the model grid (and the labels back).
    pub fn resampled(&self) -> bool {
        self.resampled
    }
    /// Intensity normalisation before the networks (metadata spelling).
    pub fn normalization(&self) -> &str {
        &self.normalization
    }
    /// Tiles on the model grid, after every clamp.
    pub fn tiles(&self) -> &TileGrid {
        &self.tiles
    }
    /// Post-processing with every default filled in.
    pub fn post(&self) -> &PostParams {
        &self.post
    }
}

/// The one check of a voxel size: three finite, positive lengths.
pub fn check_voxel_size(v: [f64; 3], what: &str) -> Result<()> {
    if v.iter().any(|a| !(a.is_finite() && *a > 0.0)) {
        return Err(Error::invalid(format!("{what} must be three positive lengths, got {v:?}")));
    }
    Ok(())
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// The tiles the networks run on over a model grid of `model_dims` under `p`: the one
/// place tile size and overlap are resolved ([`resolve`], and the whole volume's lattice
/// that blocks share, [`crate::blocks`]).
pub fn tile_grid(nsn: &NetInfo, ndn: Option<&NetInfo>, model_dims: [usize; 3], p: &SegmentParams) -> Result<TileGrid> {
    // both networks see the same tiles: a multiple of what each accepts
    let mut multiple = nsn.spatial_multiple;
    if let Some(d) = ndn {
        for k in 0..3 {
            let (a, b) = (multiple[k], d.spatial_multiple[k]);
            multiple[k] = a / gcd(a, b) * b;
        }
    }
    TileGrid::new(model_dims, p.tile.unwrap_or(nsn.tile), p.overlap.unwrap_or(nsn.overlap), multiple)
}

/// Resolves and checks the plan for a volume of `dims` with a model of `nsn` (and `ndn`
/// when the NDN is a network of its own) under the caller's `p`.
pub fn resolve(nsn: &NetInfo, ndn: Option<&NetInfo>, dims: [usize; 3], p: &SegmentParams) -> Result<Plan> {
    voxel_count(dims)?;
    if dims[0] < MIN_SLICES {
        return Err(Error::invalid(format!(
            "a volume of {dims:?} (z, y, x) has fewer than {MIN_SLICES} z slices (a single 2-D image?): qcanet segments 3-D stacks; \
             save every z slice of the volume in one multi-page TIFF"
        )));
    }
    let (in_vox, source) = match (p.voxel_size, nsn.voxel_size) {
        (Some(v), _) => {
            check_voxel_size(v, "the voxel size")?;
            (v, p.voxel_size_source)
        }
        (None, Some(m)) => (m, VoxelSource::Model),
        (None, None) => ([1.0; 3], VoxelSource::Unknown),
    };
    let model_vox = nsn.voxel_size.unwrap_or(in_vox);
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
    let resampled = (0..3).any(|k| (in_vox[k] / model_vox[k] - 1.0).abs() > SAME_GRID);
    let (model_dims, grid_vox) = if resampled {
        let md = crate::preprocess::resampled_dims(dims, in_vox, model_vox);
        voxel_count(md)?;
        (md, model_vox)
    } else {
        (dims, in_vox)
    };
    let tiles = tile_grid(nsn, ndn, model_dims, p)?;
    let mut base = nsn.post.clone();
    // a separate NDN model knows its own centre threshold
    if let Some(d) = ndn {
        base.centre_threshold = d.post.centre_threshold;
    }
    let post = p.post_over(&base);
    post.validate(grid_vox)?;
    Ok(Plan {
        input_dims: dims,
        input_voxel_size: in_vox,
        voxel_size_source: source,
        model_dims,
        model_voxel_size: grid_vox,
        resampled,
        normalization: nsn.normalization.to_string(),
        tiles,
        post,
    })
}

impl std::fmt::Display for Plan {
    /// The plan as a few lines of text (what `qcanet plan` and Fiji's Log print).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let p = &self.post;
        writeln!(
            f,
            "input       {:?} voxels of {:?} um ({})",
            self.input_dims,
            self.input_voxel_size,
            match self.voxel_size_source {
                VoxelSource::Caller => "given",
                VoxelSource::File => "from the file",
                VoxelSource::Model => "not known: the model's assumed",
                VoxelSource::Unknown => "not known: 1 um assumed",
            }
        )?;
        let how = if self.resampled { "resampled" } else { "no resampling" };
        writeln!(f, "model grid  {:?} voxels of {:?} um ({how})", self.model_dims, self.model_voxel_size)?;
        writeln!(f, "normalise   {}", self.normalization)?;
        let t = &self.tiles;
        writeln!(f, "tiles       {} of {:?} voxels, overlap {:?} ({:?} along z, y, x)", t.len(), t.tile, t.overlap, t.count)?;
        writeln!(f, "foreground  NSN > {}{}", p.fg_threshold, if p.fill_holes { ", holes filled" } else { "" })?;
        let sigma = if p.markers == MarkerMode::LocalMaxima { format!(", smoothed {} um", p.marker_sigma_um) } else { String::new() };
        writeln!(f, "markers     {} of NDN > {}{sigma}", p.markers, p.centre_threshold)?;
        writeln!(f, "watershed   {} landscape, {}-connected", p.landscape, p.connectivity)?;
        write!(f, "min volume  {} um^3", p.min_volume_um3)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> NetInfo {
        NetInfo {
            voxel_size: Some([1.75, 0.8, 0.8]),
            spatial_multiple: [4, 8, 8],
            tile: [64, 192, 192],
            overlap: [8, 32, 32],
            ..NetInfo::default()
        }
    }

    #[test]
    fn everything_is_resolved_once_with_its_source() {
        let p = SegmentParams {
            voxel_size: Some([2.0, 0.8, 0.8]),
            voxel_size_source: VoxelSource::File,
            min_volume_um3: Some(10.0),
            ..Default::default()
        };
        let plan = resolve(&info(), None, [51, 120, 120], &p).unwrap();
        assert_eq!(plan.voxel_size_source, VoxelSource::File);
        assert!(plan.resampled);
        assert_eq!(plan.model_dims, [58, 120, 120]);
        assert_eq!(plan.model_voxel_size, [1.75, 0.8, 0.8]);
        assert_eq!(plan.tiles.tile, [60, 120, 120]);
        assert_eq!(plan.post.min_volume_um3, 10.0);
        assert_eq!(plan.post.markers, PostParams::default().markers);
        // no calibration anywhere: the model's grid, said so
        let plan = resolve(&info(), None, [51, 120, 120], &SegmentParams::default()).unwrap();
        assert_eq!((plan.voxel_size_source, plan.resampled), (VoxelSource::Model, false));
        let bare = NetInfo::default();
        let plan = resolve(&bare, None, [8, 20, 20], &SegmentParams::default()).unwrap();
        assert_eq!((plan.voxel_size_source, plan.input_voxel_size), (VoxelSource::Unknown, [1.0; 3]));
        let text = plan.to_string();
        assert!(text.contains("1 um assumed") && text.contains("components of NDN > 0.5"), "{text}");
        let json = serde_json::to_value(&plan).unwrap();
        assert_eq!(json["post"]["markers"], "components");
        assert_eq!(json["voxel_size_source"], "unknown");
    }

    #[test]
    fn every_parameter_is_checked_here() {
        let ok = |p: SegmentParams| resolve(&info(), None, [20, 64, 64], &p);
        assert!(ok(SegmentParams::default()).is_ok());
        for bad in [
            SegmentParams { voxel_size: Some([1.0, -1.0, 1.0]), ..Default::default() },
            SegmentParams { voxel_size: Some([f64::NAN, 1.0, 1.0]), ..Default::default() },
            SegmentParams { voxel_size: Some([1000.0, 0.8, 0.8]), ..Default::default() },
            SegmentParams { fg_threshold: Some(1.5), ..Default::default() },
            SegmentParams { centre_threshold: Some(f64::NAN), ..Default::default() },
            SegmentParams { fg_threshold: Some(1.00000001), ..Default::default() },
            SegmentParams { min_volume_um3: Some(-1.0), ..Default::default() },
            SegmentParams { markers: Some(MarkerMode::LocalMaxima), marker_sigma_um: Some(1e6), ..Default::default() },
            SegmentParams { tile: Some([0, 64, 64]), ..Default::default() },
            SegmentParams { overlap: Some([2000, 0, 0]), ..Default::default() },
        ] {
            assert!(matches!(ok(bad.clone()), Err(Error::InvalidArgument(_))), "{bad:?}");
        }
        assert!(resolve(&info(), None, [1, 64, 64], &SegmentParams::default()).is_err());
        assert!(resolve(&info(), None, [0, 64, 64], &SegmentParams::default()).is_err());
    }
}
