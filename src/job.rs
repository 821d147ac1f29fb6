//! Resumable block jobs: one OME-Zarr image segmented block by block by any number of
//! processes, on one machine or many (the Dask workers of `qcanet.distributed`).
//!
//! A job is a folder beside the target (`<target>.qcanet-job`) that holds everything the
//! steps share, so that any process can run any step and a step that died is simply run
//! again:
//!
//! - `job.json`: what to segment (the image, channel, target, parameters, the block grid,
//!   the model's name and precision); written once by [`Job::create`].
//! - `scaling-t<T>.json`: frame T's intensity scaling, from the whole frame
//!   ([`Job::scale`]), so that every block is normalised as the whole frame would be.
//! - `blocks/t<T>-<Z>-<Y>-<X>.core` and `.faces`: one block's pieces (its core's labels,
//!   numbered 1..=n within the block) and its views of its faces ([`Job::segment_block`]).
//!   The `.faces` file is written after the `.core` one, so it marks the block done.
//! - `relabel-t<T>.bin`: frame T's pieces joined across faces and numbered
//!   ([`Job::stitch`], the rule of [`crate::blocks`]).
//! - `labels/`: the label image ([`Job::prepare_output`], [`Job::write_block`]), moved to
//!   the target by [`Job::finish`], which then removes the job folder.
//!
//! Every file is written whole or not at all ([`crate::io::atomic`]), so a process killed
//! mid-step leaves either nothing or a complete file. The blocks are aligned to the
//! image's chunks ([`BlockGrid::aligned`]): each chunk of the label image belongs to one
//! block, so concurrent writers never share a chunk. Steps are idempotent: a block already
//! done is skipped, and writing a block again writes the same values.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::blocks::{self, BlockGrid, BlockOptions, BlockPieces, BlockTimes, FaceView, Stitcher};
use crate::error::{Error, Result};
use crate::io::ome_zarr::{LabelImage, LabelsTarget, OmeZarr, ZarrSource};
use crate::model::Model;
use crate::plan::SegmentParams;
use crate::preprocess::Scaling;

/// Version of the job folder's layout (2: blocks on the whole frame's tile lattice).
const JOB_FORMAT: u32 = 2;
/// Suffix of a job folder.
pub const JOB_SUFFIX: &str = ".qcanet-job";
/// Most blocks of one frame (the stitch keeps one entry per piece of every block).
const MAX_BLOCKS: usize = 1 << 20;

/// Where a job's labels go.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum JobTarget {
    /// A new OME-Zarr at this path.
    NewImage { path: PathBuf },
    /// `labels/<name>` inside the input image.
    IntoInput { name: String },
}

impl JobTarget {
    fn labels_target(&self) -> LabelsTarget {
        match self {
            JobTarget::NewImage { path } => LabelsTarget::NewImage(path.clone()),
            JobTarget::IntoInput { name } => LabelsTarget::IntoInput { name: name.clone() },
        }
    }
}

/// What a job segments and how: `job.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobSpec {
    pub format: u32,
    /// The OME-Zarr image (absolute).
    pub source: PathBuf,
    pub channel: usize,
    pub target: JobTarget,
    /// The parameters, with the file's voxel size and the blocks' common tile filled in.
    pub params: SegmentParams,
    pub grid: BlockGrid,
    /// Where the blocks' network outputs come from ([`blocks::BlockMethod`]): with the
    /// lattice, any block step runs the frame's tiles it needs that no step has run yet
    /// and leaves them in `tiles-t<t>/` for the others (removed when the frame is stitched).
    pub method: blocks::BlockMethod,
    /// Tiles per network call: the whole run's, the same in every process.
    pub tile_batch: usize,
    pub frames: usize,
    /// The model's name and precision: every step checks that it runs the same.
    pub model: String,
    pub precision: String,
}

/// A job opened by one process.
pub struct Job {
    dir: PathBuf,
    spec: JobSpec,
    image: OmeZarr,
}

/// What [`Job::segment_block`] did.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct BlockDone {
    /// The block was done already (its files were there): nothing was computed.
    pub skipped: bool,
    /// Pieces in the block's core.
    pub pieces: u32,
    pub times: BlockTimes,
}

fn bad_file(path: &Path, what: &str) -> Error {
    Error::Unsupported(format!("{}: {what} (remove the job folder to start again)", path.display()))
}

fn absolute(p: &Path) -> Result<PathBuf> {
    std::path::absolute(p).map_err(|e| Error::io(p, e))
}

/// The job folder of a target: beside a new image, or beside the input image for labels
/// written into it (never loose inside the input).
pub fn job_dir(source: &Path, target: &JobTarget) -> Result<PathBuf> {
    let name = |p: &Path| p.file_name().map(|n| n.to_string_lossy().into_owned()).filter(|n| !n.is_empty() && n != "..");
    let (base, folder) = match target {
        JobTarget::NewImage { path } => {
            let p = absolute(path)?;
            (name(&p), crate::io::atomic::folder_of(&p).to_path_buf())
        }
        JobTarget::IntoInput { name: label } => {
            let p = absolute(source)?;
            (name(&p).map(|n| format!("{n}.labels-{label}")), crate::io::atomic::folder_of(&p).to_path_buf())
        }
    };
    let base = base.ok_or_else(|| Error::invalid(format!("{}: no file name for the job folder", source.display())))?;
    Ok(folder.join(format!("{base}{JOB_SUFFIX}")))
}

// --- little-endian u32 arrays, zstd-compressed ---

fn encode(words: &[u32]) -> Result<Vec<u8>> {
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    zstd::bulk::compress(&bytes, 1).map_err(|e| Error::Internal(format!("zstd: {e}")))
}

/// The words of a file written by [`encode`], at most `max_words` of them.
fn decode(path: &Path, max_words: usize) -> Result<Vec<u32>> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let limit = (max_words as u64).saturating_mul(4);
    let mut bytes = Vec::new();
    zstd::stream::read::Decoder::new(file)
        .map_err(|e| Error::io(path, e))?
        .take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|_| bad_file(path, "not a job file or damaged"))?;
    if bytes.len() as u64 > limit {
        return Err(bad_file(path, "larger than its block"));
    }
    if bytes.len() % 4 != 0 {
        return Err(bad_file(path, "truncated"));
    }
    Ok(bytes.chunks_exact(4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
}

/// Reads words off the front of a decoded file, checking lengths.
struct Words<'a> {
    rest: &'a [u32],
    path: &'a Path,
}

impl<'a> Words<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u32]> {
        if n > self.rest.len() {
            return Err(bad_file(self.path, "shorter than its header says"));
        }
        let (a, b) = self.rest.split_at(n);
        self.rest = b;
        Ok(a)
    }
    fn one(&mut self) -> Result<u32> {
        Ok(self.take(1)?[0])
    }
}

impl Job {
    /// Starts the job that segments `source` into `target` with `model`, or resumes it when
    /// its folder holds the same job (same image, channel, target, parameters, blocks and
    /// model); a folder holding another job is an error, never overwritten.
    pub fn create(
        model: &Model,
        source: &Path,
        target: JobTarget,
        channel: usize,
        params: &SegmentParams,
        opts: &BlockOptions,
    ) -> Result<Job> {
        let source = absolute(source)?;
        let image = OmeZarr::open(&source)?;
        if channel >= image.channels() {
            return Err(Error::invalid(format!("channel {channel} requested, {} has {}", source.display(), image.channels())));
        }
        let target = match target {
            JobTarget::NewImage { path } => JobTarget::NewImage { path: absolute(&path)? },
            t => t,
        };
        let dir = job_dir(&source, &target)?;
        if !dir.join("job.json").exists() {
            // a new job: its target is checked before any work (never an existing image or
            // label image); a job being resumed may have moved its labels there already
            target.labels_target().path(&image)?;
        }
        let dims = image.dims();
        let params = params.clone().calibrated(image.voxel_size_um());
        // the core asked for (or the one the memory budget gives), cut to whole chunks
        let method = blocks::method_for(model, dims, &params)?;
        let fitted = blocks::grid_for(model, dims, &params, opts, method)?;
        let want = BlockGrid { core: opts.core.unwrap_or(fitted.core), ..fitted };
        let grid = BlockGrid::aligned(&want, image.chunk_zyx())?;
        if grid.len() > MAX_BLOCKS {
            return Err(Error::invalid(format!("{} blocks per frame, more than {MAX_BLOCKS}: choose larger blocks", grid.len())));
        }
        let (params, tile_batch) = match method {
            blocks::BlockMethod::Lattice => {
                let batch = model.batch_size(model.tile_grid(dims, &params)?.tile);
                (params, batch)
            }
            blocks::BlockMethod::Independent => (blocks::with_common_tile(model, &grid, &params)?, 1),
        };
        let spec = JobSpec {
            format: JOB_FORMAT,
            source: source.clone(),
            channel,
            target,
            params,
            grid,
            method,
            tile_batch,
            frames: image.frames(),
            model: model.name.clone(),
            precision: model.precision_used().to_string(),
        };
        let spec_path = dir.join("job.json");
        if spec_path.exists() {
            let job = Job::open(&dir)?;
            // the tile batch is the creating process's device's; a job resumed from another
            // kind of device keeps it (its tiles were run that way)
            let spec = JobSpec { tile_batch: job.spec.tile_batch, ..spec };
            if job.spec != spec {
                return Err(Error::invalid(format!(
                    "{} holds another job (other image, target, parameters, blocks or model): finish it with the same settings, or remove the folder",
                    dir.display()
                )));
            }
            return Ok(job);
        }
        std::fs::create_dir_all(dir.join("blocks")).map_err(|e| Error::io(&dir, e))?;
        let text = serde_json::to_vec_pretty(&spec).map_err(|e| Error::Internal(format!("job.json: {e}")))?;
        crate::io::atomic::write_bytes(&spec_path, &text)?;
        Ok(Job { dir, spec, image })
    }

    /// Opens the job in `dir` (made by [`Job::create`]).
    pub fn open(dir: &Path) -> Result<Job> {
        let path = dir.join("job.json");
        let len = std::fs::metadata(&path).map_err(|e| Error::io(&path, e))?.len();
        if len > 1 << 20 {
            return Err(bad_file(&path, "larger than any job description"));
        }
        let text = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        let spec: JobSpec = serde_json::from_slice(&text).map_err(|e| bad_file(&path, &format!("not a qcanet job ({e})")))?;
        if spec.format != JOB_FORMAT {
            return Err(bad_file(&path, &format!("job format {} (this qcanet reads {JOB_FORMAT})", spec.format)));
        }
        let image = OmeZarr::open(&spec.source)?;
        if image.dims() != spec.grid.dims || image.frames() != spec.frames {
            return Err(bad_file(&path, "the image changed since the job started"));
        }
        // the grid as this job's rules make it, not as the file says
        let g = &spec.grid;
        let rebuilt = BlockGrid::aligned(g, image.chunk_zyx()).map_err(|_| bad_file(&path, "not a valid block grid"))?;
        if rebuilt != *g || g.len() > MAX_BLOCKS {
            return Err(bad_file(&path, "not a valid block grid"));
        }
        if !(1..=crate::session::MAX_BATCH).contains(&spec.tile_batch) {
            return Err(bad_file(&path, "not a valid tile batch"));
        }
        Ok(Job { dir: dir.to_path_buf(), spec, image })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn spec(&self) -> &JobSpec {
        &self.spec
    }

    /// Where the labels will be once finished.
    pub fn target_path(&self) -> Result<PathBuf> {
        match &self.spec.target {
            JobTarget::NewImage { path } => Ok(path.clone()),
            JobTarget::IntoInput { name } => Ok(self.spec.source.join("labels").join(name)),
        }
    }

    fn check_model(&self, model: &Model) -> Result<()> {
        let precision = model.precision_used().to_string();
        if model.name != self.spec.model || precision != self.spec.precision {
            return Err(Error::invalid(format!(
                "this job runs model '{}' in {}; this process has '{}' in {precision}: load the same model and precision everywhere",
                self.spec.model, self.spec.precision, model.name
            )));
        }
        Ok(())
    }

    fn check_frame(&self, t: usize) -> Result<()> {
        if t >= self.spec.frames {
            return Err(Error::invalid(format!("frame {t} of an image of {} frames", self.spec.frames)));
        }
        Ok(())
    }

    fn block(&self, t: usize, index: [usize; 3]) -> Result<blocks::Block> {
        self.check_frame(t)?;
        if (0..3).any(|k| index[k] >= self.spec.grid.count[k]) {
            return Err(Error::invalid(format!("block {index:?}: the grid has {:?} blocks along z, y, x", self.spec.grid.count)));
        }
        Ok(self.spec.grid.block(index))
    }

    fn scaling_path(&self, t: usize) -> PathBuf {
        self.dir.join(format!("scaling-t{t}.json"))
    }

    fn block_path(&self, t: usize, index: [usize; 3], ext: &str) -> PathBuf {
        self.dir.join("blocks").join(format!("t{t}-{}-{}-{}.{ext}", index[0], index[1], index[2]))
    }

    fn tiles_dir(&self, t: usize) -> PathBuf {
        self.dir.join(format!("tiles-t{t}"))
    }

    fn relabel_path(&self, t: usize) -> PathBuf {
        self.dir.join(format!("relabel-t{t}.bin"))
    }

    /// Frame `t`'s intensity scaling, computed from the whole frame (streamed) the first
    /// time and read back after.
    pub fn scale(&self, model: &Model, t: usize) -> Result<Scaling> {
        self.check_model(model)?;
        self.check_frame(t)?;
        let path = self.scaling_path(t);
        if path.exists() {
            return self.scaling(t);
        }
        let mut source = ZarrSource { image: &self.image, t, c: self.spec.channel };
        let s = model.scaling_streamed(&mut |visit| blocks::VolumeSource::for_each_plane(&mut source, visit))?;
        let text = serde_json::to_vec(&s).map_err(|e| Error::Internal(format!("scaling: {e}")))?;
        crate::io::atomic::write_bytes(&path, &text)?;
        Ok(s)
    }

    fn scaling(&self, t: usize) -> Result<Scaling> {
        let path = self.scaling_path(t);
        match std::fs::read(&path) {
            Ok(text) => serde_json::from_slice(&text).map_err(|_| bad_file(&path, "not a scaling")),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(Error::invalid(format!("frame {t} has no intensity scaling yet: run the scaling step (Job::scale) first")))
            }
            Err(e) => Err(Error::io(&path, e)),
        }
    }

    /// Whether block `index` of frame `t` is done.
    pub fn block_done(&self, t: usize, index: [usize; 3]) -> bool {
        self.block_path(t, index, "faces").exists()
    }

    /// Segments block `index` of frame `t` (skipped when done already).
    pub fn segment_block(&self, model: &Model, t: usize, index: [usize; 3]) -> Result<BlockDone> {
        self.check_model(model)?;
        let block = self.block(t, index)?;
        if self.block_done(t, index) {
            return Ok(BlockDone { skipped: true, ..BlockDone::default() });
        }
        let scaling = self.scaling(t)?;
        let mut times = BlockTimes::default();
        let mut source = ZarrSource { image: &self.image, t, c: self.spec.channel };
        let b = match self.spec.method {
            blocks::BlockMethod::Lattice => {
                let dir = self.tiles_dir(t);
                if let Err(e) = std::fs::create_dir(&dir) {
                    if e.kind() != std::io::ErrorKind::AlreadyExists {
                        return Err(Error::io(&dir, e));
                    }
                }
                let params = &self.spec.params;
                let store = blocks::TileStore::Shared(dir);
                let mut lattice = blocks::Lattice::new(model, &self.spec.grid, params, scaling, Some(self.spec.tile_batch), store, false)?;
                let position = (index[0] * self.spec.grid.count[1] + index[1]) * self.spec.grid.count[2] + index[2];
                let b = lattice.segment_block(model, &mut source, &block, position, params, &mut times, &|_| true)?;
                self.store_pieces(t, index, &b)?;
                // a tile goes once every block it reaches into is done (any process may be
                // the last): a frame keeps on disk only the tiles of blocks still to do
                for i in lattice.tiles_of(&block) {
                    if self.spec.grid.blocks().filter(|o| lattice.reaches(i, o)).all(|o| self.block_done(t, o.index)) {
                        lattice.drop_tile(i);
                    }
                }
                return Ok(BlockDone { skipped: false, pieces: b.pieces, times });
            }
            blocks::BlockMethod::Independent => blocks::segment_block(model, &mut source, &block, &self.spec.params, scaling, &mut times)?,
        };
        self.store_pieces(t, index, &b)?;
        Ok(BlockDone { skipped: false, pieces: b.pieces, times })
    }

    /// Stores a segmented block's core and faces (the faces last: their file marks the
    /// block done).
    fn store_pieces(&self, t: usize, index: [usize; 3], b: &BlockPieces) -> Result<()> {
        crate::io::atomic::write_bytes(&self.block_path(t, index, "core"), &encode(&b.core)?)?;
        // the faces last: their file marks the block done
        let mut words = vec![b.pieces];
        for f in b.lower.iter().chain(b.upper.iter()) {
            match f {
                Some(f) => {
                    words.push(u32::try_from(f.lower.len()).map_err(|_| Error::invalid("a block face of more than 2^32 voxels"))?);
                    words.extend_from_slice(&f.lower);
                    words.extend_from_slice(&f.upper);
                }
                None => words.push(0),
            }
        }
        crate::io::atomic::write_bytes(&self.block_path(t, index, "faces"), &encode(&words)?)
    }

    /// The pieces and faces of a done block (its core left empty).
    fn read_faces(&self, t: usize, block: &blocks::Block) -> Result<BlockPieces> {
        let path = self.block_path(t, block.index, "faces");
        if !path.exists() {
            return Err(Error::invalid(format!("frame {t}: block {:?} is not segmented yet", block.index)));
        }
        // a face plane is at most the core's largest face
        let c = block.core_dims();
        let face_max = (c[0] * c[1]).max(c[1] * c[2]).max(c[0] * c[2]);
        let words = decode(&path, 1 + 6 * (1 + 2 * face_max))?;
        let mut w = Words { rest: &words, path: &path };
        let pieces = w.one()?;
        if pieces as usize > c.iter().product::<usize>() {
            return Err(bad_file(&path, "more pieces than voxels"));
        }
        let mut faces: Vec<Option<FaceView>> = Vec::with_capacity(6);
        for _ in 0..6 {
            let n = w.one()? as usize;
            faces.push(if n == 0 { None } else { Some(FaceView { lower: w.take(n)?.to_vec(), upper: w.take(n)?.to_vec() }) });
        }
        if faces.iter().flatten().flat_map(|f| f.lower.iter().chain(&f.upper)).any(|&l| l > pieces) {
            return Err(bad_file(&path, "a face names a piece the block does not have"));
        }
        let mut it = faces.into_iter();
        let lower = [it.next().flatten(), it.next().flatten(), it.next().flatten()];
        let upper = [it.next().flatten(), it.next().flatten(), it.next().flatten()];
        Ok(BlockPieces { pieces, core: Vec::new(), lower, upper })
    }

    /// Joins frame `t`'s pieces across block faces and numbers its nuclei (once; read
    /// back after). Every block of the frame must be done. The number of nuclei.
    pub fn stitch(&self, t: usize) -> Result<u32> {
        self.check_frame(t)?;
        if self.relabel_path(t).exists() {
            // a stitch that died before removing the frame's tiles
            let _ = std::fs::remove_dir_all(self.tiles_dir(t));
            return Ok(self.relabel(t)?.0);
        }
        let mut stitch = Stitcher::default();
        let mut firsts = Vec::with_capacity(self.spec.grid.len());
        let mut total = 0u64;
        for block in self.spec.grid.blocks() {
            let mut b = self.read_faces(t, &block)?;
            total += b.pieces as u64;
            if total >= u32::MAX as u64 {
                return Err(Error::invalid(format!("frame {t} has more than 2^32 pieces")));
            }
            firsts.push(stitch.add(&block, &mut b));
        }
        let (map, n) = stitch.pieces.numbering();
        let mut words = vec![n, firsts.len() as u32];
        words.extend_from_slice(&firsts);
        words.extend_from_slice(&map);
        crate::io::atomic::write_bytes(&self.relabel_path(t), &encode(&words)?)?;
        // every block of the frame is done: its tiles are not read again
        let _ = std::fs::remove_dir_all(self.tiles_dir(t));
        Ok(n)
    }

    /// Frame `t`'s nuclei, the provisional id of each block's first piece, and the final
    /// label of every provisional id.
    fn relabel(&self, t: usize) -> Result<(u32, Vec<u32>, Vec<u32>)> {
        let path = self.relabel_path(t);
        if !path.exists() {
            return Err(Error::invalid(format!("frame {t} is not stitched yet")));
        }
        // pieces are u32 ids: the map has at most 2^32 entries, but a block cannot hold
        // more pieces than voxels
        let max_pieces = crate::error::voxel_count(self.spec.grid.dims)?.saturating_add(1);
        let words = decode(&path, 2 + self.spec.grid.len() + max_pieces)?;
        let mut w = Words { rest: &words, path: &path };
        let n = w.one()?;
        let blocks = w.one()? as usize;
        if blocks != self.spec.grid.len() {
            return Err(bad_file(&path, "written for another grid"));
        }
        let firsts = w.take(blocks)?.to_vec();
        let map = w.rest.to_vec();
        if map.iter().any(|&l| l > n) || firsts.iter().any(|&f| f as usize > map.len()) {
            return Err(bad_file(&path, "ids out of range"));
        }
        Ok((n, firsts, map))
    }

    fn labels_folder(&self) -> PathBuf {
        self.dir.join("labels")
    }

    /// Creates the label image (16-bit when every frame's nuclei fit, else 32-bit), once
    /// every frame is stitched; does nothing when it exists.
    pub fn prepare_output(&self) -> Result<()> {
        let folder = self.labels_folder();
        if folder.exists() {
            return Ok(());
        }
        let mut max = 0;
        for t in 0..self.spec.frames {
            max = max.max(self.relabel(t)?.0);
        }
        // built under another name and renamed: a process killed half way leaves no label
        // image that looks complete
        let part = self.dir.join("labels.part");
        if part.exists() {
            std::fs::remove_dir_all(&part).map_err(|e| Error::io(&part, e))?;
        }
        drop(LabelImage::create_in(&self.image, self.spec.target.labels_target(), &part, max)?);
        std::fs::rename(&part, &folder).map_err(|e| Error::io(&folder, e))
    }

    fn label_image(&self) -> Result<LabelImage> {
        if !self.labels_folder().exists() {
            return Err(Error::invalid("the label image is not prepared yet (Job::prepare_output)"));
        }
        LabelImage::reopen(&self.image, self.spec.target.labels_target(), &self.labels_folder())
    }

    /// Writes block `index` of frame `t` into the label image (its core's chunks, final
    /// labels). Writing it again writes the same values.
    pub fn write_block(&self, t: usize, index: [usize; 3]) -> Result<()> {
        let block = self.block(t, index)?;
        let (_, firsts, map) = self.relabel(t)?;
        let linear = (index[0] * self.spec.grid.count[1] + index[1]) * self.spec.grid.count[2] + index[2];
        let before = firsts[linear].checked_sub(1).ok_or_else(|| bad_file(&self.relabel_path(t), "a block without a first piece"))?;
        let path = self.block_path(t, index, "core");
        let c = block.core_dims();
        let mut core = decode(&path, c.iter().product())?;
        if core.len() != c.iter().product::<usize>() {
            return Err(bad_file(&path, "not the size of its block"));
        }
        let pieces = self.read_faces(t, &block)?.pieces;
        for l in &mut core {
            if *l > pieces {
                return Err(bad_file(&path, "a piece its block does not have"));
            }
            if *l != 0 {
                let id = l.checked_add(before).and_then(|id| map.get(id as usize));
                *l = *id.ok_or_else(|| bad_file(&path, "a piece the stitch does not know"))?;
            }
        }
        let image = self.label_image()?;
        image.write_level0_region(t, block.core_start, block.core_end, &mut |start, end| {
            let mut v = Vec::with_capacity((0..3).map(|k| end[k] - start[k]).product());
            for z in start[0]..end[0] {
                for y in start[1]..end[1] {
                    let row = ((z - block.core_start[0]) * c[1] + (y - block.core_start[1])) * c[2];
                    v.extend_from_slice(&core[row + start[2] - block.core_start[2]..row + end[2] - block.core_start[2]]);
                }
            }
            Ok(v)
        })
    }

    /// Writes the label image's other levels and metadata, moves it to the target and
    /// removes the job folder. Every block must be written.
    /// A finish that failed after the move (listing the labels in the input, removing the
    /// job folder) completes when run again.
    pub fn finish(self) -> Result<PathBuf> {
        let target = self.target_path()?;
        if !self.labels_folder().exists() && target.exists() {
            LabelImage::list_in_input(&self.image, &self.spec.target.labels_target())?;
        } else {
            self.label_image()?.finish(self.spec.frames)?;
        }
        std::fs::remove_dir_all(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        Ok(target)
    }

    /// Nuclei per frame (every frame stitched).
    pub fn nuclei(&self) -> Result<Vec<u32>> {
        (0..self.spec.frames).map(|t| self.relabel(t).map(|r| r.0)).collect()
    }
}
