//! Marker-controlled watershed (priority flood) and connected-component labelling.
//!
//! The flood reproduces `skimage.segmentation.watershed(image, markers, mask=mask)`
//! (scikit-image 0.26, compactness 0, no watershed line) voxel for voxel:
//! - markers enter the queue in C order with their own landscape value and age 0;
//! - a voxel is labelled when it is first pushed, by the voxel being expanded;
//! - its priority is max(own value, value of the voxel that reached it);
//! - ties are broken by age (push order); markers, which share age 0, are ordered
//!   by the binary heap itself, so the heap below is the same binary heap
//!   (same sift-up and sift-down rules) as scikit-image's.
//! Neighbours are visited in scikit-image's order: by distance, then by raveled offset.

use crate::error::{voxel_count, Error, Result};

/// Which neighbours touch: 6 (faces), 18 (faces + edges) or 26 (all).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Connectivity {
    Faces6 = 1,
    Edges18 = 2,
    Full26 = 3,
}

crate::vocabulary!(Connectivity, "connectivity", [
    Connectivity::Faces6 => "6" | "faces" | "1",
    Connectivity::Edges18 => "18" | "edges" | "2",
    Connectivity::Full26 => "26" | "full" | "vertices" | "3",
]);

impl Connectivity {
    /// From a neighbour count (6, 18, 26) or scikit-image's rank (1, 2, 3).
    pub fn from_rank(rank: i32) -> Result<Self> {
        match rank {
            1 | 6 => Ok(Self::Faces6),
            2 | 18 => Ok(Self::Edges18),
            3 | 26 => Ok(Self::Full26),
            _ => Err(Error::invalid(format!("connectivity must be 6, 18 or 26 (or 1, 2, 3), got {rank}"))),
        }
    }
    /// The neighbour count: 6, 18 or 26.
    pub fn neighbours(self) -> i32 {
        [0, 6, 18, 26][self as usize]
    }
    fn rank(self) -> i64 {
        self as i64
    }
}

/// Neighbour steps (dz, dy, dx) in scikit-image's order: by distance, then by raveled
/// offset in its padded array, which is lexicographic (dz, dy, dx) order.
fn neighbour_steps(conn: Connectivity) -> Vec<(isize, isize, isize)> {
    let mut v: Vec<(i64, isize, isize, isize)> = Vec::with_capacity(26);
    for dz in -1isize..=1 {
        for dy in -1isize..=1 {
            for dx in -1isize..=1 {
                let d2 = (dz * dz + dy * dy + dx * dx) as i64;
                if d2 != 0 && d2 <= conn.rank() {
                    v.push((d2, dz, dy, dx));
                }
            }
        }
    }
    v.sort();
    v.into_iter().map(|(_, a, b, c)| (a, b, c)).collect()
}

/// Raveled offsets of [`neighbour_steps`] in a volume of `shape` (for tests against skimage).
#[cfg(test)]
fn neighbour_offsets(shape: [usize; 3], conn: Connectivity) -> Vec<isize> {
    let (sz, sy) = ((shape[1] * shape[2]) as isize, shape[2] as isize);
    neighbour_steps(conn).into_iter().map(|(a, b, c)| a * sz + b * sy + c).collect()
}

/// A queue entry: (landscape value, age) is the priority. The value is stored as
/// order-preserving integer bits so that a comparison is two integer compares.
/// 16 bytes: four entries per cache line. Ages fit in u32 because volumes are
/// limited to 2^31 voxels (`voxel_count`) and each voxel is pushed at most once.
#[derive(Clone, Copy)]
struct Item {
    key: u64,
    age: u32,
    index: u32,
}

/// Maps an f64 (not NaN) to u64 bits with the same order; -0.0 and +0.0 map alike,
/// since they compare equal as floats.
#[inline(always)]
fn ordered_bits(v: f64) -> u64 {
    let b = (v + 0.0).to_bits();
    if b >> 63 == 1 {
        !b
    } else {
        b | (1 << 63)
    }
}

#[inline(always)]
fn smaller(a: &Item, b: &Item) -> bool {
    (a.key, a.age) < (b.key, b.age)
}

/// Binary min-heap with scikit-image's exact sift rules (see module docs); the
/// sift-down moves a hole instead of swapping, which visits the same positions.
struct Heap {
    a: Vec<Item>,
}

impl Heap {
    #[inline]
    fn push(&mut self, e: Item) {
        let mut c = self.a.len();
        self.a.push(e);
        while c > 0 {
            let p = (c + 1) / 2 - 1;
            if smaller(&e, &self.a[p]) {
                self.a[c] = self.a[p];
                c = p;
            } else {
                break;
            }
        }
        self.a[c] = e;
    }

    #[inline]
    fn pop(&mut self) -> Option<Item> {
        let last = self.a.pop()?;
        let n = self.a.len();
        if n == 0 {
            return Some(last);
        }
        let top = self.a[0];
        // `last` sinks from the root: at each level the smaller child moves up if it
        // is smaller than `last` (left first, then right against the smaller so far)
        let mut i = 0;
        loop {
            let l = 2 * i + 1;
            if l >= n {
                break;
            }
            let r = l + 1;
            let mut s = if smaller(&self.a[l], &last) { l } else { i };
            let best = if s == i { last } else { self.a[l] };
            if r < n && smaller(&self.a[r], &best) {
                s = r;
            }
            if s == i {
                break;
            }
            self.a[i] = self.a[s];
            i = s;
        }
        self.a[i] = last;
        Some(top)
    }
}

/// Floods `landscape` from `markers` (0 = unlabelled) inside `mask`.
/// Markers outside the mask are ignored; voxels not reachable from a marker stay 0.
pub fn watershed(landscape: &[f64], markers: &[u32], mask: &[bool], dims: [usize; 3], conn: Connectivity) -> Result<Vec<u32>> {
    let n = voxel_count(dims)?;
    if landscape.len() != n || markers.len() != n || mask.len() != n {
        return Err(Error::invalid(format!(
            "watershed: buffers ({}, {}, {}) do not match dims {dims:?}",
            landscape.len(),
            markers.len(),
            mask.len()
        )));
    }
    // only voxels inside the mask are ever read
    if let Some(i) = landscape.iter().zip(mask).position(|(v, &m)| m && v.is_nan()) {
        return Err(Error::invalid(format!("watershed: landscape is NaN at voxel {i}")));
    }
    Ok(watershed_kernel(landscape, markers, mask, dims, conn))
}

/// The flood itself. Preconditions (checked by [`watershed`]): equal lengths, no NaN
/// inside the mask. Works on the caller's arrays plus one byte of flags per voxel
/// (inside the mask; on the volume's border): only border voxels pay for a bounds
/// check, which stands for scikit-image's one-voxel zero-mask padding.
fn watershed_kernel(landscape: &[f64], markers: &[u32], mask: &[bool], dims: [usize; 3], conn: Connectivity) -> Vec<u32> {
    let [nz, ny, nx] = dims;
    let (sz, sy) = (ny * nx, nx);
    let flags = flags_of(mask, dims);
    let mut out = vec![0u32; markers.len()];
    let mut heap = Heap { a: Vec::with_capacity(n_hint(mask)) };
    for (i, (&m, &k)) in markers.iter().zip(mask).enumerate() {
        if m != 0 && k {
            out[i] = m;
            heap.push(Item { key: ordered_bits(landscape[i]), age: 0, index: i as u32 });
        }
    }
    let steps: Vec<(isize, isize, isize, isize)> =
        neighbour_steps(conn).into_iter().map(|(a, b, c)| (a, b, c, a * sz as isize + b * sy as isize + c)).collect();
    let mut age: u32 = 1;
    while let Some(e) = heap.pop() {
        let idx = e.index as usize;
        let label = out[idx];
        let on_border = flags[idx] & BORDER != 0;
        let (z, y, x) = if on_border { ((idx / sz) as isize, ((idx / sy) % ny) as isize, (idx % nx) as isize) } else { (0, 0, 0) };
        for &(dz, dy, dx, off) in &steps {
            if on_border {
                let (a, b, c) = (z + dz, y + dy, x + dx);
                if a < 0 || b < 0 || c < 0 || a >= nz as isize || b >= ny as isize || c >= nx as isize {
                    continue;
                }
            }
            let nb = (idx as isize + off) as usize;
            if flags[nb] & INSIDE == 0 || out[nb] != 0 {
                continue;
            }
            age += 1;
            out[nb] = label;
            // priority: max(own value, value of the voxel that reached it)
            let k = ordered_bits(landscape[nb]).max(e.key);
            heap.push(Item { key: k, age, index: nb as u32 });
        }
    }
    out
}

/// Per-voxel flags for the floods: inside the mask, on the volume's border (only
/// border voxels pay for a bounds check, standing for scikit-image's padding).
const INSIDE: u8 = 1;
const BORDER: u8 = 2;

fn flags_of(mask: &[bool], dims: [usize; 3]) -> Vec<u8> {
    let [nz, ny, nx] = dims;
    let (sz, sy) = (ny * nx, nx);
    let mut flags: Vec<u8> = mask.iter().map(|&m| m as u8).collect();
    for z in 0..nz {
        for y in 0..ny {
            let row = z * sz + y * sy;
            if z == 0 || y == 0 || z + 1 == nz || y + 1 == ny {
                flags[row..row + nx].iter_mut().for_each(|f| *f |= BORDER);
            } else {
                flags[row] |= BORDER;
                flags[row + nx - 1] |= BORDER;
            }
        }
    }
    flags
}

fn n_hint(mask: &[bool]) -> usize {
    mask.len() / 8 + 16
}

/// Connected components of `mask` (labels 1..=n in C order of first voxel), and n.
pub fn label_components(mask: &[bool], dims: [usize; 3], conn: Connectivity) -> (Vec<u32>, u32) {
    let [nz, ny, nx] = dims;
    assert_eq!(mask.len(), nz * ny * nx);
    let mut lab = vec![0u32; mask.len()];
    let mut next = 0u32;
    let mut stack: Vec<usize> = Vec::new();
    let nbs = neighbour_steps(conn);
    for start in 0..mask.len() {
        if !mask[start] || lab[start] != 0 {
            continue;
        }
        next += 1;
        lab[start] = next;
        stack.push(start);
        while let Some(i) = stack.pop() {
            let (z, y, x) = ((i / (ny * nx)) as isize, ((i / nx) % ny) as isize, (i % nx) as isize);
            for &(dz, dy, dx) in &nbs {
                let (a, b, c) = (z + dz, y + dy, x + dx);
                if a < 0 || b < 0 || c < 0 || a >= nz as isize || b >= ny as isize || c >= nx as isize {
                    continue;
                }
                let j = (a as usize * ny + b as usize) * nx + c as usize;
                if mask[j] && lab[j] == 0 {
                    lab[j] = next;
                    stack.push(j);
                }
            }
        }
    }
    (lab, next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_follow_scikit_image_order() {
        // skimage.morphology._util._offsets_to_raveled_neighbors((10,10,10), ones((3,3,3)), (1,1,1))
        let want: Vec<isize> =
            vec![-100, -10, -1, 1, 10, 100, -110, -101, -99, -90, -11, -9, 9, 11, 90, 99, 101, 110, -111, -109, -91, -89, 89, 91, 109, 111];
        assert_eq!(neighbour_offsets([10, 10, 10], Connectivity::Full26), want);
        assert_eq!(neighbour_offsets([10, 10, 10], Connectivity::Faces6), vec![-100, -10, -1, 1, 10, 100]);
    }

    #[test]
    fn two_basins_split_at_the_ridge() {
        // 1 x 1 x 7 line, valleys at both ends, ridge in the middle
        let land = [0.0, 1.0, 2.0, 3.0, 2.0, 1.0, 0.0];
        let mk = [1, 0, 0, 0, 0, 0, 2];
        let out = watershed(&land, &mk, &[true; 7], [1, 1, 7], Connectivity::Faces6).unwrap();
        assert_eq!(out[..3], [1, 1, 1]);
        assert_eq!(out[4..], [2, 2, 2]);
        // the ridge voxel is reached first from the left marker (older push wins ties)
        assert_eq!(out[3], 1);
    }

    #[test]
    fn mask_blocks_the_flood_and_bad_input_is_refused() {
        let land = [0.0; 5];
        let out = watershed(&land, &[1, 0, 0, 0, 0], &[true, true, false, true, true], [1, 1, 5], Connectivity::Faces6).unwrap();
        assert_eq!(out, vec![1, 1, 0, 0, 0]);
        assert!(watershed(&land, &[1, 0, 0, 0], &[true; 5], [1, 1, 5], Connectivity::Faces6).is_err());
        assert!(watershed(&[f64::NAN; 5], &[1, 0, 0, 0, 0], &[true; 5], [1, 1, 5], Connectivity::Faces6).is_err());
    }

    #[test]
    fn components_by_connectivity() {
        // two voxels touching only at a corner
        let mut m = vec![false; 8];
        m[0] = true;
        m[7] = true;
        assert_eq!(label_components(&m, [2, 2, 2], Connectivity::Faces6).1, 2);
        assert_eq!(label_components(&m, [2, 2, 2], Connectivity::Full26).1, 1);
    }
}
