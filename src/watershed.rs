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

impl Connectivity {
    pub fn from_rank(rank: i32) -> Result<Self> {
        match rank {
            1 | 6 => Ok(Self::Faces6),
            2 | 18 => Ok(Self::Edges18),
            3 | 26 => Ok(Self::Full26),
            _ => Err(Error::invalid(format!("connectivity must be 6, 18 or 26 (or 1, 2, 3), got {rank}"))),
        }
    }
    fn rank(self) -> i64 {
        self as i64
    }
}

/// Neighbour offsets in a volume of the given (padded) shape, in scikit-image's order.
fn neighbour_offsets(shape: [usize; 3], conn: Connectivity) -> Vec<isize> {
    let (sz, sy) = ((shape[1] * shape[2]) as isize, shape[2] as isize);
    let mut v: Vec<(i64, isize)> = Vec::with_capacity(26);
    for dz in -1i64..=1 {
        for dy in -1i64..=1 {
            for dx in -1i64..=1 {
                let d2 = dz * dz + dy * dy + dx * dx;
                if d2 == 0 || d2 > conn.rank() {
                    continue;
                }
                v.push((d2, dz as isize * sz + dy as isize * sy + dx as isize));
            }
        }
    }
    v.sort();
    v.into_iter().map(|(_, o)| o).collect()
}

#[derive(Clone, Copy)]
struct Item {
    value: f64,
    age: u64,
    index: u32,
}

#[inline(always)]
fn smaller(a: &Item, b: &Item) -> bool {
    if a.value != b.value {
        a.value < b.value
    } else {
        a.age < b.age
    }
}

/// Binary min-heap with scikit-image's exact sift rules (see module docs).
struct Heap {
    a: Vec<Item>,
}

impl Heap {
    fn push(&mut self, e: Item) {
        self.a.push(e);
        let mut c = self.a.len() - 1;
        while c > 0 {
            let p = (c + 1) / 2 - 1;
            if smaller(&self.a[c], &self.a[p]) {
                self.a.swap(c, p);
                c = p;
            } else {
                break;
            }
        }
    }
    fn pop(&mut self) -> Option<Item> {
        let n = self.a.len();
        if n == 0 {
            return None;
        }
        let top = self.a[0];
        let last = self.a.pop().unwrap();
        let n = n - 1;
        if n == 0 {
            return Some(top);
        }
        self.a[0] = last;
        let mut i = 0;
        loop {
            let l = 2 * i + 1;
            let r = l + 1;
            let mut s = i;
            if l < n {
                if smaller(&self.a[l], &self.a[i]) {
                    s = l;
                }
                if r < n && smaller(&self.a[r], &self.a[s]) {
                    s = r;
                }
            } else {
                break;
            }
            if s == i {
                break;
            }
            self.a.swap(i, s);
            i = s;
        }
        Some(top)
    }
}

/// Floods `landscape` from `markers` (0 = unlabelled) inside `mask`.
/// Markers outside the mask are ignored; voxels not reachable from a marker stay 0.
pub fn watershed(
    landscape: &[f64],
    markers: &[u32],
    mask: &[bool],
    dims: [usize; 3],
    conn: Connectivity,
) -> Result<Vec<u32>> {
    let n = voxel_count(dims)?;
    if landscape.len() != n || markers.len() != n || mask.len() != n {
        return Err(Error::invalid(format!(
            "watershed: buffers ({}, {}, {}) do not match dims {dims:?}",
            landscape.len(),
            markers.len(),
            mask.len()
        )));
    }
    if let Some(i) = landscape.iter().position(|v| v.is_nan()) {
        return Err(Error::invalid(format!("watershed: landscape is NaN at voxel {i}")));
    }
    Ok(watershed_kernel(landscape, markers, mask, dims, conn))
}

/// The flood itself. Preconditions (checked by [`watershed`]): equal lengths, no NaN.
/// Works on a copy padded by one voxel (mask = false) so that no bounds checks are needed.
fn watershed_kernel(landscape: &[f64], markers: &[u32], mask: &[bool], dims: [usize; 3], conn: Connectivity) -> Vec<u32> {
    let [nz, ny, nx] = dims;
    let p = [nz + 2, ny + 2, nx + 2];
    let (psz, psy) = (p[1] * p[2], p[2]);
    let np = p[0] * psz;
    let mut pmask = vec![false; np];
    let mut out = vec![0u32; np];
    let mut img = vec![0f64; np];
    let mut heap = Heap { a: Vec::with_capacity(n_hint(mask)) };
    for z in 0..nz {
        for y in 0..ny {
            let src = (z * ny + y) * nx;
            let dst = (z + 1) * psz + (y + 1) * psy + 1;
            pmask[dst..dst + nx].copy_from_slice(&mask[src..src + nx]);
            img[dst..dst + nx].copy_from_slice(&landscape[src..src + nx]);
            for x in 0..nx {
                if mask[src + x] && markers[src + x] != 0 {
                    out[dst + x] = markers[src + x];
                }
            }
        }
    }
    for (i, &l) in out.iter().enumerate() {
        if l != 0 {
            heap.push(Item { value: img[i], age: 0, index: i as u32 });
        }
    }
    let offs = neighbour_offsets(p, conn);
    let mut age: u64 = 1;
    while let Some(e) = heap.pop() {
        let idx = e.index as usize;
        let label = out[idx];
        for &o in &offs {
            let nb = (idx as isize + o) as usize;
            if !pmask[nb] || out[nb] != 0 {
                continue;
            }
            age += 1;
            out[nb] = label;
            let v = img[nb].max(e.value);
            heap.push(Item { value: if img[nb] < e.value { e.value } else { v }, age, index: nb as u32 });
        }
    }
    let mut res = vec![0u32; nz * ny * nx];
    for z in 0..nz {
        for y in 0..ny {
            let src = (z + 1) * psz + (y + 1) * psy + 1;
            let dst = (z * ny + y) * nx;
            res[dst..dst + nx].copy_from_slice(&out[src..src + nx]);
        }
    }
    res
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
    let mut nbs: Vec<(isize, isize, isize)> = Vec::new();
    for dz in -1isize..=1 {
        for dy in -1isize..=1 {
            for dx in -1isize..=1 {
                let d2 = dz * dz + dy * dy + dx * dx;
                if d2 != 0 && d2 as i64 <= conn.rank() {
                    nbs.push((dz, dy, dx));
                }
            }
        }
    }
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
        let want: Vec<isize> = vec![
            -100, -10, -1, 1, 10, 100, -110, -101, -99, -90, -11, -9, 9, 11, 90, 99, 101, 110, -111, -109, -91,
            -89, 89, 91, 109, 111,
        ];
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
        let out = watershed(&land, &[1, 0, 0, 0, 0], &[true, true, false, true, true], [1, 1, 5], Connectivity::Faces6)
            .unwrap();
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
