//! Volumes larger than memory, segmented block by block.
//!
//! The volume is cut into a grid of *cores* that tile it exactly. Each block is its core
//! with a *halo* around it. How a block gets its probabilities ([`BlockMethod`]):
//!
//! - **Lattice** (volumes on the model's grid). The networks run on the tiles a whole
//!   run would lay over the whole volume ([`Model::tile_grid`]: starts on the networks'
//!   pooling phase, the same size, overlap and batches), each tile once, only when a block
//!   first needs it, its outputs kept (a scratch folder) until the last block that reads
//!   them is done. A block blends the tiles that reach into its core + halo
//!   ([`crate::tiling::Blend`]) in the whole run's order, so its probabilities are the
//!   whole run's bit for bit. The halo then only holds what post-processing looks at: the
//!   radius of the largest nucleus and the markers' smoothing ([`post_halo`]).
//!   Why not each block through the networks on its own: the networks' outputs depend
//!   on where a tile's edges fall, by enough to move 5 % of the foreground of a BBBC050
//!   volume across the threshold, so blocks with their own tiles could never give the
//!   whole run's labels; and they paid for the networks' context twice (halo and tiles).
//! - **Independent** (volumes the model resamples). Each
//!   block is read with its halo and segmented on its own, the whole pipeline
//!   (normalisation with the whole volume's scaling, tiled networks, post-processing) on
//!   core + halo. The halo is the networks' measured context ([`Model::context`]) plus the
//!   radius of the largest nucleus.
//!
//! Either way every label a block gives inside its core is the one the whole volume
//! would give there, up to what lies beyond the halo: a nucleus reaching into the core is
//! seen whole.
//!
//! Only the core of each block is kept. A nucleus that crosses a face between two cores
//! is then two *pieces*, one per block; they are joined by comparing the two blocks'
//! views of the two planes on either side of the face (each block labelled both: one in
//! its core, one in its halo). Pieces a and b are one nucleus when the voxels where block
//! A says a and block B says b are at least half of the smaller of the two (a's and b's
//! voxels on those planes). Joining on agreement rather than on contact (as dask-image's
//! `label` does for connected components, or Cellpose's distributed mode for masks that
//! touch a face) keeps two touching nuclei apart: both blocks separate them, so their
//! views never agree across the contact. Joins go into a union-find; one relabelling pass
//! at the end numbers the nuclei 1..=n without gaps.
//!
//! Memory is bounded by the block, not the volume: one block's buffers, one batch of
//! tiles, the planes a tile or block reads (streamed sources), the face planes of blocks
//! whose neighbour is not done yet, and one table entry per piece. The tiles' outputs
//! waiting for their blocks go to a scratch folder on disk (8 bytes a voxel of a tile; the
//! tiles run and still needed by a block not done yet; memory only for
//! [`segment_in_memory`]). Labels go to a [`LabelStore`] (a scratch file on disk
//! for large volumes) as provisional ids, and are renumbered when written out.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::model::Model;
use crate::plan::SegmentParams;
use crate::preprocess::Scaling;
use crate::tiling::Progress;

/// Default number of voxels of one block, core and halo together (about 40 bytes each
/// at the peak of its segmentation: ~1 GB).
pub const DEFAULT_BLOCK_VOXELS: usize = 24 << 20;
/// Largest block a caller may ask for (voxels, core and halo).
pub const MAX_BLOCK_VOXELS: usize = 1 << 30;
/// Default diameter of the largest nucleus (um): the halo holds its radius beyond the
/// networks' context. Nuclei of 2-cell mouse embryos reach ~20 um.
pub const DEFAULT_MAX_NUCLEUS_UM: f64 = 24.0;

/// Volumes of more voxels than this are segmented block by block unless told otherwise
/// (whole, such a volume would peak near 2 GB: ~60 bytes a voxel).
pub const AUTO_BLOCKS_FROM: u64 = 32 << 20;

/// Whether a volume is segmented whole or block by block (`--blocks`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum BlockChoice {
    /// Blocks when the volume has more than [`AUTO_BLOCKS_FROM`] voxels or is too large to
    /// read whole.
    #[default]
    Auto,
    /// The whole volume at once.
    Whole,
    /// Blocks whose cores are at most this size (z, y, x voxels).
    Core([usize; 3]),
}

impl std::str::FromStr for BlockChoice {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(BlockChoice::Auto),
            "whole" | "off" | "none" => Ok(BlockChoice::Whole),
            other => crate::vocab::parse_zyx::<usize>("blocks", other)
                .map(BlockChoice::Core)
                .map_err(|_| Error::invalid(format!("blocks '{s}': give auto, whole or a core size Z,Y,X"))),
        }
    }
}

impl BlockChoice {
    /// Whether a volume of `dims` (of `bytes` decoded, the whole stack) goes block by block.
    pub fn blockwise(self, dims: [usize; 3], bytes: u64) -> bool {
        match self {
            BlockChoice::Auto => {
                dims.iter().fold(1u64, |a, &d| a.saturating_mul(d as u64)) > AUTO_BLOCKS_FROM || bytes > crate::io::tiff::MAX_STACK_BYTES
            }
            BlockChoice::Whole => false,
            BlockChoice::Core(_) => true,
        }
    }
}

/// How to cut a volume into blocks. `None`: chosen from the model and the volume.
#[derive(Clone, Debug, Default)]
pub struct BlockOptions {
    /// Core size (z, y, x input voxels).
    pub core: Option<[usize; 3]>,
    /// Halo on each side of a core (z, y, x input voxels).
    pub halo: Option<[usize; 3]>,
    /// Voxels of a block (core + halo) when the core is chosen here.
    pub block_voxels: Option<usize>,
    /// Diameter of the largest nucleus (um), for the halo.
    pub max_nucleus_um: Option<f64>,
}

/// The blocks of one volume.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct BlockGrid {
    pub dims: [usize; 3],
    /// Largest core edge (the cores spread evenly: some are a voxel smaller).
    pub core: [usize; 3],
    pub halo: [usize; 3],
    /// Blocks along z, y, x.
    pub count: [usize; 3],
    /// Cores start at multiples of `core` (only the last along an axis is shorter), so
    /// that they cover whole chunks of a chunked store ([`BlockGrid::aligned`]); otherwise
    /// they spread evenly.
    #[serde(default)]
    pub regular: bool,
}

/// One block: its core and its extent with the halo (half-open, input voxels).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Block {
    pub index: [usize; 3],
    pub core_start: [usize; 3],
    pub core_end: [usize; 3],
    pub start: [usize; 3],
    pub end: [usize; 3],
}

impl Block {
    pub fn dims(&self) -> [usize; 3] {
        std::array::from_fn(|k| self.end[k] - self.start[k])
    }
    pub fn core_dims(&self) -> [usize; 3] {
        std::array::from_fn(|k| self.core_end[k] - self.core_start[k])
    }
    /// The index of the neighbour below along axis `k`, if there is one.
    pub fn below(&self, k: usize) -> Option<[usize; 3]> {
        let mut i = self.index;
        i[k] = i[k].checked_sub(1)?;
        Some(i)
    }
}

impl BlockGrid {
    pub fn new(dims: [usize; 3], core: [usize; 3], halo: [usize; 3]) -> Result<BlockGrid> {
        crate::error::voxel_count_u64(dims)?;
        if core.contains(&0) {
            return Err(Error::invalid(format!("block core {core:?}: every edge must be at least 1 voxel")));
        }
        let count: [usize; 3] = std::array::from_fn(|k| dims[k].div_ceil(core[k].min(dims[k])));
        let core: [usize; 3] = std::array::from_fn(|k| dims[k].div_ceil(count[k]));
        // a halo longer than the volume only adds mirrored nothing: clamp it
        let halo: [usize; 3] = std::array::from_fn(|k| halo[k].min(dims[k]));
        if let Some(k) = (0..3).find(|&k| count[k] > 1 && halo[k] == 0) {
            return Err(Error::invalid(format!(
                "a halo of 0 along {} where the volume is cut into {} blocks: nuclei crossing the faces could not be joined",
                ["z", "y", "x"][k],
                count[k]
            )));
        }
        let ext: u64 = (0..3).map(|k| (core[k] + 2 * halo[k]).min(dims[k]) as u64).product();
        if ext > MAX_BLOCK_VOXELS as u64 {
            return Err(Error::invalid(format!(
                "blocks of {core:?} with a halo of {halo:?} hold {ext} voxels, more than {MAX_BLOCK_VOXELS}: choose smaller blocks"
            )));
        }
        Ok(BlockGrid { dims, core, halo, count, regular: false })
    }

    /// `grid` with cores cut to whole multiples of `chunk` (z, y, x) and laid from the
    /// origin, so that every chunk of a store with that chunk shape lies in exactly one
    /// core: blocks written by different processes never share a chunk. A core shorter
    /// than a chunk becomes one chunk.
    pub fn aligned(grid: &BlockGrid, chunk: [usize; 3]) -> Result<BlockGrid> {
        if chunk.contains(&0) {
            return Err(Error::invalid(format!("chunk shape {chunk:?}: every edge must be at least 1 voxel")));
        }
        let core: [usize; 3] =
            std::array::from_fn(|k| if grid.core[k] >= grid.dims[k] { grid.dims[k] } else { (grid.core[k] / chunk[k]).max(1) * chunk[k] });
        let count: [usize; 3] = std::array::from_fn(|k| grid.dims[k].div_ceil(core[k].min(grid.dims[k])));
        let mut g = Self::new(grid.dims, core, grid.halo)?;
        g.core = core;
        g.count = count;
        g.regular = true;
        let ext: u64 = (0..3).map(|k| (core[k] + 2 * g.halo[k]).min(g.dims[k]) as u64).product();
        if ext > MAX_BLOCK_VOXELS as u64 {
            return Err(Error::invalid(format!(
                "chunk-aligned blocks of {core:?} hold {ext} voxels with their halo, more than {MAX_BLOCK_VOXELS}"
            )));
        }
        Ok(g)
    }

    /// A grid for `dims` whose blocks (core + halo) hold at most `budget` voxels, as few
    /// blocks as that allows: the longest core edge (in micrometres, so that blocks stay
    /// roughly isotropic in space) is halved until a block fits. An axis short enough to
    /// take whole in one block has no halo along it.
    pub fn fit(dims: [usize; 3], halo: [usize; 3], voxel_um: [f64; 3], budget: usize) -> Result<BlockGrid> {
        let halo: [usize; 3] = std::array::from_fn(|k| halo[k].min(dims[k]));
        let mut core = dims;
        let ext = |core: &[usize; 3]| -> u64 {
            (0..3).map(|k| if core[k] >= dims[k] { dims[k] } else { (core[k] + 2 * halo[k]).min(dims[k]) } as u64).product()
        };
        while ext(&core) > budget as u64 {
            let k = (0..3)
                .filter(|&k| core[k] > 1)
                .max_by(|&a, &b| (core[a] as f64 * voxel_um[a]).total_cmp(&(core[b] as f64 * voxel_um[b])))
                .ok_or_else(|| Error::invalid(format!("no block of {dims:?} with a halo of {halo:?} fits in {budget} voxels")))?;
            core[k] = core[k].div_ceil(2);
        }
        Self::new(dims, core, halo)
    }

    pub fn len(&self) -> usize {
        self.count.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Where core `i` starts along axis `k` (spread evenly, or at multiples of the core).
    fn bound(&self, k: usize, i: usize) -> usize {
        if self.regular {
            (self.core[k] * i).min(self.dims[k])
        } else {
            (self.dims[k] * i).div_ceil(self.count[k])
        }
    }

    pub fn block(&self, index: [usize; 3]) -> Block {
        let mut b = Block { index, core_start: [0; 3], core_end: [0; 3], start: [0; 3], end: [0; 3] };
        for k in 0..3 {
            b.core_start[k] = self.bound(k, index[k]);
            b.core_end[k] = self.bound(k, index[k] + 1);
            b.start[k] = b.core_start[k].saturating_sub(self.halo[k]);
            b.end[k] = (b.core_end[k] + self.halo[k]).min(self.dims[k]);
        }
        b
    }

    /// Blocks in raster order (z slowest): each block's lower neighbours come first.
    pub fn blocks(&self) -> impl Iterator<Item = Block> + '_ {
        let [cz, cy, cx] = self.count;
        (0..cz).flat_map(move |z| (0..cy).flat_map(move |y| (0..cx).map(move |x| self.block([z, y, x]))))
    }
}

/// A volume read region by region.
pub trait VolumeSource {
    fn dims(&self) -> [usize; 3];
    /// The voxels of `[start, end)` (z, y, x order) as f32.
    fn read(&mut self, start: [usize; 3], end: [usize; 3]) -> Result<Vec<f32>>;
    /// Calls `visit` on pieces that cover the volume once, in no promised shape (z planes,
    /// or slabs cut into bands): for statistics that take the values in any order.
    fn for_each_plane(&mut self, visit: &mut dyn FnMut(&[f32]) -> Result<()>) -> Result<()>;
    /// How many z planes are best read together (a chunk's depth: each chunk decoded once).
    fn z_step(&self) -> usize {
        1
    }
}

/// Where the provisional labels of the cores go.
pub trait LabelStore {
    /// Writes the labels of `[start, end)` (z, y, x order).
    fn write(&mut self, start: [usize; 3], end: [usize; 3], labels: &[u32]) -> Result<()>;
}

/// A volume in memory.
pub struct MemorySource<'a> {
    pub volume: &'a [f32],
    pub dims: [usize; 3],
}

impl VolumeSource for MemorySource<'_> {
    fn dims(&self) -> [usize; 3] {
        self.dims
    }
    fn read(&mut self, start: [usize; 3], end: [usize; 3]) -> Result<Vec<f32>> {
        let mut out = Vec::with_capacity((0..3).map(|k| end[k] - start[k]).product());
        let [_, ny, nx] = self.dims;
        for z in start[0]..end[0] {
            for y in start[1]..end[1] {
                let at = (z * ny + y) * nx;
                out.extend_from_slice(&self.volume[at + start[2]..at + end[2]]);
            }
        }
        Ok(out)
    }
    fn for_each_plane(&mut self, visit: &mut dyn FnMut(&[f32]) -> Result<()>) -> Result<()> {
        self.volume.chunks(self.dims[1] * self.dims[2]).try_for_each(visit)
    }
}

/// Labels in memory.
pub struct MemoryLabels {
    pub labels: Vec<u32>,
    pub dims: [usize; 3],
}

impl LabelStore for MemoryLabels {
    fn write(&mut self, start: [usize; 3], end: [usize; 3], labels: &[u32]) -> Result<()> {
        let [_, ny, nx] = self.dims;
        let w = end[2] - start[2];
        let mut rows = labels.chunks_exact(w);
        for z in start[0]..end[0] {
            for y in start[1]..end[1] {
                let at = (z * ny + y) * nx + start[2];
                let row = rows.next().ok_or_else(|| Error::Internal("block labels shorter than the block".into()))?;
                self.labels[at..at + w].copy_from_slice(row);
            }
        }
        Ok(())
    }
}

/// One volume of a TIFF stack (frame `t`, channel `c`), streamed. TIFF stores whole
/// planes, so a plane is decoded once for each row of blocks (blocks sharing a y range)
/// and the rows that row needs are kept, for every z plane the row's blocks reach: memory
/// is z extent x block height x volume width, never the volume.
pub struct TiffSource {
    reader: crate::io::tiff::StackReader,
    t: usize,
    c: usize,
    /// The y range the kept planes are cut to.
    rows: (usize, usize),
    planes: BTreeMap<usize, crate::io::tiff::Samples>,
}

impl TiffSource {
    pub fn new(reader: crate::io::tiff::StackReader, t: usize, c: usize) -> Result<TiffSource> {
        reader.info.page_of(t, 0, c)?;
        Ok(TiffSource { reader, t, c, rows: (0, 0), planes: BTreeMap::new() })
    }

    /// The reader back, for the next frame (its pages are not walked again).
    pub fn into_reader(self) -> crate::io::tiff::StackReader {
        self.reader
    }
}

impl VolumeSource for TiffSource {
    fn dims(&self) -> [usize; 3] {
        self.reader.info.dims
    }
    fn read(&mut self, start: [usize; 3], end: [usize; 3]) -> Result<Vec<f32>> {
        use crate::io::tiff::Samples;
        let nx = self.dims()[2];
        if self.rows != (start[1], end[1]) {
            self.planes.clear();
            self.rows = (start[1], end[1]);
        }
        // blocks come in raster order: planes above this block are done with
        self.planes = self.planes.split_off(&start[0]);
        let mut out = Vec::with_capacity((0..3).map(|k| end[k] - start[k]).product());
        for z in start[0]..end[0] {
            if !self.planes.contains_key(&z) {
                // kept in the file's own type (half the memory of f32 for 16-bit stacks)
                let plane = self.reader.read_plane(self.t, z, self.c)?;
                self.planes.insert(z, plane.slice_range(start[1] * nx, (end[1] - start[1]) * nx));
            }
            for y in 0..end[1] - start[1] {
                let (a, b) = (y * nx + start[2], y * nx + end[2]);
                match &self.planes[&z] {
                    Samples::U8(v) => out.extend(v[a..b].iter().map(|&x| x as f32)),
                    Samples::U16(v) => out.extend(v[a..b].iter().map(|&x| x as f32)),
                    Samples::U32(v) => out.extend(v[a..b].iter().map(|&x| x as f32)),
                    Samples::F32(v) => out.extend_from_slice(&v[a..b]),
                }
            }
        }
        Ok(out)
    }
    fn for_each_plane(&mut self, visit: &mut dyn FnMut(&[f32]) -> Result<()>) -> Result<()> {
        for z in 0..self.dims()[0] {
            let p = self.reader.read_plane(self.t, z, self.c)?;
            visit(&p.to_f32())?;
        }
        Ok(())
    }
}

/// Most raw voxels [`ScratchLabels::measure`] holds at once (64 MB of f32).
const MEASURE_SLAB_VOXELS: usize = 16 << 20;

/// Provisional labels in a scratch file beside the output (4 bytes a voxel), for volumes
/// whose labels do not fit in memory.
pub struct ScratchLabels {
    file: tempfile::NamedTempFile,
    dims: [usize; 3],
}

impl ScratchLabels {
    /// A scratch file in `dir` for the labels of `dims`.
    pub fn new(dir: &std::path::Path, dims: [usize; 3]) -> Result<ScratchLabels> {
        let file = crate::io::atomic::scratch_file(dir)?;
        let bytes = crate::error::voxel_count_u64(dims)? * 4;
        file.as_file().set_len(bytes).map_err(|e| Error::io(file.path(), e))?;
        Ok(ScratchLabels { file, dims })
    }

    /// One z plane.
    pub fn plane(&self, z: usize) -> Result<Vec<u32>> {
        use std::os::unix::fs::FileExt;
        let n = self.dims[1] * self.dims[2];
        let mut bytes = vec![0u8; n * 4];
        self.file.as_file().read_exact_at(&mut bytes, (z * n * 4) as u64).map_err(|e| Error::io(self.file.path(), e))?;
        Ok(bytes.chunks_exact(4).map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]])).collect())
    }
}

impl ScratchLabels {
    /// The per-nucleus measurements of a frame segmented block by block: the final labels
    /// (these provisional ones through `run`) plane by plane, with the raw intensities of
    /// `source` (the frame's channel, unscaled). Memory: a slab of `source.z_step()` planes
    /// and a row per nucleus.
    pub fn measure(&self, run: &BlockRun, source: &mut dyn VolumeSource, voxel: [f64; 3]) -> Result<Vec<crate::Nucleus>> {
        if source.dims() != self.dims {
            return Err(Error::Internal(format!("measuring labels of {:?} with an image of {:?}", self.dims, source.dims())));
        }
        let mut m = crate::measure::PlaneMeasure::new(self.dims, run.n_nuclei)?;
        let [nz, ny, nx] = self.dims;
        // a chunk's depth, but at most MEASURE_SLAB_VOXELS at once (one plane when a plane is
        // larger); a deeper chunk is then decoded once per slab: time, not memory
        let step = source.z_step().min(MEASURE_SLAB_VOXELS / (ny * nx).max(1)).clamp(1, nz.max(1));
        for z0 in (0..nz).step_by(step) {
            let z1 = (z0 + step).min(nz);
            let raw = source.read([z0, 0, 0], [z1, ny, nx])?;
            for (z, raw) in (z0..z1).zip(raw.chunks_exact(ny * nx)) {
                let mut labels = self.plane(z)?;
                run.apply(&mut labels);
                m.add(&labels, Some(raw))?;
            }
        }
        m.finish(voxel)
    }

    /// The labels of `[start, end)` (z, y, x order), read row by row.
    pub fn region(&self, start: [usize; 3], end: [usize; 3]) -> Result<Vec<u32>> {
        use std::os::unix::fs::FileExt;
        let [_, ny, nx] = self.dims;
        let w = end[2] - start[2];
        let mut bytes = vec![0u8; w * 4];
        let mut out = Vec::with_capacity((0..3).map(|k| end[k] - start[k]).product());
        for z in start[0]..end[0] {
            for y in start[1]..end[1] {
                let at = (((z * ny + y) * nx + start[2]) * 4) as u64;
                self.file.as_file().read_exact_at(&mut bytes, at).map_err(|e| Error::io(self.file.path(), e))?;
                out.extend(bytes.chunks_exact(4).map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]])));
            }
        }
        Ok(out)
    }
}

impl LabelStore for ScratchLabels {
    fn write(&mut self, start: [usize; 3], end: [usize; 3], labels: &[u32]) -> Result<()> {
        use std::os::unix::fs::FileExt;
        let [_, ny, nx] = self.dims;
        let w = end[2] - start[2];
        let mut rows = labels.chunks_exact(w);
        let mut bytes = Vec::with_capacity(w * 4);
        for z in start[0]..end[0] {
            for y in start[1]..end[1] {
                let row = rows.next().ok_or_else(|| Error::Internal("block labels shorter than the block".into()))?;
                bytes.clear();
                bytes.extend(row.iter().flat_map(|l| l.to_ne_bytes()));
                let at = (((z * ny + y) * nx + start[2]) * 4) as u64;
                self.file.as_file().write_all_at(&bytes, at).map_err(|e| Error::io(self.file.path(), e))?;
            }
        }
        Ok(())
    }
}

/// The two planes on either side of a face between a block's core and its upper
/// neighbour's, as the block labelled them (provisional ids of its pieces, 0 elsewhere).
#[derive(Clone, Debug, PartialEq)]
pub struct FaceView {
    /// Last plane of the lower block's core / first plane of the upper block's core.
    pub lower: Vec<u32>,
    pub upper: Vec<u32>,
}

/// The pairs (piece of A, piece of B) that are one nucleus, from both blocks' views of
/// the planes on either side of their common face (see the module docs).
pub fn agreeing_pieces(a: &FaceView, b: &FaceView) -> Vec<(u32, u32)> {
    let mut together: HashMap<(u32, u32), u64> = HashMap::new();
    let (mut in_a, mut in_b): (HashMap<u32, u64>, HashMap<u32, u64>) = Default::default();
    for (va, vb) in a.lower.iter().zip(&b.lower).chain(a.upper.iter().zip(&b.upper)) {
        if *va != 0 {
            *in_a.entry(*va).or_default() += 1;
        }
        if *vb != 0 {
            *in_b.entry(*vb).or_default() += 1;
        }
        if *va != 0 && *vb != 0 {
            *together.entry((*va, *vb)).or_default() += 1;
        }
    }
    let mut pairs: Vec<(u32, u32)> = together.into_iter().filter(|&((x, y), n)| 2 * n >= in_a[&x].min(in_b[&y])).map(|(p, _)| p).collect();
    pairs.sort_unstable();
    pairs
}

/// Union-find over provisional ids (1-based), with path halving.
pub struct Pieces {
    parent: Vec<u32>,
}

impl Default for Pieces {
    fn default() -> Self {
        Pieces { parent: vec![0] }
    }
}

impl Pieces {
    /// Adds `n` pieces; the id of the first.
    pub fn add(&mut self, n: u32) -> u32 {
        let first = self.parent.len() as u32;
        self.parent.extend(first..first + n);
        first
    }
    fn find(&mut self, mut a: u32) -> u32 {
        while self.parent[a as usize] != a {
            let up = self.parent[self.parent[a as usize] as usize];
            self.parent[a as usize] = up;
            a = up;
        }
        a
    }
    pub fn join(&mut self, a: u32, b: u32) {
        let (ra, rb) = (self.find(a), self.find(b));
        // the smaller id as root keeps the numbering in raster order of first pieces
        if ra != rb {
            let (lo, hi) = (ra.min(rb), ra.max(rb));
            self.parent[hi as usize] = lo;
        }
    }
    /// Final label of every provisional id: nuclei 1..=n in order of their first piece.
    pub fn numbering(mut self) -> (Vec<u32>, u32) {
        let n = self.parent.len();
        let mut final_of_root = vec![0u32; n];
        let mut map = vec![0u32; n];
        let mut next = 0u32;
        for id in 1..n as u32 {
            let r = self.find(id) as usize;
            if final_of_root[r] == 0 {
                next += 1;
                final_of_root[r] = next;
            }
            map[id as usize] = final_of_root[r];
        }
        (map, next)
    }
}

/// Seconds spent in each part of a block-wise segmentation.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct BlockTimes {
    /// The intensity statistics of the whole volume (one or two passes over it).
    pub scaling_s: f64,
    /// Choosing the blocks (the first time for a model, measuring its context).
    pub grid_s: f64,
    pub read_s: f64,
    /// Normalisation, resampling and networks of all blocks.
    pub network_s: f64,
    /// Post-processing of all blocks.
    pub post_s: f64,
    /// Face comparisons and provisional labels written.
    pub stitch_s: f64,
}

impl std::ops::AddAssign for BlockTimes {
    fn add_assign(&mut self, o: BlockTimes) {
        self.scaling_s += o.scaling_s;
        self.grid_s += o.grid_s;
        self.read_s += o.read_s;
        self.network_s += o.network_s;
        self.post_s += o.post_s;
        self.stitch_s += o.stitch_s;
    }
}

/// The result of [`segment_blocks`]: how to turn provisional ids into labels.
#[derive(Clone, Debug, Serialize)]
pub struct BlockRun {
    pub grid: BlockGrid,
    pub method: BlockMethod,
    /// Tiles of the whole volume's lattice run ([`BlockMethod::Lattice`]: each once; 0
    /// otherwise).
    pub tiles: usize,
    pub n_nuclei: u32,
    /// Pieces joined across faces.
    pub joins: usize,
    /// Final label of each provisional id (index 0: background).
    #[serde(skip)]
    pub relabel: Vec<u32>,
    pub scaling: String,
    pub timings: BlockTimes,
}

impl BlockRun {
    /// Final labels of provisional labels, in place.
    pub fn apply(&self, labels: &mut [u32]) {
        for l in labels {
            *l = self.relabel[*l as usize];
        }
    }
}

/// Where a block's network outputs come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BlockMethod {
    /// The whole volume's own tiles ([`Lattice`]): each tile is run once, in the order and
    /// batches of a whole run, and kept until the last block that reads it is done. A
    /// block's probabilities are then the whole run's bit for bit, and its halo only has
    /// to hold what post-processing looks at (a nucleus's radius and the markers' reach).
    /// For volumes on the model's grid (no resampling).
    Lattice,
    /// Each block through the whole pipeline on its own, core + halo, the halo holding the
    /// networks' context too. For volumes the model resamples (a block's resampled grid is
    /// not the whole volume's).
    Independent,
}

/// The method [`segment_blocks`] uses for a volume under `params` (see [`BlockMethod`]).
pub fn method_for(model: &Model, dims: [usize; 3], params: &SegmentParams) -> Result<BlockMethod> {
    Ok(if probe_plan(model, dims, params)?.resampled() { BlockMethod::Independent } else { BlockMethod::Lattice })
}

/// The plan of a small piece of the volume: its voxel size and the model's.
fn probe_plan(model: &Model, dims: [usize; 3], params: &SegmentParams) -> Result<crate::plan::Plan> {
    let probe: [usize; 3] = std::array::from_fn(|k| dims[k].min(64));
    model.plan(probe, params)
}

/// The halo (input voxels) for a model on an input of `input_um` voxels whose model grid
/// has `model_um` voxels: the networks' context plus the radius of the largest nucleus.
pub fn halo_for(context: [usize; 3], input_um: [f64; 3], model_um: [f64; 3], max_nucleus_um: f64) -> [usize; 3] {
    std::array::from_fn(|k| {
        let context_um = context[k] as f64 * model_um[k];
        ((context_um + max_nucleus_um / 2.0) / input_um[k]).ceil() as usize
    })
}

/// The halo (voxels of the model's grid, which is the input's) of [`BlockMethod::Lattice`]
/// blocks: the radius of the largest nucleus and how far the markers look, so that a
/// nucleus reaching into a core is seen whole, with its marker.
pub fn post_halo(post: &crate::postprocess::PostParams, voxel_um: [f64; 3], max_nucleus_um: f64) -> [usize; 3] {
    let reach = post.marker_reach(voxel_um);
    std::array::from_fn(|k| (max_nucleus_um / 2.0 / voxel_um[k]).ceil() as usize + reach[k])
}

/// The grid `segment_blocks` (or a block job) will use for a volume of `dims` under
/// `params` with `method` ([`method_for`]).
pub fn grid_for(model: &Model, dims: [usize; 3], params: &SegmentParams, opts: &BlockOptions, method: BlockMethod) -> Result<BlockGrid> {
    let max_nucleus = opts.max_nucleus_um.unwrap_or(DEFAULT_MAX_NUCLEUS_UM);
    if !(max_nucleus.is_finite() && (0.0..=1000.0).contains(&max_nucleus)) {
        return Err(Error::invalid(format!("largest nucleus {max_nucleus} um: give 0..=1000")));
    }
    let plan = probe_plan(model, dims, params)?;
    let halo = match (opts.halo, method) {
        (Some(h), _) => h,
        (None, BlockMethod::Lattice) => post_halo(&plan.post, plan.model_voxel_size(), max_nucleus),
        (None, BlockMethod::Independent) => halo_for(model.context()?, plan.input_voxel_size(), plan.model_voxel_size(), max_nucleus),
    };
    match opts.core {
        Some(core) => BlockGrid::new(dims, core, halo),
        None => {
            let budget = opts.block_voxels.unwrap_or(DEFAULT_BLOCK_VOXELS);
            if budget == 0 || budget > MAX_BLOCK_VOXELS {
                return Err(Error::invalid(format!("block of {budget} voxels: give 1..={MAX_BLOCK_VOXELS}")));
            }
            BlockGrid::fit(dims, halo, plan.input_voxel_size(), budget)
        }
    }
}

/// Segments the volume of `source` block by block into `store` (provisional ids; apply
/// [`BlockRun::relabel`] when reading them back). See the module docs. The networks'
/// outputs wait in `scratch` (a folder; memory when `None`) until the blocks that read
/// them are done ([`BlockMethod::Lattice`]).
pub fn segment_blocks(
    model: &Model,
    source: &mut dyn VolumeSource,
    store: &mut dyn LabelStore,
    params: &SegmentParams,
    opts: &BlockOptions,
    scratch: Option<&std::path::Path>,
    progress: Option<Progress>,
) -> Result<BlockRun> {
    let mut times = BlockTimes::default();
    let dims = source.dims();
    let t = std::time::Instant::now();
    let method = method_for(model, dims, params)?;
    let grid = grid_for(model, dims, params, opts, method)?;
    times.grid_s = t.elapsed().as_secs_f64();
    let t = std::time::Instant::now();
    let scaling = model.scaling_streamed(&mut |visit| source.for_each_plane(visit))?;
    times.scaling_s = t.elapsed().as_secs_f64();
    let params = &match method {
        BlockMethod::Lattice => params.clone(),
        BlockMethod::Independent => with_common_tile(model, &grid, params)?,
    };
    let mut lattice = match method {
        BlockMethod::Lattice => {
            let store = match scratch {
                Some(dir) => TileStore::scratch_in(dir)?,
                None => TileStore::Memory(HashMap::new()),
            };
            Some(Lattice::new(model, &grid, params, scaling, None, store, true)?)
        }
        BlockMethod::Independent => None,
    };
    let mut stitch = Stitcher::default();
    let total = grid.len();
    for (done, block) in grid.blocks().enumerate() {
        let mut b = match lattice.as_mut() {
            Some(l) => {
                // the networks' share of the work is the tiles': progress counts both
                let tiles_total = l.len() as f32;
                let report = |tiles: usize| -> bool {
                    progress.is_none_or(|p| p(0.9 * tiles as f32 / tiles_total + 0.1 * done as f32 / total as f32))
                };
                l.segment_block(model, source, &block, done, params, &mut times, &report)?
            }
            None => {
                if let Some(p) = progress {
                    if !p(done as f32 / total as f32) {
                        return Err(Error::Cancelled);
                    }
                }
                segment_block(model, source, &block, params, scaling, &mut times)?
            }
        };
        let t = std::time::Instant::now();
        stitch.add(&block, &mut b);
        store.write(block.core_start, block.core_end, &b.core)?;
        times.stitch_s += t.elapsed().as_secs_f64();
    }
    let joins = stitch.joins;
    let (relabel, n_nuclei) = stitch.pieces.numbering();
    let tiles = lattice.as_ref().map_or(0, |l| l.tiles_run);
    Ok(BlockRun { grid, method, tiles, n_nuclei, joins, relabel, scaling: format!("{scaling:?}"), timings: times })
}

/// Network outputs of the tiles of a [`Lattice`].
pub enum TileStore {
    /// In this process's memory.
    Memory(HashMap<usize, (Vec<f32>, Vec<f32>)>),
    /// One file per tile in a private scratch folder (named like a part file, so that a
    /// run that dies leaves nothing [`crate::io::atomic::clean_stale`] keeps), removed
    /// with the store.
    Scratch(std::path::PathBuf),
    /// One file per tile in a folder several processes share (a block job's, which makes
    /// it): each tile written atomically (two processes that run the same batch at once
    /// write the same bytes, on the same kind of device), removed by the job.
    Shared(std::path::PathBuf),
}

impl TileStore {
    /// A private scratch folder in `dir`.
    pub fn scratch_in(dir: &std::path::Path) -> Result<TileStore> {
        Ok(TileStore::Scratch(crate::io::atomic::scratch_dir(dir)?))
    }

    fn path(&self, i: usize) -> Option<std::path::PathBuf> {
        match self {
            TileStore::Memory(_) => None,
            TileStore::Scratch(dir) | TileStore::Shared(dir) => Some(dir.join(format!("tile-{i}.f32"))),
        }
    }

    fn has(&self, i: usize) -> bool {
        match (self, self.path(i)) {
            (TileStore::Memory(m), _) => m.contains_key(&i),
            (_, Some(path)) => path.exists(),
            _ => false,
        }
    }

    fn put(&mut self, i: usize, p: &[f32], c: &[f32]) -> Result<()> {
        let bytes = || -> Vec<u8> { p.iter().chain(c).flat_map(|v| v.to_le_bytes()).collect() };
        let path = self.path(i);
        match (self, path) {
            (TileStore::Memory(m), _) => {
                m.insert(i, (p.to_vec(), c.to_vec()));
            }
            (TileStore::Scratch(_), Some(path)) => std::fs::write(&path, bytes()).map_err(|e| Error::io(&path, e))?,
            // the job made the folder: a straggling task after the frame's stitch (which
            // removes it) fails here instead of bringing it back
            (TileStore::Shared(_), Some(path)) => crate::io::atomic::write_bytes(&path, &bytes())?,
            _ => return Err(Error::Internal("a tile store without a place".into())),
        }
        Ok(())
    }

    /// Tile `i`'s outputs (each `n` values).
    fn get(&self, i: usize, n: usize) -> Result<(Vec<f32>, Vec<f32>)> {
        match (self, self.path(i)) {
            (TileStore::Memory(m), _) => m.get(&i).cloned().ok_or_else(|| Error::Internal(format!("tile {i} was not run or is gone"))),
            (_, Some(path)) => {
                let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
                if bytes.len() != 8 * n {
                    return Err(Error::Unsupported(format!(
                        "{}: {} bytes, not a tile's {} (damaged: remove it to run the tile again)",
                        path.display(),
                        bytes.len(),
                        8 * n
                    )));
                }
                let mut v = bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]));
                let p: Vec<f32> = v.by_ref().take(n).collect();
                Ok((p, v.collect()))
            }
            _ => Err(Error::Internal("a tile store without a place".into())),
        }
    }

    fn remove(&mut self, i: usize) {
        let path = self.path(i);
        match (self, path) {
            (TileStore::Memory(m), _) => {
                m.remove(&i);
            }
            (_, Some(path)) => {
                let _ = std::fs::remove_file(path);
            }
            _ => {}
        }
    }
}

impl Drop for TileStore {
    fn drop(&mut self) {
        if let TileStore::Scratch(dir) = self {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// The whole volume's tile lattice for [`BlockMethod::Lattice`]: the tiles a whole run
/// would lay ([`Model::tile_grid`]), run in its batches (tile `i` with the others of batch
/// `i / batch`, so that each output is the whole run's whatever the runtime does with a
/// batch), when a block first needs them, and kept in a [`TileStore`].
pub struct Lattice {
    grid: crate::tiling::TileGrid,
    origins: Vec<[isize; 3]>,
    batch: usize,
    scaling: Scaling,
    store: TileStore,
    /// Per tile, the last block (raster position) whose core + halo it reaches into: a
    /// tile is dropped after it (one process running the blocks in order). `None`: kept.
    last_user: Option<Vec<usize>>,
    /// Tiles run by this process.
    pub tiles_run: usize,
}

impl Lattice {
    /// The lattice of `blocks`' volume under `params`, scaled by `scaling`, `batch` tiles
    /// per network call (`None`: the whole run's, [`Model::batch_size`]; a job gives the one
    /// it recorded). With `drop_after_use`,
    /// a tile's outputs go once the last block (in raster order) that reads them is done.
    pub fn new(
        model: &Model,
        blocks: &BlockGrid,
        params: &SegmentParams,
        scaling: Scaling,
        batch: Option<usize>,
        store: TileStore,
        drop_after_use: bool,
    ) -> Result<Lattice> {
        let grid = model.tile_grid(blocks.dims, params)?;
        let batch = batch.unwrap_or_else(|| model.batch_size(grid.tile));
        let origins = grid.tile_starts();
        let last_user = drop_after_use.then(|| {
            let mut last = vec![0usize; origins.len()];
            for (b, block) in blocks.blocks().enumerate() {
                for i in grid.meeting(block.start, block.end) {
                    last[i] = b;
                }
            }
            last
        });
        let batch = batch.clamp(1, origins.len().max(1));
        Ok(Lattice { grid, origins, batch, scaling, store, last_user, tiles_run: 0 })
    }

    pub fn len(&self) -> usize {
        self.origins.len()
    }

    /// The tiles whose outputs block `block` reads (raster order).
    pub fn tiles_of(&self, block: &Block) -> Vec<usize> {
        self.grid.meeting(block.start, block.end)
    }

    /// Whether tile `i` reaches into `block` (core + halo).
    pub fn reaches(&self, i: usize, block: &Block) -> bool {
        self.grid.meets(i, block.start, block.end)
    }

    /// Drops tile `i`'s outputs (a block job, once every block it reaches into is done).
    pub fn drop_tile(&mut self, i: usize) {
        self.store.remove(i);
    }

    pub fn is_empty(&self) -> bool {
        self.origins.is_empty()
    }

    /// Runs batch `g` (tiles `g * batch ..`), reading each tile's voxels from `source`
    /// (scaled as the whole volume), and stores its outputs.
    fn run_batch(&mut self, model: &Model, source: &mut dyn VolumeSource, g: usize, times: &mut BlockTimes) -> Result<()> {
        let tile = self.grid.tile;
        let tile_n: usize = tile.iter().product();
        let dims = self.grid.dims;
        let group = g * self.batch..((g + 1) * self.batch).min(self.origins.len());
        let mut buf = vec![0f32; group.len() * tile_n];
        for (k, i) in group.clone().enumerate() {
            let t = std::time::Instant::now();
            let (lo, hi) = self.grid.source_window(self.origins[i]);
            let mut window = source.read(lo, hi)?;
            times.read_s += t.elapsed().as_secs_f64();
            let t = std::time::Instant::now();
            crate::preprocess::check_finite(&window)?;
            self.scaling.apply_in_place(&mut window);
            let win_dims = std::array::from_fn(|a| hi[a] - lo[a]);
            crate::tiling::gather(&window, lo, win_dims, dims, &[self.origins[i]], tile, &mut buf[k * tile_n..(k + 1) * tile_n]);
            times.network_s += t.elapsed().as_secs_f64();
        }
        let t = std::time::Instant::now();
        let (p, c) = model.run_tiles(&buf, group.len(), tile)?;
        times.network_s += t.elapsed().as_secs_f64();
        for (k, i) in group.clone().enumerate() {
            self.store.put(i, &p[k * tile_n..(k + 1) * tile_n], &c[k * tile_n..(k + 1) * tile_n])?;
        }
        self.tiles_run += group.len();
        Ok(())
    }

    /// Block `block` (the `position`-th in raster order): its probabilities blended from
    /// the tiles that reach into it (run first where missing), post-processed, its core's
    /// pieces and faces kept. `report(tiles run)` after each batch; false cancels.
    #[allow(clippy::too_many_arguments)]
    pub fn segment_block(
        &mut self,
        model: &Model,
        source: &mut dyn VolumeSource,
        block: &Block,
        position: usize,
        params: &SegmentParams,
        times: &mut BlockTimes,
        report: &dyn Fn(usize) -> bool,
    ) -> Result<BlockPieces> {
        let need = self.grid.meeting(block.start, block.end);
        for &i in &need {
            if !self.store.has(i) {
                self.run_batch(model, source, i / self.batch, times)?;
                if !report(self.tiles_run) {
                    return Err(Error::Cancelled);
                }
            }
        }
        let t = std::time::Instant::now();
        let tile_n: usize = self.grid.tile.iter().product();
        let mut blend = crate::tiling::Blend::new(&self.grid, block.start, block.end)?;
        for &i in &need {
            let (p, c) = self.store.get(i, tile_n)?;
            blend.add(self.origins[i], &p, &c)?;
        }
        let (foreground, centre) = blend.finish()?;
        times.network_s += t.elapsed().as_secs_f64();
        let plan = model.plan(block.dims(), params)?;
        if plan.resampled() {
            return Err(Error::Internal("a lattice block on a resampled grid".into()));
        }
        let probs = crate::model::Probabilities { foreground, centre, plan, timings: Default::default() };
        let seg = model.finish(probs)?;
        times.post_s += seg.timings.post_s;
        if let Some(last) = &self.last_user {
            for &i in &need {
                if last[i] <= position {
                    self.store.remove(i);
                }
            }
        }
        let t = std::time::Instant::now();
        let pieces = block_pieces(block, source.dims(), &seg.labels, seg.n_nuclei);
        times.stitch_s += t.elapsed().as_secs_f64();
        Ok(pieces)
    }
}

/// Joins the pieces of blocks given in raster order (see the module docs): each block's
/// pieces get provisional ids after the earlier blocks', and its faces with the blocks
/// below it are compared as soon as it comes; the faces with blocks above it wait.
#[derive(Default)]
pub struct Stitcher {
    pub pieces: Pieces,
    /// Faces waiting for their upper neighbour: (lower block's index, axis).
    pending: HashMap<([usize; 3], usize), FaceView>,
    /// Pairs of pieces joined so far.
    pub joins: usize,
}

impl Stitcher {
    /// Adds `block`'s pieces (their ids in `b` become provisional ids, in place); the
    /// provisional id of its first piece.
    pub fn add(&mut self, block: &Block, b: &mut BlockPieces) -> u32 {
        let first = self.pieces.add(b.pieces);
        b.offset(first - 1);
        for k in 0..3 {
            if let Some(upper) = b.upper[k].take() {
                self.pending.insert((block.index, k), upper);
            }
            if let (Some(below), Some(mine)) = (block.below(k), &b.lower[k]) {
                if let Some(lower) = self.pending.remove(&(below, k)) {
                    for (a, c) in agreeing_pieces(&lower, mine) {
                        self.pieces.join(a, c);
                        self.joins += 1;
                    }
                }
            }
        }
        first
    }
}

/// `params` with the tile every block of `grid` can use: the runtime then keeps one set of
/// buffers (and OpenVINO one compiled network) for all blocks.
pub fn with_common_tile(model: &Model, grid: &BlockGrid, params: &SegmentParams) -> Result<SegmentParams> {
    Ok(SegmentParams { tile: Some(common_tile(model, grid, params)?), ..params.clone() })
}

/// The largest tile for every block of `grid`: the smallest of the blocks' planned tiles
/// along each axis (a block that fits in one tile pads to it; a larger one takes several).
/// Cores spread evenly differ by a voxel at most; the blocks looked at (first, second, last
/// along each axis) hold the sizes that decide the tile in practice, and a block of another
/// size costs one more compiled shape, not a wrong result. Since tiles are fitted to each
/// volume (`tiling::axis_tiles`), blocks of different sizes that need several tiles along
/// an axis can still fit them differently: a few shapes, not one (known; only for volumes
/// the model resamples, which run each block on its own).
fn common_tile(model: &Model, grid: &BlockGrid, params: &SegmentParams) -> Result<[usize; 3]> {
    let mut tile = [usize::MAX; 3];
    // blocks differ only at the volume's faces: the corners and the middle cover every size
    let pick = |n: usize| -> Vec<usize> {
        if n > 2 {
            vec![0, 1, n - 1]
        } else {
            (0..n).collect()
        }
    };
    for &z in &pick(grid.count[0]) {
        for &y in &pick(grid.count[1]) {
            for &x in &pick(grid.count[2]) {
                let plan = model.plan(grid.block([z, y, x]).dims(), params)?;
                let t = plan.tiles().tile;
                for k in 0..3 {
                    tile[k] = tile[k].min(t[k]);
                }
            }
        }
    }
    Ok(tile)
}

/// What one block gives: its core's labels as its own pieces 1..=`pieces` (0:
/// background), and its views of the faces it shares with its neighbours (see the module
/// docs), in the same ids.
pub struct BlockPieces {
    pub pieces: u32,
    /// The core, z, y, x order.
    pub core: Vec<u32>,
    /// Per axis: the face with the lower neighbour (present when the block has one and
    /// reaches past the face) and with the upper neighbour.
    pub lower: [Option<FaceView>; 3],
    pub upper: [Option<FaceView>; 3],
}

impl BlockPieces {
    /// Shifts the pieces' ids by `by` (the pieces of earlier blocks); 0 stays background.
    pub fn offset(&mut self, by: u32) {
        let shift = |v: &mut [u32]| v.iter_mut().filter(|l| **l != 0).for_each(|l| *l += by);
        shift(&mut self.core);
        for f in self.lower.iter_mut().chain(self.upper.iter_mut()).flatten() {
            shift(&mut f.lower);
            shift(&mut f.upper);
        }
    }
}

/// Reads `block` (with its halo) from `source`, segments it whole and keeps its core:
/// the pieces it owns and its views of the faces with its neighbours.
pub fn segment_block(
    model: &Model,
    source: &mut dyn VolumeSource,
    block: &Block,
    params: &SegmentParams,
    scaling: Scaling,
    times: &mut BlockTimes,
) -> Result<BlockPieces> {
    let t = std::time::Instant::now();
    let vol = source.read(block.start, block.end)?;
    times.read_s += t.elapsed().as_secs_f64();
    let (labels, n_local) = segment_one(model, vol, block.dims(), params, scaling, times)?;
    let t = std::time::Instant::now();
    let pieces = block_pieces(block, source.dims(), &labels, n_local);
    times.stitch_s += t.elapsed().as_secs_f64();
    Ok(pieces)
}

/// The pieces a block owns, from its labels `1..=n_local` over core + halo (`labels`, a
/// volume of `dims`): its core's labels and its views of the faces with its neighbours.
fn block_pieces(block: &Block, dims: [usize; 3], labels: &[u32], n_local: u32) -> BlockPieces {
    // the block's own ids for the labels present in the core, in the order of the labels
    // (a block that is the whole volume keeps the whole volume's labels)
    let ext = block.dims();
    let at = |z: usize, y: usize, x: usize| ((z - block.start[0]) * ext[1] + (y - block.start[1])) * ext[2] + (x - block.start[2]);
    let mut own = vec![0u32; n_local as usize + 1];
    let rows = || {
        (block.core_start[0]..block.core_end[0])
            .flat_map(move |z| (block.core_start[1]..block.core_end[1]).map(move |y| at(z, y, block.core_start[2])))
    };
    for row in rows() {
        for &l in &labels[row..row + block.core_dims()[2]] {
            own[l as usize] = 1;
        }
    }
    own[0] = 0;
    let mut pieces = 0u32;
    for o in own.iter_mut().filter(|o| **o != 0) {
        pieces += 1;
        *o = pieces;
    }
    let mut core = Vec::with_capacity(block.core_dims().iter().product());
    for row in rows() {
        core.extend(labels[row..row + block.core_dims()[2]].iter().map(|&l| own[l as usize]));
    }
    // the faces: both planes beside each face, over the core's extent
    let face_view = |k: usize, lower_plane: usize| -> FaceView {
        let plane = |p: usize| -> Vec<u32> {
            let (a, b) = ((k + 1) % 3, (k + 2) % 3);
            let mut v = Vec::with_capacity(block.core_dims()[a] * block.core_dims()[b]);
            for i in block.core_start[a]..block.core_end[a] {
                for j in block.core_start[b]..block.core_end[b] {
                    let mut c = [0usize; 3];
                    c[k] = p;
                    c[a] = i;
                    c[b] = j;
                    v.push(own[labels[at(c[0], c[1], c[2])] as usize]);
                }
            }
            v
        };
        FaceView { lower: plane(lower_plane), upper: plane(lower_plane + 1) }
    };
    let upper = std::array::from_fn(|k| {
        (block.core_end[k] < dims[k] && block.end[k] > block.core_end[k]).then(|| face_view(k, block.core_end[k] - 1))
    });
    let lower = std::array::from_fn(|k| {
        (block.index[k] > 0 && block.start[k] < block.core_start[k]).then(|| face_view(k, block.core_start[k] - 1))
    });
    BlockPieces { pieces, core, lower, upper }
}

/// One block through the whole pipeline: labels (1..=n) on the block's own grid.
fn segment_one(
    model: &Model,
    vol: Vec<f32>,
    dims: [usize; 3],
    params: &SegmentParams,
    scaling: Scaling,
    times: &mut BlockTimes,
) -> Result<(Vec<u32>, u32)> {
    let plan = model.plan(dims, params)?;
    let probs = model.infer_scaled(vol, plan, scaling, None)?;
    times.network_s += probs.timings.prepare_s + probs.timings.network_s;
    let seg = model.finish(probs)?;
    times.post_s += seg.timings.post_s;
    Ok((seg.labels, seg.n_nuclei))
}

/// Segments a volume held in memory block by block (what [`segment_blocks`] does for
/// volumes on disk); labels 1..=n and their count.
pub fn segment_in_memory(
    model: &Model,
    vol: &[f32],
    dims: [usize; 3],
    params: &SegmentParams,
    opts: &BlockOptions,
    progress: Option<Progress>,
) -> Result<(Vec<u32>, BlockRun)> {
    let n = crate::error::voxel_count(dims)?;
    if vol.len() != n {
        return Err(Error::invalid(format!("volume holds {} values, dims {dims:?} need {n}", vol.len())));
    }
    let mut store = MemoryLabels { labels: vec![0; n], dims };
    let run = segment_blocks(model, &mut MemorySource { volume: vol, dims }, &mut store, params, opts, None, progress)?;
    let mut labels = store.labels;
    run.apply(&mut labels);
    Ok((labels, run))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cores_tile_the_volume_exactly_and_halos_stay_inside() {
        let g = BlockGrid::new([10, 33, 7], [4, 16, 100], [2, 3, 5]).unwrap();
        assert_eq!(g.count, [3, 3, 1]);
        let mut seen = vec![0u8; 10 * 33 * 7];
        for b in g.blocks() {
            for k in 0..3 {
                assert!(b.start[k] <= b.core_start[k] && b.core_end[k] <= b.end[k] && b.end[k] <= g.dims[k]);
                assert!(b.core_start[k] - b.start[k] <= g.halo[k]);
            }
            for z in b.core_start[0]..b.core_end[0] {
                for y in b.core_start[1]..b.core_end[1] {
                    for x in b.core_start[2]..b.core_end[2] {
                        seen[(z * 33 + y) * 7 + x] += 1;
                    }
                }
            }
        }
        assert!(seen.iter().all(|&s| s == 1));
        assert!(BlockGrid::new([10, 10, 10], [0, 5, 5], [1, 1, 1]).is_err());
    }

    #[test]
    fn fit_keeps_blocks_within_the_budget() {
        let g = BlockGrid::fit([153, 1024, 1024], [12, 30, 30], [1.75, 0.8, 0.8], 24 << 20).unwrap();
        let b = g.block([1, 1, 1]);
        assert!(b.dims().iter().product::<usize>() <= 24 << 20, "{g:?}");
        // small volumes stay whole
        assert_eq!(BlockGrid::fit([51, 120, 120], [12, 30, 30], [1.75, 0.8, 0.8], 24 << 20).unwrap().len(), 1);
    }

    #[test]
    fn aligned_cores_cover_whole_chunks() {
        let even = BlockGrid::new([40, 130, 200], [14, 60, 70], [3, 5, 5]).unwrap();
        let g = BlockGrid::aligned(&even, [10, 32, 32]).unwrap();
        assert_eq!((g.core, g.count, g.regular), ([10, 32, 64], [4, 5, 4], true));
        for b in g.blocks() {
            for k in 0..3 {
                // every core starts on a chunk boundary and ends on one or at the edge
                assert_eq!(b.core_start[k] % [10, 32, 32][k], 0);
                assert!(b.core_end[k] % [10, 32, 32][k] == 0 || b.core_end[k] == g.dims[k], "{b:?}");
            }
        }
        assert_eq!(g.block([3, 4, 3]).core_end, [40, 130, 200]);
        // a core smaller than a chunk becomes one chunk; an axis taken whole stays whole
        let g = BlockGrid::aligned(&BlockGrid::new([40, 100, 100], [40, 8, 100], [3, 5, 5]).unwrap(), [16, 16, 16]).unwrap();
        assert_eq!((g.core, g.count), ([40, 16, 100], [1, 7, 1]));
        assert!(BlockGrid::aligned(&even, [0, 1, 1]).is_err());
    }

    fn view(lower: &[u32], upper: &[u32]) -> FaceView {
        FaceView { lower: lower.to_vec(), upper: upper.to_vec() }
    }

    #[test]
    fn pieces_join_where_both_blocks_agree_and_touching_nuclei_stay_apart() {
        // a nucleus crossing the face: A calls it 1 on both planes, B calls it 7
        assert_eq!(agreeing_pieces(&view(&[1, 1, 0, 0], &[1, 1, 0, 0]), &view(&[7, 7, 0, 0], &[7, 7, 0, 0])), vec![(1, 7)]);
        // two nuclei touching at the face, one on each side: each block sees both (the
        // one across the face in its halo is not its piece: 0), so nothing agrees
        assert!(agreeing_pieces(&view(&[1, 1, 0, 0], &[0, 0, 0, 0]), &view(&[0, 0, 0, 0], &[9, 9, 0, 0])).is_empty());
        // a sliver B adds to A's nucleus still joins it
        assert_eq!(agreeing_pieces(&view(&[2, 2, 2, 2], &[0, 0, 0, 0]), &view(&[5, 5, 5, 0], &[5, 0, 0, 0])), vec![(2, 5)]);
    }

    #[test]
    fn union_find_numbers_nuclei_without_gaps_in_order() {
        let mut p = Pieces { parent: vec![0] };
        assert_eq!(p.add(3), 1);
        assert_eq!(p.add(2), 4);
        p.join(5, 2);
        p.join(4, 1);
        let (map, n) = p.numbering();
        assert_eq!((map, n), (vec![0, 1, 2, 3, 1, 2], 3));
    }
}
