//! Tiled inference: where the tiles of a volume go, how they are cut out (mirror padding)
//! and how their outputs are blended back. It knows nothing of ONNX: the network is a
//! closure, so the geometry and blending are tested on their own.

use rayon::prelude::*;
use serde::Serialize;

use crate::error::{Error, Result};

/// Largest tile edge (voxels), from metadata or a caller.
pub const MAX_TILE: usize = 1024;

/// Progress callback: fraction done in [0, 1]; return false to cancel.
pub type Progress<'a> = &'a (dyn Fn(f32) -> bool + Sync);

/// The tiles covering one volume, after every clamp: each tile edge a whole multiple of
/// what the networks accept, the overlap at most half a tile.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TileGrid {
    /// Volume dims (z, y, x).
    pub dims: [usize; 3],
    /// Edge of every tile (smaller than asked along an axis that fits in one tile).
    pub tile: [usize; 3],
    /// Overlap between neighbouring tiles (at least this much; the tiles spread evenly).
    pub overlap: [usize; 3],
    /// Tiles along each axis.
    pub count: [usize; 3],
    #[serde(skip)]
    starts: [Vec<isize>; 3],
}

impl TileGrid {
    /// Tiles for `dims` of at most `tile` voxels overlapping by `overlap`, each edge a
    /// multiple of `multiple`.
    pub fn new(dims: [usize; 3], tile: [usize; 3], overlap: [usize; 3], multiple: [usize; 3]) -> Result<TileGrid> {
        if tile.iter().any(|&t| t == 0 || t > MAX_TILE) || overlap.iter().any(|&o| o > MAX_TILE) {
            return Err(Error::invalid(format!(
                "tile {tile:?} / overlap {overlap:?}: each must be 1..={MAX_TILE} voxels (overlap 0..={MAX_TILE})"
            )));
        }
        if multiple.iter().any(|&m| m == 0 || m > MAX_TILE) {
            return Err(Error::Model(format!("the networks need tiles in multiples of {multiple:?} voxels (limit {MAX_TILE})")));
        }
        let mut g = TileGrid { dims, tile: [0; 3], overlap: [0; 3], count: [0; 3], starts: Default::default() };
        for k in 0..3 {
            let m = multiple[k];
            let t = (tile[k].max(m) / m) * m;
            let o = overlap[k].min(t / 2);
            let (size, starts) = axis_tiles(dims[k], t, o, m);
            g.tile[k] = size;
            g.overlap[k] = o;
            g.count[k] = starts.len();
            g.starts[k] = starts;
        }
        Ok(g)
    }

    pub fn len(&self) -> usize {
        self.count.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn tile_starts(&self) -> Vec<[isize; 3]> {
        let mut v = Vec::with_capacity(self.len());
        for &sz in &self.starts[0] {
            for &sy in &self.starts[1] {
                for &sx in &self.starts[2] {
                    v.push([sz, sy, sx]);
                }
            }
        }
        v
    }
}

/// Reflect an index into [0, n) (numpy's "reflect": no edge repeat), any distance away.
#[inline]
fn mirror(i: isize, n: usize) -> usize {
    if n == 1 {
        return 0;
    }
    let p = 2 * (n as isize - 1);
    let mut j = i.rem_euclid(p);
    if j >= n as isize {
        j = p - j;
    }
    j as usize
}

/// Fills `dst` with `row[sx + i]` for each i, the index reflected into the row where it
/// falls outside (numpy's "reflect"): a plain copy for the part inside, `mirror` only at
/// the edges.
fn gather_row(row: &[f32], sx: isize, dst: &mut [f32]) {
    let n = row.len() as isize;
    let w = dst.len() as isize;
    let (i0, i1) = ((-sx).clamp(0, w), (n - sx).clamp(0, w));
    if i0 < i1 {
        dst[i0 as usize..i1 as usize].copy_from_slice(&row[(sx + i0) as usize..(sx + i1) as usize]);
    }
    for i in (0..i0).chain(i1.max(i0)..w) {
        dst[i as usize] = row[mirror(sx + i, row.len())];
    }
}

/// Tile starts along one axis. An axis that fits in one tile is padded (mirrored)
/// only up to the network's multiple, exactly as in training; a longer axis is
/// covered by tiles that overlap by at least `overlap`, the first starting at 0 and
/// the last ending at the volume's edge (mirrored context at the borders would make
/// the network see a nucleus continuing there, unlike in training).
/// Returns (tile size, starts).
fn axis_tiles(n: usize, tile: usize, overlap: usize, multiple: usize) -> (usize, Vec<isize>) {
    let single = n.div_ceil(multiple) * multiple;
    if single <= tile {
        return (single, vec![0]);
    }
    let stride = (tile - overlap).max(1);
    let k = (n - tile).div_ceil(stride) + 1;
    let last = (n - tile) as f64;
    let starts = (0..k).map(|i| (last * i as f64 / (k - 1) as f64).round() as isize).collect();
    (tile, starts)
}

/// Blending weight along one axis of a tile. The outer quarter of the overlap
/// (the voxels with the least context) gets almost no weight, the next half ramps
/// up smoothly (raised cosine): where two tiles overlap, each voxel is taken from
/// the tile that saw more around it, with no visible seam.
fn ramp(size: usize, overlap: usize) -> Vec<f32> {
    const EPS: f32 = 1e-3;
    if overlap == 0 {
        return vec![1.0; size];
    }
    let (skip, width) = (overlap as f32 / 4.0, (overlap as f32 / 2.0).max(1.0));
    (0..size)
        .map(|i| {
            let e = i.min(size - 1 - i) as f32;
            let t = ((e - skip + 0.5) / width).clamp(0.0, 1.0);
            EPS + (1.0 - EPS) * (0.5 - 0.5 * (std::f32::consts::PI * t).cos())
        })
        .collect()
}

/// Runs `net` over `vol` (dims `grid.dims`) tile by tile, `batch` tiles per call, and
/// blends its two outputs (foreground, centre) back into two volumes.
///
/// `net(tiles, b)` receives `b` tiles of `grid.tile` voxels one after the other and must
/// return two outputs of the same length.
pub fn run_tiled<F>(grid: &TileGrid, vol: &[f32], batch: usize, mut net: F, progress: Option<Progress>) -> Result<(Vec<f32>, Vec<f32>)>
where
    F: FnMut(&[f32], usize) -> Result<(Vec<f32>, Vec<f32>)>,
{
    let dims = grid.dims;
    let n = dims[0] * dims[1] * dims[2];
    if vol.len() != n {
        return Err(Error::Internal(format!("tiling a volume of {} values with dims {dims:?}", vol.len())));
    }
    let weights: Vec<Vec<f32>> = (0..3).map(|k| ramp(grid.tile[k], grid.overlap[k])).collect();
    let mut acc_p = vec![0f32; n];
    let mut acc_c = vec![0f32; n];
    let mut acc_w = vec![0f32; n];
    let starts = grid.tile_starts();
    let total = starts.len();
    let mut done = 0usize;
    let [td, th, tw] = grid.tile;
    let tile_n = td * th * tw;
    let batch = batch.clamp(1, total.max(1));
    let mut buf = vec![0f32; batch * tile_n];
    for group in starts.chunks(batch) {
        let b = group.len();
        // gather with mirror padding, tiles and their planes in parallel
        buf[..b * tile_n].par_chunks_mut(th * tw).enumerate().for_each(|(k, plane)| {
            let (t, z) = (k / td, k % td);
            let [sz, sy, sx] = group[t];
            let iz = mirror(sz + z as isize, dims[0]);
            for y in 0..th {
                let iy = mirror(sy + y as isize, dims[1]);
                gather_row(&vol[(iz * dims[1] + iy) * dims[2]..][..dims[2]], sx, &mut plane[y * tw..(y + 1) * tw]);
            }
        });
        let (p, c) = net(&buf[..b * tile_n], b)?;
        if p.len() != b * tile_n || c.len() != b * tile_n {
            return Err(Error::Internal(format!("{b} tiles of {tile_n} voxels gave outputs of {} and {} values", p.len(), c.len())));
        }
        // scatter the part inside the volume, weighted: tiles one after the other (they
        // overlap), the planes of one tile in parallel (they do not)
        let plane_n = dims[1] * dims[2];
        for (k, &[sz, sy, sx]) in group.iter().enumerate() {
            let (p, c) = (&p[k * tile_n..(k + 1) * tile_n], &c[k * tile_n..(k + 1) * tile_n]);
            let z0 = sz.max(0) as usize;
            let z1 = ((sz + td as isize).min(dims[0] as isize)) as usize;
            let (y0, y1) = (sy.max(0) as usize, ((sy + th as isize).min(dims[1] as isize)) as usize);
            let (x0, x1) = (sx.max(0) as usize, ((sx + tw as isize).min(dims[2] as isize)) as usize);
            let (tx0, tx1) = ((x0 as isize - sx) as usize, (x1 as isize - sx) as usize);
            let wx = &weights[2][tx0..tx1];
            acc_p[z0 * plane_n..z1 * plane_n]
                .par_chunks_mut(plane_n)
                .zip(acc_c[z0 * plane_n..z1 * plane_n].par_chunks_mut(plane_n))
                .zip(acc_w[z0 * plane_n..z1 * plane_n].par_chunks_mut(plane_n))
                .enumerate()
                .for_each(|(j, ((ap, ac), aw))| {
                    let tz = (z0 + j) as isize - sz;
                    let wz = weights[0][tz as usize];
                    for gy in y0..y1 {
                        let ty = (gy as isize - sy) as usize;
                        let wzy = wz * weights[1][ty];
                        let ti = (tz as usize * th + ty) * tw;
                        let (tp, tc) = (&p[ti + tx0..ti + tx1], &c[ti + tx0..ti + tx1]);
                        let g = gy * dims[2];
                        let (ap, ac, aw) = (&mut ap[g + x0..g + x1], &mut ac[g + x0..g + x1], &mut aw[g + x0..g + x1]);
                        for x in 0..wx.len() {
                            let w = wzy * wx[x];
                            ap[x] += w * tp[x];
                            ac[x] += w * tc[x];
                            aw[x] += w;
                        }
                    }
                });
            done += 1;
        }
        if let Some(cb) = progress {
            if !cb(done as f32 / total as f32) {
                return Err(Error::Cancelled);
            }
        }
    }
    acc_p.par_iter_mut().zip(acc_c.par_iter_mut()).zip(acc_w.par_iter()).for_each(|((p, c), &w)| {
        *p /= w;
        *c /= w;
    });
    let bad = acc_p.par_iter().chain(acc_c.par_iter()).filter(|v| !v.is_finite()).count();
    if bad > 0 {
        return Err(Error::Inference(format!("the network produced {bad} non-finite values")));
    }
    Ok((acc_p, acc_c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirror_reflects_without_repeating_the_edge() {
        let got: Vec<usize> = (-3..7).map(|i| mirror(i, 4)).collect();
        assert_eq!(got, vec![3, 2, 1, 0, 1, 2, 3, 2, 1, 0]);
        assert_eq!(mirror(-5, 1), 0);
    }

    #[test]
    fn gathered_rows_equal_mirrored_indexing() {
        let row: Vec<f32> = (0..7).map(|v| v as f32).collect();
        for sx in -12isize..12 {
            for w in [1usize, 3, 7, 16, 30] {
                let mut got = vec![-1f32; w];
                gather_row(&row, sx, &mut got);
                let want: Vec<f32> = (0..w).map(|i| row[mirror(sx + i as isize, row.len())]).collect();
                assert_eq!(got, want, "sx {sx} w {w}");
            }
        }
        let mut one = vec![0f32; 5];
        gather_row(&[4.0], -2, &mut one);
        assert_eq!(one, vec![4.0; 5]);
    }

    #[test]
    fn tiles_cover_every_voxel() {
        for n in [1usize, 7, 51, 120, 300, 1000] {
            let (size, starts) = axis_tiles(n, 64, 8, 8);
            assert_eq!(size % 8, 0);
            let mut hit = vec![false; n];
            for s in &starts {
                for i in 0..size as isize {
                    let g = s + i;
                    if g >= 0 && (g as usize) < n {
                        hit[g as usize] = true;
                    }
                }
            }
            assert!(hit.iter().all(|&h| h), "n = {n}");
        }
    }

    #[test]
    fn the_grid_clamps_tiles_to_the_multiple_and_overlaps_to_half_a_tile() {
        let g = TileGrid::new([51, 300, 120], [50, 130, 130], [40, 100, 8], [4, 8, 8]).unwrap();
        // z: 48 (a multiple of 4) < 52, two tiles; y: tiles of 128 overlapping by at most
        // half a tile; x fits in one tile of 120 (a multiple of 8, no padding needed)
        assert_eq!(g.tile, [48, 128, 120]);
        assert_eq!(g.overlap, [24, 64, 8]);
        assert_eq!(g.count, [2, 4, 1]);
        assert_eq!(g.len(), 8);
        assert!(TileGrid::new([8, 8, 8], [0, 8, 8], [0; 3], [1; 3]).is_err());
        assert!(TileGrid::new([8, 8, 8], [8; 3], [2000, 0, 0], [1; 3]).is_err());
        assert!(TileGrid::new([8, 8, 8], [8; 3], [0; 3], [2048, 1, 1]).is_err());
    }

    #[test]
    fn an_identity_network_gives_the_volume_back_through_any_tiling() {
        // blending must be a partition of unity: identity in, the same volume out
        let dims = [9usize, 37, 23];
        let vol: Vec<f32> = (0..dims.iter().product::<usize>()).map(|i| ((i * 7919) % 1000) as f32 / 1000.0).collect();
        for (tile, overlap, batch) in [([8, 16, 16], [2, 4, 4], 1), ([4, 8, 8], [2, 4, 0], 3), ([16, 64, 64], [0; 3], 2)] {
            let g = TileGrid::new(dims, tile, overlap, [4, 8, 8]).unwrap();
            let mut calls = 0;
            let (p, c) = run_tiled(
                &g,
                &vol,
                batch,
                |t, _| {
                    calls += 1;
                    Ok((t.to_vec(), t.iter().map(|v| 1.0 - v).collect()))
                },
                None,
            )
            .unwrap();
            assert_eq!(calls, g.len().div_ceil(batch));
            for i in 0..vol.len() {
                assert!((p[i] - vol[i]).abs() < 1e-5 && (c[i] - (1.0 - vol[i])).abs() < 1e-5, "{tile:?} voxel {i}");
            }
        }
    }

    #[test]
    fn cancelling_stops_and_bad_outputs_are_errors() {
        let dims = [8usize, 32, 32];
        let vol = vec![0.5f32; 8 * 32 * 32];
        let g = TileGrid::new(dims, [8, 16, 16], [0; 3], [1; 3]).unwrap();
        let stop = |f: f32| f < 0.5;
        let r = run_tiled(&g, &vol, 1, |t, _| Ok((t.to_vec(), t.to_vec())), Some(&stop));
        assert!(matches!(r, Err(Error::Cancelled)));
        let r = run_tiled(&g, &vol, 1, |t, _| Ok((t.to_vec(), vec![f32::NAN; t.len()])), None);
        assert!(matches!(r, Err(Error::Inference(_))));
        let r = run_tiled(&g, &vol, 1, |t, _| Ok((t[1..].to_vec(), t.to_vec())), None);
        assert!(matches!(r, Err(Error::Internal(_))));
    }
}
