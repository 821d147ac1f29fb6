//! `qcanet`: segment nuclei in 3D fluorescence stacks from the command line.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use qcanet::io::ome_zarr;
use qcanet::io::tiff::{self, Samples};
use qcanet::{
    Connectivity, Device, Error, Landscape, LoadOptions, MarkerMode, Model, Precision, Result, SegmentParams, Segmentation, VoxelSource,
};

#[path = "../cli/timelapse.rs"]
mod timelapse_cli;

#[derive(Parser)]
#[command(
    name = "qcanet",
    version,
    about = "Find and separate every nucleus in 3D fluorescence stacks (QCANet).",
    long_about = "Find and separate every nucleus in 3D fluorescence stacks (QCANet: a segmentation \
network, a centre-detection network and a marker watershed).\n\n\
Typical use:\n  qcanet segment embryo.tif -o embryo_labels.tif --voxel-size 1.75,0.8,0.8\n  \
qcanet measure embryo_labels.tif --image embryo.tif -o nuclei.csv\n  \
qcanet evaluate labels/ ground_truth/\n\n\
Voxel sizes are Z,Y,X in micrometres. Results are 16-bit label stacks (0 = background, 1..N = nuclei) \
that open in Fiji with the input's calibration."
)]
struct Cli {
    /// Path of libonnxruntime.so (default: ORT_DYLIB_PATH, beside qcanet, the system)
    #[arg(long, global = true, value_name = "FILE")]
    onnxruntime: Option<PathBuf>,
    /// Hide progress bars
    #[arg(long, short, global = true)]
    quiet: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Args)]
struct ModelArgs {
    /// NSN model (.onnx); a joint model needs no --ndn. Default: the embedded model
    #[arg(long, value_name = "FILE")]
    nsn: Option<PathBuf>,
    /// NDN model (.onnx)
    #[arg(long, value_name = "FILE", requires = "nsn")]
    ndn: Option<PathBuf>,
    /// Where the networks run: auto = CUDA when the GPU build of ONNX Runtime, a driver and
    /// a GPU are there (`make runtime-gpu`), else the CPU
    #[arg(long, value_name = "auto|cpu|cuda", default_value = "auto")]
    device: Device,
    /// CUDA device index
    #[arg(long, default_value_t = 0)]
    device_id: i32,
    /// Arithmetic: auto (int8 under OpenVINO on x86-64 CPUs with AVX2 for the embedded model,
    /// fp32 elsewhere), fp32 (the same labels on CPU and GPU), tf32 (TensorFloat-32 convolutions
    /// on NVIDIA GPUs) or int8 (the embedded model's int8 version on the CPU)
    #[arg(long, value_name = "auto|fp32|tf32|int8", default_value = "auto")]
    precision: Precision,
    /// Inference threads (0 = all cores)
    #[arg(long, default_value_t = 0)]
    threads: usize,
}

#[derive(clap::Args)]
struct PostArgs {
    /// Voxel size Z,Y,X in micrometres (overrides the file's calibration)
    #[arg(long, value_name = "Z,Y,X", value_parser = parse_triple_f64)]
    voxel_size: Option<[f64; 3]>,
    /// Threshold on the segmentation network's probability (0..1)
    #[arg(long, value_name = "P")]
    fg_threshold: Option<f64>,
    /// Threshold on the centre network's probability (0..1)
    #[arg(long, value_name = "P")]
    centre_threshold: Option<f64>,
    /// How nucleus markers are found: components (connected components of the thresholded
    /// centre map, QCANet's rule) or local-max (local maxima of the smoothed centre map)
    #[arg(long, value_name = "components|local-max")]
    markers: Option<MarkerMode>,
    /// Smoothing of the centre map before finding maxima, micrometres
    #[arg(long, value_name = "UM")]
    marker_sigma: Option<f64>,
    /// Landscape the watershed floods: distance (to the mask's edge, QCANet) or centre
    /// (the centre map itself)
    #[arg(long, value_name = "distance|centre")]
    landscape: Option<Landscape>,
    /// Nuclei smaller than this are dropped (cubic micrometres)
    #[arg(long, value_name = "UM3")]
    min_volume: Option<f64>,
    /// Keep holes in the nuclear mask
    #[arg(long)]
    no_fill_holes: bool,
    /// Watershed connectivity: 6, 18 or 26
    #[arg(long, value_name = "6|18|26")]
    connectivity: Option<Connectivity>,
    /// Tile size Z,Y,X (voxels of the model grid)
    #[arg(long, value_name = "Z,Y,X", value_parser = parse_triple_usize)]
    tile: Option<[usize; 3]>,
    /// Tile overlap Z,Y,X
    #[arg(long, value_name = "Z,Y,X", value_parser = parse_triple_usize)]
    overlap: Option<[usize; 3]>,
}

#[derive(clap::Args)]
struct BlockArgs {
    /// Segment block by block, streaming the stack from disk and the labels to it, in
    /// memory bounded by the block: auto (volumes over 32 M voxels, or too large to read
    /// whole), whole (never), or the largest block core Z,Y,X in voxels
    #[arg(long, value_name = "auto|whole|Z,Y,X", default_value = "auto")]
    blocks: qcanet::blocks::BlockChoice,
    /// Halo around each block core, Z,Y,X voxels (default: the radius of the largest
    /// nucleus plus the markers' reach; on a resampled grid also the networks' measured
    /// context)
    #[arg(long, value_name = "Z,Y,X", value_parser = parse_triple_usize)]
    halo: Option<[usize; 3]>,
    /// Voxels of one block, core and halo, when the core is chosen automatically (memory
    /// is about 40 bytes a voxel of the block)
    #[arg(long, value_name = "N")]
    block_voxels: Option<usize>,
    /// Diameter of the largest nucleus in micrometres (for the halo)
    #[arg(long, value_name = "UM")]
    max_nucleus: Option<f64>,
    /// OME-Zarr input: write the labels into the image's own `labels/` group (NGFF), under
    /// --labels-name, instead of a new OME-Zarr at -o
    #[arg(long)]
    labels_into_input: bool,
    /// Name of the label image written with --labels-into-input
    #[arg(long, value_name = "NAME", default_value = "qcanet")]
    labels_name: String,
}

impl BlockArgs {
    fn options(&self) -> qcanet::blocks::BlockOptions {
        let core = match self.blocks {
            qcanet::blocks::BlockChoice::Core(c) => Some(c),
            _ => None,
        };
        qcanet::blocks::BlockOptions { core, halo: self.halo, block_voxels: self.block_voxels, max_nucleus_um: self.max_nucleus }
    }
}

#[derive(Subcommand)]
enum Cmd {
    /// Segment stacks: one file, several files or a folder of TIFFs
    Segment {
        /// Input TIFF files or folders
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
        /// Output file (one input) or folder (several inputs or a folder): a .tif stack, or
        /// for an OME-Zarr input a .zarr label image (not needed with --labels-into-input)
        #[arg(short, long, required_unless_present = "labels_into_input")]
        output: Option<PathBuf>,
        /// Channel holding the nuclei (0-based) in multi-channel stacks
        #[arg(long, default_value_t = 0)]
        channel: usize,
        /// Also write per-nucleus measurements next to each result (NAME.csv)
        #[arg(long)]
        measure: bool,
        /// Print the median time of each stage per volume (prepare, network, post-processing)
        /// and the wall time per volume
        #[arg(long)]
        timings: bool,
        /// Stop at the first file that fails (default: go on, list the failures at the end)
        #[arg(long)]
        fail_fast: bool,
        /// Print each file's plan (grids, resampling, tiles, post-processing parameters)
        #[arg(long, short)]
        verbose: bool,
        #[command(flatten)]
        blocks: BlockArgs,
        #[command(flatten)]
        model: ModelArgs,
        #[command(flatten)]
        post: PostArgs,
    },
    /// What `segment` would do with a stack: input and model grids and where the voxel size
    /// comes from, resampling, tiles, post-processing with every default filled in
    Plan {
        input: PathBuf,
        /// Channel holding the nuclei (0-based) in multi-channel stacks
        #[arg(long, default_value_t = 0)]
        channel: usize,
        /// Print the plan as JSON
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        model: ModelArgs,
        #[command(flatten)]
        post: PostArgs,
    },
    /// Score predicted labels against ground truth (files or folders paired by name)
    Evaluate {
        pred: PathBuf,
        gt: PathBuf,
        /// Also write all scores as JSON
        #[arg(long, value_name = "FILE")]
        json: Option<PathBuf>,
    },
    /// How alike two segmentations of one stack are (CPU and GPU, blocks and whole): the share
    /// of foreground voxels whose nuclei match (each label of A to the label of B it overlaps
    /// most), and the nuclei in each
    Compare {
        a: PathBuf,
        b: PathBuf,
        /// Print the figures as JSON
        #[arg(long)]
        json: bool,
    },
    /// Per-nucleus volume, centroid, bounding box and intensity, as CSV
    Measure {
        labels: PathBuf,
        /// Raw image for intensities
        #[arg(long)]
        image: Option<PathBuf>,
        /// Voxel size Z,Y,X in micrometres (default: the file's calibration)
        #[arg(long, value_name = "Z,Y,X", value_parser = parse_triple_f64)]
        voxel_size: Option<[f64; 3]>,
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Follow nuclei through a segmented time lapse: CTC tracks (label masks whose values are
    /// track ids, res_track.txt), divisions, and the criteria of development per frame and
    /// per round of divisions (CSV tables and an SVG plot) in a new folder
    Track {
        /// Labels: a TZYX stack (e.g. from `segment`) or a folder of ZYX stacks sorted by name
        labels: PathBuf,
        /// Output folder (new, or empty)
        #[arg(short, long)]
        output: PathBuf,
        /// Raw time lapse (same frames) for mean intensities
        #[arg(long)]
        image: Option<PathBuf>,
        /// Channel of --image holding the nuclei (0-based)
        #[arg(long, default_value_t = 0)]
        channel: usize,
        /// Voxel size Z,Y,X in micrometres (default: the file's calibration)
        #[arg(long, value_name = "Z,Y,X", value_parser = parse_triple_f64)]
        voxel_size: Option<[f64; 3]>,
        #[command(flatten)]
        track: timelapse_cli::TrackArgs,
    },
    /// Segment every frame of a raw time lapse, follow the nuclei and compute the criteria of
    /// development, in one go (`segment` + `track`)
    Analyse {
        /// Raw time lapse: a TZYX stack or a folder of ZYX stacks sorted by name
        input: PathBuf,
        /// Output folder (new, or empty)
        #[arg(short, long)]
        output: PathBuf,
        /// Channel holding the nuclei (0-based) in multi-channel stacks
        #[arg(long, default_value_t = 0)]
        channel: usize,
        #[command(flatten)]
        track: timelapse_cli::TrackArgs,
        #[command(flatten)]
        model: ModelArgs,
        #[command(flatten)]
        post: PostArgs,
    },
    /// Generate a synthetic embryo (raw stack and ground-truth labels), or with --frames a
    /// time lapse of moving, dividing, dimming nuclei and its ground truth in the CTC layout
    Synth {
        #[arg(short, long)]
        output: PathBuf,
        /// Where to write the ground-truth labels (with --frames: a new folder, TRA/man_track*.tif
        /// and TRA/man_track.txt)
        #[arg(long)]
        labels: PathBuf,
        /// Nuclei (of the first frame with --frames) [default: 12, or 4 with --frames]
        #[arg(long)]
        nuclei: Option<usize>,
        /// Frames of a time lapse (1 = one volume)
        #[arg(long, default_value_t = 1)]
        frames: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Developmental time 0..1 (later = dimmer, smaller nuclei) of one volume [default: 0.3]
        #[arg(long)]
        time: Option<f64>,
        /// Z,Y,X voxels
        #[arg(long, value_parser = parse_triple_usize, default_value = "51,120,120")]
        dims: [usize; 3],
    },
    /// Segment a generated embryo with the embedded model and score it
    Demo {
        /// Keep the generated stacks and the result in this folder
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        model: ModelArgs,
    },
    /// Versions of qcanet, ONNX Runtime and the model
    Info {
        #[command(flatten)]
        model: ModelArgs,
    },
}

/// Three numbers; whether they make a voxel size is the plan's (or `measure`'s) check.
fn parse_triple_f64(s: &str) -> Result<[f64; 3]> {
    qcanet::vocab::parse_zyx("voxel size", s)
}
fn parse_triple_usize(s: &str) -> Result<[usize; 3]> {
    qcanet::vocab::parse_zyx("value", s)
}

/// Set by SIGINT/SIGTERM: the run stops at the next tile, writes nothing more, and the
/// temporary file of a write in progress is removed as it unwinds.
static INTERRUPTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

extern "C" fn on_interrupt(_: libc::c_int) {
    // a second signal ends the process at once (a stale .part file is cleaned next run)
    if INTERRUPTED.swap(true, std::sync::atomic::Ordering::SeqCst) {
        // SAFETY: _exit is async-signal-safe.
        unsafe { libc::_exit(130) };
    }
}

fn interrupted() -> bool {
    INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst)
}

fn main() -> ExitCode {
    // SAFETY: a signal action set before any thread starts. SIGPIPE back to the default, so
    // that `qcanet ... | head` ends quietly as other Unix tools do (Rust ignores SIGPIPE,
    // and a write to a closed pipe would panic).
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) if interrupted() => {
            eprintln!("qcanet: interrupted; results already written are complete, nothing half-written is left");
            ExitCode::from(130)
        }
        Err(e) => {
            eprintln!("qcanet: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    if let Some(p) = &cli.onnxruntime {
        let device = match &cli.cmd {
            Cmd::Segment { model, .. }
            | Cmd::Plan { model, .. }
            | Cmd::Analyse { model, .. }
            | Cmd::Demo { model, .. }
            | Cmd::Info { model } => model.device,
            _ => Device::Cpu,
        };
        qcanet::runtime::init_for(device, Some(p))?;
    }
    match cli.cmd {
        Cmd::Segment { inputs, output, channel, measure, timings, fail_fast, verbose, blocks, model, post } => segment(
            &inputs,
            output.as_deref(),
            channel,
            Outputs { csv: measure, timings, fail_fast, verbose },
            &blocks,
            &model,
            &post,
            cli.quiet,
        ),
        Cmd::Plan { input, channel, json, model, post } => plan_cmd(&input, channel, json, &model, &post),
        Cmd::Evaluate { pred, gt, json } => evaluate(&pred, &gt, json.as_deref()),
        Cmd::Compare { a, b, json } => compare(&a, &b, json),
        Cmd::Measure { labels, image, voxel_size, output } => measure_cmd(&labels, image.as_deref(), voxel_size, &output),
        Cmd::Track { labels, output, image, channel, voxel_size, track } => {
            timelapse_cli::track(&labels, &output, image.as_deref(), channel, voxel_size, &track, cli.quiet)
        }
        Cmd::Analyse { input, output, channel, track, model, post } => {
            timelapse_cli::analyse(&input, &output, channel, &model, &post, &track, cli.quiet)
        }
        Cmd::Synth { frames: 0, .. } => Err(Error::invalid("--frames must be at least 1")),
        Cmd::Synth { time: Some(_), frames: 2.., .. } => {
            Err(Error::invalid("--time sets one volume's stage; a time lapse (--frames) runs through its own stages"))
        }
        Cmd::Synth { output, labels, nuclei, frames, seed, dims, .. } if frames > 1 => {
            timelapse_cli::synth_series(&output, &labels, nuclei.unwrap_or(4), seed, dims, frames)
        }
        Cmd::Synth { output, labels, nuclei, seed, time, dims, .. } => {
            let time = time.unwrap_or(0.3);
            let v = qcanet::synth::generate(&qcanet::synth::SynthParams {
                dims,
                n_nuclei: nuclei.unwrap_or(12),
                seed,
                time,
                ..Default::default()
            });
            tiff::write(&output, &Samples::U16(v.image), v.dims, 1, Some(v.voxel_size))?;
            tiff::write_labels(&labels, &v.labels, v.dims, 1, Some(v.voxel_size))?;
            println!("{}: {} nuclei, {:?} voxels of {:?} um", output.display(), v.n_nuclei, v.dims, v.voxel_size);
            Ok(())
        }
        Cmd::Demo { out, model } => demo(out, &model),
        Cmd::Info { model } => info(&model),
    }
}

fn load_options(a: &ModelArgs) -> LoadOptions {
    LoadOptions { device: a.device, device_id: a.device_id, num_threads: a.threads, precision: a.precision }
}

fn load_model(a: &ModelArgs) -> Result<Model> {
    let opts = load_options(a);
    match &a.nsn {
        Some(n) => Model::load(n, a.ndn.as_deref(), &opts),
        None => Model::load_default(&opts),
    }
}

/// The caller's overrides; checking them is the plan's job.
fn params(p: &PostArgs, file_voxel: Option<[f64; 3]>) -> SegmentParams {
    SegmentParams {
        voxel_size: p.voxel_size,
        voxel_size_source: VoxelSource::Caller,
        fg_threshold: p.fg_threshold,
        centre_threshold: p.centre_threshold,
        markers: p.markers,
        marker_sigma_um: p.marker_sigma,
        landscape: p.landscape,
        fill_holes: p.no_fill_holes.then_some(false),
        min_volume_um3: p.min_volume,
        connectivity: p.connectivity,
        tile: p.tile,
        overlap: p.overlap,
    }
    .calibrated(file_voxel)
}

/// `qcanet plan`: the plan of one stack, as text or JSON.
fn plan_cmd(input: &Path, channel: usize, json: bool, ma: &ModelArgs, pa: &PostArgs) -> Result<()> {
    let stack = tiff::read(input)?;
    if channel >= stack.channels {
        return Err(Error::invalid(format!("channel {channel} requested, the stack has {}", stack.channels)));
    }
    let model = load_model(ma)?;
    let plan = model.plan(stack.dims, &params(pa, stack.voxel_size_um()))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&plan).map_err(|e| Error::Internal(e.to_string()))?);
    } else {
        println!("{}: {} frame(s), model {} on {}", input.display(), stack.frames, model.name, model.device_used());
        println!("{plan}");
    }
    Ok(())
}

fn is_tiff(p: &Path) -> bool {
    matches!(p.extension().and_then(|e| e.to_str()).map(|e| e.to_lowercase()).as_deref(), Some("tif" | "tiff"))
}

/// Expands folders into their TIFF files (sorted); files are kept as given.
fn expand_inputs(inputs: &[PathBuf]) -> Result<(Vec<PathBuf>, bool)> {
    let mut out = Vec::new();
    let mut had_dir = false;
    for p in inputs {
        if ome_zarr::is_ome_zarr(p) {
            out.push(p.clone());
        } else if p.is_dir() {
            had_dir = true;
            let mut v: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(|e| Error::io(p, e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|q| q.is_file() && is_tiff(q))
                .collect();
            v.sort();
            if v.is_empty() {
                return Err(Error::invalid(format!("{}: no .tif files in this folder", p.display())));
            }
            out.extend(v);
        } else if p.is_file() {
            out.push(p.clone());
        } else {
            return Err(Error::io(p, std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or folder")));
        }
    }
    Ok((out, had_dir))
}

fn bar(len: u64, quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let b = ProgressBar::new(len);
    b.set_style(ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}").unwrap());
    b
}

/// What `segment` writes besides the label stacks.
#[derive(Clone, Copy)]
struct Outputs {
    csv: bool,
    timings: bool,
    fail_fast: bool,
    verbose: bool,
}

/// One input file as the writer sees it.
struct FileJob {
    /// Position in the input list: the writer's key.
    index: usize,
    input: PathBuf,
    output: PathBuf,
    dims: [usize; 3],
    frames: usize,
    voxel_size: Option<[f64; 3]>,
    frame_interval: Option<tiff::FrameInterval>,
}

/// One frame's network outputs on their way to post-processing.
struct FrameJob {
    file: std::sync::Arc<FileJob>,
    frame: usize,
    probs: qcanet::Probabilities,
    /// The raw frame, kept for intensity measurements.
    raw: Option<Vec<f32>>,
}

/// A post-processed frame (or why it failed).
struct FrameDone {
    file: std::sync::Arc<FileJob>,
    frame: usize,
    result: Result<(Segmentation, String)>,
}

/// How many frames are post-processed at once while the networks run on the next ones:
/// with a GPU the CPU's post-processing is the slow stage, so several run side by side.
fn post_workers(model: &Model) -> usize {
    let cores = qcanet::session::num_cpus();
    match model.device_used() {
        Device::Cuda => (cores / 2).clamp(1, 8),
        _ => 1,
    }
}

fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        0.5 * (v[m - 1] + v[m])
    }
}

/// Segments every input. The networks run on one frame after another in this thread;
/// post-processing, measurement and writing run on worker threads, so the next frame's
/// inference overlaps the last one's post-processing. A file that fails is reported and
/// the others go on; the command fails at the end if any did.
#[allow(clippy::too_many_arguments)]
fn segment(
    inputs: &[PathBuf],
    output: Option<&Path>,
    channel: usize,
    want: Outputs,
    ba: &BlockArgs,
    ma: &ModelArgs,
    pa: &PostArgs,
    quiet: bool,
) -> Result<()> {
    use std::collections::BTreeMap;
    use std::sync::mpsc;
    use std::sync::{Arc, Mutex};

    let (files, had_dir) = expand_inputs(inputs)?;
    // with --labels-into-input each result goes inside its own input image
    let (output, to_folder, outputs) = match (output, ba.labels_into_input) {
        (None, true) | (Some(_), true) => {
            if let Some(f) = files.iter().find(|f| !ome_zarr::is_ome_zarr(f)) {
                return Err(Error::invalid(format!("--labels-into-input: {} is not an OME-Zarr image", f.display())));
            }
            if output.is_some() {
                return Err(Error::invalid("--labels-into-input writes inside each input image: give no -o"));
            }
            if want.csv {
                // the CSVs go beside the inputs: never onto an input, never two into one
                claim_results(
                    &files,
                    |f| match f.file_name() {
                        Some(_) => Ok(vec![measurements_path(f)]),
                        None => Err(Error::invalid(format!("{}: name the image (not . or ..) for --measure's CSV", f.display()))),
                    },
                    "measured into",
                    "rename one",
                )?;
            }
            (Path::new("."), false, files.clone())
        }
        (Some(output), false) => {
            let to_folder = had_dir || files.len() > 1 || (output.is_dir() && !ome_zarr::is_ome_zarr(output));
            (output, to_folder, plan_outputs(&files, output, to_folder, want.csv)?)
        }
        (None, false) => return Err(Error::invalid("-o is needed (or --labels-into-input for OME-Zarr images)")),
    };
    if to_folder {
        std::fs::create_dir_all(output).map_err(|e| Error::io(output, e))?;
    } else if let Some(parent) = output.parent().filter(|p| !p.as_os_str().is_empty()) {
        if !parent.is_dir() {
            return Err(Error::io(parent, std::io::Error::new(std::io::ErrorKind::NotFound, "output folder does not exist")));
        }
    }
    // SIGINT/SIGTERM stop segmentation cleanly (the other commands are short and write once)
    // SAFETY: on_interrupt only touches an atomic and calls _exit.
    unsafe {
        libc::signal(libc::SIGINT, on_interrupt as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_interrupt as *const () as libc::sighandler_t);
    }
    let t_load = Instant::now();
    let model = load_model(ma)?;
    let load_s = t_load.elapsed().as_secs_f64();
    if let (Some(note), false) = (model.fallback_note(), quiet) {
        eprintln!("note: {note}");
    }
    let workers = post_workers(&model);
    let pb = bar(files.len() as u64 * 100, quiet);
    let t0 = Instant::now();
    let mut failures: Vec<(PathBuf, Error)> = Vec::new();
    let mut total_nuclei = 0u64;
    // stacks segmented block by block go first, one at a time, each with all the cores;
    // the rest through the pipeline below
    let all_files = files.len();
    let (mut streamed_ok, mut streamed_tried) = (0usize, 0usize);
    let mut keep = Vec::new();
    for (i, (f, out)) in files.iter().zip(&outputs).enumerate() {
        let big = match FileInput::open(f) {
            Ok(b) => b,
            Err(e) => {
                // tried (its header), so not "not attempted" in the summary
                streamed_tried += 1;
                failures.push((f.clone(), e));
                continue;
            }
        };
        if !big.is_zarr() && is_zarr_name(out) {
            streamed_tried += 1;
            failures.push((
                f.clone(),
                Error::invalid(format!(
                    "{}: OME-Zarr labels are written for OME-Zarr images; write the labels of a TIFF as .tif",
                    f.display()
                )),
            ));
            continue;
        }
        if !big.blockwise(ba.blocks) {
            keep.push(i);
            continue;
        }
        if interrupted() || (want.fail_fast && !failures.is_empty()) {
            break;
        }
        streamed_tried += 1;
        let cb = |frac: f32| {
            pb.set_position(((streamed_tried - 1) as f64 * 100.0 + frac as f64 * 100.0) as u64);
            !interrupted()
        };
        match segment_streamed(&model, f, big, out, channel, &want, ba, pa, &cb, &pb, quiet) {
            Ok(counts) => {
                streamed_ok += 1;
                total_nuclei += counts.iter().map(|&c| c as u64).sum::<u64>();
                if !quiet {
                    let counts_s = if counts.len() == 1 { format!("{} nuclei", counts[0]) } else { format!("nuclei per frame {counts:?}") };
                    pb.suspend(|| eprintln!("{} -> {}: {counts_s} (block by block)", f.display(), out.display()));
                }
            }
            Err(e) => failures.push((f.clone(), e)),
        }
    }
    let files: Vec<PathBuf> = keep.iter().map(|&i| files[i].clone()).collect();
    let outputs: Vec<PathBuf> = keep.iter().map(|&i| outputs[i].clone()).collect();
    pb.set_position(streamed_tried as u64 * 100);
    let mut stage_times: Vec<qcanet::StageTimes> = Vec::new();
    let (mut read_times, mut write_times) = (Vec::new(), Vec::new());
    let mut volumes = 0usize;
    let (mut attempted, mut succeeded) = (0usize, 0usize);
    // set by the writer when a file fails, so that --fail-fast also stops on those
    let writer_failed = std::sync::atomic::AtomicBool::new(false);

    std::thread::scope(|sc| {
        // rendezvous channels: a frame's probabilities (8 bytes a voxel) wait in no queue, so
        // at most `workers` + 1 frames are in memory at once, and one decoded stack ahead
        let (job_tx, job_rx) = mpsc::sync_channel::<FrameJob>(0);
        let job_rx = Arc::new(Mutex::new(job_rx));
        let (done_tx, done_rx) = mpsc::channel::<FrameDone>();
        for _ in 0..workers {
            let (rx, tx, model) = (Arc::clone(&job_rx), done_tx.clone(), &model);
            sc.spawn(move || loop {
                let job = match rx.lock().unwrap_or_else(|e| e.into_inner()).recv() {
                    Ok(j) => j,
                    Err(_) => break,
                };
                let result = model.finish(job.probs).and_then(|seg| {
                    let mut csv = String::new();
                    if let Some(raw) = &job.raw {
                        let m = qcanet::measure(&seg.labels, job.file.dims, seg.plan.input_voxel_size(), Some(raw))?;
                        push_frame_csv(&mut csv, job.frame, &m);
                    }
                    Ok((seg, csv))
                });
                if tx.send(FrameDone { file: job.file, frame: job.frame, result }).is_err() {
                    break;
                }
            });
        }
        drop(done_tx);

        // the writer: gathers each file's frames in order, writes it when complete
        let writer = sc.spawn(|| {
            // per file: frames received so far, how many, the first error
            type Pending = (Vec<Option<(Segmentation, String)>>, usize, Option<Error>);
            let mut pending: BTreeMap<usize, Pending> = BTreeMap::new();
            let mut written = Vec::new();
            for d in done_rx {
                let key = d.file.index;
                let entry = pending.entry(key).or_insert_with(|| ((0..d.file.frames).map(|_| None).collect(), 0, None));
                entry.1 += 1;
                match d.result {
                    Ok(r) => entry.0[d.frame] = Some(r),
                    Err(e) => entry.2 = entry.2.take().or(Some(e)),
                }
                // a file whose inference failed part-way never completes: the producer
                // reports it, and its frames are dropped with `pending` at the end
                if entry.1 == d.file.frames {
                    let (frames, _, err) = pending.remove(&key).unwrap();
                    if let Some(e) = err {
                        writer_failed.store(true, std::sync::atomic::Ordering::SeqCst);
                        written.push((d.file.clone(), Err(e), Vec::new()));
                        continue;
                    }
                    let frames: Vec<(Segmentation, String)> = frames.into_iter().map(Option::unwrap).collect();
                    let counts: Vec<u32> = frames.iter().map(|(s, _)| s.n_nuclei).collect();
                    let times: Vec<qcanet::StageTimes> = frames.iter().map(|(s, _)| s.timings).collect();
                    let f = &d.file;
                    let mut labels = Vec::with_capacity(f.dims.iter().product::<usize>() * f.frames);
                    let mut csv = String::new();
                    for (s, c) in frames {
                        labels.extend(s.labels);
                        csv.push_str(&c);
                    }
                    let t_write = Instant::now();
                    let r = tiff::write_labels_timed(&f.output, &labels, f.dims, f.frames, f.voxel_size, f.frame_interval.as_ref())
                        .and_then(|_| {
                            if want.csv {
                                qcanet::io::atomic::write_bytes(&measurements_path(&f.output), csv.as_bytes())
                            } else {
                                Ok(())
                            }
                        })
                        .map(|_| (counts, t_write.elapsed().as_secs_f64()));
                    if r.is_err() {
                        writer_failed.store(true, std::sync::atomic::Ordering::SeqCst);
                    }
                    written.push((d.file.clone(), r, times));
                }
            }
            written
        });

        // the reader: decodes the next files while the networks run
        let (read_tx, read_rx) = mpsc::sync_channel::<Result<(tiff::Stack, f64)>>(0);
        let files_ref = &files;
        sc.spawn(move || {
            for f in files_ref {
                let t_read = Instant::now();
                let r = tiff::read(f).and_then(|stack| {
                    if channel >= stack.channels {
                        return Err(Error::invalid(format!("channel {channel} requested, the stack has {}", stack.channels)));
                    }
                    Ok((stack, t_read.elapsed().as_secs_f64()))
                });
                if read_tx.send(r).is_err() {
                    break;
                }
            }
        });

        // the networks, frame after frame
        for ((i, f), read) in files.iter().enumerate().zip(read_rx) {
            if interrupted() {
                failures.push((f.clone(), Error::Cancelled));
                break;
            }
            if want.fail_fast && (!failures.is_empty() || writer_failed.load(std::sync::atomic::Ordering::SeqCst)) {
                break;
            }
            attempted += 1;
            pb.set_message(f.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default());
            let stack = match read {
                Ok((s, read_s)) => {
                    read_times.push(read_s);
                    s
                }
                Err(e) => {
                    failures.push((f.clone(), e));
                    continue;
                }
            };
            let plan = match model.plan(stack.dims, &params(pa, stack.voxel_size_um())) {
                Ok(p) => p,
                Err(e) => {
                    failures.push((f.clone(), e));
                    continue;
                }
            };
            if want.verbose && !quiet {
                pb.suspend(|| eprintln!("{}:\n{plan}", f.display()));
            }
            if plan.voxel_size_source() == VoxelSource::Model && !quiet {
                pb.suspend(|| {
                    eprintln!(
                        "note: {} has no calibration (no length unit); assuming the model's voxel size {:?} um, written into the result (set --voxel-size)",
                        f.display(),
                        plan.input_voxel_size()
                    )
                });
            }
            // an uncalibrated file is taken to be on the model's grid (said above); that
            // size is what the result carries and what --measure uses
            let used_voxel = (plan.voxel_size_source() != VoxelSource::Unknown).then_some(plan.input_voxel_size());
            let job = Arc::new(FileJob {
                index: i,
                input: f.clone(),
                output: outputs[i].clone(),
                dims: stack.dims,
                frames: stack.frames,
                voxel_size: used_voxel,
                frame_interval: stack.frame_interval.clone(),
            });
            for t in 0..stack.frames {
                let r = stack.volume(t, channel).and_then(|v| {
                    let vol = v.to_f32();
                    let base = ((streamed_tried + i) * 100) as u64;
                    let frames = stack.frames as f32;
                    let cb = |frac: f32| {
                        pb.set_position(base + ((t as f32 + frac) / frames * 100.0) as u64);
                        !interrupted()
                    };
                    let probs = model.infer(&vol, plan.clone(), Some(&cb))?;
                    Ok((probs, if want.csv { Some(vol) } else { None }))
                });
                let (probs, raw) = match r {
                    Ok(x) => x,
                    Err(e) => {
                        // the writer never completes this file and drops its frames
                        failures.push((f.clone(), e));
                        break;
                    }
                };
                if job_tx.send(FrameJob { file: Arc::clone(&job), frame: t, probs, raw }).is_err() {
                    break;
                }
            }
            pb.set_position((streamed_tried + i + 1) as u64 * 100);
        }
        drop(job_tx);
        for (file, r, times) in writer.join().expect("writer thread") {
            match r {
                Ok((counts, write_s)) => {
                    write_times.push(write_s);
                    succeeded += 1;
                    total_nuclei += counts.iter().map(|&c| c as u64).sum::<u64>();
                    volumes += counts.len();
                    stage_times.extend(times);
                    let counts_s = if counts.len() == 1 { format!("{} nuclei", counts[0]) } else { format!("nuclei per frame {counts:?}") };
                    if !quiet {
                        pb.suspend(|| eprintln!("{} -> {}: {counts_s}", file.input.display(), file.output.display()));
                    }
                }
                Err(e) => failures.push((file.input.clone(), e)),
            }
        }
    });
    pb.finish_and_clear();
    let wall = t0.elapsed().as_secs_f64();
    let device = model.device_used();
    if !quiet {
        eprintln!(
            "segmented {} of {all_files} file(s), {total_nuclei} nuclei, in {wall:.2} s ({}, on {device})",
            succeeded + streamed_ok,
            model.name
        );
    }
    if want.timings && (volumes > 0 || streamed_tried == 0) {
        let col = |f: fn(&qcanet::StageTimes) -> f64| median(&mut stage_times.iter().map(f).collect::<Vec<_>>()) * 1e3;
        let (prep, net, post) = (col(|t| t.prepare_s), col(|t| t.network_s), col(|t| t.post_s));
        // the steps inside those stages, per volume; reading and writing per file
        let steps = [
            ("normalise", col(|t| t.normalise_s)),
            ("resample", col(|t| t.resample_s)),
            ("mask", col(|t| t.post.mask_s)),
            ("markers", col(|t| t.post.markers_s)),
            ("landscape", col(|t| t.post.landscape_s)),
            ("watershed", col(|t| t.post.watershed_s)),
            ("resample_back", col(|t| t.resample_back_s)),
            ("read", median(&mut read_times) * 1e3),
            ("write", median(&mut write_times) * 1e3),
        ];
        let steps: Vec<String> = steps.iter().map(|(k, v)| format!("median_{k}_ms={v:.1}")).collect();
        // on stdout, one line that scripts can parse
        println!(
            "timings: device={device} provider={} precision={} volumes={volumes} load_ms={:.1} median_prepare_ms={prep:.1} median_network_ms={net:.1} median_post_ms={post:.1} {} wall_s={wall:.3} wall_per_volume_ms={:.1} post_workers={workers} peak_rss_mb={:.0}",
            model.provider(),
            model.precision_used(),
            load_s * 1e3,
            steps.join(" "),
            wall * 1e3 / volumes.max(1) as f64,
            peak_rss_mb()
        );
    }
    failures.sort_by(|a, b| a.0.cmp(&b.0));
    failures.dedup_by(|a, b| a.0 == b.0);
    match failures.len() {
        0 => Ok(()),
        // one input: its error is the command's error, on one line
        1 if all_files == 1 => Err(failures.remove(0).1),
        n => {
            let mut list: Vec<String> = failures.iter().map(|(f, e)| format!("{}: {e}", f.display())).collect();
            let attempted = attempted + streamed_tried;
            if attempted < all_files {
                list.push(format!("{} file(s) not attempted after that", all_files - attempted));
            }
            Err(Error::invalid(format!("{n} of {all_files} file(s) failed:\n  {}", list.join("\n  "))))
        }
    }
}

/// Segments one stack block by block through [`qcanet::files`] (the same code hosts call
/// through `qca_segment_file`), with the CLI's messages around it. Nuclei per frame.
#[allow(clippy::too_many_arguments)]
fn segment_streamed(
    model: &Model,
    input: &Path,
    big: FileInput,
    output: &Path,
    channel: usize,
    want: &Outputs,
    ba: &BlockArgs,
    pa: &PostArgs,
    progress: qcanet::Progress,
    pb: &ProgressBar,
    quiet: bool,
) -> Result<Vec<u32>> {
    use qcanet::files::{FileOptions, FileSegmentation, FileTarget};
    let target = match ba.labels_into_input {
        true => FileTarget::IntoInput { name: ba.labels_name.clone() },
        false => FileTarget::File(output.to_path_buf()),
    };
    let options = FileOptions { channel, blocks: ba.blocks, block: ba.options(), measure: want.csv };
    let job = FileSegmentation::from_input(model, input, big, target, &params(pa, None), &options)?;
    let plan = job.plan();
    if want.verbose && !quiet {
        let grid = job.grid();
        pb.suspend(|| {
            eprintln!(
                "{}:\n{plan}\nblocks      {} of core {:?}, halo {:?} ({:?} along z, y, x), {}",
                input.display(),
                grid.len(),
                grid.core,
                grid.halo,
                grid.count,
                match job.method() {
                    qcanet::blocks::BlockMethod::Lattice => "networks on the whole volume's tiles",
                    qcanet::blocks::BlockMethod::Independent => "each block through the networks on its own (resampled grid)",
                }
            )
        });
    }
    if plan.voxel_size_source() == VoxelSource::Model && !quiet {
        pb.suspend(|| {
            eprintln!(
                "note: {} has no calibration (no length unit); assuming the model's voxel size {:?} um, written into the result (set --voxel-size)",
                input.display(),
                plan.input_voxel_size()
            )
        });
    }
    let r = job.run(Some(progress))?;
    if want.timings {
        println!(
            "timings: blocks file={} device={} provider={} precision={} voxels={} blocks={} core={:?} halo={:?} scaling_s={:.2} grid_s={:.2} read_s={:.2} network_s={:.2} post_s={:.2} stitch_s={:.2} write_s={:.2} wall_s={:.2} mvoxel_per_s={:.3} peak_rss_mb={:.0}",
            input.display(),
            model.device_used(),
            model.provider(),
            model.precision_used(),
            r.voxels,
            r.blocks,
            r.core,
            r.halo,
            r.times.scaling_s,
            r.times.grid_s,
            r.times.read_s,
            r.times.network_s,
            r.times.post_s,
            r.times.stitch_s,
            r.write_s,
            r.wall_s,
            r.mvoxel_per_s(),
            peak_rss_mb()
        );
    }
    Ok(r.nuclei)
}

/// This process's peak resident memory so far (MB), from the kernel's accounting.
fn peak_rss_mb() -> f64 {
    // SAFETY: getrusage fills the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) } != 0 {
        return f64::NAN;
    }
    u.ru_maxrss as f64 / 1024.0
}

use qcanet::files::{is_zarr_name, measurements_path, not_an_input, push_frame_csv, FileInput};

/// Where each input's result goes. Refused before any work: a result that would land on
/// an input (`-o` naming an input, or the input folder itself), two inputs with one
/// result name, a `.tif` file name given for several results.
fn plan_outputs(files: &[PathBuf], output: &Path, to_folder: bool, csv: bool) -> Result<Vec<PathBuf>> {
    if to_folder && output.exists() && !output.is_dir() {
        return Err(Error::invalid(format!("{}: {} inputs need an output folder, and this is a file", output.display(), files.len())));
    }
    if to_folder && !output.exists() && is_tiff(output) {
        return Err(Error::invalid(format!(
            "-o {}: {} inputs give {} results; name a folder (without .tif), or segment one file at a time",
            output.display(),
            files.len(),
            files.len()
        )));
    }
    let mut outs = Vec::with_capacity(files.len());
    for f in files {
        let name = f.file_name().ok_or_else(|| Error::invalid(format!("{}: not a file name", f.display())))?;
        outs.push(if to_folder { output.join(name) } else { output.to_path_buf() });
    }
    let mut planned = outs.iter();
    claim_results(
        files,
        |_| {
            let o = planned.next().ok_or_else(|| Error::Internal("fewer results than inputs".into()))?;
            Ok(if csv { vec![o.clone(), measurements_path(o)] } else { vec![o.clone()] })
        },
        "written to",
        "choose other output names or folders",
    )?;
    Ok(outs)
}

/// Refuses, before any work, a result that would land on an input or that two inputs would
/// both write: `results(f)` lists the paths input `f` writes, in input order.
fn claim_results(files: &[PathBuf], mut results: impl FnMut(&Path) -> Result<Vec<PathBuf>>, verb: &str, advice: &str) -> Result<()> {
    let inputs: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    let mut claimed: std::collections::HashMap<PathBuf, &Path> = std::collections::HashMap::new();
    for f in files {
        for w in results(f)? {
            not_an_input(&w, &inputs)?;
            if let Some(prev) = claimed.insert(w.clone(), f) {
                return Err(Error::invalid(format!(
                    "{} and {} would both be {verb} {}; {advice}",
                    prev.display(),
                    f.display(),
                    w.display()
                )));
            }
        }
    }
    Ok(())
}

fn read_labels(p: &Path) -> Result<(Vec<u32>, [usize; 3], usize)> {
    let s = tiff::read(p)?;
    Ok((s.samples.to_labels()?, s.dims, s.frames * s.channels))
}

fn pairs(pred: &Path, gt: &Path) -> Result<Vec<(String, PathBuf, PathBuf)>> {
    if pred.is_dir() != gt.is_dir() {
        return Err(Error::invalid("give two files or two folders"));
    }
    if !pred.is_dir() {
        return Ok(vec![(pred.file_name().unwrap_or_default().to_string_lossy().into_owned(), pred.into(), gt.into())]);
    }
    let (files, _) = expand_inputs(&[pred.to_path_buf()])?;
    let mut v = Vec::new();
    for f in files {
        let name = f.file_name().unwrap().to_owned();
        let g = gt.join(&name);
        if g.is_file() {
            v.push((name.to_string_lossy().into_owned(), f, g));
        }
    }
    if v.is_empty() {
        return Err(Error::invalid(format!("no file names in common between {} and {}", pred.display(), gt.display())));
    }
    Ok(v)
}

fn compare(a: &Path, b: &Path, json: bool) -> Result<()> {
    let (la, da, fa) = read_labels(a)?;
    let (lb, db, fb) = read_labels(b)?;
    if (da, fa) != (db, fb) {
        return Err(Error::invalid(format!("{} is {fa} frame(s) of {da:?}, {} {fb} of {db:?}", a.display(), b.display())));
    }
    let r = qcanet::metrics::agreement(&la, &lb)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&r).map_err(|e| Error::Internal(e.to_string()))?);
    } else {
        println!(
            "agreement {:.4} % of {} foreground voxels ({} differ); nuclei {} in {}, {} in {}",
            r.agreement * 100.0,
            r.fg_voxels,
            r.differing_voxels,
            r.nuclei_a,
            a.display(),
            r.nuclei_b,
            b.display()
        );
    }
    Ok(())
}

fn evaluate(pred: &Path, gt: &Path, json: Option<&Path>) -> Result<()> {
    let pairs = pairs(pred, gt)?;
    if let Some(j) = json {
        let read: Vec<&Path> = pairs.iter().flat_map(|(_, p, g)| [p.as_path(), g.as_path()]).collect();
        not_an_input(j, &read)?;
    }
    let mut rows = Vec::new();
    println!(
        "{:<28} {:>6} {:>6} {:>6} {:>7} {:>6} {:>6} {:>6} {:>6} {:>5} {:>5}",
        "file", "IoU", "SEG", "MUCov", "CTC-SEG", "F1", "AP.5", "AP.7", "AP.9", "n_gt", "n_pred"
    );
    for (name, p, g) in pairs {
        let (a, da, fa) = read_labels(&p)?;
        let (b, db, fb) = read_labels(&g)?;
        if da != db || fa != fb {
            return Err(Error::invalid(format!("{name}: prediction {da:?}x{fa} and ground truth {db:?}x{fb} differ in size")));
        }
        let m = qcanet::evaluate(&a, &b)?;
        println!(
            "{:<28} {:>6.3} {:>6.3} {:>6.3} {:>7.3} {:>6.3} {:>6.3} {:>6.3} {:>6.3} {:>5} {:>5}",
            name, m.iou, m.seg, m.mucov, m.seg_ctc, m.f1, m.matching[0].ap, m.matching[2].ap, m.matching[4].ap, m.n_gt, m.n_pred
        );
        rows.push((name, m));
    }
    let k = rows.len() as f64;
    let mean = |f: &dyn Fn(&qcanet::Metrics) -> f64| rows.iter().map(|(_, m)| f(m)).sum::<f64>() / k;
    let ap_mean: Vec<f64> = (0..qcanet::metrics::MATCH_THRESHOLDS.len()).map(|i| mean(&|m| m.matching[i].ap)).collect();
    let means = serde_json::json!({
        "iou": mean(&|m| m.iou), "seg": mean(&|m| m.seg), "mucov": mean(&|m| m.mucov),
        "seg_ctc": mean(&|m| m.seg_ctc), "f1": mean(&|m| m.f1),
        "ap": qcanet::metrics::MATCH_THRESHOLDS.iter().zip(&ap_mean).map(|(t, a)| serde_json::json!({"threshold": t, "ap": a})).collect::<Vec<_>>(),
    });
    println!(
        "{:<28} {:>6.3} {:>6.3} {:>6.3} {:>7.3} {:>6.3} {:>6.3} {:>6.3} {:>6.3}",
        format!("mean of {}", rows.len()),
        mean(&|m| m.iou),
        mean(&|m| m.seg),
        mean(&|m| m.mucov),
        mean(&|m| m.seg_ctc),
        mean(&|m| m.f1),
        ap_mean[0],
        ap_mean[2],
        ap_mean[4]
    );
    // detection pooled over all files (counts summed), as StarDist's matching_dataset
    let pooled: Vec<qcanet::Matching> = (0..qcanet::metrics::MATCH_THRESHOLDS.len())
        .map(|i| qcanet::Matching::pooled(&rows.iter().map(|(_, m)| m.matching[i]).collect::<Vec<_>>()))
        .collect();
    println!("\npooled over {} file(s): one-to-one matching at IoU >= threshold", rows.len());
    println!(
        "{:>9} {:>6} {:>6} {:>6} {:>9} {:>6} {:>6} {:>6} {:>6} {:>6}",
        "threshold", "TP", "FP", "FN", "precision", "recall", "F1", "AP", "mIoU", "PQ"
    );
    for m in &pooled {
        println!(
            "{:>9.1} {:>6} {:>6} {:>6} {:>9.3} {:>6.3} {:>6.3} {:>6.3} {:>6.3} {:>6.3}",
            m.threshold, m.tp, m.fp, m.fn_, m.precision, m.recall, m.f1, m.ap, m.mean_matched_score, m.panoptic_quality
        );
    }
    if let Some(j) = json {
        let per: Vec<_> = rows.iter().map(|(n, m)| serde_json::json!({"file": n, "metrics": m})).collect();
        let doc = serde_json::json!({"files": per, "mean": means, "pooled": pooled});
        qcanet::io::atomic::write_bytes(j, serde_json::to_string_pretty(&doc).unwrap().as_bytes())?;
    }
    Ok(())
}

fn measure_cmd(labels: &Path, image: Option<&Path>, voxel: Option<[f64; 3]>, output: &Path) -> Result<()> {
    not_an_input(output, &[Some(labels), image].into_iter().flatten().collect::<Vec<_>>())?;
    let s = tiff::read(labels)?;
    let lab = s.samples.to_labels()?;
    let vox = voxel.or(s.voxel_size_um()).unwrap_or([1.0; 3]);
    let raw = match image {
        Some(p) => {
            let r = tiff::read(p)?;
            if r.dims != s.dims || r.frames != s.frames {
                return Err(Error::invalid(format!("{}: image {:?} does not match labels {:?}", p.display(), r.dims, s.dims)));
            }
            Some(r)
        }
        None => None,
    };
    let n = s.volume_len();
    let mut csv = String::new();
    let mut count = 0;
    for t in 0..s.frames {
        let iv = match &raw {
            Some(r) => Some(r.volume(t, 0)?.to_f32()),
            None => None,
        };
        let m = qcanet::measure(&lab[t * n..(t + 1) * n], s.dims, vox, iv.as_deref())?;
        count += m.len();
        push_frame_csv(&mut csv, t, &m);
    }
    qcanet::io::atomic::write_bytes(output, csv.as_bytes())?;
    println!("{count} nuclei -> {}", output.display());
    Ok(())
}

fn demo(out: Option<PathBuf>, ma: &ModelArgs) -> Result<()> {
    let keep;
    let dir = match out {
        Some(d) => {
            std::fs::create_dir_all(&d).map_err(|e| Error::io(&d, e))?;
            keep = None;
            d
        }
        None => {
            let t = tempfile::tempdir().map_err(|e| Error::io("temporary folder", e))?;
            let p = t.path().to_path_buf();
            keep = Some(t);
            p
        }
    };
    let v = qcanet::synth::generate(&qcanet::synth::SynthParams { n_nuclei: 16, seed: 7, time: 0.5, ..Default::default() });
    let raw = dir.join("demo_embryo.tif");
    let gt = dir.join("demo_ground_truth.tif");
    tiff::write(&raw, &Samples::U16(v.image.clone()), v.dims, 1, Some(v.voxel_size))?;
    tiff::write_labels(&gt, &v.labels, v.dims, 1, Some(v.voxel_size))?;
    println!("generated a synthetic embryo: {} nuclei, {:?} voxels (z,y,x) of {:?} um", v.n_nuclei, v.dims, v.voxel_size);
    let t0 = Instant::now();
    let model = load_model(ma)?;
    let t_load = t0.elapsed().as_secs_f64();
    let vol: Vec<f32> = v.image.iter().map(|&a| a as f32).collect();
    let p = SegmentParams { voxel_size: Some(v.voxel_size), ..Default::default() };
    let t1 = Instant::now();
    let seg = model.segment(&vol, v.dims, &p, None)?;
    let t_seg = t1.elapsed().as_secs_f64();
    let res = dir.join("demo_labels.tif");
    tiff::write_labels(&res, &seg.labels, v.dims, 1, Some(v.voxel_size))?;
    let m = qcanet::evaluate(&seg.labels, &v.labels)?;
    println!("model: {} (on {}); loaded in {t_load:.2} s", model.name, model.device_used());
    println!("segmented in {t_seg:.2} s: {} nuclei found, {} in the ground truth", seg.n_nuclei, v.n_nuclei);
    println!("IoU {:.3}  SEG {:.3}  MUCov {:.3}  CTC-SEG {:.3}  F1 {:.3}", m.iou, m.seg, m.mucov, m.seg_ctc, m.f1);
    if keep.is_none() {
        println!("files: {}, {}, {}", raw.display(), gt.display(), res.display());
    }
    Ok(())
}

fn info(ma: &ModelArgs) -> Result<()> {
    println!("qcanet {} (C ABI {})", qcanet::VERSION, qcanet::ABI_VERSION);
    let path = qcanet::runtime::init_for(load_options(ma).device, None)?;
    println!("ONNX Runtime: {path}");
    println!("  {}", qcanet::runtime::build_info().unwrap_or_default());
    let m = load_model(ma)?;
    println!("model: {} on {} ({} provider) in {}", m.name, m.device_used(), m.provider(), m.precision_used());
    if let Some(note) = m.fallback_note() {
        println!("  {note}");
    }
    match qcanet::runtime::find_gpu_runtime() {
        Ok(p) => println!("GPU build of ONNX Runtime: {}", p.display()),
        Err(e) => println!("GPU build of ONNX Runtime: none ({e})"),
    }
    let mut keys: Vec<_> = m.info().raw.iter().collect();
    keys.sort();
    for (k, v) in keys {
        println!("  {k} = {v}");
    }
    Ok(())
}
