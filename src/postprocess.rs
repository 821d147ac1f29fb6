//! NSN/NDN probabilities -> nucleus labels (the steps after inference; README, "Defaults").
//!
//! mask = NSN > threshold (holes filled); markers = NDN blobs (connected
//! components, as QCANet) or local maxima of the smoothed NDN output; landscape
//! = -EDT(mask); marker watershed inside the mask; mask components that got no
//! marker become nuclei of their own; nuclei under a minimum volume are dropped;
//! labels are renumbered 1..N in order of their first voxel's label id.
//! `qcanet.reference.postprocess` (Python) is the same pipeline and the tests hold
//! the two together.

use rayon::prelude::*;
use serde::Serialize;

use crate::edt::negative_edt;
use crate::error::{voxel_count, Error, Result};
use crate::watershed::{label_components, watershed, Connectivity};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MarkerMode {
    /// 26-connected components of NDN > threshold (QCANet's rule).
    Components,
    /// Local maxima (3x3x3) of the Gaussian-smoothed NDN output above the threshold.
    LocalMaxima,
}

crate::vocabulary!(MarkerMode, "marker rule", [
    MarkerMode::Components => "components" | "cc",
    MarkerMode::LocalMaxima => "local-max" | "local_max" | "local-maxima" | "local_maxima",
]);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Landscape {
    /// -EDT of the mask (QCANet).
    Distance,
    /// -NDN probability (the centre map itself).
    Centre,
}

crate::vocabulary!(Landscape, "landscape", [
    Landscape::Distance => "distance" | "edt",
    Landscape::Centre => "centre" | "center",
]);

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PostParams {
    /// Probability thresholds, checked as given (0..=1) and compared with the f32
    /// probabilities in f32, as NumPy compares a float32 array with a Python float.
    pub fg_threshold: f64,
    pub centre_threshold: f64,
    pub markers: MarkerMode,
    /// Gaussian sigma (micrometres) applied to the NDN output before finding maxima.
    pub marker_sigma_um: f64,
    pub landscape: Landscape,
    pub fill_holes: bool,
    /// Nuclei smaller than this (cubic micrometres) are removed.
    pub min_volume_um3: f64,
    /// Neighbourhood of the watershed flood (scikit-image's default: faces).
    pub connectivity: Connectivity,
}

impl Default for PostParams {
    /// The one table of post-processing defaults, used where neither a model's metadata
    /// nor a caller says otherwise (README, "Defaults"): QCANet's pipeline -- NSN > 0.5
    /// with holes filled, markers = 26-connected components of NDN > 0.5, watershed of the
    /// negative distance transform with 6-connected flooding, no minimum volume.
    /// (`marker_sigma_um` matters only with local-maxima markers.)
    fn default() -> Self {
        PostParams {
            fg_threshold: 0.5,
            centre_threshold: 0.5,
            markers: MarkerMode::Components,
            marker_sigma_um: 1.0,
            landscape: Landscape::Distance,
            fill_holes: true,
            min_volume_um3: 0.0,
            connectivity: Connectivity::Faces6,
        }
    }
}

/// Largest Gaussian sigma, in voxels, for the marker smoothing (the kernel spans 4 sigma).
pub const MAX_SIGMA_VOXELS: f64 = 32.0;

impl PostParams {
    /// The one check of post-processing parameters, for a grid of `voxel` micrometres.
    pub fn validate(&self, voxel: [f64; 3]) -> Result<()> {
        crate::plan::check_voxel_size(voxel, "voxel size")?;
        for (what, t) in [("fg_threshold", self.fg_threshold), ("centre_threshold", self.centre_threshold)] {
            if !(0.0..=1.0).contains(&t) {
                return Err(Error::invalid(format!("{what} {t} must be within 0..=1")));
            }
        }
        if !(self.min_volume_um3.is_finite() && self.min_volume_um3 >= 0.0) {
            return Err(Error::invalid(format!("min_volume_um3 {} must be >= 0", self.min_volume_um3)));
        }
        let s = self.marker_sigma_um;
        if !(s.is_finite() && s >= 0.0) {
            return Err(Error::invalid(format!("marker_sigma_um {s} must be >= 0")));
        }
        if self.markers == MarkerMode::LocalMaxima {
            let sigma = self.sigma_voxels(voxel);
            if sigma.iter().any(|v| *v > MAX_SIGMA_VOXELS) {
                return Err(Error::invalid(format!(
                    "marker smoothing of {s} um is {sigma:.1?} voxels at the voxel size {voxel:?} um; at most {MAX_SIGMA_VOXELS} (check the voxel size)"
                )));
            }
        }
        Ok(())
    }

    fn sigma_voxels(&self, voxel: [f64; 3]) -> [f64; 3] {
        voxel.map(|v| self.marker_sigma_um / v)
    }

    /// How far (voxels of a grid of `voxel` um) the markers look around a voxel: the
    /// smoothing of the centre map and the maximum filter (0 for components).
    pub fn marker_reach(&self, voxel: [f64; 3]) -> [usize; 3] {
        match self.markers {
            // the smoothing's kernel, then the 3x3x3 maximum filter
            MarkerMode::LocalMaxima if self.marker_sigma_um > 0.0 => self.sigma_voxels(voxel).map(|s| gaussian_radius(s) + 1),
            MarkerMode::LocalMaxima => [1; 3],
            MarkerMode::Components => [0; 3],
        }
    }
}

/// Runs the post-processing on probability volumes of shape `dims` (z, y, x)
/// with voxel size `voxel` (z, y, x, micrometres). Returns labels and their count.
///
/// Preconditions (checked here, cheaply): both volumes hold `dims` voxels, all finite;
/// `p.validate(voxel)` passes ([`crate::plan`] checks it once per segmentation,
/// [`crate::postprocess_probabilities`] for hosts that call this alone).
pub(crate) fn postprocess(fg: &[f32], centre: &[f32], dims: [usize; 3], voxel: [f64; 3], p: &PostParams) -> Result<(Vec<u32>, u32)> {
    postprocess_timed(fg, centre, dims, voxel, p).map(|(l, n, _)| (l, n))
}

/// Seconds spent in each step of the post-processing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct PostTimes {
    /// Threshold and fill holes.
    pub mask_s: f64,
    /// Markers (components, or smoothing + local maxima).
    pub markers_s: f64,
    /// The landscape (distance transform).
    pub landscape_s: f64,
    /// The flood, the unmarked components and the relabelling.
    pub watershed_s: f64,
}

/// [`postprocess`], with the time of each step.
pub(crate) fn postprocess_timed(
    fg: &[f32],
    centre: &[f32],
    dims: [usize; 3],
    voxel: [f64; 3],
    p: &PostParams,
) -> Result<(Vec<u32>, u32, PostTimes)> {
    postprocess_in(fg, centre, dims, voxel, p, true)
}

/// [`postprocess_timed`]; `crop_to_mask` false runs every step on the whole volume (for
/// the test that the crop changes nothing).
fn postprocess_in(
    fg: &[f32],
    centre: &[f32],
    dims: [usize; 3],
    voxel: [f64; 3],
    p: &PostParams,
    crop_to_mask: bool,
) -> Result<(Vec<u32>, u32, PostTimes)> {
    let mut times = PostTimes::default();
    let mut clock = std::time::Instant::now();
    let mut lap = |slot: &mut f64| {
        *slot = clock.elapsed().as_secs_f64();
        clock = std::time::Instant::now();
    };
    let n = voxel_count(dims)?;
    if fg.len() != n || centre.len() != n {
        return Err(Error::invalid(format!("probability volumes hold {} and {} values, dims {dims:?} need {n}", fg.len(), centre.len())));
    }
    let bad = fg.par_iter().chain(centre.par_iter()).filter(|v| !v.is_finite()).count();
    if bad > 0 {
        return Err(Error::NonFinite(bad));
    }
    let (fg_t, centre_t) = (p.fg_threshold as f32, p.centre_threshold as f32);
    let full_mask: Vec<bool> = fg.par_iter().map(|&v| v > fg_t).collect();
    // Everything below looks only at the mask and, for the markers, at most
    // `marker_reach` around it: it runs on the mask's bounding box grown by that (at
    // least one voxel, so the box's faces are background wherever they are not the
    // volume's). The results are the whole volume's exactly (see `Crop`), at the cost
    // of the box: a quarter of a BBBC050 volume at the median.
    let margin = p.marker_reach(voxel).map(|r| r.max(1));
    let crop = if crop_to_mask { Crop::around(&full_mask, dims, margin) } else { Some(Crop { start: [0; 3], end: dims }) };
    let Some(crop) = crop else {
        lap(&mut times.mask_s);
        return Ok((vec![0u32; n], 0, times));
    };
    let full_dims = dims;
    let dims = crop.dims();
    let n = dims.iter().product::<usize>();
    // the whole volume's mask is moved, not copied, when the box is the volume
    let mut mask = if crop.is_whole(full_dims) { full_mask } else { crop.cut(&full_mask, full_dims) };
    let centre_cut;
    let centre: &[f32] = if crop.is_whole(full_dims) {
        centre
    } else {
        centre_cut = crop.cut(centre, full_dims);
        &centre_cut
    };
    if p.fill_holes {
        fill_holes(&mut mask, dims);
    }
    lap(&mut times.mask_s);
    let (markers, _) = match p.markers {
        MarkerMode::Components => {
            let m: Vec<bool> = centre.par_iter().zip(&mask).map(|(&c, &k)| k && c > centre_t).collect();
            label_components(&m, dims, Connectivity::Full26)
        }
        MarkerMode::LocalMaxima => {
            let sigma = p.sigma_voxels(voxel);
            let sm = if p.marker_sigma_um > 0.0 { gaussian(centre, dims, sigma) } else { centre.to_vec() };
            let mx = max_filter3(&sm, dims);
            let peaks: Vec<bool> = (0..n).into_par_iter().map(|i| mask[i] && sm[i] > centre_t && sm[i] == mx[i]).collect();
            label_components(&peaks, dims, Connectivity::Full26)
        }
    };
    lap(&mut times.markers_s);
    let land: Vec<f64> = match p.landscape {
        Landscape::Distance => negative_edt(&mask, dims, voxel),
        Landscape::Centre => centre.par_iter().map(|&c| -(c as f64)).collect(),
    };
    lap(&mut times.landscape_s);
    let mut lab = watershed(&land, &markers, &mask, dims, p.connectivity)?;
    // mask components the flood did not reach (no marker): nuclei of their own
    let rest: Vec<bool> = (0..n).into_par_iter().map(|i| mask[i] && lab[i] == 0).collect();
    let (rl, nr) = label_components(&rest, dims, Connectivity::Full26);
    if nr > 0 {
        let top = lab.iter().copied().max().unwrap_or(0);
        lab.par_iter_mut().zip(rl.par_iter()).for_each(|(l, &r)| {
            if r > 0 {
                *l = r + top;
            }
        });
    }
    let (lab, count) = remove_small_and_relabel(&mut lab, voxel, p.min_volume_um3);
    let lab = crop.paste(lab, full_dims);
    lap(&mut times.watershed_s);
    Ok((lab, count, times))
}

/// The box of a volume that post-processing runs on: the mask's bounding box grown by a
/// margin (clamped to the volume). Why the results inside equal the whole volume's:
/// - outside the box there is no mask, so no marker, no flood and no label;
/// - with a margin of at least one voxel, the nearest background voxel of any mask voxel
///   lies in the box (clamping a background voxel outside into the margin brings it
///   nearer along every axis), so the distance transform is the same, value for value:
///   the lines of [`crate::edt`]'s passes that cross the box's faces meet background
///   sites lying on the line there, which its Voronoi step never removes (with the top
///   site on the line the removal test is `-b uR - a wR - abc <= 0`), so the sites
///   outside the box cannot change the features inside it;
/// - every background voxel outside the mask's box reaches the volume's border in a
///   straight line away from the box, so a hole (background the border cannot reach) is
///   the same in the box, whose faces are either margin (background) or the volume's
///   own border;
/// - raster order inside a box is the volume's raster order, so markers, ages in the
///   flood and component numbers come in the same order;
/// - the markers' smoothing and maximum filter look at most `margin` around a mask
///   voxel (the caller's margin is [`PostParams::marker_reach`]).
struct Crop {
    start: [usize; 3],
    end: [usize; 3],
}

impl Crop {
    /// The mask's bounding box grown by `margin`; None when the mask is empty.
    fn around(mask: &[bool], dims: [usize; 3], margin: [usize; 3]) -> Option<Crop> {
        let plane = dims[1] * dims[2];
        // per plane: (y0, y1, x0, x1) of its mask voxels, then over the planes
        let (z0, z1, y0, y1, x0, x1) = mask
            .par_chunks(plane.max(1))
            .enumerate()
            .filter_map(|(z, p)| {
                let mut b: Option<(usize, usize, usize, usize)> = None;
                for (y, row) in p.chunks(dims[2]).enumerate() {
                    if let (Some(a), Some(e)) = (row.iter().position(|&m| m), row.iter().rposition(|&m| m)) {
                        b = Some(b.map_or((y, y, a, e), |(y0, _, x0, x1)| (y0, y, x0.min(a), x1.max(e))));
                    }
                }
                b.map(|(y0, y1, x0, x1)| (z, z, y0, y1, x0, x1))
            })
            .reduce_with(|a, b| (a.0.min(b.0), a.1.max(b.1), a.2.min(b.2), a.3.max(b.3), a.4.min(b.4), a.5.max(b.5)))?;
        let (lo, hi) = ([z0, y0, x0], [z1, y1, x1]);
        Some(Crop {
            start: std::array::from_fn(|k| lo[k].saturating_sub(margin[k])),
            end: std::array::from_fn(|k| (hi[k] + 1 + margin[k]).min(dims[k])),
        })
    }

    fn dims(&self) -> [usize; 3] {
        std::array::from_fn(|k| self.end[k] - self.start[k])
    }

    fn is_whole(&self, dims: [usize; 3]) -> bool {
        self.start == [0; 3] && self.end == dims
    }

    /// The box's voxels of `full` (a volume of `dims`), in raster order.
    fn cut<T: Copy + Send + Sync>(&self, full: &[T], dims: [usize; 3]) -> Vec<T> {
        let [_, ny, nx] = dims;
        let (s, e) = (self.start, self.end);
        let mut out = Vec::with_capacity(self.dims().iter().product());
        for z in s[0]..e[0] {
            for y in s[1]..e[1] {
                let row = (z * ny + y) * nx;
                out.extend_from_slice(&full[row + s[2]..row + e[2]]);
            }
        }
        out
    }

    /// A volume of `dims`: `part` (the box's voxels) in the box, 0 elsewhere.
    fn paste(&self, part: Vec<u32>, dims: [usize; 3]) -> Vec<u32> {
        if self.is_whole(dims) {
            return part;
        }
        let [_, ny, nx] = dims;
        let (s, e) = (self.start, self.end);
        let w = e[2] - s[2];
        let mut out = vec![0u32; dims.iter().product()];
        let mut rows = part.chunks_exact(w);
        for z in s[0]..e[0] {
            for y in s[1]..e[1] {
                let row = (z * ny + y) * nx;
                if let Some(r) = rows.next() {
                    out[row + s[2]..row + e[2]].copy_from_slice(r);
                }
            }
        }
        out
    }
}

/// Drops labels whose volume is under `min_volume_um3` and renumbers the rest
/// 1..N in increasing order of their old id. Returns (labels, N).
pub fn remove_small_and_relabel(lab: &mut [u32], voxel: [f64; 3], min_volume_um3: f64) -> (Vec<u32>, u32) {
    let top = lab.iter().copied().max().unwrap_or(0) as usize;
    let mut counts = vec![0u64; top + 1];
    for &l in lab.iter() {
        counts[l as usize] += 1;
    }
    let vv = voxel[0] * voxel[1] * voxel[2];
    let mut lut = vec![0u32; top + 1];
    let mut next = 0u32;
    for id in 1..=top {
        if counts[id] > 0 && (counts[id] as f64) * vv >= min_volume_um3 {
            next += 1;
            lut[id] = next;
        }
    }
    let out: Vec<u32> = lab.par_iter().map(|&l| lut[l as usize]).collect();
    (out, next)
}

/// Fills cavities: background not 6-connected to the volume border becomes foreground
/// (as `scipy.ndimage.binary_fill_holes`).
pub fn fill_holes(mask: &mut [bool], dims: [usize; 3]) {
    let [nz, ny, nx] = dims;
    let mut outside = vec![false; mask.len()];
    let mut stack = Vec::new();
    let idx = |z: usize, y: usize, x: usize| (z * ny + y) * nx + x;
    for z in 0..nz {
        for y in 0..ny {
            for x in 0..nx {
                let border = z == 0 || y == 0 || x == 0 || z == nz - 1 || y == ny - 1 || x == nx - 1;
                let i = idx(z, y, x);
                if border && !mask[i] && !outside[i] {
                    outside[i] = true;
                    stack.push(i);
                }
            }
        }
    }
    while let Some(i) = stack.pop() {
        let (z, y, x) = (i / (ny * nx), (i / nx) % ny, i % nx);
        let mut visit = |j: usize| {
            if !mask[j] && !outside[j] {
                outside[j] = true;
                stack.push(j);
            }
        };
        if z > 0 {
            visit(i - ny * nx)
        }
        if z + 1 < nz {
            visit(i + ny * nx)
        }
        if y > 0 {
            visit(i - nx)
        }
        if y + 1 < ny {
            visit(i + nx)
        }
        if x > 0 {
            visit(i - 1)
        }
        if x + 1 < nx {
            visit(i + 1)
        }
    }
    mask.par_iter_mut().zip(outside.par_iter()).for_each(|(m, &o)| *m = *m || !o);
}

/// Radius and normalised weights of a Gaussian kernel truncated at 2 sigma (scipy's `truncate=2.0`).
/// How far (voxels) [`gaussian`] of `sigma` voxels reaches: its kernel's radius.
pub fn gaussian_radius(sigma: f64) -> usize {
    (2.0 * sigma + 0.5) as usize
}

fn gaussian_kernel(sigma: f64) -> (isize, Vec<f64>) {
    let r = gaussian_radius(sigma) as isize;
    let mut k: Vec<f64> = (-r..=r).map(|i| (-0.5 * (i * i) as f64 / (sigma * sigma)).exp()).collect();
    let s: f64 = k.iter().sum();
    k.iter_mut().for_each(|a| *a /= s);
    (r, k)
}

/// Separable Gaussian filter, per-axis sigma in voxels, kernel truncated at 2 sigma,
/// borders by nearest-edge extension (as scipy's `mode="nearest", truncate=2.0`).
///
/// Each pass adds whole planes (z) or rows (y) of the source, weighted, into the output,
/// so the inner loop runs over contiguous memory and vectorises; every output value is
/// still the sum of the same terms in the same order (0 + w0 a0 + w1 a1 ...), so the result
/// is bit for bit that of the per-voxel loop it replaced.
pub fn gaussian(v: &[f32], dims: [usize; 3], sigma: [f64; 3]) -> Vec<f32> {
    let mut cur: Vec<f64> = v.iter().map(|&a| a as f64).collect();
    let (ny, nx) = (dims[1], dims[2]);
    let plane = ny * nx;
    if cur.is_empty() {
        return Vec::new();
    }
    for ax in 0..3 {
        if sigma[ax] <= 0.0 || dims[ax] == 1 {
            continue;
        }
        let (r, k) = gaussian_kernel(sigma[ax]);
        let n = dims[ax] as isize;
        // the source position of tap j for output position pos, edges repeated
        let tap = |pos: usize, j: usize| (pos as isize + j as isize - r).clamp(0, n - 1) as usize;
        let src = cur.clone();
        match ax {
            0 => cur.par_chunks_mut(plane).enumerate().for_each(|(z, out)| {
                out.fill(0.0);
                for (j, w) in k.iter().enumerate() {
                    let q = tap(z, j);
                    for (o, a) in out.iter_mut().zip(&src[q * plane..(q + 1) * plane]) {
                        *o += w * a;
                    }
                }
            }),
            1 => cur.par_chunks_mut(nx).enumerate().for_each(|(row, out)| {
                let (z, y) = (row / ny, row % ny);
                out.fill(0.0);
                for (j, w) in k.iter().enumerate() {
                    let start = (z * ny + tap(y, j)) * nx;
                    for (o, a) in out.iter_mut().zip(&src[start..start + nx]) {
                        *o += w * a;
                    }
                }
            }),
            _ => cur.par_chunks_mut(nx).enumerate().for_each(|(row, out)| {
                let line = &src[row * nx..(row + 1) * nx];
                for (x, o) in out.iter_mut().enumerate() {
                    let mut acc = 0.0;
                    for (j, w) in k.iter().enumerate() {
                        acc += w * line[tap(x, j)];
                    }
                    *o = acc;
                }
            }),
        }
    }
    cur.into_iter().map(|a| a as f32).collect()
}

/// 3x3x3 maximum filter with nearest-edge borders: per axis, the maximum of each plane
/// (z) or row (y) with its neighbours, over contiguous memory; along x within each row.
fn max_filter3(v: &[f32], dims: [usize; 3]) -> Vec<f32> {
    let (ny, nx) = (dims[1], dims[2]);
    let plane = ny * nx;
    let mut cur = v.to_vec();
    if cur.is_empty() {
        return cur;
    }
    // the neighbours of position pos along an axis of n (itself at the edges)
    let around = |pos: usize, n: usize| [pos.saturating_sub(1), (pos + 1).min(n - 1)];
    for ax in 0..3 {
        let src = cur.clone();
        let max_of = |out: &mut [f32], a: &[f32], b: &[f32]| {
            for ((o, x), y) in out.iter_mut().zip(a).zip(b) {
                *o = o.max(*x).max(*y);
            }
        };
        match ax {
            0 => cur.par_chunks_mut(plane).enumerate().for_each(|(z, out)| {
                let [a, b] = around(z, dims[0]);
                max_of(out, &src[a * plane..(a + 1) * plane], &src[b * plane..(b + 1) * plane]);
            }),
            1 => cur.par_chunks_mut(nx).enumerate().for_each(|(row, out)| {
                let (z, y) = (row / ny, row % ny);
                let [a, b] = around(y, ny).map(|q| (z * ny + q) * nx);
                max_of(out, &src[a..a + nx], &src[b..b + nx]);
            }),
            _ => cur.par_chunks_mut(nx).enumerate().for_each(|(row, out)| {
                let line = &src[row * nx..(row + 1) * nx];
                for (x, o) in out.iter_mut().enumerate() {
                    let [a, b] = around(x, nx);
                    *o = o.max(line[a]).max(line[b]);
                }
            }),
        }
    }
    cur
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The per-voxel definition the fast filter must reproduce exactly.
    fn gaussian_reference(v: &[f32], dims: [usize; 3], sigma: [f64; 3]) -> Vec<f32> {
        let mut cur: Vec<f64> = v.iter().map(|&a| a as f64).collect();
        let strides = [dims[1] * dims[2], dims[2], 1];
        for ax in 0..3 {
            if sigma[ax] <= 0.0 || dims[ax] == 1 {
                continue;
            }
            let (r, k) = gaussian_kernel(sigma[ax]);
            let (n, st) = (dims[ax] as isize, strides[ax]);
            let src = cur.clone();
            for (i, o) in cur.iter_mut().enumerate() {
                let pos = ((i / st) % dims[ax]) as isize;
                let base = i as isize - pos * st as isize;
                let mut acc = 0.0;
                for (j, w) in k.iter().enumerate() {
                    let q = (pos + j as isize - r).clamp(0, n - 1);
                    acc += w * src[(base + q * st as isize) as usize];
                }
                *o = acc;
            }
        }
        cur.into_iter().map(|a| a as f32).collect()
    }

    #[test]
    fn the_mask_box_gives_the_whole_volumes_labels() {
        // a generated embryo, its nuclei as foreground with a hole punched in one and
        // blobs at their centres, placed off-centre in a larger empty volume (one side
        // flush with the volume's edge): every marker mode and landscape, cropped to the
        // mask's box or not, gives the same labels voxel for voxel
        let s = crate::synth::generate(&crate::synth::SynthParams { dims: [20, 50, 50], n_nuclei: 10, seed: 3, ..Default::default() });
        let dims = [30usize, 72, 66];
        let n: usize = dims.iter().product();
        let (mut fg, mut centre) = (vec![0f32; n], vec![0f32; n]);
        let [sz, sy, sx] = s.dims;
        let at = |z: usize, y: usize, x: usize| ((z + 8) * dims[1] + y + 11) * dims[2] + x;
        for z in 0..sz {
            for y in 0..sy {
                for x in 0..sx {
                    let l = s.labels[(z * sy + y) * sx + x];
                    if l > 0 {
                        fg[at(z, y, x)] = 0.9;
                    }
                }
            }
        }
        let centres = crate::measure::measure(&s.labels, s.dims, [1.0; 3], None).unwrap();
        // a hole: the centroid voxel of the largest nucleus
        let big = centres.iter().max_by_key(|c| c.voxels).unwrap();
        let hole = at(big.centroid[0].round() as usize, big.centroid[1].round() as usize, big.centroid[2].round() as usize);
        assert!(fg[hole] > 0.5);
        fg[hole] = 0.1;
        for c in &centres {
            let (z, y, x) = (c.centroid[0].round() as usize, c.centroid[1].round() as usize, c.centroid[2].round() as usize);
            for dz in 0..2 {
                for dy in 0..3 {
                    for dx in 0..3 {
                        centre[at((z + dz).min(sz - 1), (y + dy).min(sy - 1), (x + dx).min(sx - 1))] = 0.8;
                    }
                }
            }
        }
        assert!(centres.len() >= 4, "{} nuclei", centres.len());
        let voxel = [1.75, 0.8, 0.8];
        for (markers, landscape, sigma) in [
            (MarkerMode::Components, Landscape::Distance, 0.0),
            (MarkerMode::LocalMaxima, Landscape::Distance, 1.5),
            (MarkerMode::LocalMaxima, Landscape::Centre, 0.0),
        ] {
            let p = PostParams { markers, landscape, marker_sigma_um: sigma, centre_threshold: 0.1, ..Default::default() };
            let (a, na, _) = postprocess_in(&fg, &centre, dims, voxel, &p, true).unwrap();
            let (b, nb, _) = postprocess_in(&fg, &centre, dims, voxel, &p, false).unwrap();
            assert!(na >= 4, "{markers:?}: {na} nuclei");
            assert!(a[hole] > 0, "{markers:?}: the hole is filled and labelled");
            assert_eq!(na, nb, "{markers:?} {landscape:?}");
            assert!(a == b, "{markers:?} {landscape:?}: {} voxels differ", a.iter().zip(&b).filter(|(x, y)| x != y).count());
        }
        // an empty mask: no nuclei, all zero
        let (e, ne, _) = postprocess_in(&vec![0.1; n], &centre, dims, voxel, &PostParams::default(), true).unwrap();
        assert_eq!((ne, e.iter().all(|&v| v == 0)), (0, true));
    }

    #[test]
    fn the_distance_transform_of_the_box_is_the_volumes() {
        // random specks in part of a volume: with a margin of one voxel the box holds every
        // mask voxel's nearest background voxel; with none it would not
        let dims = [14usize, 30, 26];
        let n: usize = dims.iter().product();
        let mut rng = crate::synth::Rng::new(7);
        let mut mask = vec![false; n];
        for z in 3..11 {
            for y in 5..22 {
                for x in 4..19 {
                    mask[(z * dims[1] + y) * dims[2] + x] = rng.uniform() < 0.8;
                }
            }
        }
        let voxel = [1.75, 0.8, 0.8];
        let whole = crate::edt::negative_edt(&mask, dims, voxel);
        for (margin, equal) in [([1, 1, 1], true), ([3, 2, 1], true), ([0, 0, 0], false)] {
            let crop = Crop::around(&mask, dims, margin).unwrap();
            let part = crate::edt::negative_edt(&crop.cut(&mask, dims), crop.dims(), voxel);
            assert_eq!(part == crop.cut(&whole, dims), equal, "margin {margin:?}");
        }
        // cut and paste are inverse inside the box and zero outside it
        let crop = Crop::around(&mask, dims, [1; 3]).unwrap();
        assert_eq!((crop.start, crop.end), ([2, 4, 3], [12, 23, 20]));
        let ids: Vec<u32> = (0..n as u32).collect();
        let back = crop.paste(crop.cut(&ids, dims), dims);
        for (i, &v) in back.iter().enumerate() {
            let (z, y, x) = (i / (dims[1] * dims[2]), (i / dims[2]) % dims[1], i % dims[2]);
            let inside = (2..12).contains(&z) && (4..23).contains(&y) && (3..20).contains(&x);
            assert_eq!(v, if inside { i as u32 } else { 0 });
        }
    }

    #[test]
    fn max_filter_is_the_maximum_of_the_3x3x3_neighbourhood() {
        let mut rng = crate::synth::Rng::new(5);
        for dims in [[4, 5, 6], [1, 1, 3], [3, 1, 1], [2, 7, 1]] {
            let v: Vec<f32> = (0..dims.iter().product()).map(|_| rng.uniform() as f32).collect();
            let m = max_filter3(&v, dims);
            let at = |z: isize, y: isize, x: isize| {
                let c = |p: isize, n: usize| p.clamp(0, n as isize - 1) as usize;
                v[(c(z, dims[0]) * dims[1] + c(y, dims[1])) * dims[2] + c(x, dims[2])]
            };
            for z in 0..dims[0] as isize {
                for y in 0..dims[1] as isize {
                    for x in 0..dims[2] as isize {
                        let mut best = f32::MIN;
                        for dz in -1..=1 {
                            for dy in -1..=1 {
                                for dx in -1..=1 {
                                    best = best.max(at(z + dz, y + dy, x + dx));
                                }
                            }
                        }
                        assert_eq!(m[((z as usize) * dims[1] + y as usize) * dims[2] + x as usize], best);
                    }
                }
            }
        }
    }

    #[test]
    fn gaussian_equals_its_per_voxel_definition_bit_for_bit() {
        let mut rng = crate::synth::Rng::new(3);
        for (dims, sigma) in [([7, 9, 11], [1.4, 3.1, 3.1]), ([1, 5, 4], [2.0, 0.6, 0.0]), ([12, 3, 2], [0.0, 5.0, 1.0])] {
            let v: Vec<f32> = (0..dims.iter().product()).map(|_| rng.uniform() as f32).collect();
            let a = gaussian(&v, dims, sigma);
            let b = gaussian_reference(&v, dims, sigma);
            assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()), "{dims:?} {sigma:?}");
        }
    }

    fn ball(dims: [usize; 3], c: [f64; 3], r: f64, voxel: [f64; 3]) -> Vec<f32> {
        let [nz, ny, nx] = dims;
        let mut out = vec![0f32; nz * ny * nx];
        for z in 0..nz {
            for y in 0..ny {
                for x in 0..nx {
                    let d = (((z as f64 - c[0]) * voxel[0]).powi(2)
                        + ((y as f64 - c[1]) * voxel[1]).powi(2)
                        + ((x as f64 - c[2]) * voxel[2]).powi(2))
                    .sqrt();
                    out[(z * ny + y) * nx + x] = (1.0 - d / r).max(0.0) as f32;
                }
            }
        }
        out
    }

    #[test]
    fn two_touching_balls_become_two_nuclei() {
        let dims = [12, 24, 40];
        let v = [1.0, 1.0, 1.0];
        let a = ball(dims, [6.0, 12.0, 13.0], 7.0, v);
        let b = ball(dims, [6.0, 12.0, 26.0], 7.0, v);
        let fg: Vec<f32> = a.iter().zip(&b).map(|(x, y)| if x.max(*y) > 0.0 { 0.95 } else { 0.02 }).collect();
        let cen: Vec<f32> = a.iter().zip(&b).map(|(x, y)| x.max(*y)).collect();
        for mode in [MarkerMode::LocalMaxima, MarkerMode::Components] {
            let p = PostParams { markers: mode, centre_threshold: 0.6, ..Default::default() };
            let (lab, n) = postprocess(&fg, &cen, dims, v, &p).unwrap();
            assert_eq!(n, 2, "{mode:?}");
            assert_ne!(lab[(6 * 24 + 12) * 40 + 13], lab[(6 * 24 + 12) * 40 + 26]);
        }
        // QCANet's rule with a low threshold merges the blobs into one marker
        let p = PostParams { markers: MarkerMode::Components, centre_threshold: 0.01, ..Default::default() };
        assert_eq!(postprocess(&fg, &cen, dims, v, &p).unwrap().1, 1);
    }

    #[test]
    fn unmarked_components_are_kept_and_small_ones_dropped() {
        let dims = [4, 10, 10];
        let mut fg = vec![0f32; 400];
        for z in 0..4 {
            for y in 2..6 {
                for x in 2..6 {
                    fg[(z * 10 + y) * 10 + x] = 1.0;
                }
            }
        }
        fg[(1 * 10 + 8) * 10 + 8] = 1.0; // one stray voxel
        let cen = vec![0f32; 400];
        let p = PostParams::default();
        assert_eq!(postprocess(&fg, &cen, dims, [1.0; 3], &p).unwrap().1, 2);
        let p = PostParams { min_volume_um3: 2.0, ..Default::default() };
        assert_eq!(postprocess(&fg, &cen, dims, [1.0; 3], &p).unwrap().1, 1);
    }

    #[test]
    fn holes_are_filled() {
        let dims = [5, 5, 5];
        let mut m = vec![true; 125];
        m[62] = false; // centre
        m[0] = false; // corner touches the border: stays background
        fill_holes(&mut m, dims);
        assert!(m[62]);
        assert!(!m[0]);
    }

    #[test]
    fn nan_and_size_mismatch_are_errors() {
        let p = PostParams::default();
        assert!(matches!(postprocess(&[f32::NAN; 8], &[0.0; 8], [2, 2, 2], [1.0; 3], &p), Err(Error::NonFinite(8))));
        assert!(postprocess(&[0.0; 7], &[0.0; 8], [2, 2, 2], [1.0; 3], &p).is_err());
        // parameters are checked by the public entry (and by the plan), once
        assert!(crate::postprocess_probabilities(&[0.0; 8], &[0.0; 8], [2, 2, 2], [0.0, 1.0, 1.0], &p).is_err());
        let bad = PostParams { fg_threshold: 2.0, ..PostParams::default() };
        assert!(crate::postprocess_probabilities(&[0.0; 8], &[0.0; 8], [2, 2, 2], [1.0; 3], &bad).is_err());
    }
}
