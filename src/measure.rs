//! Per-nucleus measurements of a label volume: the quantities biologists track.

use rayon::prelude::*;
use serde::Serialize;

use crate::error::{voxel_count, Error, Result};

/// One nucleus. Coordinates are voxel indices (z, y, x) on the label grid;
/// `centroid_um` is the centroid in micrometres; the bounding box is inclusive.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Nucleus {
    pub label: u32,
    pub voxels: u64,
    pub volume_um3: f64,
    pub centroid: [f64; 3],
    pub centroid_um: [f64; 3],
    pub bbox_min: [u32; 3],
    pub bbox_max: [u32; 3],
    pub mean_intensity: f64,
    pub total_intensity: f64,
}

#[derive(Clone)]
struct Acc {
    n: u64,
    sum: [f64; 3],
    min: [u32; 3],
    max: [u32; 3],
    isum: f64,
}

impl Acc {
    fn new() -> Self {
        Acc { n: 0, sum: [0.0; 3], min: [u32::MAX; 3], max: [0; 3], isum: 0.0 }
    }
    fn merge(&mut self, o: &Acc) {
        self.n += o.n;
        for k in 0..3 {
            self.sum[k] += o.sum[k];
            self.min[k] = self.min[k].min(o.min[k]);
            self.max[k] = self.max[k].max(o.max[k]);
        }
        self.isum += o.isum;
    }
}

/// Largest label value measured (the index of present labels is a bitset of this many bits).
pub const MAX_LABEL: u32 = 50_000_000;
/// Most distinct labels measured in one volume: per-label tables are sized by this count,
/// never by the largest label, so sparse or huge ids cannot ask for gigabytes.
pub const MAX_DISTINCT_LABELS: usize = 1_000_000;

/// The distinct labels > 0 of a volume and a dense index of each (0..count), for tables
/// sized by the labels present rather than by the largest one.
pub struct LabelIndex {
    /// One bit per label value 0..=max.
    bits: Vec<u64>,
    /// Set bits before each word.
    before: Vec<u32>,
    /// The labels present, ascending.
    pub labels: Vec<u32>,
}

impl LabelIndex {
    /// Refuses labels over [`MAX_LABEL`] and more than [`MAX_DISTINCT_LABELS`] of them.
    pub fn of(labels: &[u32]) -> Result<LabelIndex> {
        let top = labels.par_iter().copied().max().unwrap_or(0);
        if top > MAX_LABEL {
            return Err(Error::invalid(format!("label {top} is too large to measure (at most {MAX_LABEL})")));
        }
        let words = top as usize / 64 + 1;
        let bits = labels
            .par_chunks(1 << 16)
            .fold(
                || vec![0u64; words],
                |mut b, chunk| {
                    for &l in chunk {
                        b[l as usize / 64] |= 1 << (l % 64);
                    }
                    b
                },
            )
            .reduce(
                || vec![0u64; words],
                |mut a, b| {
                    a.iter_mut().zip(&b).for_each(|(x, y)| *x |= y);
                    a
                },
            );
        let mut bits = bits;
        bits[0] &= !1; // background
        let count: usize = bits.iter().map(|w| w.count_ones() as usize).sum();
        if count > MAX_DISTINCT_LABELS {
            return Err(Error::invalid(format!("{count} distinct labels; at most {MAX_DISTINCT_LABELS} are measured")));
        }
        let mut before = Vec::with_capacity(words);
        let mut acc = 0u32;
        let mut present = Vec::with_capacity(count);
        for (i, w) in bits.iter().enumerate() {
            before.push(acc);
            acc += w.count_ones();
            let mut w = *w;
            while w != 0 {
                present.push(i as u32 * 64 + w.trailing_zeros());
                w &= w - 1;
            }
        }
        Ok(LabelIndex { bits, before, labels: present })
    }

    /// Labels present.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The dense index of a label present (`l > 0`, set in the volume this index was made from).
    #[inline]
    pub fn index(&self, l: u32) -> usize {
        let w = l as usize / 64;
        (self.before[w] + (self.bits[w] & ((1u64 << (l % 64)) - 1)).count_ones()) as usize
    }
}

/// Measures every label > 0. `intensity` (same length) is optional: without it the
/// intensity fields are 0. Nuclei come back sorted by label.
pub fn measure(labels: &[u32], dims: [usize; 3], voxel: [f64; 3], intensity: Option<&[f32]>) -> Result<Vec<Nucleus>> {
    let n = voxel_count(dims)?;
    if labels.len() != n {
        return Err(Error::invalid(format!("labels hold {} values, dims {dims:?} need {n}", labels.len())));
    }
    if let Some(i) = intensity {
        if i.len() != n {
            return Err(Error::invalid(format!("intensity holds {} values, labels {n}", i.len())));
        }
    }
    crate::plan::check_voxel_size(voxel, "the voxel size")?;
    let index = LabelIndex::of(labels)?;
    let plane = dims[1] * dims[2];
    let accs = (0..dims[0])
        .into_par_iter()
        .fold(
            || vec![Acc::new(); index.len()],
            |mut acc, z| {
                let at = z * plane..(z + 1) * plane;
                add_plane(&mut acc, |l| index.index(l), z, &labels[at.clone()], intensity.map(|i| &i[at]), dims[2]);
                acc
            },
        )
        .reduce(
            || vec![Acc::new(); index.len()],
            |mut a, b| {
                for (x, y) in a.iter_mut().zip(&b) {
                    x.merge(y);
                }
                a
            },
        );
    Ok(nuclei(&accs, &index.labels, voxel))
}

/// Adds plane `z` (labels, and intensities of the same length) to the table; `slot` gives a
/// label's row. The one place where a voxel is counted.
fn add_plane(accs: &mut [Acc], slot: impl Fn(u32) -> usize, z: usize, labels: &[u32], intensity: Option<&[f32]>, nx: usize) {
    for (i, &l) in labels.iter().enumerate() {
        if l == 0 {
            continue;
        }
        let c = [z as u32, (i / nx) as u32, (i % nx) as u32];
        let a = &mut accs[slot(l)];
        a.n += 1;
        for k in 0..3 {
            a.sum[k] += c[k] as f64;
            a.min[k] = a.min[k].min(c[k]);
            a.max[k] = a.max[k].max(c[k]);
        }
        if let Some(iv) = intensity {
            a.isum += iv[i] as f64;
        }
    }
}

/// The nuclei of a table whose rows belong to `labels` (rows with no voxel are skipped).
fn nuclei(accs: &[Acc], labels: &[u32], voxel: [f64; 3]) -> Vec<Nucleus> {
    let vv = voxel[0] * voxel[1] * voxel[2];
    accs.iter()
        .zip(labels)
        .filter(|(a, _)| a.n > 0)
        .map(|(a, &l)| {
            let c = [a.sum[0] / a.n as f64, a.sum[1] / a.n as f64, a.sum[2] / a.n as f64];
            Nucleus {
                label: l,
                voxels: a.n,
                volume_um3: a.n as f64 * vv,
                centroid: c,
                centroid_um: [c[0] * voxel[0], c[1] * voxel[1], c[2] * voxel[2]],
                bbox_min: a.min,
                bbox_max: a.max,
                mean_intensity: a.isum / a.n as f64,
                total_intensity: a.isum,
            }
        })
        .collect()
}

/// [`measure`] for a volume that is never whole in memory (segmented block by block): planes
/// are added in z order, and the labels are `1..=max_label`, as a block run numbers them, so
/// the table is sized by the nuclei. Gives what [`measure`] gives on the whole volume: exactly
/// for integer intensities (f32 ones are summed in another order, so the last bits may differ).
pub struct PlaneMeasure {
    dims: [usize; 3],
    accs: Vec<Acc>,
    next_z: usize,
}

impl PlaneMeasure {
    /// Refuses more than [`MAX_DISTINCT_LABELS`] labels.
    pub fn new(dims: [usize; 3], max_label: u32) -> Result<PlaneMeasure> {
        voxel_count(dims)?;
        if max_label as usize > MAX_DISTINCT_LABELS {
            return Err(Error::invalid(format!("{max_label} labels; at most {MAX_DISTINCT_LABELS} are measured")));
        }
        Ok(PlaneMeasure { dims, accs: vec![Acc::new(); max_label as usize], next_z: 0 })
    }

    /// Adds the next z plane: its labels and, optionally, its intensities.
    pub fn add(&mut self, labels: &[u32], intensity: Option<&[f32]>) -> Result<()> {
        let plane = self.dims[1] * self.dims[2];
        if self.next_z >= self.dims[0] {
            return Err(Error::invalid(format!("plane {} added to a volume of {} planes", self.next_z, self.dims[0])));
        }
        if labels.len() != plane || intensity.is_some_and(|i| i.len() != plane) {
            return Err(Error::invalid(format!("a plane of {:?} holds {plane} values", &self.dims[1..])));
        }
        let top = self.accs.len() as u32;
        if let Some(&l) = labels.iter().find(|&&l| l > top) {
            return Err(Error::invalid(format!("label {l} in plane {}; the labels measured are 1..={top}", self.next_z)));
        }
        add_plane(&mut self.accs, |l| l as usize - 1, self.next_z, labels, intensity, self.dims[2]);
        self.next_z += 1;
        Ok(())
    }

    /// The nuclei, sorted by label, once every plane was added.
    pub fn finish(self, voxel: [f64; 3]) -> Result<Vec<Nucleus>> {
        if self.next_z != self.dims[0] {
            return Err(Error::invalid(format!("{} of {} planes measured", self.next_z, self.dims[0])));
        }
        crate::plan::check_voxel_size(voxel, "the voxel size")?;
        let labels: Vec<u32> = (1..=self.accs.len() as u32).collect();
        Ok(nuclei(&self.accs, &labels, voxel))
    }
}

/// CSV with a header row; one line per nucleus.
pub fn to_csv(nuclei: &[Nucleus]) -> String {
    let mut s = String::from(
        "label,voxels,volume_um3,centroid_z,centroid_y,centroid_x,centroid_z_um,centroid_y_um,centroid_x_um,\
         bbox_z0,bbox_y0,bbox_x0,bbox_z1,bbox_y1,bbox_x1,mean_intensity,total_intensity\n",
    );
    for n in nuclei {
        s.push_str(&format!(
            "{},{},{:.4},{:.3},{:.3},{:.3},{:.4},{:.4},{:.4},{},{},{},{},{},{},{:.4},{:.4}\n",
            n.label,
            n.voxels,
            n.volume_um3,
            n.centroid[0],
            n.centroid[1],
            n.centroid[2],
            n.centroid_um[0],
            n.centroid_um[1],
            n.centroid_um[2],
            n.bbox_min[0],
            n.bbox_min[1],
            n.bbox_min[2],
            n.bbox_max[0],
            n.bbox_max[1],
            n.bbox_max[2],
            n.mean_intensity,
            n.total_intensity
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn box_nucleus_measures_exactly() {
        let dims = [2, 3, 4];
        let mut lab = vec![0u32; 24];
        let mut img = vec![0f32; 24];
        for z in 0..2 {
            for y in 1..3 {
                for x in 1..3 {
                    lab[(z * 3 + y) * 4 + x] = 3;
                    img[(z * 3 + y) * 4 + x] = 2.0;
                }
            }
        }
        let m = measure(&lab, dims, [2.0, 0.5, 0.5], Some(&img)).unwrap();
        assert_eq!(m.len(), 1);
        let n = &m[0];
        assert_eq!((n.label, n.voxels), (3, 8));
        assert!((n.volume_um3 - 4.0).abs() < 1e-12);
        assert_eq!(n.centroid, [0.5, 1.5, 1.5]);
        assert_eq!(n.centroid_um, [1.0, 0.75, 0.75]);
        assert_eq!((n.bbox_min, n.bbox_max), ([0, 1, 1], [1, 2, 2]));
        assert_eq!((n.mean_intensity, n.total_intensity), (2.0, 16.0));
        assert!(to_csv(&m).lines().nth(1).unwrap().starts_with("3,8,4.0000,"));
        assert!(measure(&lab[..5], dims, [1.0; 3], None).is_err());
    }

    #[test]
    fn planes_added_one_by_one_measure_as_the_whole_volume() {
        let v = crate::synth::generate(&crate::synth::SynthParams { n_nuclei: 9, seed: 3, ..Default::default() });
        let img: Vec<f32> = v.image.iter().map(|&a| a as f32).collect();
        let voxel = [1.75, 0.8, 0.8];
        let whole = measure(&v.labels, v.dims, voxel, Some(&img)).unwrap();
        let top = *v.labels.iter().max().unwrap();
        let plane = v.dims[1] * v.dims[2];
        let mut m = PlaneMeasure::new(v.dims, top).unwrap();
        for (l, i) in v.labels.chunks(plane).zip(img.chunks(plane)) {
            m.add(l, Some(i)).unwrap();
        }
        assert_eq!(m.finish(voxel).unwrap(), whole);
        // refusals: a label over the count, a short plane, too many or too few planes
        let mut m = PlaneMeasure::new([2, 1, 2], 1).unwrap();
        assert!(m.add(&[0, 2], None).is_err());
        assert!(m.add(&[0], None).is_err());
        m.add(&[1, 0], None).unwrap();
        assert!(PlaneMeasure::new([2, 1, 2], 1).unwrap().finish([1.0; 3]).is_err());
        m.add(&[0, 1], None).unwrap();
        assert!(m.add(&[0, 1], None).is_err());
        let n = m.finish([1.0; 3]).unwrap();
        assert_eq!((n[0].voxels, n[0].bbox_min, n[0].bbox_max), (2, [0, 0, 0], [1, 0, 1]));
        assert!(PlaneMeasure::new([1, 1, 1], MAX_DISTINCT_LABELS as u32 + 1).is_err());
    }

    #[test]
    fn sparse_large_labels_are_measured_in_tables_of_the_labels_present() {
        let lab = [0, 49_999_999, 7, 7, 0, 1 << 20];
        let m = measure(&lab, [1, 2, 3], [1.0; 3], None).unwrap();
        assert_eq!(m.iter().map(|n| (n.label, n.voxels)).collect::<Vec<_>>(), vec![(7, 2), (1 << 20, 1), (49_999_999, 1)]);
        assert!(measure(&[MAX_LABEL + 1], [1, 1, 1], [1.0; 3], None).is_err());
        let idx = LabelIndex::of(&lab).unwrap();
        assert_eq!(idx.labels, vec![7, 1 << 20, 49_999_999]);
        assert_eq!((idx.index(7), idx.index(1 << 20), idx.index(49_999_999)), (0, 1, 2));
    }
}
