//! ONNX networks: loading, the metadata contract, and tiled inference.
//!
//! Contract (DESIGN.md): input `image` float32 [N,1,D,H,W]; output `prob`
//! float32 [N,C,D,H,W] with C = 1 (sigmoid) or C = 2 (softmax, channel 1 is
//! foreground). A *joint* model (`qcanet.role = joint`) also has an output
//! `centre` and serves as both NSN and NDN in one pass. Metadata keys
//! (`qcanet.*`) carry the training voxel size, normalisation, spatial multiple,
//! tile size and post-processing defaults; a model without them loads with the
//! defaults documented on [`NetInfo::default`].

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use ort::session::Session;
use rayon::prelude::*;
use ort::value::TensorRef;

use crate::error::{Error, Result};
use crate::postprocess::{Landscape, MarkerMode, PostParams};
use crate::preprocess::Normalization;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Nsn,
    Ndn,
    Joint,
}

/// Where inference runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Device {
    /// CUDA when it starts, else the CPU.
    Auto,
    Cpu,
    /// CUDA or an error.
    Cuda,
}

/// Arithmetic of the convolutions on a GPU (the CPU always computes in fp32).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Precision {
    /// IEEE fp32 everywhere: the same labels as the CPU.
    #[default]
    Fp32,
    /// TensorFloat-32 tensor cores for convolutions (10-bit mantissa inputs, fp32
    /// accumulation) on NVIDIA GPUs since Ampere: faster, probabilities differ slightly.
    Tf32,
}

#[derive(Clone, Debug)]
pub struct LoadOptions {
    pub device: Device,
    pub device_id: i32,
    /// Inference threads; 0 = all cores.
    pub num_threads: usize,
    pub precision: Precision,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions { device: Device::Auto, device_id: 0, num_threads: 0, precision: Precision::Fp32 }
    }
}

/// Largest tile edge (voxels), from metadata or a caller.
pub const MAX_TILE: usize = 1024;
/// Largest spatial multiple a model's metadata may ask for.
pub const MAX_SPATIAL_MULTIPLE: usize = 256;
/// Most inference threads one may ask for (ONNX Runtime crashes far above the core count).
pub const MAX_THREADS: usize = 1024;

/// Tiles sent to a GPU in one run are capped at this many voxels in all (about 3 GB of
/// activations for the default model): enough to fill an H100, far below its memory.
const GPU_BATCH_VOXELS: usize = 20_000_000;
/// At most this many tiles per run.
const MAX_BATCH: usize = 16;

/// What a network's metadata says (with defaults for what it does not).
#[derive(Clone, Debug)]
pub struct NetInfo {
    pub role: Option<Role>,
    /// Voxel size (z, y, x, micrometres) of the training data; `None` = use the input's grid.
    pub voxel_size: Option<[f64; 3]>,
    pub normalization: Normalization,
    /// Each spatial input size must be a multiple of this.
    pub spatial_multiple: [usize; 3],
    pub tile: [usize; 3],
    pub overlap: [usize; 3],
    /// Post-processing defaults the model was validated with.
    pub post: PostParams,
    pub description: String,
    pub raw: HashMap<String, String>,
}

impl Default for NetInfo {
    /// Without metadata: no resampling, percentile 1–99.9 normalisation, multiple 16
    /// in every axis, 64x128x128 tiles with 16-voxel overlap, QCANet's marker rule
    /// (connected components of NDN > 0.5) and no minimum size.
    fn default() -> Self {
        NetInfo {
            role: None,
            voxel_size: None,
            normalization: Normalization::Percentile { lo: 1.0, hi: 99.9 },
            spatial_multiple: [16, 16, 16],
            tile: [64, 128, 128],
            overlap: [16, 16, 16],
            post: PostParams { markers: MarkerMode::Components, ..PostParams::default() },
            description: String::new(),
            raw: HashMap::new(),
        }
    }
}

fn triple<T: std::str::FromStr>(key: &str, s: &str) -> Result<[T; 3]> {
    let v: Vec<T> = s
        .split(',')
        .map(|a| a.trim().parse::<T>())
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| Error::Model(format!("metadata {key} = '{s}' is not three numbers")))?;
    v.try_into().map_err(|_| Error::Model(format!("metadata {key} = '{s}' is not three numbers")))
}

fn num<T: std::str::FromStr>(key: &str, s: &str) -> Result<T> {
    s.trim().parse::<T>().map_err(|_| Error::Model(format!("metadata {key} = '{s}' is not a number")))
}

impl NetInfo {
    pub fn from_metadata(raw: HashMap<String, String>) -> Result<Self> {
        let mut i = NetInfo::default();
        for (k, v) in &raw {
            match k.as_str() {
                "qcanet.role" => {
                    i.role = Some(match v.as_str() {
                        "nsn" => Role::Nsn,
                        "ndn" => Role::Ndn,
                        "joint" => Role::Joint,
                        _ => return Err(Error::Model(format!("qcanet.role '{v}' (nsn | ndn | joint)"))),
                    })
                }
                "qcanet.voxel_size" => {
                    let t: [f64; 3] = triple(k, v)?;
                    if t.iter().any(|a| !(a.is_finite() && *a > 0.0)) {
                        return Err(Error::Model(format!("qcanet.voxel_size '{v}' must be positive")));
                    }
                    i.voxel_size = Some(t);
                }
                "qcanet.normalization" => i.normalization = Normalization::parse(v)?,
                "qcanet.spatial_multiple" => i.spatial_multiple = triple(k, v)?,
                "qcanet.tile" => i.tile = triple(k, v)?,
                "qcanet.overlap" => i.overlap = triple(k, v)?,
                "qcanet.markers" => {
                    i.post.markers = match v.as_str() {
                        "local_max" => MarkerMode::LocalMaxima,
                        "components" | "cc" => MarkerMode::Components,
                        _ => return Err(Error::Model(format!("qcanet.markers '{v}' (local_max | components)"))),
                    }
                }
                "qcanet.landscape" => {
                    i.post.landscape = match v.as_str() {
                        "edt" => Landscape::Distance,
                        "centre" => Landscape::Centre,
                        _ => return Err(Error::Model(format!("qcanet.landscape '{v}' (edt | centre)"))),
                    }
                }
                "qcanet.fg_threshold" => i.post.fg_threshold = num(k, v)?,
                "qcanet.centre_threshold" => i.post.centre_threshold = num(k, v)?,
                "qcanet.marker_sigma_um" => i.post.marker_sigma_um = num(k, v)?,
                "qcanet.min_volume_um3" => i.post.min_volume_um3 = num(k, v)?,
                _ => {}
            }
        }
        if i.spatial_multiple.iter().any(|&m| m == 0 || m > MAX_SPATIAL_MULTIPLE) || i.tile.iter().any(|&t| t == 0 || t > MAX_TILE) || i.overlap.iter().any(|&o| o > MAX_TILE) {
            return Err(Error::Model(format!(
                "qcanet.spatial_multiple {:?} must be 1..={MAX_SPATIAL_MULTIPLE}, qcanet.tile {:?} 1..={MAX_TILE}, qcanet.overlap {:?} 0..={MAX_TILE}",
                i.spatial_multiple, i.tile, i.overlap
            )));
        }
        for k in 0..3 {
            // tiles are whole multiples; overlaps leave a positive stride
            let m = i.spatial_multiple[k];
            i.tile[k] = (i.tile[k] / m).max(1) * m;
            i.overlap[k] = i.overlap[k].min(i.tile[k].saturating_sub(1) / 2);
        }
        i.raw = raw;
        Ok(i)
    }
}

/// How to read a probability output.
#[derive(Clone, Debug)]
struct Output {
    name: String,
}

/// One ONNX network, ready to run. Sessions are not re-entrant in `ort`, so runs
/// on the same network are serialised; different models run in parallel.
pub struct Network {
    session: Mutex<Session>,
    pub info: NetInfo,
    input: String,
    prob: Output,
    centre: Option<Output>,
    pub device_used: Device,
    /// Why `Device::Auto` runs on the CPU, when it does.
    pub fallback: Option<String>,
}

fn model_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Model(format!("{what}: {e}"))
}

impl Network {
    pub fn from_file(path: &Path, opts: &LoadOptions) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Self::from_bytes(&bytes, &path.display().to_string(), opts)
    }

    pub fn from_bytes(bytes: &[u8], name: &str, opts: &LoadOptions) -> Result<Self> {
        if bytes.is_empty() {
            return Err(Error::Model(format!("{name}: empty file")));
        }
        let (env, runtime_has_cuda) = crate::runtime::environment_for(opts.device)?;
        if opts.num_threads > MAX_THREADS {
            return Err(Error::invalid(format!("{} inference threads asked for; at most {MAX_THREADS} (0 = all cores)", opts.num_threads)));
        }
        let threads = if opts.num_threads == 0 { num_cpus() } else { opts.num_threads };
        let build = |cuda: bool| -> Result<Session> {
            let mut b = Session::builder(env).map_err(|e| model_err(name, e))?;
            b = b.with_intra_threads(threads).map_err(|e| model_err(name, e))?;
            if cuda {
                // EXHAUSTIVE: cuDNN times every convolution algorithm once per input shape and
                // caches the winner; tiles share one shape, so only the first run pays. On the
                // H100 (docs/gpu/h100-run2) it gave the fastest network of the choices tried
                // (HEURISTIC, channels-last NHWC: no faster in fp32, same labels).
                let ep = ort::ep::CUDA::default()
                    .with_device_id(opts.device_id)
                    .with_conv_algorithm_search(ort::ep::cuda::ConvAlgorithmSearch::Exhaustive)
                    .with_tf32(opts.precision == Precision::Tf32)
                    .build()
                    .error_on_failure();
                b = b.with_execution_providers([ep]).map_err(|e| Error::Model(format!("CUDA could not start: {e}")))?;
            }
            b.commit_from_memory(bytes).map_err(|e| Error::Model(format!("{name}: not a loadable ONNX model ({e})")))
        };
        let mut fallback = None;
        let (session, device_used) = match opts.device {
            Device::Cpu => (build(false)?, Device::Cpu),
            Device::Cuda => (build(true)?, Device::Cuda),
            Device::Auto if runtime_has_cuda => match build(true) {
                Ok(s) => (s, Device::Cuda),
                Err(e) => {
                    fallback = Some(format!("CUDA not used: {e}"));
                    (build(false)?, Device::Cpu)
                }
            },
            Device::Auto => {
                fallback = crate::runtime::fallback_note();
                (build(false)?, Device::Cpu)
            }
        };
        let mut raw = HashMap::new();
        if let Ok(md) = session.metadata() {
            if let Ok(keys) = md.custom_keys() {
                for k in keys {
                    if let Some(v) = md.custom(&k) {
                        raw.insert(k, v);
                    }
                }
            }
        }
        let mut info = NetInfo::from_metadata(raw)?;
        info.description = name.to_string();
        // tensor contract
        let ins = session.inputs();
        if ins.len() != 1 {
            return Err(Error::Model(format!("{name}: expected one input tensor, found {}", ins.len())));
        }
        check_5d(name, ins[0].name(), ins[0].dtype(), true)?;
        let outs = session.outputs();
        let pick = |want: &str| outs.iter().find(|o| o.name() == want);
        let prob = pick("prob").or_else(|| outs.first()).ok_or_else(|| Error::Model(format!("{name}: no output")))?;
        check_5d(name, prob.name(), prob.dtype(), false)?;
        let centre = match pick("centre") {
            Some(c) => {
                check_5d(name, c.name(), c.dtype(), false)?;
                Some(Output { name: c.name().to_string() })
            }
            None => None,
        };
        if info.role == Some(Role::Joint) && centre.is_none() {
            return Err(Error::Model(format!("{name}: a joint model needs a 'centre' output")));
        }
        if info.role.is_none() && centre.is_some() {
            info.role = Some(Role::Joint);
        }
        let input = ins[0].name().to_string();
        let prob = Output { name: prob.name().to_string() };
        Ok(Network { session: Mutex::new(session), info, input, prob, centre, device_used, fallback })
    }

    /// Tiles of `tile_voxels` each to run at once: several on a GPU, one on the CPU
    /// (where a batch only costs memory).
    pub fn batch_size(&self, tile_voxels: usize) -> usize {
        match self.device_used {
            Device::Cuda => (GPU_BATCH_VOXELS / tile_voxels.max(1)).clamp(1, MAX_BATCH),
            _ => 1,
        }
    }

    pub fn is_joint(&self) -> bool {
        self.centre.is_some()
    }

    /// Runs `b` tiles of [d, h, w] stored one after the other in `tiles` as one batch;
    /// returns (prob, centre?) as foreground probabilities, tile after tile.
    fn run_batch(&self, tiles: &[f32], b: usize, shape: [usize; 3]) -> Result<(Vec<f32>, Option<Vec<f32>>)> {
        let [d, h, w] = shape;
        let n = d * h * w;
        if tiles.len() != b * n {
            return Err(Error::Internal(format!("batch of {b} tiles of {shape:?} given {} values", tiles.len())));
        }
        let t = TensorRef::from_array_view(([b, 1, d, h, w], tiles)).map_err(|e| Error::Inference(e.to_string()))?;
        let mut s = self.session.lock().unwrap_or_else(|e| e.into_inner());
        let out = s
            .run(ort::inputs![self.input.as_str() => t])
            .map_err(|e| Error::Inference(format!("{}: {e}", self.info.description)))?;
        let read = |o: &Output| -> Result<Vec<f32>> {
            let v = out.get(o.name.as_str()).ok_or_else(|| Error::Inference(format!("output {} missing", o.name)))?;
            let (sh, data) = v.try_extract_tensor::<f32>().map_err(|e| Error::Inference(e.to_string()))?;
            let sh: Vec<i64> = sh.iter().copied().collect();
            if sh.len() != 5 || sh[0] != b as i64 || sh[2..] != [d as i64, h as i64, w as i64] {
                return Err(Error::Model(format!(
                    "{}: output {} has shape {sh:?} for input [{b}, 1, {d}, {h}, {w}]",
                    self.info.description, o.name
                )));
            }
            // each tile's block is [C, d, h, w]; with a softmax pair channel 1 is the foreground
            let (c, skip) = match sh[1] {
                1 => (1, 0),
                2 => (2, n),
                c => return Err(Error::Model(format!("{}: output {} has {c} channels (1 or 2 expected)", self.info.description, o.name))),
            };
            let mut v = Vec::with_capacity(b * n);
            for i in 0..b {
                let at = i * c * n + skip;
                v.extend_from_slice(&data[at..at + n]);
            }
            Ok(v)
        };
        let p = read(&self.prob)?;
        let c = match &self.centre {
            Some(o) => Some(read(o)?),
            None => None,
        };
        Ok((p, c))
    }
}

fn check_5d(name: &str, tensor: &str, t: &ort::value::ValueType, input: bool) -> Result<()> {
    use ort::value::{TensorElementType, ValueType};
    match t {
        ValueType::Tensor { ty, shape, .. } => {
            if *ty != TensorElementType::Float32 {
                return Err(Error::Model(format!("{name}: tensor '{tensor}' is {ty:?}, float32 expected")));
            }
            if shape.len() != 5 {
                return Err(Error::Model(format!(
                    "{name}: tensor '{tensor}' has rank {} ({:?}); [N, C, D, H, W] expected",
                    shape.len(),
                    &shape[..]
                )));
            }
            if input && shape[1] != 1 && shape[1] != -1 {
                return Err(Error::Model(format!("{name}: input '{tensor}' has {} channels, 1 expected", shape[1])));
            }
            if !input && !(shape[1] == 1 || shape[1] == 2 || shape[1] == -1) {
                return Err(Error::Model(format!("{name}: output '{tensor}' has {} channels, 1 or 2 expected", shape[1])));
            }
            Ok(())
        }
        other => Err(Error::Model(format!("{name}: '{tensor}' is not a tensor ({other:?})"))),
    }
}

pub fn num_cpus() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// Reflect an index into [0, n) (numpy's "reflect": no edge repeat), any distance away.
#[inline]
fn mirror(i: isize, n: usize) -> usize {
    if n == 1 {
        return 0;
    }
    let p = 2 * (n as isize - 1);
    let mut j = i.rem_euclid(p);
    if j >= n as isize {
        j = p - j;
    }
    j as usize
}

/// Fills `dst` with `row[sx + i]` for each i, the index reflected into the row where it
/// falls outside (numpy's "reflect"): a plain copy for the part inside, `mirror` only at
/// the edges.
fn gather_row(row: &[f32], sx: isize, dst: &mut [f32]) {
    let n = row.len() as isize;
    let w = dst.len() as isize;
    let (i0, i1) = ((-sx).clamp(0, w), (n - sx).clamp(0, w));
    if i0 < i1 {
        dst[i0 as usize..i1 as usize].copy_from_slice(&row[(sx + i0) as usize..(sx + i1) as usize]);
    }
    for i in (0..i0).chain(i1.max(i0)..w) {
        dst[i as usize] = row[mirror(sx + i, row.len())];
    }
}

/// Tile starts along one axis. An axis that fits in one tile is padded (mirrored)
/// only up to the network's multiple, exactly as in training; a longer axis is
/// covered by tiles that overlap by at least `overlap`, the first starting at 0 and
/// the last ending at the volume's edge (mirrored context at the borders would make
/// the network see a nucleus continuing there, unlike in training).
/// Returns (tile size, starts).
fn axis_tiles(n: usize, tile: usize, overlap: usize, multiple: usize) -> (usize, Vec<isize>) {
    let single = n.div_ceil(multiple) * multiple;
    if single <= tile {
        return (single, vec![0]);
    }
    let stride = (tile - overlap).max(1);
    let k = (n - tile).div_ceil(stride) + 1;
    let last = (n - tile) as f64;
    let starts = (0..k).map(|i| (last * i as f64 / (k - 1) as f64).round() as isize).collect();
    (tile, starts)
}

/// Blending weight along one axis of a tile. The outer quarter of the overlap
/// (the voxels with the least context) gets almost no weight, the next half ramps
/// up smoothly (raised cosine): where two tiles overlap, each voxel is taken from
/// the tile that saw more around it, with no visible seam.
fn ramp(size: usize, overlap: usize) -> Vec<f32> {
    const EPS: f32 = 1e-3;
    if overlap == 0 {
        return vec![1.0; size];
    }
    let (skip, width) = (overlap as f32 / 4.0, (overlap as f32 / 2.0).max(1.0));
    (0..size)
        .map(|i| {
            let e = i.min(size - 1 - i) as f32;
            let t = ((e - skip + 0.5) / width).clamp(0.0, 1.0);
            EPS + (1.0 - EPS) * (0.5 - 0.5 * (std::f32::consts::PI * t).cos())
        })
        .collect()
}

/// Progress callback: fraction done in [0, 1]; return false to cancel.
pub type Progress<'a> = &'a (dyn Fn(f32) -> bool + Sync);

/// Runs `nets` (one joint network, or NSN and NDN) over `vol` (already normalised,
/// on the model grid) in overlapping tiles. Returns (foreground, centre) probabilities.
pub fn infer_tiled(
    nsn: &Network,
    ndn: Option<&Network>,
    vol: &[f32],
    dims: [usize; 3],
    tile: [usize; 3],
    overlap: [usize; 3],
    progress: Option<Progress>,
) -> Result<(Vec<f32>, Vec<f32>)> {
    let m = nsn.info.spatial_multiple;
    let mut m2 = m;
    if let Some(d) = ndn {
        for k in 0..3 {
            m2[k] = lcm(m[k], d.info.spatial_multiple[k]);
        }
    }
    if m2.iter().any(|&m| m > MAX_TILE) {
        return Err(Error::Model(format!("the NSN and NDN spatial multiples {m:?} and {:?} need tiles of {m2:?} voxels (limit {MAX_TILE})", ndn.map(|d| d.info.spatial_multiple))));
    }
    let mut grid = Vec::new();
    let mut sizes = [0usize; 3];
    for k in 0..3 {
        let t = (tile[k].max(m2[k]) / m2[k]) * m2[k];
        let o = overlap[k].min(t / 2);
        let (size, starts) = axis_tiles(dims[k], t, o, m2[k]);
        sizes[k] = size;
        grid.push((starts, ramp(size, o)));
    }
    let n = dims[0] * dims[1] * dims[2];
    let mut acc_p = vec![0f32; n];
    let mut acc_c = vec![0f32; n];
    let mut acc_w = vec![0f32; n];
    let total = grid[0].0.len() * grid[1].0.len() * grid[2].0.len();
    let mut done = 0usize;
    let [td, th, tw] = sizes;
    let tile_n = td * th * tw;
    let mut starts = Vec::with_capacity(total);
    for &sz in &grid[0].0 {
        for &sy in &grid[1].0 {
            for &sx in &grid[2].0 {
                starts.push([sz, sy, sx]);
            }
        }
    }
    let batch = nsn.batch_size(tile_n).min(ndn.map_or(usize::MAX, |d| d.batch_size(tile_n))).min(total).max(1);
    let mut buf = vec![0f32; batch * tile_n];
    for group in starts.chunks(batch) {
        let b = group.len();
        // gather with mirror padding, tiles and their planes in parallel
        buf[..b * tile_n].par_chunks_mut(th * tw).enumerate().for_each(|(k, plane)| {
            let (t, z) = (k / td, k % td);
            let [sz, sy, sx] = group[t];
            let iz = mirror(sz + z as isize, dims[0]);
            for y in 0..th {
                let iy = mirror(sy + y as isize, dims[1]);
                gather_row(&vol[(iz * dims[1] + iy) * dims[2]..][..dims[2]], sx, &mut plane[y * tw..(y + 1) * tw]);
            }
        });
        let input = &buf[..b * tile_n];
        let (p, c) = nsn.run_batch(input, b, sizes)?;
        let c = match (c, ndn) {
            (Some(c), _) => c,
            (None, Some(d)) => d.run_batch(input, b, sizes)?.0,
            (None, None) => return Err(Error::Model("an NDN model is needed (the NSN model is not a joint model)".into())),
        };
        // scatter the part inside the volume, weighted: tiles one after the other (they
        // overlap), the planes of one tile in parallel (they do not)
        let plane_n = dims[1] * dims[2];
        for (k, &[sz, sy, sx]) in group.iter().enumerate() {
            let (p, c) = (&p[k * tile_n..(k + 1) * tile_n], &c[k * tile_n..(k + 1) * tile_n]);
            let z0 = sz.max(0) as usize;
            let z1 = ((sz + td as isize).min(dims[0] as isize)) as usize;
            let (y0, y1) = (sy.max(0) as usize, ((sy + th as isize).min(dims[1] as isize)) as usize);
            let (x0, x1) = (sx.max(0) as usize, ((sx + tw as isize).min(dims[2] as isize)) as usize);
            let (tx0, tx1) = ((x0 as isize - sx) as usize, (x1 as isize - sx) as usize);
            let wx = &grid[2].1[tx0..tx1];
            acc_p[z0 * plane_n..z1 * plane_n]
                .par_chunks_mut(plane_n)
                .zip(acc_c[z0 * plane_n..z1 * plane_n].par_chunks_mut(plane_n))
                .zip(acc_w[z0 * plane_n..z1 * plane_n].par_chunks_mut(plane_n))
                .enumerate()
                .for_each(|(j, ((ap, ac), aw))| {
                    let tz = (z0 + j) as isize - sz;
                    let wz = grid[0].1[tz as usize];
                    for gy in y0..y1 {
                        let ty = (gy as isize - sy) as usize;
                        let wzy = wz * grid[1].1[ty];
                        let ti = (tz as usize * th + ty) * tw;
                        let (tp, tc) = (&p[ti + tx0..ti + tx1], &c[ti + tx0..ti + tx1]);
                        let g = gy * dims[2];
                        let (ap, ac, aw) = (&mut ap[g + x0..g + x1], &mut ac[g + x0..g + x1], &mut aw[g + x0..g + x1]);
                        for x in 0..wx.len() {
                            let w = wzy * wx[x];
                            ap[x] += w * tp[x];
                            ac[x] += w * tc[x];
                            aw[x] += w;
                        }
                    }
                });
            done += 1;
        }
        if let Some(cb) = progress {
            if !cb(done as f32 / total as f32) {
                return Err(Error::Cancelled);
            }
        }
    }
    acc_p.par_iter_mut().zip(acc_c.par_iter_mut()).zip(acc_w.par_iter()).for_each(|((p, c), &w)| {
        *p /= w;
        *c /= w;
    });
    let bad = acc_p.par_iter().chain(acc_c.par_iter()).filter(|v| !v.is_finite()).count();
    if bad > 0 {
        return Err(Error::Inference(format!("the network produced {bad} non-finite values")));
    }
    Ok((acc_p, acc_c))
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}
fn lcm(a: usize, b: usize) -> usize {
    a / gcd(a, b) * b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirror_reflects_without_repeating_the_edge() {
        let got: Vec<usize> = (-3..7).map(|i| mirror(i, 4)).collect();
        assert_eq!(got, vec![3, 2, 1, 0, 1, 2, 3, 2, 1, 0]);
        assert_eq!(mirror(-5, 1), 0);
    }

    #[test]
    fn gathered_rows_equal_mirrored_indexing() {
        let row: Vec<f32> = (0..7).map(|v| v as f32).collect();
        for sx in -12isize..12 {
            for w in [1usize, 3, 7, 16, 30] {
                let mut got = vec![-1f32; w];
                gather_row(&row, sx, &mut got);
                let want: Vec<f32> = (0..w).map(|i| row[mirror(sx + i as isize, row.len())]).collect();
                assert_eq!(got, want, "sx {sx} w {w}");
            }
        }
        let mut one = vec![0f32; 5];
        gather_row(&[4.0], -2, &mut one);
        assert_eq!(one, vec![4.0; 5]);
    }

    #[test]
    fn tiles_cover_every_voxel() {
        for n in [1usize, 7, 51, 120, 300, 1000] {
            let (size, starts) = axis_tiles(n, 64, 8, 8);
            assert_eq!(size % 8, 0);
            let mut hit = vec![false; n];
            for s in &starts {
                for i in 0..size as isize {
                    let g = s + i;
                    if g >= 0 && (g as usize) < n {
                        hit[g as usize] = true;
                    }
                }
            }
            assert!(hit.iter().all(|&h| h), "n = {n}");
        }
    }

    #[test]
    fn metadata_is_parsed_and_checked() {
        let mut raw = HashMap::new();
        raw.insert("qcanet.voxel_size".into(), "1.75,0.8,0.8".into());
        raw.insert("qcanet.tile".into(), "50,130,130".into());
        raw.insert("qcanet.spatial_multiple".into(), "4,8,8".into());
        raw.insert("qcanet.markers".into(), "local_max".into());
        let i = NetInfo::from_metadata(raw.clone()).unwrap();
        assert_eq!(i.voxel_size, Some([1.75, 0.8, 0.8]));
        assert_eq!(i.tile, [48, 128, 128]);
        assert_eq!(i.post.markers, MarkerMode::LocalMaxima);
        raw.insert("qcanet.voxel_size".into(), "1,2".into());
        assert!(NetInfo::from_metadata(raw.clone()).is_err());
        // sizes from a model file are bounded: an absurd multiple or tile is an error
        raw.insert("qcanet.voxel_size".into(), "1.75,0.8,0.8".into());
        raw.insert("qcanet.spatial_multiple".into(), "100000,8,8".into());
        assert!(NetInfo::from_metadata(raw.clone()).unwrap_err().to_string().contains("spatial_multiple"));
        raw.insert("qcanet.spatial_multiple".into(), "4,8,8".into());
        raw.insert("qcanet.tile".into(), "64,4096,192".into());
        assert!(NetInfo::from_metadata(raw).is_err());
    }
}
