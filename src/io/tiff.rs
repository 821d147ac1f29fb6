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
    pub(crate) fn slice_range(&self, start: usize, len: usize) -> Samples {
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
        in_micrometres(self.voxel_size, self.unit.as_deref())
    }
}

/// A signed 16-bit sample shifted into the unsigned range, as ImageJ opens such images
/// (TIFF and OME-Zarr alike).
pub fn signed_to_unsigned(a: i16) -> u16 {
    (a as i32 + 32768) as u16
}

fn in_micrometres(voxel_size: Option<[f64; 3]>, unit: Option<&str>) -> Option<[f64; 3]> {
    let v = voxel_size?;
    let f = length_unit_um(unit?)?;
    let um = [v[0] * f, v[1] * f, v[2] * f];
    um.iter().all(|a| a.is_finite() && *a > 0.0).then_some(um)
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
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
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

/// What an OME-TIFF's OME-XML says of its first image (its `Pixels` element).
#[derive(Debug, Default, PartialEq)]
struct OmeInfo {
    /// SizeZ, SizeC, SizeT.
    sizes: Option<[usize; 3]>,
    width: Option<usize>,
    height: Option<usize>,
    order: String,
    /// PhysicalSizeZ, Y, X in micrometres (all three, each in its own unit, µm by default).
    voxel_um: Option<[f64; 3]>,
    frame_interval: Option<FrameInterval>,
}

/// The OME-XML of an OME-TIFF's first page, if `desc` is one. Sizes are checked against the
/// pages by the caller: a number here is never trusted for an allocation.
fn parse_ome(desc: &str) -> Option<OmeInfo> {
    let trimmed = desc.trim_start();
    if !(trimmed.starts_with("<?xml") || trimmed.starts_with("<OME")) {
        return None;
    }
    let doc = roxmltree::Document::parse(trimmed).ok()?;
    if doc.root_element().tag_name().name() != "OME" {
        return None;
    }
    let px = doc.descendants().find(|n| n.is_element() && n.tag_name().name() == "Pixels")?;
    let size = |k: &str| px.attribute(k).and_then(|v| v.trim().parse::<usize>().ok()).filter(|&v| v > 0);
    let length_um = |axis: &str| -> Option<f64> {
        let v: f64 = px.attribute(format!("PhysicalSize{axis}").as_str())?.trim().parse().ok()?;
        let unit = px.attribute(format!("PhysicalSize{axis}Unit").as_str()).unwrap_or("µm");
        Some(v * length_unit_um(unit)?).filter(|v| v.is_finite() && *v > 0.0)
    };
    let voxel_um = match (length_um("Z"), length_um("Y"), length_um("X")) {
        (Some(z), Some(y), Some(x)) => Some([z, y, x]),
        _ => None,
    };
    let frame_interval = px
        .attribute("TimeIncrement")
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|v| v.is_finite() && *v > 0.0)
        .map(|value| FrameInterval { value, unit: px.attribute("TimeIncrementUnit").unwrap_or("s").to_string() });
    let sizes = match (size("SizeZ"), size("SizeC"), size("SizeT")) {
        (Some(z), Some(c), Some(t)) => Some([z, c, t]),
        _ => None,
    };
    Some(OmeInfo {
        sizes,
        width: size("SizeX"),
        height: size("SizeY"),
        order: px.attribute("DimensionOrder").unwrap_or("XYZCT").to_string(),
        voxel_um,
        frame_interval,
    })
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
    guarded(path, || {
        let mut r = StackReader::open_inner(path)?;
        let info = r.info.clone();
        // checked before decoding: a small file can claim pages of any size
        if info.decoded_bytes() > MAX_STACK_BYTES {
            return Err(tiff_err(
                path,
                format!(
                    "{} GiB once decoded: too large to read whole (limit {} GiB); `qcanet segment` streams such stacks block by block",
                    info.decoded_bytes() >> 30,
                    MAX_STACK_BYTES >> 30
                ),
            ));
        }
        let mut pages = (0..info.pages).map(|p| r.read_page_inner(p)).collect::<Result<Vec<_>>>()?;
        if info.strides != PageStrides::imagej(info.dims[0], info.channels) {
            // a Stack holds its planes in ImageJ's order whatever the file's
            let mut file: Vec<Option<Samples>> = pages.into_iter().map(Some).collect();
            pages = Vec::with_capacity(file.len());
            for t in 0..info.frames {
                for z in 0..info.dims[0] {
                    for c in 0..info.channels {
                        let p = info.page_of(t, z, c)?;
                        pages.push(file[p].take().ok_or_else(|| tiff_err(path, "a page read twice"))?);
                    }
                }
            }
        }
        // 32-bit pages may mix integer and float samples under one colour type
        if pages.iter().any(|p| std::mem::discriminant(p) != std::mem::discriminant(&pages[0])) {
            return Err(tiff_err(path, "pages of differing sample types"));
        }
        let StackInfo { dims, channels, frames, voxel_size, unit, frame_interval, .. } = info;
        Ok(Stack { samples: concat(pages), dims, channels, frames, voxel_size, unit, frame_interval })
    })
}

// the `tiff` crate panics on some malformed tags (found by examples/fuzz_tiff.rs, e.g. a
// SampleFormat tag with no values): a bad file is an error, never a crash
fn guarded<T>(path: &Path, f: impl FnOnce() -> Result<T>) -> Result<T> {
    crate::quiet_panic::catch(f).unwrap_or_else(|what| Err(tiff_err(path, format!("malformed file (the decoder failed: {what})"))))
}

/// What a stack's header says, without its voxels.
#[derive(Clone, Debug, PartialEq)]
pub struct StackInfo {
    pub dims: [usize; 3],
    pub channels: usize,
    pub frames: usize,
    /// (z, y, x) in `unit`; `None` when the file carries no calibration.
    pub voxel_size: Option<[f64; 3]>,
    pub unit: Option<String>,
    pub frame_interval: Option<FrameInterval>,
    /// Pages (planes) in the file: slices x channels x frames.
    pub pages: usize,
    /// Bits per sample.
    pub bits: u8,
    /// Pages between consecutive frames, slices and channels: ImageJ's order (channel
    /// fastest, then slice, then frame) unless an OME-TIFF's `DimensionOrder` says another.
    pub strides: PageStrides,
}

/// Pages between consecutive frames (`t`), slices (`z`) and channels (`c`) of a stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageStrides {
    pub t: usize,
    pub z: usize,
    pub c: usize,
}

impl PageStrides {
    /// ImageJ's hyperstack order (OME's `XYCZT`): channel fastest, then slice, then frame.
    pub fn imagej(slices: usize, channels: usize) -> PageStrides {
        PageStrides { c: 1, z: channels, t: channels * slices }
    }

    /// The order an OME `DimensionOrder` names (`XY` then Z, C and T, fastest first).
    fn ome(order: &str, slices: usize, channels: usize, frames: usize) -> Option<PageStrides> {
        let rest = order.strip_prefix("XY")?;
        if rest.len() != 3 {
            return None;
        }
        let (mut st, mut step) = (PageStrides { t: 0, z: 0, c: 0 }, 1usize);
        for axis in rest.chars() {
            let (slot, size) = match axis {
                'Z' => (&mut st.z, slices),
                'C' => (&mut st.c, channels),
                'T' => (&mut st.t, frames),
                _ => return None,
            };
            if *slot != 0 {
                return None;
            }
            *slot = step;
            step = step.checked_mul(size)?;
        }
        Some(st)
    }
}

impl StackInfo {
    /// Bytes the whole stack decodes to.
    pub fn decoded_bytes(&self) -> u64 {
        (self.pages as u64)
            .saturating_mul(self.dims[1] as u64)
            .saturating_mul(self.dims[2] as u64)
            .saturating_mul((self.bits as u64).div_ceil(8))
    }

    /// Voxel size in micrometres (see [`Stack::voxel_size_um`]).
    pub fn voxel_size_um(&self) -> Option<[f64; 3]> {
        in_micrometres(self.voxel_size, self.unit.as_deref())
    }

    /// The page holding slice `z` of channel `c` in frame `t` ([`StackInfo::strides`]).
    pub fn page_of(&self, t: usize, z: usize, c: usize) -> Result<usize> {
        if t >= self.frames || z >= self.dims[0] || c >= self.channels {
            return Err(Error::invalid(format!(
                "frame {t} / slice {z} / channel {c} out of range ({} frames, {} slices, {} channels)",
                self.frames, self.dims[0], self.channels
            )));
        }
        Ok(t * self.strides.t + z * self.strides.z + c * self.strides.c)
    }
}

/// A stack read page by page, for stacks larger than memory: the header is read and
/// every page's size and type checked when it is opened, a page decoded only when asked
/// for (TIFF and BigTIFF; any strip or tile layout the `tiff` crate decodes).
pub struct StackReader {
    path: std::path::PathBuf,
    dec: Decoder<BufReader<File>>,
    /// The page the decoder stands on.
    at: usize,
    pub info: StackInfo,
}

impl StackReader {
    pub fn open(path: impl AsRef<Path>) -> Result<StackReader> {
        let path = path.as_ref();
        guarded(path, || Self::open_inner(path))
    }

    fn open_inner(path: &Path) -> Result<StackReader> {
        let f = File::open(path).map_err(|e| Error::io(path, e))?;
        let mut dec = Decoder::new(BufReader::new(f)).map_err(|e| tiff_err(path, e))?;
        let mut limits = Limits::default();
        limits.decoding_buffer_size = 1 << 31;
        limits.intermediate_buffer_size = 1 << 31;
        dec = dec.with_limits(limits);
        let desc = dec.get_tag_ascii_string(Tag::ImageDescription).ok();
        let ij = desc.as_deref().and_then(parse_imagej);
        let ome = if ij.is_none() { desc.as_deref().and_then(parse_ome) } else { None };
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
        if !matches!(bits, 8 | 16 | 32) {
            return Err(Error::Unsupported(format!("{}: {bits}-bit samples (use 8/16/32-bit grey)", path.display())));
        }
        // walk the pages (directories only, no pixel data) to count and check them
        let mut n = 1usize;
        while dec.more_images() {
            dec.next_image().map_err(|e| tiff_err(path, e))?;
            let (pw, ph) = dec.dimensions().map_err(|e| tiff_err(path, e))?;
            if (pw, ph) != (w, h) {
                return Err(tiff_err(path, format!("page {n} is {pw}x{ph}, the first page {w}x{h}")));
            }
            if dec.colortype().map_err(|e| tiff_err(path, e))? != ct {
                return Err(tiff_err(path, format!("page {n} has another sample type")));
            }
            n += 1;
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
        let mut voxel_size = match (xres, yres) {
            (Some(xr), Some(yr)) if xr > 0.0 && yr > 0.0 && (ij.is_some() || spacing.is_some()) => {
                Some([spacing.unwrap_or(1.0), 1.0 / yr, 1.0 / xr]).filter(|v| v.iter().all(|a| a.is_finite() && *a > 0.0))
            }
            _ => None,
        };
        let mut strides = PageStrides::imagej(slices, channels);
        if let Some(o) = &ome {
            // the sizes only when they account for every page of this file, as ImageJ's
            let sized = o.sizes.and_then(|[z, c, t]| {
                let order = PageStrides::ome(&o.order, z, c, t)?;
                (z.checked_mul(c)?.checked_mul(t)? == n && (o.width, o.height) == (Some(w as usize), Some(h as usize)))
                    .then_some((z, c, t, order))
            });
            if let Some((z, c, t, order)) = sized {
                (slices, channels, frames, strides) = (z, c, t, order);
            }
            if let Some(v) = o.voxel_um {
                voxel_size = Some(v);
                unit = Some("micron".into());
            }
            frame_interval = o.frame_interval.clone();
        }
        let info = StackInfo {
            dims: [slices, h as usize, w as usize],
            channels,
            frames,
            voxel_size,
            unit,
            frame_interval,
            pages: n,
            bits,
            strides,
        };
        Ok(StackReader { path: path.to_path_buf(), dec, at: n - 1, info })
    }

    /// Decodes one page (a y-x plane).
    pub fn read_page(&mut self, page: usize) -> Result<Samples> {
        let path = self.path.clone();
        guarded(&path, || self.read_page_inner(page))
    }

    fn read_page_inner(&mut self, page: usize) -> Result<Samples> {
        let path = &self.path;
        if page >= self.info.pages {
            return Err(Error::invalid(format!("{}: page {page} of {}", path.display(), self.info.pages)));
        }
        if page != self.at {
            if page == self.at + 1 {
                self.dec.next_image().map_err(|e| tiff_err(path, e))?;
            } else {
                self.dec.seek_to_image(page).map_err(|e| tiff_err(path, e))?;
            }
            self.at = page;
        }
        let plane = self.info.dims[1] * self.info.dims[2];
        let samples = match self.dec.read_image().map_err(|e| tiff_err(path, e))? {
            DecodingResult::U8(v) => Samples::U8(v),
            DecodingResult::U16(v) => Samples::U16(v),
            DecodingResult::U32(v) => Samples::U32(v),
            DecodingResult::F32(v) => Samples::F32(v),
            DecodingResult::I16(v) => Samples::U16(v.into_iter().map(signed_to_unsigned).collect()),
            _ => return Err(Error::Unsupported(format!("{}: sample format of page {page} (use 8/16/32-bit grey)", path.display()))),
        };
        if samples.len() != plane {
            return Err(Error::Unsupported(format!(
                "{}: colour or multi-sample pages are not supported; save the nuclear channel as a grey stack",
                path.display()
            )));
        }
        Ok(samples)
    }

    /// Slice `z` of channel `c` in frame `t`.
    pub fn read_plane(&mut self, t: usize, z: usize, c: usize) -> Result<Samples> {
        let page = self.info.page_of(t, z, c)?;
        self.read_page(page)
    }

    /// The (z, y, x) volume of channel `c` in frame `t`: one frame of a time lapse without
    /// reading the others.
    pub fn read_volume(&mut self, t: usize, c: usize) -> Result<Samples> {
        let [nz, ny, nx] = self.info.dims;
        // checked before decoding: a small file can claim pages of any size
        let bytes = (nz as u64).saturating_mul(ny as u64).saturating_mul(nx as u64).saturating_mul((self.info.bits as u64).div_ceil(8));
        if bytes > MAX_STACK_BYTES {
            return Err(tiff_err(
                &self.path,
                format!("one volume is {} GiB once decoded: too large to read whole (limit {} GiB)", bytes >> 30, MAX_STACK_BYTES >> 30),
            ));
        }
        let parts = (0..nz).map(|z| self.read_plane(t, z, c)).collect::<Result<Vec<_>>>()?;
        if parts.iter().any(|p| std::mem::discriminant(p) != std::mem::discriminant(&parts[0])) {
            return Err(tiff_err(&self.path, "pages of differing sample types"));
        }
        Ok(concat(parts))
    }
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
    let path = path.as_ref();
    let plane = dims[1] * dims[2];
    if labels.len() != plane * dims[0] * frames || plane == 0 || dims[0] == 0 || frames == 0 {
        return Err(Error::invalid(format!(
            "writing {}: {} labels do not make {frames} frame(s) of {dims:?}",
            path.display(),
            labels.len()
        )));
    }
    let kind = SampleKind::for_labels(labels.iter().copied().max().unwrap_or(0));
    let layout = PageLayout { dims, frames, voxel_um, interval: interval.cloned(), kind };
    write_pages(path, &layout, |p| Ok(label_page(&labels[p * plane..(p + 1) * plane], kind)))
}

/// One page of labels as samples of `kind` (U16 only when every label fits).
pub fn label_page(labels: &[u32], kind: SampleKind) -> Samples {
    match kind {
        SampleKind::U16 => Samples::U16(labels.iter().map(|&l| l as u16).collect()),
        _ => Samples::U32(labels.to_vec()),
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
    let plane = dims[1] * dims[2];
    if samples.len() != plane * dims[0] * frames || plane == 0 || dims[0] == 0 || frames == 0 {
        return Err(Error::invalid(format!(
            "writing {}: {} values do not make {frames} frame(s) of {dims:?}",
            path.display(),
            samples.len()
        )));
    }
    let layout = PageLayout { dims, frames, voxel_um, interval: interval.cloned(), kind: SampleKind::of(samples) };
    write_pages(path, &layout, |p| Ok(samples.slice_range(p * plane, plane)))
}

/// The type of a stack's samples.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SampleKind {
    U8,
    U16,
    U32,
    F32,
}

impl SampleKind {
    pub fn of(s: &Samples) -> SampleKind {
        match s {
            Samples::U8(_) => SampleKind::U8,
            Samples::U16(_) => SampleKind::U16,
            Samples::U32(_) => SampleKind::U32,
            Samples::F32(_) => SampleKind::F32,
        }
    }
    pub fn bytes(self) -> u64 {
        match self {
            SampleKind::U8 => 1,
            SampleKind::U16 => 2,
            SampleKind::U32 | SampleKind::F32 => 4,
        }
    }
    /// The narrowest label type holding `max_label`.
    pub fn for_labels(max_label: u32) -> SampleKind {
        if max_label <= u16::MAX as u32 {
            SampleKind::U16
        } else {
            SampleKind::U32
        }
    }
}

/// The shape and header of a stack written page by page.
#[derive(Clone, Debug)]
pub struct PageLayout {
    pub dims: [usize; 3],
    pub frames: usize,
    pub voxel_um: Option<[f64; 3]>,
    pub interval: Option<FrameInterval>,
    pub kind: SampleKind,
}

impl PageLayout {
    pub fn pages(&self) -> usize {
        self.dims[0] * self.frames
    }
    /// Whether the file is written as BigTIFF: when its uncompressed samples come within
    /// reach of classic TIFF's 4 GiB offsets (compression is not counted on).
    pub fn big(&self) -> bool {
        let plane = (self.dims[1] as u64) * (self.dims[2] as u64);
        (self.pages() as u64).saturating_mul(plane).saturating_mul(self.kind.bytes()) > BIGTIFF_FROM
    }
}

/// Most samples of one page written (a page is encoded whole): 2^31, a 46,000-pixel square.
pub const MAX_PAGE_SAMPLES: usize = 1 << 31;

/// Stacks whose samples exceed this are written as BigTIFF (classic TIFF addresses 4 GiB;
/// the margin covers headers and incompressible data).
pub const BIGTIFF_FROM: u64 = (4 << 30) - (256 << 20);

/// Writes a stack atomically, one page at a time: `page(p)` gives page `p` (ImageJ order:
/// slices of frame 0, then of frame 1...) as samples of `layout.kind`. Only one page is
/// in memory at a time; stacks too large for classic TIFF become BigTIFF.
pub fn write_pages(path: &Path, layout: &PageLayout, mut page: impl FnMut(usize) -> Result<Samples>) -> Result<()> {
    let [nz, ny, nx] = layout.dims;
    if nz == 0 || ny == 0 || nx == 0 || layout.frames == 0 || ny.saturating_mul(nx) > MAX_PAGE_SAMPLES {
        return Err(Error::invalid(format!("writing {}: {} frame(s) of {:?} is not a stack", path.display(), layout.frames, layout.dims)));
    }
    if let Some(v) = layout.voxel_um {
        crate::plan::check_voxel_size(v, &format!("writing {}: the voxel size", path.display()))?;
    }
    // an error of `page` passes through the encoder's io::Error as this
    let mut failed: Option<Error> = None;
    let r = super::atomic::write_with(path, |f| {
        let mut w = BufWriter::new(f);
        let mut next = |p: usize| -> std::result::Result<Samples, tiff::TiffError> {
            match page(p) {
                Ok(s) if s.len() == ny * nx && SampleKind::of(&s) == layout.kind => Ok(s),
                Ok(s) => {
                    failed = Some(Error::Internal(format!(
                        "page {p}: {} values of {:?}, expected {} of {:?}",
                        s.len(),
                        SampleKind::of(&s),
                        ny * nx,
                        layout.kind
                    )));
                    Err(tiff::TiffError::IoError(std::io::Error::other("page of the wrong size")))
                }
                Err(e) => {
                    failed = Some(e);
                    Err(tiff::TiffError::IoError(std::io::Error::other("page failed")))
                }
            }
        };
        let r = if layout.big() {
            encode(TiffEncoder::new_big(&mut w), layout, &mut next)
        } else {
            encode(TiffEncoder::new(&mut w), layout, &mut next)
        };
        r.map_err(std::io::Error::other)?;
        w.flush()
    });
    match failed {
        Some(e) => Err(e),
        None => r,
    }
}

fn encode<W: std::io::Write + std::io::Seek, K: tiff::encoder::TiffKind>(
    enc: std::result::Result<TiffEncoder<W, K>, tiff::TiffError>,
    layout: &PageLayout,
    page: &mut dyn FnMut(usize) -> std::result::Result<Samples, tiff::TiffError>,
) -> std::result::Result<(), tiff::TiffError> {
    let [nz, ny, nx] = layout.dims;
    let frames = layout.frames;
    let pages = layout.pages();
    let mut desc = format!("ImageJ=1.54f\nimages={pages}\nslices={nz}\n");
    if frames > 1 {
        desc.push_str(&format!("frames={frames}\nhyperstack=true\n"));
    }
    if let Some(v) = layout.voxel_um {
        desc.push_str(&format!("unit=micron\nspacing={}\n", v[0]));
    }
    if let Some(t) = layout.interval.as_ref().filter(|t| t.value.is_finite() && t.value > 0.0) {
        desc.push_str(&format!("finterval={}\ntunit={}\n", t.value, t.unit));
    }
    desc.push_str("loop=false\n");
    let mut enc = enc?.with_compression(Compression::Deflate(DeflateLevel::Balanced));
    let res = |um: f64| {
        // pixels per micrometre as a rational with 6 decimal places
        Rational { n: (1e6 / um).round().clamp(1.0, u32::MAX as f64) as u32, d: 1_000_000 }
    };
    macro_rules! put {
        ($ct:ty, $v:expr, $p:expr) => {{
            let mut img = enc.new_image::<$ct>(nx as u32, ny as u32)?;
            if $p == 0 {
                img.encoder().write_tag(Tag::ImageDescription, desc.as_str())?;
            }
            if let Some(v) = layout.voxel_um {
                img.resolution(ResolutionUnit::None, res(v[2]));
                img.y_resolution(res(v[1]));
            }
            img.write_data(&$v)?;
        }};
    }
    for p in 0..pages {
        match page(p)? {
            Samples::U8(v) => put!(colortype::Gray8, v, p),
            Samples::U16(v) => put!(colortype::Gray16, v, p),
            Samples::U32(v) => put!(colortype::Gray32, v, p),
            Samples::F32(v) => put!(colortype::Gray32Float, v, p),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const OME: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06"><Image ID="Image:0"><Pixels ID="Pixels:0"
 DimensionOrder="XYZCT" Type="uint16" SizeX="8" SizeY="4" SizeZ="3" SizeC="2" SizeT="5"
 PhysicalSizeX="0.8" PhysicalSizeY="800" PhysicalSizeYUnit="nm" PhysicalSizeZ="1.75"
 TimeIncrement="90" TimeIncrementUnit="s"><TiffData/></Pixels></Image></OME>"#;

    #[test]
    fn ome_xml_gives_sizes_order_units_and_interval() {
        let o = parse_ome(OME).unwrap();
        assert_eq!(o.sizes, Some([3, 2, 5]));
        assert_eq!((o.width, o.height, o.order.as_str()), (Some(8), Some(4), "XYZCT"));
        let v = o.voxel_um.unwrap();
        assert!((v[0] - 1.75).abs() < 1e-12 && (v[1] - 0.8).abs() < 1e-12 && (v[2] - 0.8).abs() < 1e-12, "{v:?}");
        assert_eq!(o.frame_interval, Some(FrameInterval { value: 90.0, unit: "s".into() }));
        // XYZCT: slices fastest, then channels, then frames
        assert_eq!(PageStrides::ome("XYZCT", 3, 2, 5), Some(PageStrides { z: 1, c: 3, t: 6 }));
        assert_eq!(PageStrides::ome("XYCZT", 3, 2, 5), Some(PageStrides::imagej(3, 2)));
        assert_eq!(PageStrides::ome("XYZZT", 3, 2, 5), None);
        assert_eq!(PageStrides::ome("ZCTXY", 3, 2, 5), None);
    }

    #[test]
    fn other_descriptions_and_broken_xml_are_not_ome() {
        assert_eq!(parse_ome("ImageJ=1.54f\nimages=3\n"), None);
        assert_eq!(parse_ome("<OME><Image><Pixels SizeZ=\"3\""), None);
        assert_eq!(parse_ome("<?xml version=\"1.0\"?><svg/>"), None);
        // an unknown unit drops the calibration, not the sizes
        let o = parse_ome(&OME.replace("PhysicalSizeYUnit=\"nm\"", "PhysicalSizeYUnit=\"parsec-ish\"")).unwrap();
        assert_eq!((o.voxel_um, o.sizes), (None, Some([3, 2, 5])));
        // absurd sizes are kept as numbers here: open_inner takes them only if they account for the pages
        let o = parse_ome(&OME.replace("SizeT=\"5\"", "SizeT=\"18446744073709551615\"")).unwrap();
        assert_eq!(o.sizes.map(|s| s[2]), Some(usize::MAX));
    }
}
