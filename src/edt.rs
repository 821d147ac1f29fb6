//! Exact Euclidean distance transform with anisotropic voxel spacing.
//!
//! Felzenszwalb & Huttenlocher's separable lower-envelope algorithm, one pass per
//! axis (x, then y, then z), each pass parallel over independent lines. Squared
//! distances are exact sums of squared physical offsets; the result equals
//! `scipy.ndimage.distance_transform_edt(mask, sampling=spacing)` up to rounding.

use rayon::prelude::*;

/// Distance (in the units of `spacing`) from every `true` voxel to the nearest
/// `false` voxel; 0 on `false` voxels. A volume with no `false` voxel gets
/// `f64::INFINITY` everywhere.
///
/// Preconditions: `mask.len() == dims[0] * dims[1] * dims[2]`, spacing > 0.
pub fn edt(mask: &[bool], dims: [usize; 3], spacing: [f64; 3]) -> Vec<f64> {
    let mut d = edt_squared(mask, dims, spacing);
    d.par_iter_mut().for_each(|v| *v = v.sqrt());
    d
}

/// `-edt(mask)`, the watershed landscape, in one pass over the squared distances.
pub fn negative_edt(mask: &[bool], dims: [usize; 3], spacing: [f64; 3]) -> Vec<f64> {
    let mut d = edt_squared(mask, dims, spacing);
    d.par_iter_mut().for_each(|v| *v = -v.sqrt());
    d
}

/// Squared distances (see [`edt`]).
pub fn edt_squared(mask: &[bool], dims: [usize; 3], spacing: [f64; 3]) -> Vec<f64> {
    let [nz, ny, nx] = dims;
    assert_eq!(mask.len(), nz * ny * nx, "mask length does not match dims");
    let mut f = vec![0f64; mask.len()];
    // x: contiguous rows, straight from the mask (see `binary_row`)
    f.par_chunks_mut(nx).zip(mask.par_chunks(nx)).for_each(|(row, m)| binary_row(m, row, spacing[2]));
    // y: within each z slab, columns of stride nx
    f.par_chunks_mut(ny * nx).for_each_init(
        || Scratch::new(ny),
        |s, slab| {
            s.columns(slab, ny, nx, spacing[1]);
        },
    );
    // z: columns of stride ny*nx. Each task owns one y and so a disjoint set of
    // positions {z * plane + y * nx + x}; it copies its nz rows out, transforms
    // the columns and writes the rows back.
    if nz > 1 {
        let plane = ny * nx;
        let base = SyncPtr(f.as_mut_ptr());
        (0..ny).into_par_iter().for_each_init(
            || (Scratch::new(nz), vec![0f64; nz * nx]),
            |(s, block), y| {
                let p = base;
                for z in 0..nz {
                    // SAFETY: rows (z, y) for this y are touched by this task only, and lie
                    // inside `f` (z < nz, y < ny, row length nx).
                    let row = unsafe { std::slice::from_raw_parts(p.0.add(z * plane + y * nx), nx) };
                    block[z * nx..(z + 1) * nx].copy_from_slice(row);
                }
                if s.columns(block, nz, nx, spacing[0]) {
                    for z in 0..nz {
                        // SAFETY: as above.
                        let row = unsafe { std::slice::from_raw_parts_mut(p.0.add(z * plane + y * nx), nx) };
                        row.copy_from_slice(&block[z * nx..(z + 1) * nx]);
                    }
                }
            },
        );
    }
    f
}

/// The first pass on a binary mask: along a row the nearest background voxel is all the
/// lower envelope would find (every sample is 0 or infinite), so two scans give it, and
/// the value is computed as the envelope computes it, `((q - p) s)^2`, bit for bit.
/// Infinite where the row has no background.
fn binary_row(mask: &[bool], row: &mut [f64], s: f64) {
    // forward: steps back to the nearest background voxel
    let mut prev: Option<usize> = None;
    for (q, (&m, r)) in mask.iter().zip(row.iter_mut()).enumerate() {
        if !m {
            prev = Some(q);
        }
        *r = prev.map_or(f64::INFINITY, |p| (q - p) as f64);
    }
    // backward: the nearer of that and the next background voxel, then squared
    let mut next: Option<usize> = None;
    for (q, (&m, r)) in mask.iter().zip(row.iter_mut()).enumerate().rev() {
        if !m {
            next = Some(q);
        }
        if let Some(p) = next {
            *r = r.min((p - q) as f64);
        }
        let d = *r * s;
        *r = d * d;
    }
}

/// A pointer that may cross threads; users guarantee disjoint access.
#[derive(Clone, Copy)]
struct SyncPtr(*mut f64);
unsafe impl Send for SyncPtr {}
unsafe impl Sync for SyncPtr {}

/// Per-thread buffers for the 1-D transform.
struct Scratch {
    buf: Vec<f64>,
    out: Vec<f64>,
    v: Vec<usize>,
    z: Vec<f64>,
}

impl Scratch {
    fn new(n: usize) -> Self {
        Scratch { buf: vec![0.0; n], out: vec![0.0; n], v: vec![0; n], z: vec![0.0; n + 1] }
    }

    /// Transforms each of the `nx` columns (length `n`, stride `nx`) of a row-major
    /// block in place; all-zero columns are already final and skipped. Returns
    /// whether anything changed.
    fn columns(&mut self, block: &mut [f64], n: usize, nx: usize, s: f64) -> bool {
        let mut changed = false;
        for x in 0..nx {
            let mut any = false;
            for i in 0..n {
                let v = block[i * nx + x];
                any |= v != 0.0;
                self.buf[i] = v;
            }
            if !any {
                continue;
            }
            self.transform(n, s);
            for i in 0..n {
                block[i * nx + x] = self.out[i];
            }
            changed = true;
        }
        changed
    }

    /// out[q] = min_p (s (q - p))^2 + buf[p] over the first n samples.
    /// Samples with an infinite value take no part in the envelope.
    fn transform(&mut self, n: usize, s: f64) {
        let f = &self.buf;
        let (v, z) = (&mut self.v, &mut self.z);
        let s2 = s * s;
        let mut k: isize = -1;
        for q in 0..n {
            if !f[q].is_finite() {
                continue;
            }
            let fq = f[q] + s2 * (q * q) as f64;
            loop {
                if k < 0 {
                    k = 0;
                    v[0] = q;
                    z[0] = f64::NEG_INFINITY;
                    z[1] = f64::INFINITY;
                    break;
                }
                let p = v[k as usize];
                let fp = f[p] + s2 * (p * p) as f64;
                let inter = (fq - fp) / (2.0 * s2 * (q - p) as f64);
                if inter <= z[k as usize] {
                    k -= 1;
                    continue;
                }
                k += 1;
                v[k as usize] = q;
                z[k as usize] = inter;
                z[k as usize + 1] = f64::INFINITY;
                break;
            }
        }
        if k < 0 {
            self.out[..n].iter_mut().for_each(|o| *o = f64::INFINITY);
            return;
        }
        let mut j = 0usize;
        for q in 0..n {
            while z[j + 1] < q as f64 {
                j += 1;
            }
            let p = v[j];
            let d = (q as f64 - p as f64) * s;
            self.out[q] = d * d + f[p];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brute(mask: &[bool], dims: [usize; 3], sp: [f64; 3]) -> Vec<f64> {
        let [nz, ny, nx] = dims;
        let bg: Vec<(usize, usize, usize)> =
            (0..nz * ny * nx).filter(|&i| !mask[i]).map(|i| (i / (ny * nx), (i / nx) % ny, i % nx)).collect();
        (0..nz * ny * nx)
            .map(|i| {
                let (z, y, x) = (i / (ny * nx), (i / nx) % ny, i % nx);
                bg.iter()
                    .map(|&(a, b, c)| {
                        let dz = (z as f64 - a as f64) * sp[0];
                        let dy = (y as f64 - b as f64) * sp[1];
                        let dx = (x as f64 - c as f64) * sp[2];
                        (dz * dz + dy * dy + dx * dx).sqrt()
                    })
                    .fold(f64::INFINITY, f64::min)
            })
            .collect()
    }

    #[test]
    fn matches_brute_force_on_random_masks() {
        let mut seed = 12345u64;
        for case in 0..20 {
            let dims = [1 + case % 5, 3 + case % 7, 4 + (case * 3) % 9];
            let n = dims.iter().product::<usize>();
            let mask: Vec<bool> = (0..n)
                .map(|_| {
                    seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    (seed >> 33) % 10 < 7
                })
                .collect();
            let sp = [1.75, 0.8, 0.8];
            let a = edt(&mask, dims, sp);
            let b = brute(&mask, dims, sp);
            for (x, y) in a.iter().zip(&b) {
                assert!((x - y).abs() < 1e-9 || (x.is_infinite() && y.is_infinite()), "{x} vs {y}");
            }
        }
    }

    #[test]
    fn all_foreground_is_infinite_and_background_zero() {
        assert!(edt(&[true; 8], [2, 2, 2], [1.0; 3]).iter().all(|v| v.is_infinite()));
        assert!(edt(&[false; 8], [2, 2, 2], [1.0; 3]).iter().all(|&v| v == 0.0));
    }

    #[test]
    fn anisotropic_spacing_is_respected() {
        // a single background voxel at z=0 of a 3x1x1 column: distances 0, 2, 4 with z spacing 2
        let d = edt(&[false, true, true], [3, 1, 1], [2.0, 1.0, 1.0]);
        assert_eq!(d, vec![0.0, 2.0, 4.0]);
    }
}
