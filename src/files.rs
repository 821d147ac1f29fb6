//! A stack on disk segmented into labels on disk, block by block, in memory bounded by
//! the block: what `qcanet segment` does with a large TIFF/BigTIFF or any OME-Zarr image,
//! and what hosts get through `qca_segment_file` (C), `Model.segment_file` (Python) and
//! the Fiji and MATLAB wrappers. One implementation for all of them.
//!
//! Each frame is streamed from the file through [`crate::blocks`] into a scratch file of
//! provisional labels beside the output, then the labels are written: a TIFF page by page
//! (BigTIFF when they could pass classic TIFF's 4 GiB), or an OME-Zarr label image chunk by
//! chunk (NGFF labels, [`crate::io::ome_zarr::LabelImage`]). With `--measure` one more
//! pass reads the final labels and the raw planes together and writes `NAME.csv`.
//!
//! [`FileSegmentation::new`] checks everything that can be checked before any work (the
//! channel, where the labels go, never onto an input, the block grid) so that a host can
//! show the plan; [`FileSegmentation::run`] does the work.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::blocks::{self, BlockChoice, BlockGrid, BlockMethod, BlockOptions, BlockRun, BlockTimes, ScratchLabels, TiffSource};
use crate::error::{Error, Result};
use crate::io::ome_zarr::{self, LabelsTarget, OmeZarr};
use crate::io::tiff;
use crate::model::Model;
use crate::plan::{Plan, SegmentParams, VoxelSource};
use crate::tiling::Progress;

/// A stack read region by region: a TIFF (classic or BigTIFF) or an OME-Zarr image.
pub enum FileInput {
    Tiff(tiff::StackInfo),
    Zarr(Box<OmeZarr>),
}

impl FileInput {
    /// Opens `path`'s header: an OME-Zarr folder, else a TIFF. Nothing else is read.
    pub fn open(path: &Path) -> Result<FileInput> {
        if ome_zarr::is_ome_zarr(path) {
            Ok(FileInput::Zarr(Box::new(OmeZarr::open(path)?)))
        } else {
            Ok(FileInput::Tiff(tiff::StackReader::open(path)?.info))
        }
    }
    pub fn dims(&self) -> [usize; 3] {
        match self {
            FileInput::Tiff(i) => i.dims,
            FileInput::Zarr(z) => z.dims(),
        }
    }
    pub fn frames(&self) -> usize {
        match self {
            FileInput::Tiff(i) => i.frames,
            FileInput::Zarr(z) => z.frames(),
        }
    }
    pub fn channels(&self) -> usize {
        match self {
            FileInput::Tiff(i) => i.channels,
            FileInput::Zarr(z) => z.channels(),
        }
    }
    /// The voxel size the file states (z, y, x micrometres), if any.
    pub fn voxel_size_um(&self) -> Option<[f64; 3]> {
        match self {
            FileInput::Tiff(i) => i.voxel_size_um(),
            FileInput::Zarr(z) => z.voxel_size_um(),
        }
    }
    pub fn frame_interval(&self) -> Option<tiff::FrameInterval> {
        match self {
            FileInput::Tiff(i) => i.frame_interval.clone(),
            FileInput::Zarr(z) => z.frame_interval(),
        }
    }
    pub fn is_zarr(&self) -> bool {
        matches!(self, FileInput::Zarr(_))
    }
    /// Whether `qcanet segment` takes this input block by block: OME-Zarr always (it is read
    /// region by region whatever its size), a TIFF as `choice` decides.
    pub fn blockwise(&self, choice: BlockChoice) -> bool {
        match self {
            FileInput::Tiff(i) => choice.blockwise(i.dims, i.decoded_bytes()),
            FileInput::Zarr(_) => true,
        }
    }
}

/// Whether `p` names an OME-Zarr output (a `.zarr` folder).
pub fn is_zarr_name(p: &Path) -> bool {
    p.extension().and_then(|e| e.to_str()).is_some_and(|e| e.eq_ignore_ascii_case("zarr"))
}

/// Where measurements of a result go: NAME.csv beside it (`x.tif` gives `x.csv`, as does
/// `x.ome.zarr`; `x.ome.tif` keeps giving `x.ome.csv`).
pub fn measurements_path(result: &Path) -> PathBuf {
    let name = result.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let lower = name.to_ascii_lowercase();
    match [".ome.zarr", ".zarr"].iter().find(|s| lower.ends_with(*s) && lower.len() > s.len()) {
        Some(suffix) => result.with_file_name(format!("{}.csv", &name[..name.len() - suffix.len()])),
        None => result.with_extension("csv"),
    }
}

/// Refuses to write `out` over one of `inputs` (the same file through any link or path).
pub fn not_an_input(out: &Path, inputs: &[&Path]) -> Result<()> {
    match inputs.iter().find(|i| crate::io::atomic::same_file(out, i)) {
        Some(i) => Err(Error::invalid(format!(
            "{} is an input ({}): qcanet never writes over its inputs; choose another output",
            out.display(),
            i.display()
        ))),
        None => Ok(()),
    }
}

/// Appends one frame's measurements to a CSV with a leading `frame` column (the header
/// once, with frame 0).
pub fn push_frame_csv(csv: &mut String, t: usize, nuclei: &[crate::Nucleus]) {
    for (k, line) in crate::measure::to_csv(nuclei).lines().enumerate() {
        if k > 0 {
            csv.push_str(&format!("{t},{line}\n"));
        } else if t == 0 {
            csv.push_str(&format!("frame,{line}\n"));
        }
    }
}

/// Where a file's labels go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileTarget {
    /// A new file: a TIFF (`.tif`, BigTIFF when large) or, for an OME-Zarr input, a new
    /// OME-Zarr (`.zarr`).
    File(PathBuf),
    /// `labels/<name>` inside the OME-Zarr input.
    IntoInput { name: String },
}

/// How a file is cut and what is written besides the labels. Every field has a default.
#[derive(Clone, Debug, Default)]
pub struct FileOptions {
    /// Channel holding the nuclei (0-based).
    pub channel: usize,
    /// Blocks: `Auto` (volumes over 32 M voxels, or too large to read whole, in blocks;
    /// others as one block), `Whole` (one block, the whole volume's labels), or the
    /// largest core.
    pub blocks: BlockChoice,
    /// Halo, block size budget and largest nucleus ([`BlockOptions`]); its `core` is
    /// ignored (`blocks` says it).
    pub block: BlockOptions,
    /// Also write the nuclei's measurements to [`measurements_path`] of the result.
    pub measure: bool,
}

/// What a file's segmentation did.
#[derive(Clone, Debug)]
pub struct FileReport {
    /// Nuclei per frame.
    pub nuclei: Vec<u32>,
    /// Where the labels are (for `IntoInput`, the label image inside the input).
    pub labels: PathBuf,
    /// The measurements' CSV, when asked for.
    pub measurements: Option<PathBuf>,
    /// Voxels of all frames.
    pub voxels: u64,
    pub blocks: usize,
    pub core: [usize; 3],
    pub halo: [usize; 3],
    pub method: BlockMethod,
    /// Seconds of the blocks' steps, summed over frames (`grid_s`: choosing the grid, once).
    pub times: BlockTimes,
    /// Seconds writing the labels (and the measurements), and of the whole call.
    pub write_s: f64,
    pub wall_s: f64,
}

impl FileReport {
    /// Voxels per second over the whole call, in millions.
    pub fn mvoxel_per_s(&self) -> f64 {
        self.voxels as f64 / self.wall_s.max(f64::MIN_POSITIVE) / 1e6
    }
}

/// One file's segmentation, checked and planned, before any work.
pub struct FileSegmentation<'m> {
    model: &'m Model,
    input: PathBuf,
    big: FileInput,
    target: FileTarget,
    /// The OME-Zarr label image's place, checked.
    labels_target: Option<LabelsTarget>,
    channel: usize,
    params: SegmentParams,
    opts: BlockOptions,
    method: BlockMethod,
    grid: BlockGrid,
    grid_s: f64,
    plan: Plan,
    measure: bool,
}

impl<'m> FileSegmentation<'m> {
    /// Opens `input`'s header and checks, before any work: the channel; that the labels'
    /// place is allowed (a TIFF's labels as TIFF, an OME-Zarr's as TIFF or OME-Zarr; a new
    /// label image never replaces one; never an input, nor the measurements); the
    /// parameters with the file's calibration (`params.voxel_size` wins over it); the
    /// block grid (on a resampled grid this measures the networks' context, once per model).
    pub fn new(model: &'m Model, input: &Path, target: FileTarget, params: &SegmentParams, options: &FileOptions) -> Result<Self> {
        Self::from_input(model, input, FileInput::open(input)?, target, params, options)
    }

    /// As [`FileSegmentation::new`], for an input whose header the caller has opened already
    /// (`big` is `input`'s).
    pub fn from_input(
        model: &'m Model,
        input: &Path,
        big: FileInput,
        target: FileTarget,
        params: &SegmentParams,
        options: &FileOptions,
    ) -> Result<Self> {
        let channel = options.channel;
        if channel >= big.channels() {
            return Err(Error::invalid(format!("channel {channel} requested, the stack has {}", big.channels())));
        }
        let labels_target = match (&target, &big) {
            (FileTarget::IntoInput { name }, FileInput::Zarr(_)) => Some(LabelsTarget::IntoInput { name: name.clone() }),
            (FileTarget::IntoInput { .. }, FileInput::Tiff(_)) => {
                return Err(Error::invalid(format!("{}: labels go into OME-Zarr images only; give an output file", input.display())))
            }
            (FileTarget::File(out), _) if is_zarr_name(out) => match &big {
                FileInput::Zarr(_) => Some(LabelsTarget::NewImage(out.clone())),
                FileInput::Tiff(_) => {
                    return Err(Error::invalid(format!(
                        "{}: OME-Zarr labels are written for OME-Zarr images; write the labels of a TIFF as .tif",
                        input.display()
                    )))
                }
            },
            (FileTarget::File(_), _) => None,
        };
        if let (Some(t), FileInput::Zarr(z)) = (&labels_target, &big) {
            t.path(z)?;
        }
        if let FileTarget::File(out) = &target {
            if out.as_os_str().is_empty() {
                return Err(Error::invalid("no output file named"));
            }
            not_an_input(out, &[input])?;
            let folder = crate::io::atomic::folder_of(out);
            if !folder.is_dir() {
                return Err(Error::io(folder, std::io::Error::new(std::io::ErrorKind::NotFound, "output folder does not exist")));
            }
        }
        if options.measure {
            // NAME.csv beside the labels (beside the input for labels into it): a file of
            // its own, never the input, never the labels
            let named = match &target {
                FileTarget::File(out) => out.as_path(),
                FileTarget::IntoInput { .. } => input,
            };
            let csv = measurements_path(named);
            if named.file_name().is_none() || csv == named || crate::io::atomic::same_file(&csv, named) {
                return Err(Error::invalid(format!(
                    "{}: the measurements would have no name of their own (NAME.csv beside it); name the {} (not . or .., not .csv)",
                    named.display(),
                    if matches!(target, FileTarget::File(_)) { "output" } else { "input image" }
                )));
            }
            not_an_input(&csv, &[input])?;
        }
        let dims = big.dims();
        let params = params.clone().calibrated(big.voxel_size_um());
        let mut opts = options.block.clone();
        opts.core = match options.blocks {
            BlockChoice::Core(c) => Some(c),
            BlockChoice::Whole => Some(dims),
            BlockChoice::Auto if big.blockwise(BlockChoice::Auto) => None,
            BlockChoice::Auto => Some(dims),
        };
        let t = Instant::now();
        let method = blocks::method_for(model, dims, &params)?;
        let grid = blocks::grid_for(model, dims, &params, &opts, method)?;
        let grid_s = t.elapsed().as_secs_f64();
        // the plan of one block says what the file's calibration resolves to
        let plan = model.plan(grid.block([0, 0, 0]).dims(), &params)?;
        Ok(FileSegmentation {
            model,
            input: input.to_path_buf(),
            big,
            target,
            labels_target,
            channel,
            params,
            opts,
            method,
            grid,
            grid_s,
            plan,
            measure: options.measure,
        })
    }

    pub fn input(&self) -> &FileInput {
        &self.big
    }
    pub fn grid(&self) -> &BlockGrid {
        &self.grid
    }
    pub fn method(&self) -> BlockMethod {
        self.method
    }
    /// The plan of one block (its grids, the voxel size and where it came from, tiles,
    /// post-processing).
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Segments every frame and writes the labels (and the measurements). `progress`
    /// gets the fraction done and may cancel (return false); then nothing is written and
    /// the scratch files are removed.
    pub fn run(self, progress: Option<Progress>) -> Result<FileReport> {
        let t0 = Instant::now();
        let dims = self.big.dims();
        let frames = self.big.frames();
        let used_voxel = (self.plan.voxel_size_source() != VoxelSource::Unknown).then_some(self.plan.input_voxel_size());
        // provisional labels beside the output; for labels into the input in the system's
        // temporary folder (never loose inside the input image)
        let scratch_dir = match &self.target {
            FileTarget::IntoInput { .. } => std::env::temp_dir(),
            FileTarget::File(out) => crate::io::atomic::folder_of(out).to_path_buf(),
        };
        let mut done: Vec<(ScratchLabels, BlockRun)> = Vec::with_capacity(frames);
        // one reader for every frame: the pages are walked once
        let mut reader = match &self.big {
            FileInput::Tiff(_) => Some(tiff::StackReader::open(&self.input)?),
            FileInput::Zarr(_) => None,
        };
        let (channel, params, opts) = (self.channel, &self.params, &self.opts);
        for t in 0..frames {
            let mut store = ScratchLabels::new(&scratch_dir, dims)?;
            let cb = |frac: f32| progress.is_none_or(|p| p((t as f32 + frac) / frames as f32));
            let run = match &self.big {
                FileInput::Tiff(_) => with_tiff(&mut reader, t, channel, |s| {
                    blocks::segment_blocks(self.model, s, &mut store, params, opts, Some(&scratch_dir), Some(&cb))
                })?,
                FileInput::Zarr(z) => {
                    let mut source = ome_zarr::ZarrSource { image: z, t, c: channel };
                    blocks::segment_blocks(self.model, &mut source, &mut store, params, opts, Some(&scratch_dir), Some(&cb))?
                }
            };
            done.push((store, run));
        }
        // measurements: the frames' final labels plane by plane against the raw planes
        // (one more pass over both, never a whole volume), written once the labels are
        let mut csv = String::new();
        if self.measure {
            let voxel = used_voxel.unwrap_or([1.0; 3]);
            for (t, (store, run)) in done.iter().enumerate() {
                let nuclei = match &self.big {
                    FileInput::Tiff(_) => with_tiff(&mut reader, t, channel, |s| store.measure(run, s, voxel))?,
                    FileInput::Zarr(z) => store.measure(run, &mut ome_zarr::ZarrSource { image: z, t, c: channel }, voxel)?,
                };
                push_frame_csv(&mut csv, t, &nuclei);
            }
        }
        let t_write = Instant::now();
        // the measurements wait in a part file beside their place until the labels are in
        // theirs: a call that fails while writing the labels leaves neither
        let measurements = match self.measure {
            true => {
                let at = match &self.target {
                    FileTarget::File(out) => measurements_path(out),
                    FileTarget::IntoInput { .. } => measurements_path(&self.input),
                };
                let mut part = crate::io::atomic::PartFile::create(&at)?;
                std::io::Write::write_all(part.file_mut(), csv.as_bytes()).map_err(|e| part.error(e))?;
                Some(part)
            }
            false => None,
        };
        let max = done.iter().map(|(_, r)| r.n_nuclei).max().unwrap_or(0);
        let labels = match (&self.big, self.labels_target) {
            (FileInput::Zarr(z), Some(target)) => {
                let path = target.path(z)?;
                let image = ome_zarr::LabelImage::create(z, target, max)?;
                for (t, (store, run)) in done.iter().enumerate() {
                    image.write_level0(t, &mut |start, end| {
                        let mut v = store.region(start, end)?;
                        run.apply(&mut v);
                        Ok(v)
                    })?;
                }
                image.finish(frames)?;
                path
            }
            _ => {
                let FileTarget::File(out) = &self.target else {
                    return Err(Error::Internal("labels into a TIFF input".into()));
                };
                let kind = tiff::SampleKind::for_labels(max);
                let layout = tiff::PageLayout { dims, frames, voxel_um: used_voxel, interval: self.big.frame_interval(), kind };
                let nz = dims[0];
                tiff::write_pages(out, &layout, |p| {
                    let (store, run) = &done[p / nz];
                    let mut plane = store.plane(p % nz)?;
                    run.apply(&mut plane);
                    Ok(tiff::label_page(&plane, kind))
                })?;
                out.clone()
            }
        };
        // a rename beside the part file: it fails only if the folder went away meanwhile
        let measurements = match measurements {
            Some(part) => {
                let at = part.target().to_path_buf();
                part.commit()?;
                Some(at)
            }
            None => None,
        };
        let write_s = t_write.elapsed().as_secs_f64();
        let mut times = BlockTimes::default();
        for (_, r) in &done {
            times += r.timings;
        }
        // the grid was chosen in `new` (each frame's run finds it again, cached)
        times.grid_s = self.grid_s;
        Ok(FileReport {
            nuclei: done.iter().map(|(_, r)| r.n_nuclei).collect(),
            labels,
            measurements,
            voxels: dims.iter().map(|&d| d as u64).product::<u64>() * frames as u64,
            blocks: self.grid.len(),
            core: self.grid.core,
            halo: self.grid.halo,
            method: self.method,
            times,
            write_s,
            wall_s: t0.elapsed().as_secs_f64() + self.grid_s,
        })
    }
}

/// Runs `f` on frame `t`, channel `c` of the TIFF `reader` holds, and gives the reader
/// back (one reader walks the pages of every frame).
fn with_tiff<T>(reader: &mut Option<tiff::StackReader>, t: usize, c: usize, f: impl FnOnce(&mut TiffSource) -> Result<T>) -> Result<T> {
    let r = reader.take().ok_or_else(|| Error::Internal("the TIFF reader is gone".into()))?;
    let mut source = TiffSource::new(r, t, c)?;
    let out = f(&mut source);
    *reader = Some(source.into_reader());
    out
}

/// Segments `input` into `target` in one call ([`FileSegmentation::new`], then `run`).
pub fn segment_file(
    model: &Model,
    input: &Path,
    target: FileTarget,
    params: &SegmentParams,
    options: &FileOptions,
    progress: Option<Progress>,
) -> Result<FileReport> {
    FileSegmentation::new(model, input, target, params, options)?.run(progress)
}
