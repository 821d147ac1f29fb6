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
    let top = labels.par_iter().copied().max().unwrap_or(0) as usize;
    if top > 50_000_000 {
        return Err(Error::invalid(format!("label {top} is too large to measure")));
    }
    let plane = dims[1] * dims[2];
    let accs = (0..dims[0])
        .into_par_iter()
        .fold(
            || vec![Acc::new(); top + 1],
            |mut acc, z| {
                for i in z * plane..(z + 1) * plane {
                    let l = labels[i] as usize;
                    if l == 0 {
                        continue;
                    }
                    let c = [z as u32, ((i / dims[2]) % dims[1]) as u32, (i % dims[2]) as u32];
                    let a = &mut acc[l];
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
                acc
            },
        )
        .reduce(
            || vec![Acc::new(); top + 1],
            |mut a, b| {
                for (x, y) in a.iter_mut().zip(&b) {
                    x.merge(y);
                }
                a
            },
        );
    let vv = voxel[0] * voxel[1] * voxel[2];
    Ok(accs
        .iter()
        .enumerate()
        .skip(1)
        .filter(|(_, a)| a.n > 0)
        .map(|(l, a)| {
            let c = [a.sum[0] / a.n as f64, a.sum[1] / a.n as f64, a.sum[2] / a.n as f64];
            Nucleus {
                label: l as u32,
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
        .collect())
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
}
