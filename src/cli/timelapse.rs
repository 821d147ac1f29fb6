//! `qcanet track`, `qcanet analyse` and the generated time lapse of `qcanet synth --frames`:
//! from label frames (or raw frames) to CTC tracks, the criteria tables and their plot.

use std::path::{Path, PathBuf};

use qcanet::criteria::{criteria_csv, rounds_csv};
use qcanet::io::atomic::PartDir;
use qcanet::io::tiff::{self, FrameInterval, Samples, StackReader};
use qcanet::plots::criteria_svg;
use qcanet::timelapse::{Analysis, TimeLapse};
use qcanet::track::TrackParams;
use qcanet::{Error, Result, VoxelSource};

use crate::{bar, is_tiff, load_model, params, ModelArgs, PostArgs};

/// Linking parameters; defaults are [`TrackParams::default`]'s.
#[derive(clap::Args)]
pub struct TrackArgs {
    /// Farthest a nucleus moves between consecutive frames (micrometres)
    #[arg(long, value_name = "UM", default_value_t = TrackParams::default().max_displacement_um)]
    max_displacement: f64,
    /// Frames a nucleus may be missing and still be followed (0 = no gap closing)
    #[arg(long, value_name = "N", default_value_t = TrackParams::default().max_gap)]
    max_gap: usize,
    /// Farthest each daughter lies from her mother (micrometres; 0 = no divisions)
    #[arg(long, value_name = "UM", default_value_t = TrackParams::default().division_max_distance_um)]
    division_distance: f64,
    /// Least (daughter volumes summed) / (mother volume) of a division
    #[arg(long, value_name = "R", default_value_t = TrackParams::default().division_volume_ratio.0)]
    division_volume_min: f64,
    /// Most (daughter volumes summed) / (mother volume) of a division
    #[arg(long, value_name = "R", default_value_t = TrackParams::default().division_volume_ratio.1)]
    division_volume_max: f64,
    /// How much the voxel overlap of two nuclei lowers their link cost (0..1)
    #[arg(long, value_name = "W", default_value_t = TrackParams::default().overlap_weight)]
    overlap_weight: f64,
    /// Time between frames (default: the file's frame interval), for the time column and plot
    #[arg(long, value_name = "T")]
    interval: Option<f64>,
    /// Unit of --interval (default: the file's, else "frames" when no interval is known)
    #[arg(long, value_name = "UNIT")]
    time_unit: Option<String>,
}

impl TrackArgs {
    fn params(&self) -> TrackParams {
        TrackParams {
            max_displacement_um: self.max_displacement,
            max_gap: self.max_gap,
            division_max_distance_um: self.division_distance,
            division_volume_ratio: (self.division_volume_min, self.division_volume_max),
            overlap_weight: self.overlap_weight,
        }
    }

    /// Refuses a non-positive interval before any work (the library checks it again when linking).
    fn check_interval(&self) -> Result<()> {
        match self.interval {
            Some(i) if !(i.is_finite() && i > 0.0) => Err(Error::invalid(format!("--interval must be positive, got {i}"))),
            None if self.time_unit.is_some() => Err(Error::invalid("--time-unit needs --interval")),
            _ => Ok(()),
        }
    }

    /// The interval and its unit: the caller's, else the file's.
    fn interval(&self, file: Option<&FrameInterval>) -> Option<(f64, Option<String>)> {
        match (self.interval, file) {
            (Some(v), f) => Some((v, self.time_unit.clone().or_else(|| f.map(|f| f.unit.clone())))),
            (None, Some(f)) => Some((f.value, Some(self.time_unit.clone().unwrap_or_else(|| f.unit.clone())))),
            (None, None) => None,
        }
    }
}

/// The frames of a time lapse: one TZYX stack, or a folder of ZYX stacks sorted by name.
pub struct FrameSource {
    path: PathBuf,
    channel: usize,
    kind: Kind,
    pub frames: usize,
    pub voxel_um: Option<[f64; 3]>,
    pub interval: Option<FrameInterval>,
}

enum Kind {
    Stack(StackReader),
    Files(Vec<PathBuf>),
}

impl FrameSource {
    pub fn open(path: &Path, channel: usize) -> Result<FrameSource> {
        if path.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|e| Error::io(path, e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|q| q.is_file() && is_tiff(q))
                .collect();
            // t2 before t10, as a file manager (and ImageJ's image sequence) orders them
            files.sort_by(|a, b| natural_cmp(&a.to_string_lossy(), &b.to_string_lossy()));
            let first = files.first().ok_or_else(|| Error::invalid(format!("{}: no .tif files in this folder", path.display())))?;
            let info = StackReader::open(first)?.info;
            let frames = files.len();
            Ok(FrameSource {
                path: path.to_path_buf(),
                channel,
                voxel_um: info.voxel_size_um(),
                interval: info.frame_interval.clone(),
                frames,
                kind: Kind::Files(files),
            })
        } else {
            let r = StackReader::open(path)?;
            if channel >= r.info.channels {
                return Err(Error::invalid(format!("{}: channel {channel} asked for, the stack has {}", path.display(), r.info.channels)));
            }
            Ok(FrameSource {
                path: path.to_path_buf(),
                channel,
                voxel_um: r.info.voxel_size_um(),
                interval: r.info.frame_interval.clone(),
                frames: r.info.frames,
                kind: Kind::Stack(r),
            })
        }
    }

    /// Frame `t` and its dims.
    pub fn read(&mut self, t: usize) -> Result<(Samples, [usize; 3])> {
        match &mut self.kind {
            Kind::Stack(r) => Ok((r.read_volume(t, self.channel)?, r.info.dims)),
            Kind::Files(files) => {
                let f = &files[t];
                let mut r = StackReader::open(f)?;
                if r.info.frames != 1 {
                    return Err(Error::invalid(format!(
                        "{}: a frame of a folder must be one volume, it holds {} frames",
                        f.display(),
                        r.info.frames
                    )));
                }
                if self.channel >= r.info.channels {
                    return Err(Error::invalid(format!(
                        "{}: channel {} asked for, the stack has {}",
                        f.display(),
                        self.channel,
                        r.info.channels
                    )));
                }
                Ok((r.read_volume(0, self.channel)?, r.info.dims))
            }
        }
    }

    fn name(&self) -> String {
        self.path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()
    }
}

/// Names compared with their runs of digits as numbers: "t2" < "t10" < "t010b".
pub fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    use std::cmp::Ordering::Equal;
    let (mut x, mut y) = (a.chars().peekable(), b.chars().peekable());
    loop {
        match (x.peek().copied(), y.peek().copied()) {
            (None, None) => return Equal,
            (None, Some(_)) => return std::cmp::Ordering::Less,
            (Some(_), None) => return std::cmp::Ordering::Greater,
            (Some(c), Some(d)) if c.is_ascii_digit() && d.is_ascii_digit() => {
                let digits = |it: &mut std::iter::Peekable<std::str::Chars<'_>>| {
                    let mut run = String::new();
                    while let Some(ch) = it.peek().copied().filter(|ch| ch.is_ascii_digit()) {
                        run.push(ch);
                        it.next();
                    }
                    run
                };
                let (ra, rb) = (digits(&mut x), digits(&mut y));
                let (ta, tb) = (ra.trim_start_matches('0'), rb.trim_start_matches('0'));
                let o = ta.len().cmp(&tb.len()).then_with(|| ta.cmp(tb)).then_with(|| ra.len().cmp(&rb.len()));
                if o != Equal {
                    return o;
                }
            }
            (Some(c), Some(d)) => {
                if c != d {
                    return c.cmp(&d);
                }
                x.next();
                y.next();
            }
        }
    }
}

/// `mask000.tif`... with at least three digits (the CTC's names; more for longer series).
fn mask_name(t: usize, frames: usize) -> String {
    let width = frames.saturating_sub(1).to_string().len().max(3);
    format!("mask{t:0width$}.tif")
}

/// Links the measured frames and writes the CTC masks (the frames' labels as track ids),
/// `res_track.txt`, the tables and the plot into `out`; `labels_of(t)` gives frame t's
/// labels again. The last step of `track` and `analyse` alike.
fn link_and_write(
    out: &PartDir,
    tl: &TimeLapse,
    p: &TrackParams,
    interval: Option<(f64, Option<String>)>,
    title: &str,
    mut labels_of: impl FnMut(usize) -> Result<(Vec<u32>, [usize; 3])>,
    quiet: bool,
) -> Result<Analysis> {
    let a = tl.analyse(p, interval.as_ref().map(|i| i.0))?;
    let time_unit = interval.and_then(|i| i.1);
    let (frames, voxel) = (tl.len(), tl.voxel_size());
    let pb = bar(frames as u64, quiet);
    pb.set_message("writing tracks");
    for t in 0..frames {
        let (mut labels, dims) = labels_of(t)?;
        a.tracking.relabel(a.tracking.first_frame + t, &mut labels)?;
        tiff::write_labels(out.join(mask_name(t, frames)), &labels, dims, 1, Some(voxel))?;
        pb.inc(1);
    }
    pb.finish_and_clear();
    let write = |name: &str, text: String| qcanet::io::atomic::write_bytes(&out.join(name), text.as_bytes());
    write("res_track.txt", a.tracking.res_track_txt())?;
    write("tracks.csv", a.tracks_csv())?;
    write("divisions.csv", a.divisions_csv())?;
    write("criteria.csv", criteria_csv(&a.criteria))?;
    write("division_rounds.csv", rounds_csv(&a.rounds))?;
    write("criteria.svg", criteria_svg(&a.criteria, title, time_unit.as_deref())?)?;
    Ok(a)
}

fn summary(a: &Analysis, out: &Path) {
    let div = a.tracking.divisions().len();
    let counts: Vec<String> = a.criteria.iter().map(|c| c.nuclei.to_string()).collect();
    println!("{} frames, {} tracks, {div} divisions; nuclei per frame: {}", a.criteria.len(), a.tracking.tracks.len(), counts.join(" "));
    for r in &a.rounds {
        println!(
            "  division round {}: {} divisions, frames {}-{} (spread {} frames, SD {:.2})",
            r.round, r.divisions, r.first_frame, r.last_frame, r.spread_frames, r.sd_frames
        );
    }
    println!(
        "wrote {} (CTC masks + res_track.txt, tracks.csv, divisions.csv, criteria.csv, division_rounds.csv, criteria.svg)",
        out.display()
    );
}

/// `qcanet track`: label frames in, tracks and criteria out.
pub fn track(
    labels: &Path,
    output: &Path,
    image: Option<&Path>,
    channel: usize,
    voxel: Option<[f64; 3]>,
    ta: &TrackArgs,
    quiet: bool,
) -> Result<()> {
    let p = ta.params();
    p.validate()?;
    ta.check_interval()?;
    let mut src = FrameSource::open(labels, 0)?;
    let mut img = image.map(|i| FrameSource::open(i, channel)).transpose()?;
    if let Some(i) = &img {
        if i.frames != src.frames {
            return Err(Error::invalid(format!("{} frames of labels, {} of image", src.frames, i.frames)));
        }
    }
    let voxel = voxel.or(src.voxel_um).or_else(|| img.as_ref().and_then(|i| i.voxel_um)).ok_or_else(|| {
        Error::invalid(
            "the labels carry no voxel size in micrometres: give --voxel-size Z,Y,X (tracking measures distances in micrometres)",
        )
    })?;
    let interval = ta.interval(src.interval.as_ref().or(img.as_ref().and_then(|i| i.interval.as_ref())));
    let out = PartDir::create(output)?;
    let mut tl = TimeLapse::new(voxel, 0)?;
    let pb = bar(src.frames as u64, quiet);
    pb.set_message("measuring frames");
    for t in 0..src.frames {
        let (samples, dims) = src.read(t)?;
        let labels = samples.to_labels()?;
        let intensity = match &mut img {
            Some(i) => {
                let (s, d) = i.read(t)?;
                if d != dims {
                    return Err(Error::invalid(format!("frame {t}: labels {dims:?}, image {d:?}")));
                }
                Some(s.to_f32())
            }
            None => None,
        };
        tl.add_frame(&labels, dims, intensity.as_deref())?;
        pb.inc(1);
    }
    pb.finish_and_clear();
    let name = src.name();
    let a = link_and_write(&out, &tl, &p, interval, &name, |t| src.read(t).and_then(|(s, d)| Ok((s.to_labels()?, d))), quiet)?;
    out.commit()?;
    summary(&a, output);
    Ok(())
}

/// `qcanet analyse`: raw frames in; segmentation, tracks and criteria out.
#[allow(clippy::too_many_arguments)]
pub fn analyse(raw: &Path, output: &Path, channel: usize, ma: &ModelArgs, pa: &PostArgs, ta: &TrackArgs, quiet: bool) -> Result<()> {
    let p = ta.params();
    p.validate()?;
    ta.check_interval()?;
    let mut src = FrameSource::open(raw, channel)?;
    let interval = ta.interval(src.interval.as_ref());
    let model = load_model(ma)?;
    let out = PartDir::create(output)?;
    // provisional labels, one file per frame, until the tracks give them their ids
    let scratch = out.join(".segmentation");
    std::fs::create_dir(&scratch).map_err(|e| Error::io(&scratch, e))?;
    let frame_file = |t: usize| scratch.join(format!("{t:06}.tif"));
    let mut tl: Option<TimeLapse> = None;
    let pb = bar(src.frames as u64, quiet);
    pb.set_message("segmenting frames");
    for t in 0..src.frames {
        let (samples, dims) = src.read(t)?;
        let vol = samples.to_f32();
        drop(samples);
        let seg = model.segment(&vol, dims, &params(pa, src.voxel_um), None)?;
        let voxel = seg.plan.input_voxel_size();
        if tl.is_none() {
            if seg.plan.voxel_size_source() == VoxelSource::Model {
                pb.suspend(|| {
                    eprintln!("note: {} carries no voxel size; the model's {voxel:?} um is assumed (give --voxel-size)", raw.display())
                });
            }
            tl = Some(TimeLapse::new(voxel, 0)?);
        }
        let series = tl.as_mut().expect("created above");
        series.add_frame(&seg.labels, dims, Some(&vol))?;
        tiff::write_labels(frame_file(t), &seg.labels, dims, 1, Some(voxel))?;
        pb.inc(1);
    }
    pb.finish_and_clear();
    let tl = tl.ok_or_else(|| Error::invalid(format!("{}: no frames", raw.display())))?;
    let read_back = |t: usize| {
        let s = tiff::read(frame_file(t))?;
        Ok((s.samples.to_labels()?, s.dims))
    };
    let a = link_and_write(&out, &tl, &p, interval, &src.name(), read_back, quiet)?;
    std::fs::remove_dir_all(&scratch).map_err(|e| Error::io(&scratch, e))?;
    out.commit()?;
    summary(&a, output);
    Ok(())
}

/// `qcanet synth --frames N`: a generated time lapse (TZYX raw stack) and its ground truth
/// in the CTC layout (`TRA/man_trackNNN.tif`, `TRA/man_track.txt`).
pub fn synth_series(output: &Path, gt: &Path, nuclei: usize, seed: u64, dims: [usize; 3], frames: usize) -> Result<()> {
    // the raw stack is written after the ground-truth folder is in place, and never into it
    let gt_abs = std::path::absolute(gt).map_err(|e| Error::io(gt, e))?;
    let out_abs = std::path::absolute(output).map_err(|e| Error::io(output, e))?;
    if out_abs.starts_with(&gt_abs) {
        return Err(Error::invalid(format!(
            "{} lies inside the ground-truth folder {}; write it elsewhere",
            output.display(),
            gt.display()
        )));
    }
    let p = qcanet::synth_series::SeriesParams { dims, frames, start_nuclei: nuclei, seed, ..Default::default() };
    let s = qcanet::synth_series::generate_series(&p)?;
    let n = s.dims.iter().product::<usize>();
    let mut image = Vec::with_capacity(n * s.frames.len());
    for f in &s.frames {
        image.extend_from_slice(&f.image);
    }
    let out = PartDir::create(gt)?;
    let tra = out.join("TRA");
    std::fs::create_dir(&tra).map_err(|e| Error::io(&tra, e))?;
    for (t, f) in s.frames.iter().enumerate() {
        let name = mask_name(t, s.frames.len()).replace("mask", "man_track");
        tiff::write_labels(tra.join(name), &f.labels, s.dims, 1, Some(s.voxel_size))?;
    }
    qcanet::io::atomic::write_bytes(&tra.join("man_track.txt"), s.res_track_txt().as_bytes())?;
    out.commit()?;
    tiff::write(output, &Samples::U16(image), s.dims, s.frames.len(), Some(s.voxel_size))?;
    let divisions = qcanet::track::divisions(&s.tracks).len();
    println!(
        "{}: {} frames of {:?} voxels of {:?} um, {} tracks, {divisions} divisions; ground truth in {}",
        output.display(),
        s.frames.len(),
        s.dims,
        s.voxel_size,
        s.tracks.len(),
        gt.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_sort_with_numbers_as_numbers() {
        let mut v = vec!["t10.tif", "t2.tif", "t1.tif", "t002b.tif", "a.tif", "t02.tif"];
        v.sort_by(|a, b| super::natural_cmp(a, b));
        assert_eq!(v, vec!["a.tif", "t1.tif", "t2.tif", "t02.tif", "t002b.tif", "t10.tif"]);
    }
}
