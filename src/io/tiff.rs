//! Multi-page TIFF stacks (8/16/32-bit integer, 32-bit float; uncompressed, LZW,
//! Deflate) with ImageJ hyperstack metadata: slices, frames, channels, `spacing`,
//! `unit` and the X/Y resolution become a voxel size, and are written back so
//! that Fiji opens a result with the input's calibration. Writes are atomic: a
//! temporary file in the target folder, renamed over the target when complete.

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::Path;

use tiff::decoder::{Decoder, DecodingResult, Limits};
use tiff::encoder::{colortype, compression::DeflateLevel, Compression, Rational, TiffEncoder};
use tiff::tags::{ResolutionUnit, Tag};

use crate::error::{Error, Result};

/// Voxel values of a stack, in the file's own type.
#[derive(Clone, Debug, PartialEq)]
pub enum Samples {
    U8(Vec<u8>),
    U16(Vec<u16>),
    U32(Vec<u32>),
    F32(Vec<f32>),
}

impl Samples {
    pub fn len(&self) -> usize {
        match self {
            Samples::U8(v) => v.len(),
            Samples::U16(v) => v.len(),
            Samples::U32(v) => v.len(),
            Samples::F32(v) => v.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn slice_range(&self, start: usize, len: usize) -> Samples {
        match self {
            Samples::U8(v) => Samples::U8(v[start..start + len].to_vec()),
            Samples::U16(v) => Samples::U16(v[start..start + len].to_vec()),
            Samples::U32(v) => Samples::U32(v[start..start + len].to_vec()),
            Samples::F32(v) => Samples::F32(v[start..start + len].to_vec()),
        }
    }
    /// Values as f32 (labels and intensities alike).
    pub fn to_f32(&self) -> Vec<f32> {
        match self {
            Samples::U8(v) => v.iter().map(|&a| a as f32).collect(),
            Samples::U16(v) => v.iter().map(|&a| a as f32).collect(),
            Samples::U32(v) => v.iter().map(|&a| a as f32).collect(),
            Samples::F32(v) => v.clone(),
        }
    }
    /// Values as labels; float values must be whole and non-negative.
    pub fn to_labels(&self) -> Result<Vec<u32>> {
        Ok(match self {
            Samples::U8(v) => v.iter().map(|&a| a as u32).collect(),
            Samples::U16(v) => v.iter().map(|&a| a as u32).collect(),
            Samples::U32(v) => v.clone(),
            Samples::F32(v) => {
                if let Some(x) = v.iter().find(|a| !(a.is_finite() && **a >= 0.0 && a.fract() == 0.0)) {
                    return Err(Error::Unsupported(format!("label image holds the non-label value {x}")));
                }
                v.iter().map(|&a| a as u32).collect()
            }
        })
    }
}

/// A TIFF stack: `frames` volumes of `channels` channels of `dims` (z, y, x),
/// stored in ImageJ's order (channel fastest, then slice, then frame).
#[derive(Clone, Debug, PartialEq)]
pub struct Stack {
    pub samples: Samples,
    pub dims: [usize; 3],
    pub channels: usize,
    pub frames: usize,
    /// (z, y, x) in `unit`; `None` when the file carries no calibration.
    pub voxel_size: Option<[f64; 3]>,
    pub unit: Option<String>,
    /// Time between frames of a time lapse (ImageJ `finterval`/`tunit`), kept for the output.
    pub frame_interval: Option<FrameInterval>,
}

/// Time between the frames of a time lapse, in the file's time unit ("sec" when unnamed).
#[derive(Clone, Debug, PartialEq)]
pub struct FrameInterval {
    pub value: f64,
    pub unit: String,
}

impl Stack {
    pub fn volume_len(&self) -> usize {
        self.dims[0] * self.dims[1] * self.dims[2]
    }

    /// One (z, y, x) volume: frame `t`, channel `c`.
    pub fn volume(&self, t: usize, c: usize) -> Result<Samples> {
        if t >= self.frames || c >= self.channels {
            return Err(Error::invalid(format!(
                "frame {t} / channel {c} out of range ({} frames, {} channels)",
                self.frames, self.channels
            )));
        }
        if self.channels == 1 {
            let n = self.volume_len();
            return Ok(self.samples.slice_range(t * n, n));
        }
        let plane = self.dims[1] * self.dims[2];
        let pick = |z: usize| ((t * self.dims[0] + z) * self.channels + c) * plane;
        let mut parts = Vec::with_capacity(self.dims[0]);
        for z in 0..self.dims[0] {
            parts.push(self.samples.slice_range(pick(z), plane));
        }
        Ok(concat(parts))
    }

    /// Voxel size in micrometres, if the file has one in a length unit. A file without a
    /// unit (or in "pixel") is uncalibrated: its resolution tags, which every writer adds,
    /// say nothing about micrometres.
    pub fn voxel_size_um(&self) -> Option<[f64; 3]> {
        let v = self.voxel_size?;
        let f = length_unit_um(self.unit.as_deref()?)?;
        let um = [v[0] * f, v[1] * f, v[2] * f];
        um.iter().all(|a| a.is_finite() && *a > 0.0).then_some(um)
    }
}

/// Micrometres per one `unit`, for the length units ImageJ and TIFF writers use.
pub fn length_unit_um(unit: &str) -> Option<f64> {
    Some(match unit.trim().to_lowercase().as_str() {
        "micron" | "microns" | "um" | "µm" | "\u{03BC}m" | "micrometer" | "micrometre" | "micrometers" | "micrometres" => 1.0,
        "nm" | "nanometer" | "nanometre" | "nanometers" | "nanometres" => 1e-3,
        "mm" | "millimeter" | "millimetre" | "millimeters" | "millimetres" => 1e3,
        "cm" | "centimeter" | "centimetre" | "centimeters" | "centimetres" => 1e4,
        "m" | "meter" | "metre" | "meters" | "metres" => 1e6,
        "inch" | "inches" | "in" => 25_400.0,
        _ => return None,
    })
}

/// Most bytes a stack may decode to when read whole (larger stacks: see the README's "Limits").
pub const MAX_STACK_BYTES: u64 = 4 << 30;

fn concat(parts: Vec<Samples>) -> Samples {
    macro_rules! cat {
        ($var:ident) => {{
            let mut out = Vec::new();
            for p in parts {
                if let Samples::$var(v) = p {
                    out.extend(v);
                }
            }
            Samples::$var(out)
        }};
    }
    match parts.first() {
        Some(Samples::U8(_)) | None => cat!(U8),
        Some(Samples::U16(_)) => cat!(U16),
        Some(Samples::U32(_)) => cat!(U32),
        Some(Samples::F32(_)) => cat!(F32),
    }
}

/// What an ImageJ description says.
#[derive(Default, Debug)]
struct ImageJInfo {
    channels: Option<usize>,
    slices: Option<usize>,
    frames: Option<usize>,
    spacing: Option<f64>,
    unit: Option<String>,
    finterval: Option<f64>,
    tunit: Option<String>,
}

fn parse_imagej(desc: &str) -> Option<ImageJInfo> {
    if !desc.starts_with("ImageJ=") {
        return None;
    }
    let mut info = ImageJInfo::default();
    for line in desc.lines() {
        let Some((k, v)) = line.split_once('=') else { continue };
        let v = v.trim();
        match k.trim() {
            "channels" => info.channels = v.parse().ok(),
            "slices" => info.slices = v.parse().ok(),
            "frames" => info.frames = v.parse().ok(),
            "spacing" => info.spacing = v.parse().ok(),
            "unit" => info.unit = Some(v.replace("\\u00B5", "\u{00B5}")),
            "finterval" => info.finterval = v.parse().ok().filter(|f: &f64| f.is_finite() && *f > 0.0),
            "tunit" => info.tunit = Some(v.to_string()).filter(|u| !u.is_empty() && !u.contains('\n')),
            _ => {}
        }
    }
    Some(info)
}

fn tiff_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Tiff { path: path.display().to_string(), msg: e.to_string() }
}

fn rational_to_f64(v: &tiff::decoder::ifd::Value) -> Option<f64> {
    use tiff::decoder::ifd::Value;
    match v {
        Value::Rational(n, d) if *d != 0 => Some(*n as f64 / *d as f64),
        Value::RationalBig(n, d) if *d != 0 => Some(*n as f64 / *d as f64),
        Value::Float(f) => Some(*f as f64),
        Value::Double(f) => Some(*f),
        Value::Unsigned(u) => Some(*u as f64),
        _ => None,
    }
}

/// Reads a whole stack. A corrupt or truncated file, pages of differing size or
/// type, or a colour image is an error that names the file.
pub fn read(path: impl AsRef<Path>) -> Result<Stack> {
    let path = path.as_ref();
    // the `tiff` crate panics on some malformed tags (found by examples/fuzz_tiff.rs, e.g. a
    // SampleFormat tag with no values): a bad file is an error, never a crash
    crate::quiet_panic::catch(|| read_inner(path)).unwrap_or_else(|what| Err(tiff_err(path, format!("malformed file (the decoder failed: {what})"))))
}

fn read_inner(path: &Path) -> Result<Stack> {
    let f = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut dec = Decoder::new(BufReader::new(f)).map_err(|e| tiff_err(path, e))?;
    let mut limits = Limits::default();
    limits.decoding_buffer_size = 1 << 31;
    limits.intermediate_buffer_size = 1 << 31;
    dec = dec.with_limits(limits);
    let desc = dec.get_tag_ascii_string(Tag::ImageDescription).ok();
    let ij = desc.as_deref().and_then(parse_imagej);
    let xres = dec.find_tag(Tag::XResolution).ok().flatten().and_then(|v| rational_to_f64(&v));
    let yres = dec.find_tag(Tag::YResolution).ok().flatten().and_then(|v| rational_to_f64(&v));
    let (w, h) = dec.dimensions().map_err(|e| tiff_err(path, e))?;
    let ct = dec.colortype().map_err(|e| tiff_err(path, e))?;
    let tiff::ColorType::Gray(bits) = ct else {
        return Err(Error::Unsupported(format!(
            "{}: colour or multi-sample pages ({ct:?}) are not supported; save the nuclear channel as a grey stack",
            path.display()
        )));
    };
    let mut pages: Vec<DecodingResult> = Vec::new();
    let page_bytes = (w as u64) * (h as u64) * (bits as u64).div_ceil(8);
    let mut total: u64 = 0;
    loop {
        let (pw, ph) = dec.dimensions().map_err(|e| tiff_err(path, e))?;
        if (pw, ph) != (w, h) {
            return Err(tiff_err(path, format!("page {} is {pw}x{ph}, the first page {w}x{h}", pages.len())));
        }
        if dec.colortype().map_err(|e| tiff_err(path, e))? != ct {
            return Err(tiff_err(path, format!("page {} has another sample type", pages.len())));
        }
        // checked before decoding: a small file can claim pages of any size
        total = total.saturating_add(page_bytes);
        if total > MAX_STACK_BYTES {
            return Err(tiff_err(
                path,
                format!("more than {} GiB once decoded (at page {}): too large to read whole", MAX_STACK_BYTES >> 30, pages.len()),
            ));
        }
        pages.push(dec.read_image().map_err(|e| tiff_err(path, e))?);
        if !dec.more_images() {
            break;
        }
        dec.next_image().map_err(|e| tiff_err(path, e))?;
    }
    let n = pages.len();
    // every page has the first page's colour type (checked above), so pages of
    // another variant cannot occur here
    macro_rules! join {
        ($var:ident, $conv:expr) => {{
            let mut v = Vec::new();
            for p in pages {
                if let DecodingResult::$var(x) = p {
                    v.extend(x.into_iter().map($conv));
                }
            }
            v
        }};
    }
    let samples = match &pages[0] {
        DecodingResult::U8(_) => Samples::U8(join!(U8, |a| a)),
        DecodingResult::U16(_) => Samples::U16(join!(U16, |a| a)),
        DecodingResult::U32(_) => Samples::U32(join!(U32, |a| a)),
        DecodingResult::F32(_) => Samples::F32(join!(F32, |a| a)),
        // signed 16-bit: shift into the unsigned range, as ImageJ does
        DecodingResult::I16(_) => Samples::U16(join!(I16, |a: i16| (a as i32 + 32768) as u16)),
        _ => return Err(Error::Unsupported(format!("{}: sample format {ct:?} (use 8/16/32-bit grey)", path.display()))),
    };
    let plane = (w as usize) * (h as usize);
    if samples.len() != plane * n {
        return Err(Error::Unsupported(format!(
            "{}: colour or multi-sample pages ({ct:?}) are not supported; save the nuclear channel as a grey stack",
            path.display()
        )));
    }
    let (mut channels, mut slices, mut frames) = (1, n, 1);
    let mut spacing = None;
    let mut unit = None;
    let mut frame_interval = None;
    if let Some(info) = &ij {
        channels = info.channels.unwrap_or(1).max(1);
        frames = info.frames.unwrap_or(1).max(1);
        let cf = channels.checked_mul(frames).filter(|&cf| cf <= n);
        slices = info.slices.or(cf.map(|cf| n / cf)).unwrap_or(n).max(1);
        // numbers from the header are checked against the pages, never trusted for sizes
        if cf.and_then(|cf| cf.checked_mul(slices)) != Some(n) {
            // inconsistent header: trust the page count
            channels = 1;
            frames = 1;
            slices = n;
        }
        spacing = info.spacing;
        unit = info.unit.clone();
        frame_interval = info.finterval.map(|value| FrameInterval { value, unit: info.tunit.clone().unwrap_or_else(|| "sec".into()) });
    }
    let voxel_size = match (xres, yres) {
        (Some(xr), Some(yr)) if xr > 0.0 && yr > 0.0 && (ij.is_some() || spacing.is_some()) => {
            Some([spacing.unwrap_or(1.0), 1.0 / yr, 1.0 / xr]).filter(|v| v.iter().all(|a| a.is_finite() && *a > 0.0))
        }
        _ => None,
    };
    Ok(Stack {
        samples,
        dims: [slices, h as usize, w as usize],
        channels,
        frames,
        voxel_size,
        unit,
        frame_interval,
    })
}

/// Writes labels as a 16-bit stack when every label fits, else 32-bit.
pub fn write_labels(path: impl AsRef<Path>, labels: &[u32], dims: [usize; 3], frames: usize, voxel_um: Option<[f64; 3]>) -> Result<()> {
    write_labels_timed(path, labels, dims, frames, voxel_um, None)
}

/// [`write_labels`] for a time lapse, with the time between frames.
pub fn write_labels_timed(
    path: impl AsRef<Path>,
    labels: &[u32],
    dims: [usize; 3],
    frames: usize,
    voxel_um: Option<[f64; 3]>,
    interval: Option<&FrameInterval>,
) -> Result<()> {
    let max = labels.iter().copied().max().unwrap_or(0);
    if max <= u16::MAX as u32 {
        write_timed(path, &Samples::U16(labels.iter().map(|&l| l as u16).collect()), dims, frames, voxel_um, interval)
    } else {
        write_timed(path, &Samples::U32(labels.to_vec()), dims, frames, voxel_um, interval)
    }
}

/// Writes a stack (Deflate-compressed, ImageJ hyperstack header) atomically.
pub fn write(path: impl AsRef<Path>, samples: &Samples, dims: [usize; 3], frames: usize, voxel_um: Option<[f64; 3]>) -> Result<()> {
    write_timed(path, samples, dims, frames, voxel_um, None)
}

/// [`write`] with the time between frames of a time lapse.
pub fn write_timed(
    path: impl AsRef<Path>,
    samples: &Samples,
    dims: [usize; 3],
    frames: usize,
    voxel_um: Option<[f64; 3]>,
    interval: Option<&FrameInterval>,
) -> Result<()> {
    let path = path.as_ref();
    let [nz, ny, nx] = dims;
    let plane = ny * nx;
    if samples.len() != plane * nz * frames || plane == 0 || nz == 0 || frames == 0 {
        return Err(Error::invalid(format!(
            "writing {}: {} values do not make {frames} frame(s) of {dims:?}",
            path.display(),
            samples.len()
        )));
    }
    if let Some(v) = voxel_um {
        crate::plan::check_voxel_size(v, &format!("writing {}: the voxel size", path.display()))?;
    }
    super::atomic::write_with(path, |f| {
        let mut w = BufWriter::new(f);
        encode(&mut w, samples, dims, frames, voxel_um, interval).map_err(std::io::Error::other)?;
        w.flush()
    })
}

fn encode<W: std::io::Write + std::io::Seek>(
    w: &mut W,
    samples: &Samples,
    dims: [usize; 3],
    frames: usize,
    voxel_um: Option<[f64; 3]>,
    interval: Option<&FrameInterval>,
) -> std::result::Result<(), tiff::TiffError> {
    let [nz, ny, nx] = dims;
    let plane = ny * nx;
    let pages = nz * frames;
    let mut desc = format!("ImageJ=1.54f\nimages={pages}\nslices={nz}\n");
    if frames > 1 {
        desc.push_str(&format!("frames={frames}\nhyperstack=true\n"));
    }
    if let Some(v) = voxel_um {
        desc.push_str(&format!("unit=micron\nspacing={}\n", v[0]));
    }
    if let Some(t) = interval.filter(|t| t.value.is_finite() && t.value > 0.0) {
        desc.push_str(&format!("finterval={}\ntunit={}\n", t.value, t.unit));
    }
    desc.push_str("loop=false\n");
    let mut enc = TiffEncoder::new(w)?.with_compression(Compression::Deflate(DeflateLevel::Balanced));
    let res = |um: f64| {
        // pixels per micrometre as a rational with 6 decimal places
        Rational { n: (1e6 / um).round().clamp(1.0, u32::MAX as f64) as u32, d: 1_000_000 }
    };
    macro_rules! pages {
        ($ct:ty, $v:expr) => {{
            for p in 0..pages {
                let mut img = enc.new_image::<$ct>(nx as u32, ny as u32)?;
                if p == 0 {
                    img.encoder().write_tag(Tag::ImageDescription, desc.as_str())?;
                }
                if let Some(v) = voxel_um {
                    img.resolution(ResolutionUnit::None, res(v[2]));
                    img.y_resolution(res(v[1]));
                }
                img.write_data(&$v[p * plane..(p + 1) * plane])?;
            }
        }};
    }
    match samples {
        Samples::U8(v) => pages!(colortype::Gray8, v),
        Samples::U16(v) => pages!(colortype::Gray16, v),
        Samples::U32(v) => pages!(colortype::Gray32, v),
        Samples::F32(v) => pages!(colortype::Gray32Float, v),
    }
    Ok(())
}
