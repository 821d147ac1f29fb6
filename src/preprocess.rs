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
            let v: Vec<f64> = rest
                .split(',')
                .map(|a| a.trim().parse::<f64>())
                .collect::<std::result::Result<_, _>>()
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

/// A normalisation resolved for one volume: the affine map `v -> clamp((v - lo) / (hi - lo), 0, 1)`
/// (or none). Found once per volume, from the whole volume, and applied to it whole or
/// block by block alike, so that blocks see the intensities the whole volume would.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Scaling {
    Identity,
    Affine { lo: f64, hi: f64 },
}

impl Scaling {
    /// Applies the map to finite values (the caller has checked them: [`normalise`] and
    /// [`scaling_streamed`] do).
    pub fn apply(self, v: &[f32]) -> Vec<f32> {
        let mut out = v.to_vec();
        self.apply_in_place(&mut out);
        out
    }

    /// [`Scaling::apply`] over the values themselves.
    pub fn apply_in_place(self, v: &mut [f32]) {
        if let Scaling::Affine { lo, hi } = self {
            let scale = if hi > lo { 1.0 / (hi - lo) } else { 0.0 };
            v.par_iter_mut().for_each(|a| *a = (((*a as f64 - lo) * scale).clamp(0.0, 1.0)) as f32);
        }
    }
}

/// An error when `v` holds NaN or infinite values.
pub fn check_finite(v: &[f32]) -> Result<()> {
    let bad = v.par_iter().filter(|a| !a.is_finite()).count();
    if bad > 0 {
        return Err(Error::NonFinite(bad));
    }
    Ok(())
}

/// The scaling of a volume held in memory; NaN or infinite input is an error.
pub fn scaling_of(v: &[f32], how: Normalization) -> Result<Scaling> {
    check_finite(v)?;
    Ok(match how {
        Normalization::None => Scaling::Identity,
        Normalization::MinMax => {
            let lo = v.par_iter().copied().reduce(|| f32::INFINITY, f32::min) as f64;
            let hi = v.par_iter().copied().reduce(|| f32::NEG_INFINITY, f32::max) as f64;
            Scaling::Affine { lo, hi }
        }
        Normalization::Percentile { lo, hi } => {
            let mut tmp = v.to_vec();
            let a = percentile(&mut tmp, lo);
            let b = percentile(&mut tmp, hi);
            Scaling::Affine { lo: a, hi: b }
        }
    })
}

/// Normalises a volume; NaN or infinite input is an error.
pub fn normalise(v: &[f32], how: Normalization) -> Result<Vec<f32>> {
    Ok(scaling_of(v, how)?.apply(v))
}

/// Bins of the histogram of non-integer data in [`scaling_streamed`]: a percentile is then
/// within (max - min) / 2^20 of numpy's.
const FINE_BINS: usize = 1 << 20;

/// The scaling of a volume too large for memory, from its planes: `planes(visit)` calls
/// `visit` once on every plane of the volume, in any order, and may be called twice.
/// Integer data in 0..=65535 (every 8- and 16-bit stack) gets numpy's percentiles exactly
/// from a histogram of one pass; other data a second pass over a histogram of 2^20 bins
/// between its extremes, interpolated linearly inside the bin.
pub fn scaling_streamed(how: Normalization, planes: &mut dyn FnMut(&mut dyn FnMut(&[f32]) -> Result<()>) -> Result<()>) -> Result<Scaling> {
    let Normalization::Percentile { lo: q_lo, hi: q_hi } = how else {
        if how == Normalization::None {
            planes(&mut |p| check_finite(p))?;
            return Ok(Scaling::Identity);
        }
        let (mut lo, mut hi) = (f32::INFINITY, f32::NEG_INFINITY);
        planes(&mut |p| {
            check_finite(p)?;
            lo = p.iter().copied().fold(lo, f32::min);
            hi = p.iter().copied().fold(hi, f32::max);
            Ok(())
        })?;
        return Ok(Scaling::Affine { lo: lo as f64, hi: hi as f64 });
    };
    // pass 1: extremes, count, and the exact histogram while the data stay 16-bit integers
    let (mut lo, mut hi, mut n) = (f32::INFINITY, f32::NEG_INFINITY, 0u64);
    let mut exact: Option<Vec<u64>> = Some(vec![0; 1 << 16]);
    planes(&mut |p| {
        check_finite(p)?;
        n += p.len() as u64;
        for &a in p {
            lo = lo.min(a);
            hi = hi.max(a);
            if let Some(h) = exact.as_mut() {
                if (0.0..=65535.0).contains(&a) && a.fract() == 0.0 {
                    h[a as usize] += 1;
                } else {
                    exact = None;
                }
            }
        }
        Ok(())
    })?;
    if n == 0 {
        return Ok(Scaling::Affine { lo: 0.0, hi: 0.0 });
    }
    let (hist, origin, width) = match exact {
        Some(h) => (h, 0.0, 1.0),
        None => {
            let width = ((hi as f64 - lo as f64) / FINE_BINS as f64).max(f64::MIN_POSITIVE);
            let mut h = vec![0u64; FINE_BINS];
            planes(&mut |p| {
                for &a in p {
                    let b = (((a as f64 - lo as f64) / width) as usize).min(FINE_BINS - 1);
                    h[b] += 1;
                }
                Ok(())
            })?;
            (h, lo as f64, width)
        }
    };
    let integral = width == 1.0 && origin == 0.0;
    let cumulative: Vec<u64> = hist
        .iter()
        .scan(0u64, |c, &h| {
            *c += h;
            Some(*c)
        })
        .collect();
    // the value of rank k (0-based) in sorted order
    let ranked = |k: u64| -> f64 {
        let b = cumulative.partition_point(|&c| c <= k).min(cumulative.len() - 1);
        if integral {
            return b as f64;
        }
        // spread the bin's values evenly across it
        let before = if b == 0 { 0 } else { cumulative[b - 1] };
        let inside = (k - before) as f64 + 0.5;
        origin + width * (b as f64 + inside / hist[b].max(1) as f64)
    };
    let at = |q: f64| -> f64 {
        let pos = q / 100.0 * (n - 1) as f64;
        let k = pos.floor() as u64;
        let frac = pos - k as f64;
        let a = ranked(k);
        if frac == 0.0 || k + 1 >= n {
            return a;
        }
        a + frac * (ranked(k + 1) - a)
    };
    Ok(Scaling::Affine { lo: at(q_lo), hi: at(q_hi) })
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

    /// The planes of `v` (split in 7) for `scaling_streamed`.
    fn streamed(v: &[f32], how: Normalization) -> Scaling {
        scaling_streamed(how, &mut |visit| v.chunks(7).try_for_each(|c| visit(c))).unwrap()
    }

    #[test]
    fn streamed_scaling_equals_the_whole_volumes() {
        let mut rng = crate::synth::Rng::new(3);
        // 16-bit integers: exactly numpy's percentiles
        let ints: Vec<f32> = (0..5000).map(|_| (rng.uniform() * 4000.0).floor() as f32).collect();
        for how in [Normalization::Percentile { lo: 1.0, hi: 99.9 }, Normalization::MinMax, Normalization::None] {
            assert_eq!(streamed(&ints, how), scaling_of(&ints, how).unwrap(), "{how}");
        }
        // floats: within (max - min) / 2^20
        let floats: Vec<f32> = (0..5000).map(|_| (rng.normal() * 3.0) as f32).collect();
        let how = Normalization::Percentile { lo: 1.0, hi: 99.9 };
        let (Scaling::Affine { lo: a, hi: b }, Scaling::Affine { lo: c, hi: d }) =
            (streamed(&floats, how), scaling_of(&floats, how).unwrap())
        else {
            panic!("percentiles give an affine map")
        };
        let tol = 30.0 / (1 << 20) as f64;
        assert!((a - c).abs() < tol && (b - d).abs() < tol, "{a} {b} vs {c} {d}");
        assert!(scaling_streamed(how, &mut |visit| visit(&[1.0, f32::NAN])).is_err());
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
