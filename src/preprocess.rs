//! Input conditioning: per-volume normalisation and resampling between grids.

use rayon::prelude::*;

use crate::error::{Error, Result};

/// How a model wants its input scaled (ONNX metadata `qcanet.normalization`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Normalization {
    /// (v - P_lo) / (P_hi - P_lo), clipped to [0, 1]; percentiles as numpy's default (linear).
    Percentile { lo: f64, hi: f64 },
    /// (v - min) / (max - min).
    MinMax,
    /// Values passed through unchanged.
    None,
}

impl std::fmt::Display for Normalization {
    /// The metadata spelling, which [`Normalization::parse`] reads back.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Normalization::Percentile { lo, hi } => write!(f, "percentile:{lo},{hi}"),
            Normalization::MinMax => f.write_str("minmax"),
            Normalization::None => f.write_str("none"),
        }
    }
}

impl Normalization {
    /// Parses `percentile:1,99.9`, `minmax` or `none`.
    pub fn parse(s: &str) -> Result<Self> {
        let s = s.trim();
        if let Some(rest) = s.strip_prefix("percentile:") {
            let v: Vec<f64> = rest.split(',').map(|a| a.trim().parse::<f64>()).collect::<std::result::Result<_, _>>()
                .map_err(|_| Error::Model(format!("bad normalization '{s}'")))?;
            if v.len() != 2 || !(0.0..=100.0).contains(&v[0]) || !(v[0] < v[1] && v[1] <= 100.0) {
                return Err(Error::Model(format!("bad normalization '{s}'")));
            }
            return Ok(Normalization::Percentile { lo: v[0], hi: v[1] });
        }
        match s {
            "minmax" => Ok(Normalization::MinMax),
            "none" => Ok(Normalization::None),
            _ => Err(Error::Model(format!("unknown normalization '{s}' (percentile:LO,HI | minmax | none)"))),
        }
    }
}

/// The q-th percentile (0..=100) with numpy's linear interpolation. `v` is reordered.
pub fn percentile(v: &mut [f32], q: f64) -> f64 {
    let n = v.len();
    if n == 0 {
        return 0.0;
    }
    let pos = q / 100.0 * (n - 1) as f64;
    let lo = pos.floor() as usize;
    let frac = pos - lo as f64;
    let (_, a, rest) = v.select_nth_unstable_by(lo, |a, b| a.total_cmp(b));
    let a = *a as f64;
    if frac == 0.0 || rest.is_empty() {
        return a;
    }
    let b = rest.iter().copied().fold(f32::INFINITY, f32::min) as f64;
    a + frac * (b - a)
}

/// Normalises a volume; NaN or infinite input is an error.
pub fn normalise(v: &[f32], how: Normalization) -> Result<Vec<f32>> {
    let bad = v.par_iter().filter(|a| !a.is_finite()).count();
    if bad > 0 {
        return Err(Error::NonFinite(bad));
    }
    let (lo, hi) = match how {
        Normalization::None => return Ok(v.to_vec()),
        Normalization::MinMax => {
            let lo = v.par_iter().copied().reduce(|| f32::INFINITY, f32::min) as f64;
            let hi = v.par_iter().copied().reduce(|| f32::NEG_INFINITY, f32::max) as f64;
            (lo, hi)
        }
        Normalization::Percentile { lo, hi } => {
            let mut tmp = v.to_vec();
            let a = percentile(&mut tmp, lo);
            let b = percentile(&mut tmp, hi);
            (a, b)
        }
    };
    let scale = if hi > lo { 1.0 / (hi - lo) } else { 0.0 };
    Ok(v.par_iter().map(|&a| (((a as f64 - lo) * scale).clamp(0.0, 1.0)) as f32).collect())
}

/// Shape after resampling from voxel size `from` to `to` (rounded, at least 1).
pub fn resampled_dims(dims: [usize; 3], from: [f64; 3], to: [f64; 3]) -> [usize; 3] {
    let mut out = [0; 3];
    for k in 0..3 {
        out[k] = ((dims[k] as f64 * from[k] / to[k]).round() as usize).max(1);
    }
    out
}

/// Source coordinate (and weight) of each output index, pixel-centre aligned
/// (`align_corners=False`), clamped at the borders.
fn axis_map(n_in: usize, n_out: usize) -> Vec<(usize, usize, f32)> {
    let scale = n_in as f64 / n_out as f64;
    (0..n_out)
        .map(|o| {
            let s = ((o as f64 + 0.5) * scale - 0.5).clamp(0.0, (n_in - 1) as f64);
            let i0 = s.floor() as usize;
            let i1 = (i0 + 1).min(n_in - 1);
            (i0, i1, (s - i0 as f64) as f32)
        })
        .collect()
}

/// Trilinear resampling of a (z, y, x) volume to `out` dims.
pub fn resample_linear(v: &[f32], dims: [usize; 3], out: [usize; 3]) -> Vec<f32> {
    if dims == out {
        return v.to_vec();
    }
    let (mz, my, mx) = (axis_map(dims[0], out[0]), axis_map(dims[1], out[1]), axis_map(dims[2], out[2]));
    let (sy, sz) = (dims[2], dims[1] * dims[2]);
    let mut res = vec![0f32; out[0] * out[1] * out[2]];
    res.par_chunks_mut(out[1] * out[2]).enumerate().for_each(|(z, pl)| {
        let (z0, z1, wz) = mz[z];
        for (y, &(y0, y1, wy)) in my.iter().enumerate() {
            for (x, &(x0, x1, wx)) in mx.iter().enumerate() {
                let g = |a: usize, b: usize, c: usize| v[a * sz + b * sy + c];
                let c00 = g(z0, y0, x0) * (1.0 - wx) + g(z0, y0, x1) * wx;
                let c01 = g(z0, y1, x0) * (1.0 - wx) + g(z0, y1, x1) * wx;
                let c10 = g(z1, y0, x0) * (1.0 - wx) + g(z1, y0, x1) * wx;
                let c11 = g(z1, y1, x0) * (1.0 - wx) + g(z1, y1, x1) * wx;
                let c0 = c00 * (1.0 - wy) + c01 * wy;
                let c1 = c10 * (1.0 - wy) + c11 * wy;
                pl[y * out[2] + x] = c0 * (1.0 - wz) + c1 * wz;
            }
        }
    });
    res
}

/// Nearest-neighbour resampling of labels to `out` dims.
pub fn resample_nearest(v: &[u32], dims: [usize; 3], out: [usize; 3]) -> Vec<u32> {
    if dims == out {
        return v.to_vec();
    }
    let near = |n_in: usize, n_out: usize| -> Vec<usize> {
        let scale = n_in as f64 / n_out as f64;
        (0..n_out).map(|o| (((o as f64 + 0.5) * scale) as usize).min(n_in - 1)).collect()
    };
    let (mz, my, mx) = (near(dims[0], out[0]), near(dims[1], out[1]), near(dims[2], out[2]));
    let (sy, sz) = (dims[2], dims[1] * dims[2]);
    let mut res = vec![0u32; out[0] * out[1] * out[2]];
    res.par_chunks_mut(out[1] * out[2]).enumerate().for_each(|(z, pl)| {
        for (y, &yy) in my.iter().enumerate() {
            for (x, &xx) in mx.iter().enumerate() {
                pl[y * out[2] + x] = v[mz[z] * sz + yy * sy + xx];
            }
        }
    });
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_matches_numpy() {
        // numpy.percentile([1, 2, 3, 4, 10], [1, 50, 99.9]) == [1.04, 3.0, 9.976]
        let mut v = vec![10.0, 2.0, 4.0, 1.0, 3.0];
        assert!((percentile(&mut v, 1.0) - 1.04).abs() < 1e-9);
        assert!((percentile(&mut v, 50.0) - 3.0).abs() < 1e-9);
        assert!((percentile(&mut v, 99.9) - 9.976).abs() < 1e-6);
    }

    #[test]
    fn normalise_clips_and_rejects_nan() {
        let v: Vec<f32> = (0..1000).map(|i| i as f32).collect();
        let n = normalise(&v, Normalization::Percentile { lo: 1.0, hi: 99.0 }).unwrap();
        assert_eq!(n[0], 0.0);
        assert_eq!(n[999], 1.0);
        assert!((n[500] - 0.5).abs() < 0.01);
        assert!(matches!(normalise(&[1.0, f32::NAN], Normalization::MinMax), Err(Error::NonFinite(1))));
        assert_eq!(Normalization::parse("percentile:1,99.9").unwrap(), Normalization::Percentile { lo: 1.0, hi: 99.9 });
        assert!(Normalization::parse("zscore").is_err());
    }

    #[test]
    fn resampling_round_trip_keeps_labels() {
        let dims = [4, 6, 6];
        let lab: Vec<u32> = (0..144).map(|i| (i / 36) as u32).collect();
        let up = resample_nearest(&lab, dims, [8, 6, 6]);
        assert_eq!(resample_nearest(&up, [8, 6, 6], dims), lab);
        let v: Vec<f32> = vec![2.5; 144];
        assert!(resample_linear(&v, dims, [9, 3, 5]).iter().all(|&a| (a - 2.5).abs() < 1e-6));
        assert_eq!(resampled_dims([51, 120, 120], [1.75, 0.8, 0.8], [0.8, 0.8, 0.8]), [112, 120, 120]);
    }
}
