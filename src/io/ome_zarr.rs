//! OME-Zarr images (NGFF 0.4 on Zarr v2, NGFF 0.5 on Zarr v3) in, label images out, through
//! the `zarrs` crate. Read: the multiscales metadata (axes and their units, the scale of
//! level 0, the time step), then level 0 region by region in its own chunks. Written: a
//! label image as NGFF asks (`multiscales` with the image's axes, scales and levels, and
//! `image-label`), level 0 from the segmentation, the other levels by nearest-neighbour
//! sampling of level 0 to the image's own level shapes, in the image's chunk shape.
//!
//! Where the labels go:
//! - `qcanet segment in.ome.zarr -o out.ome.zarr`: a new OME-Zarr holding the label image at
//!   its root (multiscales + `image-label`), so that napari, Fiji/MoBIE and BigDataViewer open
//!   it with the input's calibration. It is written under a temporary name beside the
//!   target and renamed when complete: an interrupted run leaves no half image.
//! - `--labels-into-input`: `in.ome.zarr/labels/<name>`, listed in `labels/`'s metadata, the
//!   NGFF place for labels of an image. An existing label image of that name is never
//!   replaced.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{json, Map, Value};
use zarrs::array::{Array, ArrayBuilder, ArrayMetadata};
use zarrs::filesystem::FilesystemStore;
use zarrs::group::{Group, GroupBuilder};

use crate::error::{Error, Result};
use crate::io::tiff::{length_unit_um, FrameInterval};

type Store = FilesystemStore;

/// Most levels of a multiscale image read.
const MAX_LEVELS: usize = 32;
/// Most channels of an image read.
const MAX_CHANNELS: u64 = 4096;
/// Largest chunk read or written (voxels): a chunk is decoded whole, so this bounds memory.
pub const MAX_CHUNK_VOXELS: u64 = 64 << 20;
/// Voxels read at a time when scanning a whole volume (its intensity statistics).
const SCAN_VOXELS: usize = 16 << 20;

/// NGFF version of an image (and of the labels written beside it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ngff {
    /// 0.4: Zarr v2, metadata in `.zattrs`.
    V04,
    /// 0.5: Zarr v3, metadata under `zarr.json`'s `attributes.ome`.
    V05,
}

/// One axis of a multiscale image.
#[derive(Clone, Debug, PartialEq)]
pub struct Axis {
    pub name: String,
    /// "space", "time", "channel" (or absent).
    pub kind: Option<String>,
    pub unit: Option<String>,
}

/// One resolution level: its array's path and shape, and its scale per axis.
#[derive(Clone, Debug, PartialEq)]
pub struct Level {
    pub path: String,
    pub shape: Vec<u64>,
    pub scale: Vec<f64>,
    /// The dataset's coordinate transformations as written (scale, and translation when
    /// there is one), copied into the labels.
    pub transforms: Vec<Value>,
}

/// An OME-Zarr image opened for reading.
pub struct OmeZarr {
    root: PathBuf,
    pub version: Ngff,
    pub name: Option<String>,
    pub axes: Vec<Axis>,
    pub levels: Vec<Level>,
    /// Chunk shape of level 0.
    pub chunks: Vec<u64>,
    array: Array<Store>,
    kind: Kind,
    /// Index of the t, c, z, y, x axes (t and c may be absent).
    t_axis: Option<usize>,
    c_axis: Option<usize>,
    zyx: [usize; 3],
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    U8,
    U16,
    U32,
    I16,
    F32,
}

fn zerr(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Unsupported(format!("{}: {e}", path.display()))
}

/// Whether `path` looks like an OME-Zarr (a folder with Zarr metadata).
pub fn is_ome_zarr(path: &Path) -> bool {
    path.is_dir() && [".zattrs", ".zgroup", "zarr.json"].iter().any(|f| path.join(f).is_file())
}

fn store(root: &Path) -> Result<Arc<Store>> {
    Ok(Arc::new(FilesystemStore::new(root).map_err(|e| zerr(root, e))?))
}

/// The attributes of the group at `root`, and its NGFF version's keys: for 0.5 the `ome`
/// object, for 0.4 the attributes themselves.
fn ome_attributes(root: &Path) -> Result<(Ngff, Map<String, Value>)> {
    let st = store(root)?;
    // a v2 group may lack `.zgroup` (some writers): read `.zattrs` directly then
    let attrs = match Group::open(st, "/") {
        Ok(g) => g.attributes().clone(),
        Err(_) if root.join(".zattrs").is_file() => {
            let text = std::fs::read_to_string(root.join(".zattrs")).map_err(|e| Error::io(root.join(".zattrs"), e))?;
            serde_json::from_str(&text).map_err(|e| zerr(root, format!(".zattrs is not JSON ({e})")))?
        }
        Err(e) => return Err(zerr(root, format!("not a Zarr group ({e})"))),
    };
    match attrs.get("ome").and_then(Value::as_object) {
        Some(ome) => Ok((Ngff::V05, ome.clone())),
        None => Ok((Ngff::V04, attrs)),
    }
}

impl OmeZarr {
    pub fn open(root: impl AsRef<Path>) -> Result<OmeZarr> {
        let root = root.as_ref();
        let (version, attrs) = ome_attributes(root)?;
        let ms = attrs
            .get("multiscales")
            .and_then(Value::as_array)
            .and_then(|m| m.first())
            .ok_or_else(|| zerr(root, "no NGFF multiscales metadata (is it an OME-Zarr image?)"))?;
        let axes: Vec<Axis> = ms
            .get("axes")
            .and_then(Value::as_array)
            .ok_or_else(|| zerr(root, "multiscales without axes (NGFF 0.4 or later is read)"))?
            .iter()
            .map(|a| match a {
                // NGFF 0.3 listed bare names
                Value::String(n) => Axis { name: n.clone(), kind: None, unit: None },
                _ => Axis {
                    name: a.get("name").and_then(Value::as_str).unwrap_or("").to_string(),
                    kind: a.get("type").and_then(Value::as_str).map(str::to_string),
                    unit: a.get("unit").and_then(Value::as_str).map(str::to_string),
                },
            })
            .collect();
        if !(3..=5).contains(&axes.len()) {
            return Err(zerr(root, format!("{} axes; qcanet reads 3-D images with optional time and channel axes", axes.len())));
        }
        let find = |n: &str| axes.iter().position(|a| a.name.eq_ignore_ascii_case(n));
        let zyx = match (find("z"), find("y"), find("x")) {
            (Some(z), Some(y), Some(x)) => [z, y, x],
            _ => return Err(zerr(root, "the axes are not named z, y and x")),
        };
        let (t_axis, c_axis) = (find("t"), find("c"));
        if 3 + t_axis.is_some() as usize + c_axis.is_some() as usize != axes.len() {
            return Err(zerr(root, format!("axes {:?}: qcanet reads t, c, z, y, x", axes.iter().map(|a| &a.name).collect::<Vec<_>>())));
        }
        let datasets = ms.get("datasets").and_then(Value::as_array).ok_or_else(|| zerr(root, "multiscales without datasets"))?;
        if datasets.is_empty() || datasets.len() > MAX_LEVELS {
            return Err(zerr(root, format!("{} resolution levels (1..={MAX_LEVELS} are read)", datasets.len())));
        }
        let st = store(root)?;
        let mut levels = Vec::new();
        let mut level0 = None;
        for d in datasets {
            let path = d.get("path").and_then(Value::as_str).ok_or_else(|| zerr(root, "a dataset without a path"))?.to_string();
            let node = format!("/{}", path.trim_matches('/'));
            let arr = Array::open(st.clone(), &node).map_err(|e| zerr(root, format!("level {path}: {e}")))?;
            if arr.shape().len() != axes.len() {
                return Err(zerr(root, format!("level {path} has {} dimensions, the axes {}", arr.shape().len(), axes.len())));
            }
            let mut scale = vec![1.0; axes.len()];
            let transforms: Vec<Value> = d.get("coordinateTransformations").and_then(Value::as_array).cloned().unwrap_or_default();
            for t in &transforms {
                if t.get("type").and_then(Value::as_str) == Some("scale") {
                    if let Some(s) = t.get("scale").and_then(Value::as_array) {
                        let s: Vec<f64> = s.iter().filter_map(Value::as_f64).collect();
                        if s.len() == axes.len() {
                            scale = s;
                        }
                    }
                }
            }
            levels.push(Level { path, shape: arr.shape().to_vec(), scale, transforms });
            if level0.is_none() {
                level0 = Some(arr);
            }
        }
        let array = level0.expect("one level at least (checked)");
        let shape0 = &levels[0].shape;
        if shape0.contains(&0) {
            return Err(zerr(root, format!("level 0 has an empty axis: shape {shape0:?}")));
        }
        // NGFF orders space axes z, y, x; data read in another order would be scrambled
        if !(zyx[0] < zyx[1] && zyx[1] < zyx[2]) || t_axis.is_some_and(|t| t > zyx[0]) || c_axis.is_some_and(|c| c > zyx[0]) {
            return Err(zerr(
                root,
                format!("axes {:?}: qcanet reads them in NGFF's order (t, c, z, y, x)", axes.iter().map(|a| &a.name).collect::<Vec<_>>()),
            ));
        }
        let voxels = crate::error::voxel_count_u64(zyx.map(|k| shape0[k] as usize))?;
        let frames = t_axis.map_or(1, |k| shape0[k]);
        let channels = c_axis.map_or(1, |k| shape0[k]);
        if channels > MAX_CHANNELS || frames.saturating_mul(voxels) > crate::error::MAX_STREAMED_VOXELS {
            return Err(zerr(
                root,
                format!(
                    "shape {shape0:?}: more than {MAX_CHANNELS} channels or {} voxels over all frames",
                    crate::error::MAX_STREAMED_VOXELS
                ),
            ));
        }
        // lower levels are no larger than level 0, and keep its frames and channels
        for l in &levels[1..] {
            let ok = l.shape.iter().zip(shape0).enumerate().all(|(k, (&s, &s0))| {
                if Some(k) == t_axis || Some(k) == c_axis {
                    s == s0
                } else {
                    (1..=s0).contains(&s)
                }
            });
            if !ok {
                return Err(zerr(root, format!("level {} has shape {:?}, not a reduction of level 0's {shape0:?}", l.path, l.shape)));
            }
        }
        let dt = array.data_type();
        use zarrs::array::data_type as dtype;
        let kind = if *dt == dtype::uint8() {
            Kind::U8
        } else if *dt == dtype::uint16() {
            Kind::U16
        } else if *dt == dtype::uint32() {
            Kind::U32
        } else if *dt == dtype::int16() {
            Kind::I16
        } else if *dt == dtype::float32() {
            Kind::F32
        } else {
            return Err(Error::Unsupported(format!(
                "{}: {dt} samples (8/16/32-bit unsigned, 16-bit signed or 32-bit float are read)",
                root.display()
            )));
        };
        let chunks: Vec<u64> = array.chunk_shape(&vec![0; axes.len()]).map_err(|e| zerr(root, e))?.iter().map(|n| n.get()).collect();
        // a chunk is decoded whole (reading, and writing the labels in the same chunks)
        let chunk_voxels = chunks.iter().zip(shape0).fold(1u64, |a, (&c, &s)| a.saturating_mul(c.min(s)));
        if chunk_voxels > MAX_CHUNK_VOXELS {
            return Err(zerr(
                root,
                format!("chunks of {chunks:?} hold more than {MAX_CHUNK_VOXELS} voxels: rechunk the image (e.g. 64 x 256 x 256)"),
            ));
        }
        let name = ms.get("name").and_then(Value::as_str).map(str::to_string);
        Ok(OmeZarr { root: root.to_path_buf(), version, name, axes, levels, chunks, array, kind, t_axis, c_axis, zyx })
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    /// Level 0's size along z, y, x.
    pub fn dims(&self) -> [usize; 3] {
        self.zyx.map(|k| self.levels[0].shape[k] as usize)
    }

    /// Chunk shape of level 0 along z, y, x.
    pub fn chunk_zyx(&self) -> [usize; 3] {
        self.zyx.map(|k| self.chunks[k].max(1) as usize)
    }

    pub fn frames(&self) -> usize {
        self.t_axis.map_or(1, |k| self.levels[0].shape[k] as usize)
    }

    pub fn channels(&self) -> usize {
        self.c_axis.map_or(1, |k| self.levels[0].shape[k] as usize)
    }

    /// Level 0's voxel size in micrometres, when its axes carry length units (an axis
    /// without a unit makes the image uncalibrated, as a TIFF without one is).
    pub fn voxel_size_um(&self) -> Option<[f64; 3]> {
        let mut v = [0.0; 3];
        for (i, &k) in self.zyx.iter().enumerate() {
            let f = length_unit_um(self.axes[k].unit.as_deref()?)?;
            v[i] = self.levels[0].scale[k] * f;
        }
        v.iter().all(|a| a.is_finite() && *a > 0.0).then_some(v)
    }

    /// The time between frames, when there is a time axis with a scale.
    pub fn frame_interval(&self) -> Option<FrameInterval> {
        let k = self.t_axis?;
        let value = self.levels[0].scale[k];
        (value.is_finite() && value > 0.0).then(|| FrameInterval { value, unit: self.axes[k].unit.clone().unwrap_or_else(|| "sec".into()) })
    }

    /// Voxels of `[start, end)` (z, y, x) of frame `t`, channel `c`, as f32.
    pub fn read(&self, t: usize, c: usize, start: [usize; 3], end: [usize; 3]) -> Result<Vec<f32>> {
        if t >= self.frames() || c >= self.channels() || (0..3).any(|k| start[k] >= end[k] || end[k] > self.dims()[k]) {
            return Err(Error::invalid(format!(
                "{}: region {start:?}..{end:?} of frame {t}, channel {c} is outside the image",
                self.root.display()
            )));
        }
        let mut ranges = vec![0..1u64; self.axes.len()];
        if let Some(k) = self.t_axis {
            ranges[k] = t as u64..t as u64 + 1;
        }
        if let Some(k) = self.c_axis {
            ranges[k] = c as u64..c as u64 + 1;
        }
        for i in 0..3 {
            ranges[self.zyx[i]] = start[i] as u64..end[i] as u64;
        }
        let e = |e: zarrs::array::ArrayError| zerr(&self.root, e);
        // the subset comes in the array's axis order; z, y, x are its last three in NGFF
        let v: Vec<f32> = match self.kind {
            Kind::U8 => self.array.retrieve_array_subset::<Vec<u8>>(&ranges).map_err(e)?.into_iter().map(|a| a as f32).collect(),
            Kind::U16 => self.array.retrieve_array_subset::<Vec<u16>>(&ranges).map_err(e)?.into_iter().map(|a| a as f32).collect(),
            Kind::U32 => self.array.retrieve_array_subset::<Vec<u32>>(&ranges).map_err(e)?.into_iter().map(|a| a as f32).collect(),
            Kind::I16 => self
                .array
                .retrieve_array_subset::<Vec<i16>>(&ranges)
                .map_err(e)?
                .into_iter()
                .map(|a| crate::io::tiff::signed_to_unsigned(a) as f32)
                .collect(),
            Kind::F32 => self.array.retrieve_array_subset::<Vec<f32>>(&ranges).map_err(e)?,
        };
        Ok(v)
    }
}

/// One volume (frame, channel) of an OME-Zarr image, read region by region.
pub struct ZarrSource<'a> {
    pub image: &'a OmeZarr,
    pub t: usize,
    pub c: usize,
}

impl crate::blocks::VolumeSource for ZarrSource<'_> {
    fn dims(&self) -> [usize; 3] {
        self.image.dims()
    }
    fn read(&mut self, start: [usize; 3], end: [usize; 3]) -> Result<Vec<f32>> {
        self.image.read(self.t, self.c, start, end)
    }
    fn for_each_plane(&mut self, visit: &mut dyn FnMut(&[f32]) -> Result<()>) -> Result<()> {
        // slabs of chunk depth (each chunk decoded once), cut into bands of rows so that
        // at most SCAN_VOXELS are held; the statistics take the values in any order
        let [nz, ny, nx] = self.dims();
        let depth = (self.image.chunks[self.image.zyx[0]] as usize).clamp(1, nz);
        let rows = (SCAN_VOXELS / (depth * nx).max(1)).clamp(1, ny);
        for z0 in (0..nz).step_by(depth) {
            let z1 = (z0 + depth).min(nz);
            for y0 in (0..ny).step_by(rows) {
                let y1 = (y0 + rows).min(ny);
                visit(&self.image.read(self.t, self.c, [z0, y0, 0], [z1, y1, nx])?)?;
            }
        }
        Ok(())
    }
    fn z_step(&self) -> usize {
        (self.image.chunks[self.image.zyx[0]] as usize).max(1)
    }
}

/// Where a label image goes.
pub enum LabelsTarget {
    /// A new OME-Zarr at this path, the label image at its root.
    NewImage(PathBuf),
    /// `labels/<name>` inside the image read.
    IntoInput { name: String },
}

impl LabelsTarget {
    /// Where the label image of `image` will be, checked before any work: never an
    /// existing image or label image, a label name that is a plain folder name.
    pub fn path(&self, image: &OmeZarr) -> Result<PathBuf> {
        match self {
            LabelsTarget::NewImage(p) => {
                if p.exists() {
                    return Err(Error::invalid(format!("{} exists: qcanet writes a new OME-Zarr and never replaces one", p.display())));
                }
                Ok(p.clone())
            }
            LabelsTarget::IntoInput { name } => {
                if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
                    return Err(Error::invalid(format!("label image name '{name}': a plain folder name")));
                }
                let target = image.root.join("labels").join(name);
                if target.exists() {
                    return Err(Error::invalid(format!(
                        "{} exists: choose another --labels-name (qcanet never replaces labels)",
                        target.display()
                    )));
                }
                Ok(target)
            }
        }
    }
}

/// A label image being written: level 0 takes the labels, [`LabelImage::finish`] writes the
/// other levels and puts the image in place.
pub struct LabelImage {
    /// The folder written into (a temporary name until finished).
    tmp: PathBuf,
    target: PathBuf,
    into_input: Option<(PathBuf, String)>,
    store: Arc<Store>,
    levels: Vec<Level>,
    axes: Vec<Axis>,
    chunks: Vec<u64>,
    /// Axis index of t (absent when the image has none) and of z, y, x in the label axes.
    t_axis: Option<usize>,
    zyx: [usize; 3],
    version: Ngff,
    finished: bool,
    /// Whether this value owns `tmp` (removes it when dropped unfinished); a resumable
    /// job's label image belongs to the job folder instead ([`LabelImage::create_in`]).
    owned: bool,
}

impl Drop for LabelImage {
    fn drop(&mut self) {
        // an unfinished image (an error, a cancellation) leaves nothing behind
        if self.owned && !self.finished {
            let _ = std::fs::remove_dir_all(&self.tmp);
        }
    }
}

/// A coordinate transformation with the entry of axis `drop` removed from its vector.
fn without_axis(t: &Value, drop: Option<usize>) -> Value {
    let mut t = t.clone();
    if let (Some(k), Some(m)) = (drop, t.as_object_mut()) {
        for key in ["scale", "translation"] {
            if let Some(Value::Array(v)) = m.get_mut(key) {
                if k < v.len() {
                    v.remove(k);
                }
            }
        }
    }
    t
}

fn axes_json(axes: &[Axis]) -> Value {
    Value::Array(
        axes.iter()
            .map(|a| {
                let mut m = Map::new();
                m.insert("name".into(), json!(a.name));
                if let Some(k) = &a.kind {
                    m.insert("type".into(), json!(k));
                }
                if let Some(u) = &a.unit {
                    m.insert("unit".into(), json!(u));
                }
                Value::Object(m)
            })
            .collect(),
    )
}

impl LabelImage {
    /// Prepares the label image of `image` (its axes without the channel, its levels and
    /// chunks), `max_label` deciding 16 or 32-bit labels.
    pub fn create(image: &OmeZarr, target: LabelsTarget, max_label: u32) -> Result<LabelImage> {
        let path = target.path(image)?;
        let parent = crate::io::atomic::folder_of(&path).to_path_buf();
        if matches!(target, LabelsTarget::IntoInput { .. }) {
            std::fs::create_dir_all(&parent).map_err(|e| Error::io(&parent, e))?;
        }
        let tmp = temporary_folder(&parent)?;
        // from here an error drops the image, which removes the temporary folder
        let image = Self::layout(image, target, tmp.clone(), true).inspect_err(|_| {
            let _ = std::fs::remove_dir_all(&tmp);
        })?;
        image.create_arrays(max_label)?;
        Ok(image)
    }

    /// [`LabelImage::create`] in the folder `folder` (created; it must not exist), which
    /// stays when this value is dropped: a job resumed by another process reopens it with
    /// [`LabelImage::reopen`], and [`LabelImage::finish`] moves it to the target.
    /// Its chunks are one frame deep along t, so that processes writing different frames
    /// never share a chunk.
    pub fn create_in(image: &OmeZarr, target: LabelsTarget, folder: &Path, max_label: u32) -> Result<LabelImage> {
        std::fs::create_dir(folder).map_err(|e| Error::io(folder, e))?;
        let image = Self::layout(image, target, folder.to_path_buf(), false)?;
        image.create_arrays(max_label)?;
        Ok(image)
    }

    /// The label image [`LabelImage::create_in`] made in `folder`.
    pub fn reopen(image: &OmeZarr, target: LabelsTarget, folder: &Path) -> Result<LabelImage> {
        Self::layout(image, target, folder.to_path_buf(), false)
    }

    /// Puts a label image already moved to `target` in place for good: lists it in the
    /// input's `labels/` when it was written there (what [`LabelImage::finish`] does after
    /// the move; for a job resumed after a failure between the two).
    pub fn list_in_input(image: &OmeZarr, target: &LabelsTarget) -> Result<()> {
        match target {
            LabelsTarget::IntoInput { name } => add_to_labels_list(&image.root, image.version, name),
            LabelsTarget::NewImage(_) => Ok(()),
        }
    }

    /// The label image of `image` (its axes without the channel, its levels and chunks),
    /// written into `tmp`.
    fn layout(image: &OmeZarr, target: LabelsTarget, tmp: PathBuf, owned: bool) -> Result<LabelImage> {
        let keep: Vec<usize> = (0..image.axes.len()).filter(|&k| Some(k) != image.c_axis).collect();
        let axes: Vec<Axis> = keep.iter().map(|&k| image.axes[k].clone()).collect();
        let levels: Vec<Level> = image
            .levels
            .iter()
            .map(|l| Level {
                path: l.path.clone(),
                shape: keep.iter().map(|&k| l.shape[k]).collect(),
                scale: keep.iter().map(|&k| l.scale[k]).collect(),
                transforms: l.transforms.iter().map(|t| without_axis(t, image.c_axis)).collect(),
            })
            .collect();
        let mut chunks: Vec<u64> = keep.iter().map(|&k| image.chunks[k]).collect();
        let pos = |k: usize| keep.iter().position(|&x| x == k).expect("kept axis");
        let (t_axis, zyx) = (image.t_axis.map(pos), image.zyx.map(pos));
        if let (false, Some(k)) = (owned, t_axis) {
            // a job's frames are written by different processes: one frame per chunk
            chunks[k] = 1;
        }
        let target_path = target.path(image)?;
        let into_input = match target {
            LabelsTarget::NewImage(_) => None,
            LabelsTarget::IntoInput { name } => Some((image.root.clone(), name)),
        };
        Ok(LabelImage {
            store: store(&tmp)?,
            tmp,
            target: target_path,
            into_input,
            levels,
            axes,
            chunks,
            t_axis,
            zyx,
            version: image.version,
            finished: false,
            owned,
        })
    }

    /// Chunk shape of level 0 (z, y, x).
    pub fn chunk_zyx(&self) -> [usize; 3] {
        self.zyx.map(|k| self.chunks[k].max(1) as usize)
    }

    fn create_arrays(&self, max_label: u32) -> Result<()> {
        let (st, tmp, levels, axes, chunks) = (self.store.clone(), &self.tmp, &self.levels, &self.axes, &self.chunks);
        let kind = if crate::io::tiff::SampleKind::for_labels(max_label) == crate::io::tiff::SampleKind::U16 {
            zarrs::array::data_type::uint16()
        } else {
            zarrs::array::data_type::uint32()
        };
        let names: Vec<String> = axes.iter().map(|a| a.name.clone()).collect();
        for l in levels {
            let node = format!("/{}", l.path.trim_matches('/'));
            let chunk: Vec<u64> = chunks.iter().zip(&l.shape).map(|(&c, &s)| c.min(s).max(1)).collect();
            let arr = match self.version {
                Ngff::V05 => ArrayBuilder::new(l.shape.clone(), chunk, kind.clone(), 0u32)
                    .bytes_to_bytes_codecs(vec![Arc::new(zarrs::array::codec::ZstdCodec::new(3, false))])
                    .dimension_names(Some(names.clone()))
                    .build(st.clone(), &node)
                    .map_err(|e| zerr(tmp, e))?,
                Ngff::V04 => {
                    let dtype = if kind == zarrs::array::data_type::uint16() { "<u2" } else { "<u4" };
                    let meta: zarrs::array::ArrayMetadataV2 = serde_json::from_value(json!({
                        "zarr_format": 2, "shape": l.shape, "chunks": chunk, "dtype": dtype,
                        "compressor": {"id": "zstd", "level": 3}, "fill_value": 0, "order": "C",
                        "filters": null, "dimension_separator": "/"
                    }))
                    .map_err(|e| Error::Internal(format!("v2 array metadata: {e}")))?;
                    Array::new_with_metadata(st.clone(), &node, ArrayMetadata::V2(meta)).map_err(|e| zerr(tmp, e))?
                }
            };
            arr.store_metadata().map_err(|e| zerr(tmp, e))?;
        }
        Ok(())
    }

    fn array(&self, level: usize) -> Result<Array<Store>> {
        Array::open(self.store.clone(), &format!("/{}", self.levels[level].path.trim_matches('/'))).map_err(|e| zerr(&self.tmp, e))
    }

    /// The ranges of region `[start, end)` (z, y, x) of frame `t` in the label axes.
    fn ranges(&self, t: usize, start: [usize; 3], end: [usize; 3]) -> Vec<std::ops::Range<u64>> {
        let mut r = vec![0..1u64; self.axes.len()];
        if let Some(k) = self.t_axis {
            r[k] = t as u64..t as u64 + 1;
        }
        for i in 0..3 {
            r[self.zyx[i]] = start[i] as u64..end[i] as u64;
        }
        r
    }

    /// Writes level 0 of frame `t` from `labels_of(start, end)` (final labels of a region),
    /// chunk by chunk: each chunk written once, whole.
    pub fn write_level0(&self, t: usize, labels_of: &mut dyn FnMut([usize; 3], [usize; 3]) -> Result<Vec<u32>>) -> Result<()> {
        let dims: [usize; 3] = self.zyx.map(|k| self.levels[0].shape[k] as usize);
        self.write_level0_region(t, [0; 3], dims, labels_of)
    }

    /// [`LabelImage::write_level0`] over the chunks of the region `[from, to)`, which starts
    /// on a chunk boundary and ends on one or at the image's edge: chunks outside it are
    /// never touched, so processes writing disjoint regions never share a chunk.
    pub fn write_level0_region(
        &self,
        t: usize,
        from: [usize; 3],
        to: [usize; 3],
        labels_of: &mut dyn FnMut([usize; 3], [usize; 3]) -> Result<Vec<u32>>,
    ) -> Result<()> {
        let arr = self.array(0)?;
        let dims: [usize; 3] = self.zyx.map(|k| self.levels[0].shape[k] as usize);
        let chunk = self.chunk_zyx();
        if (0..3).any(|k| from[k] % chunk[k] != 0 || (to[k] % chunk[k] != 0 && to[k] != dims[k]) || to[k] > dims[k] || from[k] >= to[k]) {
            return Err(Error::Internal(format!("region {from:?}..{to:?} is not made of whole chunks of {chunk:?} in {dims:?}")));
        }
        let u16_labels = *arr.data_type() == zarrs::array::data_type::uint16();
        for z0 in (from[0]..to[0]).step_by(chunk[0]) {
            for y0 in (from[1]..to[1]).step_by(chunk[1]) {
                for x0 in (from[2]..to[2]).step_by(chunk[2]) {
                    let start = [z0, y0, x0];
                    let end: [usize; 3] = std::array::from_fn(|k| (start[k] + chunk[k]).min(dims[k]));
                    let v = labels_of(start, end)?;
                    let r = self.ranges(t, start, end);
                    let stored = if u16_labels {
                        arr.store_array_subset(&r, v.iter().map(|&l| l as u16).collect::<Vec<u16>>())
                    } else {
                        arr.store_array_subset(&r, v)
                    };
                    stored.map_err(|e| zerr(&self.tmp, e))?;
                }
            }
        }
        Ok(())
    }

    /// Writes the lower-resolution levels from level 0 (nearest neighbour at each level's
    /// own shape), the metadata, and moves the image into place.
    pub fn finish(mut self, frames: usize) -> Result<PathBuf> {
        let base = self.array(0)?;
        let u16_labels = *base.data_type() == zarrs::array::data_type::uint16();
        let d0: [u64; 3] = self.zyx.map(|k| self.levels[0].shape[k]);
        for li in 1..self.levels.len() {
            let arr = self.array(li)?;
            let d: [usize; 3] = self.zyx.map(|k| self.levels[li].shape[k] as usize);
            // level voxel i samples level 0 at the centre of its footprint
            let near: Vec<Vec<u64>> = (0..3)
                .map(|k| (0..d[k]).map(|i| (((i as f64 + 0.5) * d0[k] as f64 / d[k] as f64) as u64).min(d0[k] - 1)).collect())
                .collect();
            for t in 0..frames {
                for z in 0..d[0] {
                    // one plane of level 0 at a time
                    let r0 = self.ranges(t, [near[0][z] as usize, 0, 0], [near[0][z] as usize + 1, d0[1] as usize, d0[2] as usize]);
                    let plane: Vec<u32> = if u16_labels {
                        base.retrieve_array_subset::<Vec<u16>>(&r0).map_err(|e| zerr(&self.tmp, e))?.into_iter().map(u32::from).collect()
                    } else {
                        base.retrieve_array_subset::<Vec<u32>>(&r0).map_err(|e| zerr(&self.tmp, e))?
                    };
                    let mut out = Vec::with_capacity(d[1] * d[2]);
                    for &y in &near[1] {
                        for &x in &near[2] {
                            out.push(plane[(y * d0[2] + x) as usize]);
                        }
                    }
                    let r = self.ranges(t, [z, 0, 0], [z + 1, d[1], d[2]]);
                    let stored = if u16_labels {
                        arr.store_array_subset(&r, out.iter().map(|&l| l as u16).collect::<Vec<u16>>())
                    } else {
                        arr.store_array_subset(&r, out)
                    };
                    stored.map_err(|e| zerr(&self.tmp, e))?;
                }
            }
        }
        // the label image's group metadata
        let datasets: Vec<Value> = self
            .levels
            .iter()
            .map(|l| {
                let transforms =
                    if l.transforms.is_empty() { vec![json!({"type": "scale", "scale": l.scale})] } else { l.transforms.clone() };
                json!({"path": l.path, "coordinateTransformations": transforms})
            })
            .collect();
        let mut ms = json!({"name": "qcanet labels", "axes": axes_json(&self.axes), "datasets": datasets});
        let source = if self.into_input.is_some() { json!({"image": "../../"}) } else { Value::Null };
        let mut label = json!({"colors": [], "properties": []});
        if !source.is_null() {
            label["source"] = source;
        }
        label.as_object_mut().expect("object").retain(|_, v| !matches!(v, Value::Array(a) if a.is_empty()));
        let attrs = match self.version {
            Ngff::V04 => {
                ms["version"] = json!("0.4");
                label["version"] = json!("0.4");
                json!({"multiscales": [ms], "image-label": label})
            }
            Ngff::V05 => {
                json!({"ome": {"version": "0.5", "multiscales": [ms], "image-label": label}})
            }
        };
        write_group(&self.tmp, self.version, attrs)?;
        if self.into_input.is_some() {
            // the input's labels/ group may not exist yet
            let parent = crate::io::atomic::folder_of(&self.target);
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        // in place: the temporary folder renamed to the target (one step on one filesystem)
        std::fs::rename(&self.tmp, &self.target)
            .map_err(|e| Error::Write { path: self.target.display().to_string(), msg: e.to_string() })?;
        self.finished = true;
        if let Some((root, name)) = &self.into_input {
            add_to_labels_list(root, self.version, name)?;
        }
        Ok(self.target.clone())
    }
}

/// Writes a group's metadata with `attrs` (the whole attributes object).
fn write_group(folder: &Path, version: Ngff, attrs: Value) -> Result<()> {
    let st = store(folder)?;
    let attrs = attrs.as_object().cloned().unwrap_or_default();
    match version {
        Ngff::V05 => {
            GroupBuilder::new().attributes(attrs).build(st, "/").map_err(|e| zerr(folder, e))?.store_metadata().map_err(|e| zerr(folder, e))
        }
        Ngff::V04 => {
            let meta = zarrs::metadata::v2::GroupMetadataV2::new().with_attributes(attrs);
            Group::new_with_metadata(st, "/", meta.into()).map_err(|e| zerr(folder, e))?.store_metadata().map_err(|e| zerr(folder, e))
        }
    }
}

/// Adds `name` to the `labels` list of `root/labels`, keeping every other key; metadata
/// there that cannot be read is an error, never overwritten.
fn add_to_labels_list(root: &Path, version: Ngff, name: &str) -> Result<()> {
    let labels = root.join("labels");
    let has_metadata = [".zattrs", ".zgroup", "zarr.json"].iter().any(|f| labels.join(f).exists());
    let mut attrs: Map<String, Value> = if has_metadata {
        let st = store(&labels)?;
        Group::open(st, "/")
            .map_err(|e| zerr(&labels, format!("existing labels metadata cannot be read ({e}); nothing changed")))?
            .attributes()
            .clone()
    } else {
        Map::new()
    };
    let list = match version {
        Ngff::V04 => &mut attrs,
        Ngff::V05 => {
            let ome = attrs.entry("ome").or_insert_with(|| json!({"version": "0.5"}));
            ome.as_object_mut().ok_or_else(|| zerr(&labels, "labels metadata: 'ome' is not an object"))?
        }
    };
    let names = list.entry("labels").or_insert_with(|| json!([]));
    let names = names.as_array_mut().ok_or_else(|| zerr(&labels, "labels metadata: 'labels' is not a list"))?;
    if !names.iter().any(|n| n.as_str() == Some(name)) {
        names.push(json!(name));
    }
    write_group(&labels, version, Value::Object(attrs))
}

/// A new, empty folder in `dir` named as qcanet's temporary files are (removed by the next
/// run if this process dies; see [`crate::io::atomic`]).
fn temporary_folder(dir: &Path) -> Result<PathBuf> {
    let t = crate::io::atomic::scratch_dir(dir)?;
    Ok(t)
}
