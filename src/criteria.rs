//! The quantitative criteria of development, per frame and per round of divisions: what
//! QCANet exists to measure (nucleus count, volume, surface, shape, spacing, the synchrony
//! of divisions).
//!
//! **Surface area** is a Cauchy-Crofton estimate on the label grid, not a mesh: for 13
//! lattice directions (3 axes, 6 face diagonals, 4 body diagonals) the boundary crossings of
//! each nucleus along every lattice line are counted, each crossing stands for the area
//! `voxel volume / |step|` of lines it represents, and the directions are averaged with
//! weights equal to the share of the sphere of directions nearest to each (its Voronoi
//! cell, computed for the actual, anisotropic voxel: the directions are those of the
//! physical steps). Crofton's formula, `S = 2 x mean over directions of (crossings x area
//! per line)`, holds for any surface; the count along a lattice direction converges to
//! the true crossings as the voxels shrink, and the 13 directions are exact for a sphere
//! (its projection is the same from everywhere), so the error is the digitisation. Unlike
//! marching cubes on a binary mask (which over-estimates a sphere by 5-10 %), it needs no
//! smoothing and is one pass over the volume. Measured errors are in the tests.
//!
//! **Sphericity** is `pi^(1/3) (6 V)^(2/3) / S` (1 for a sphere). Standard deviations are
//! population SDs (numpy's default, which QCANet's own analysis scripts use).

use rayon::prelude::*;
use serde::Serialize;

use crate::error::{voxel_count, Error, Result};
use crate::measure::Nucleus;
use crate::track::Tracking;

/// Points on the half sphere used to weigh the 13 directions (deterministic, error ~1e-4).
const WEIGHT_SAMPLES: usize = 40_000;

/// The 13 lattice steps, one per pair of opposite directions.
const STEPS: [[i64; 3]; 13] = [
    [1, 0, 0],
    [0, 1, 0],
    [0, 0, 1],
    [0, 1, 1],
    [0, 1, -1],
    [1, 0, 1],
    [1, 0, -1],
    [1, 1, 0],
    [1, -1, 0],
    [1, 1, 1],
    [1, 1, -1],
    [1, -1, 1],
    [1, -1, -1],
];

/// Area (um^2) each boundary crossing along each step stands for, with the factor 2 of
/// Crofton's formula and the direction's weight folded in.
fn crossing_areas(voxel: [f64; 3]) -> [f64; 13] {
    let unit: Vec<[f64; 3]> = STEPS
        .iter()
        .map(|s| {
            let v = [s[0] as f64 * voxel[0], s[1] as f64 * voxel[1], s[2] as f64 * voxel[2]];
            let n = (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt();
            [v[0] / n, v[1] / n, v[2] / n]
        })
        .collect();
    // Fibonacci points on the upper half sphere: equal areas, no clustering at the pole
    let mut hits = [0usize; 13];
    let golden = std::f64::consts::PI * (3.0 - 5f64.sqrt());
    for k in 0..WEIGHT_SAMPLES {
        let z = (k as f64 + 0.5) / WEIGHT_SAMPLES as f64;
        let r = (1.0 - z * z).sqrt();
        let a = golden * k as f64;
        let w = [z, r * a.sin(), r * a.cos()];
        let nearest = (0..13)
            .max_by(|&i, &j| {
                let ci = (unit[i][0] * w[0] + unit[i][1] * w[1] + unit[i][2] * w[2]).abs();
                let cj = (unit[j][0] * w[0] + unit[j][1] * w[1] + unit[j][2] * w[2]).abs();
                ci.total_cmp(&cj)
            })
            .unwrap_or(0);
        hits[nearest] += 1;
    }
    let volume = voxel[0] * voxel[1] * voxel[2];
    let mut out = [0.0; 13];
    for i in 0..13 {
        let s = STEPS[i];
        let len = ((s[0] as f64 * voxel[0]).powi(2) + (s[1] as f64 * voxel[1]).powi(2) + (s[2] as f64 * voxel[2]).powi(2)).sqrt();
        out[i] = 2.0 * (hits[i] as f64 / WEIGHT_SAMPLES as f64) * volume / len;
    }
    out
}

/// Surface area in um^2 of every label present, with the labels (ascending): `(labels,
/// areas)`. The outside of the volume counts as background, so a nucleus cut by the border
/// is closed there.
pub fn surface_areas(labels: &[u32], dims: [usize; 3], voxel: [f64; 3]) -> Result<(Vec<u32>, Vec<f64>)> {
    let n = voxel_count(dims)?;
    if labels.len() != n {
        return Err(Error::invalid(format!("labels hold {} values, dims {dims:?} need {n}", labels.len())));
    }
    crate::plan::check_voxel_size(voxel, "the voxel size")?;
    let index = crate::measure::LabelIndex::of(labels)?;
    let area = crossing_areas(voxel);
    let [nz, ny, nx] = dims.map(|d| d as i64);
    let at = |z: i64, y: i64, x: i64| -> u32 {
        if z < 0 || y < 0 || x < 0 || z >= nz || y >= ny || x >= nx {
            0
        } else {
            labels[((z * ny + y) * nx + x) as usize]
        }
    };
    let areas = (0..nz)
        .into_par_iter()
        .fold(
            || vec![0.0f64; index.len()],
            |mut acc, z| {
                for y in 0..ny {
                    for x in 0..nx {
                        let a = at(z, y, x);
                        for (s, w) in STEPS.iter().zip(area) {
                            // the pair (p, p + s), and (p - s, p) when p - s is outside
                            // (inside pairs are counted once, from their first voxel)
                            let b = at(z + s[0], y + s[1], x + s[2]);
                            if a != b {
                                if a != 0 {
                                    acc[index.index(a)] += w;
                                }
                                if b != 0 {
                                    acc[index.index(b)] += w;
                                }
                            }
                            let (bz, by, bx) = (z - s[0], y - s[1], x - s[2]);
                            if a != 0 && (bz < 0 || by < 0 || bx < 0 || bz >= nz || by >= ny || bx >= nx) {
                                acc[index.index(a)] += w;
                            }
                        }
                    }
                }
                acc
            },
        )
        .reduce(
            || vec![0.0f64; index.len()],
            |mut a, b| {
                for (x, y) in a.iter_mut().zip(&b) {
                    *x += y;
                }
                a
            },
        );
    Ok((index.labels, areas))
}

/// `pi^(1/3) (6 V)^(2/3) / S`: 1 for a ball, less for any other shape (0 when S is 0).
pub fn sphericity(volume_um3: f64, surface_um2: f64) -> f64 {
    if surface_um2 > 0.0 {
        std::f64::consts::PI.cbrt() * (6.0 * volume_um3).powf(2.0 / 3.0) / surface_um2
    } else {
        0.0
    }
}

/// Distance from each point to its nearest other point (micrometres); `f64::NAN` for a
/// lone point. Points are sorted along their widest axis and scanned outwards until the
/// gap along that axis alone exceeds the best distance: near n log n for nuclei spread in
/// space, and for a flat sheet of them (the widest axis is then one of the sheet's).
pub fn nearest_neighbour_distances(points: &[[f64; 3]]) -> Vec<f64> {
    let spread = |k: usize| {
        let (lo, hi) = points.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| (a.min(p[k]), b.max(p[k])));
        hi - lo
    };
    let axis = (0..3).max_by(|&a, &b| spread(a).total_cmp(&spread(b))).unwrap_or(0);
    let mut order: Vec<usize> = (0..points.len()).collect();
    order.sort_by(|&a, &b| points[a][axis].total_cmp(&points[b][axis]));
    let d2 = |a: &[f64; 3], b: &[f64; 3]| (a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2) + (a[2] - b[2]).powi(2);
    let best: Vec<(usize, f64)> = (0..order.len())
        .into_par_iter()
        .map(|k| {
            let p = &points[order[k]];
            let mut best = f64::INFINITY;
            for j in (k + 1)..order.len() {
                let q = &points[order[j]];
                if (q[axis] - p[axis]).powi(2) >= best {
                    break;
                }
                best = best.min(d2(p, q));
            }
            for j in (0..k).rev() {
                let q = &points[order[j]];
                if (q[axis] - p[axis]).powi(2) >= best {
                    break;
                }
                best = best.min(d2(p, q));
            }
            (order[k], best)
        })
        .collect();
    let mut out = vec![f64::NAN; points.len()];
    for (i, b) in best {
        if b.is_finite() {
            out[i] = b.sqrt();
        }
    }
    out
}

/// Mean and population standard deviation (0, 0 for no values).
fn mean_sd(v: impl Iterator<Item = f64> + Clone) -> (f64, f64) {
    let n = v.clone().count();
    if n == 0 {
        return (0.0, 0.0);
    }
    let mean = v.clone().sum::<f64>() / n as f64;
    let var = v.map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
    (mean, var.sqrt())
}

/// The measured nuclei of one frame, with their surfaces (aligned with `nuclei`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FrameMeasures {
    pub frame: usize,
    pub nuclei: Vec<Nucleus>,
    pub surface_um2: Vec<f64>,
}

impl FrameMeasures {
    /// Measures a frame's labels (and intensities, when given).
    pub fn new(frame: usize, labels: &[u32], dims: [usize; 3], voxel: [f64; 3], intensity: Option<&[f32]>) -> Result<Self> {
        let nuclei = crate::measure::measure(labels, dims, voxel, intensity)?;
        let (present, areas) = surface_areas(labels, dims, voxel)?;
        // both come in ascending label order, one entry per label present
        debug_assert!(present.iter().zip(&nuclei).all(|(l, n)| *l == n.label));
        let surface_um2 = areas;
        Ok(FrameMeasures { frame, nuclei, surface_um2 })
    }
}

/// One row of the per-frame criteria table.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FrameCriteria {
    pub frame: usize,
    /// Frame x interval, in the interval's unit; `None` when the interval is unknown.
    pub time: Option<f64>,
    pub nuclei: usize,
    pub volume_um3_sum: f64,
    pub volume_um3_mean: f64,
    pub volume_um3_sd: f64,
    pub surface_um2_sum: f64,
    pub surface_um2_mean: f64,
    pub surface_um2_sd: f64,
    pub sphericity_mean: f64,
    /// Mean intensity over all nuclear voxels of the frame (0 without an image).
    pub mean_intensity: f64,
    /// Mean over nuclei of the distance to the nearest other nucleus's centroid (NaN under 2 nuclei).
    pub nearest_neighbour_um_mean: f64,
    /// Divisions whose daughters first appear in this frame.
    pub divisions: usize,
}

/// The n-th round of divisions: every division of a nucleus of generation n - 1 (the
/// nuclei of the first frame are generation 0; a daughter is one generation older than her
/// mother; a nucleus found again after a gap keeps its generation).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DivisionRound {
    pub round: usize,
    pub divisions: usize,
    pub first_frame: usize,
    pub last_frame: usize,
    /// `last_frame - first_frame`: the synchrony of the round (0 = all at once).
    pub spread_frames: usize,
    pub mean_frame: f64,
    pub sd_frames: f64,
}

/// Per-frame criteria; `tracking` (of the same frames) gives the divisions per frame.
pub fn frame_criteria(frames: &[FrameMeasures], tracking: Option<&Tracking>, interval: Option<f64>) -> Vec<FrameCriteria> {
    let mut divisions_at = std::collections::HashMap::<usize, usize>::new();
    for d in tracking.map(|t| t.divisions()).unwrap_or_default() {
        *divisions_at.entry(d.frame).or_insert(0) += 1;
    }
    frames
        .iter()
        .map(|f| {
            let vols = f.nuclei.iter().map(|n| n.volume_um3);
            let (vm, vsd) = mean_sd(vols.clone());
            let (sm, ssd) = mean_sd(f.surface_um2.iter().copied());
            let (spm, _) = mean_sd(f.nuclei.iter().zip(&f.surface_um2).map(|(n, &s)| sphericity(n.volume_um3, s)));
            let voxels: u64 = f.nuclei.iter().map(|n| n.voxels).sum();
            let total: f64 = f.nuclei.iter().map(|n| n.total_intensity).sum();
            let nn = nearest_neighbour_distances(&f.nuclei.iter().map(|n| n.centroid_um).collect::<Vec<_>>());
            let nn_mean = if f.nuclei.len() < 2 { f64::NAN } else { nn.iter().sum::<f64>() / nn.len() as f64 };
            FrameCriteria {
                frame: f.frame,
                time: interval.map(|i| f.frame as f64 * i),
                nuclei: f.nuclei.len(),
                volume_um3_sum: vols.sum(),
                volume_um3_mean: vm,
                volume_um3_sd: vsd,
                surface_um2_sum: f.surface_um2.iter().sum(),
                surface_um2_mean: sm,
                surface_um2_sd: ssd,
                sphericity_mean: spm,
                mean_intensity: if voxels > 0 { total / voxels as f64 } else { 0.0 },
                nearest_neighbour_um_mean: nn_mean,
                divisions: divisions_at.get(&f.frame).copied().unwrap_or(0),
            }
        })
        .collect()
}

/// Generation of every track (index = id - 1): see [`DivisionRound`].
pub fn generations(tracking: &Tracking) -> Vec<usize> {
    let mut children = std::collections::HashMap::<u32, usize>::new();
    for t in tracking.tracks.iter().filter(|t| t.parent != 0) {
        *children.entry(t.parent).or_insert(0) += 1;
    }
    // ids are in order of first frame, so a parent's generation is known before its children's
    let mut generation = vec![0usize; tracking.tracks.len()];
    for (i, t) in tracking.tracks.iter().enumerate() {
        let p = t.parent as usize;
        if p != 0 && p <= generation.len() && p - 1 < i {
            let divided = children.get(&t.parent).copied() == Some(2);
            generation[i] = generation[p - 1] + usize::from(divided);
        }
    }
    generation
}

/// The rounds of division and their synchrony, from the tracks.
pub fn division_rounds(tracking: &Tracking) -> Vec<DivisionRound> {
    let generation = generations(tracking);
    let mut by_round = std::collections::BTreeMap::<usize, Vec<usize>>::new();
    for d in tracking.divisions() {
        let g = generation.get(d.parent as usize - 1).copied().unwrap_or(0);
        by_round.entry(g + 1).or_default().push(d.frame);
    }
    by_round
        .into_iter()
        .map(|(round, frames)| {
            let first = *frames.iter().min().unwrap_or(&0);
            let last = *frames.iter().max().unwrap_or(&0);
            let (mean, sd) = mean_sd(frames.iter().map(|&f| f as f64));
            DivisionRound {
                round,
                divisions: frames.len(),
                first_frame: first,
                last_frame: last,
                spread_frames: last - first,
                mean_frame: mean,
                sd_frames: sd,
            }
        })
        .collect()
}

/// A number for a CSV cell: empty when not finite (spreadsheets read that as missing).
pub fn csv_number(x: f64, decimals: usize) -> String {
    if x.is_finite() {
        format!("{x:.decimals$}")
    } else {
        String::new()
    }
}

/// The per-frame criteria as CSV, one row per frame.
pub fn criteria_csv(rows: &[FrameCriteria]) -> String {
    let mut s = String::from(
        "frame,time,nuclei,volume_um3_sum,volume_um3_mean,volume_um3_sd,surface_um2_sum,surface_um2_mean,surface_um2_sd,\
         sphericity_mean,mean_intensity,nearest_neighbour_um_mean,divisions\n",
    );
    for r in rows {
        s.push_str(&format!(
            "{},{},{},{},{},{},{},{},{},{},{},{},{}\n",
            r.frame,
            r.time.map_or(String::new(), |t| csv_number(t, 4)),
            r.nuclei,
            csv_number(r.volume_um3_sum, 3),
            csv_number(r.volume_um3_mean, 3),
            csv_number(r.volume_um3_sd, 3),
            csv_number(r.surface_um2_sum, 3),
            csv_number(r.surface_um2_mean, 3),
            csv_number(r.surface_um2_sd, 3),
            csv_number(r.sphericity_mean, 4),
            csv_number(r.mean_intensity, 4),
            csv_number(r.nearest_neighbour_um_mean, 4),
            r.divisions
        ));
    }
    s
}

/// The division rounds as CSV, one row per round.
pub fn rounds_csv(rounds: &[DivisionRound]) -> String {
    let mut s = String::from("round,divisions,first_frame,last_frame,spread_frames,mean_frame,sd_frames\n");
    for r in rounds {
        s.push_str(&format!(
            "{},{},{},{},{},{},{}\n",
            r.round,
            r.divisions,
            r.first_frame,
            r.last_frame,
            r.spread_frames,
            csv_number(r.mean_frame, 3),
            csv_number(r.sd_frames, 3)
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An ellipsoid with semi-axes `a` (um, z y x) centred in a volume of `voxel`.
    fn ellipsoid(a: [f64; 3], voxel: [f64; 3]) -> (Vec<u32>, [usize; 3]) {
        let dims = [0, 1, 2].map(|k| (2.0 * a[k] / voxel[k]).ceil() as usize + 6);
        let c = [0, 1, 2].map(|k| dims[k] as f64 / 2.0 + 0.123);
        let mut lab = vec![0u32; dims.iter().product()];
        for z in 0..dims[0] {
            for y in 0..dims[1] {
                for x in 0..dims[2] {
                    let p = [z as f64 - c[0], y as f64 - c[1], x as f64 - c[2]];
                    let r: f64 = (0..3).map(|k| (p[k] * voxel[k] / a[k]).powi(2)).sum();
                    if r <= 1.0 {
                        lab[(z * dims[1] + y) * dims[2] + x] = 1;
                    }
                }
            }
        }
        (lab, dims)
    }

    /// Knud Thomsen's approximation of an ellipsoid's surface (error < 1.1 %).
    fn ellipsoid_area(a: [f64; 3]) -> f64 {
        let p = 1.6075;
        let s = ((a[0] * a[1]).powf(p) + (a[0] * a[2]).powf(p) + (a[1] * a[2]).powf(p)) / 3.0;
        4.0 * std::f64::consts::PI * s.powf(1.0 / p)
    }

    fn relative_area_error(a: [f64; 3], voxel: [f64; 3]) -> f64 {
        let (lab, dims) = ellipsoid(a, voxel);
        let s = surface_areas(&lab, dims, voxel).unwrap().1[0];
        s / ellipsoid_area(a) - 1.0
    }

    #[test]
    fn weights_sum_to_one_and_follow_the_voxel() {
        // for a cube of side 1 the total of crossing areas x steps is 2 x the mean weight...
        let iso = crossing_areas([1.0; 3]);
        let aniso = crossing_areas([2.2, 1.0, 1.0]);
        assert!(iso.iter().all(|&w| w > 0.0));
        assert_ne!(iso, aniso);
        // axis weights of the isotropic lattice are equal by symmetry
        assert!((iso[0] - iso[1]).abs() < 1e-3 && (iso[1] - iso[2]).abs() < 1e-3);
    }

    #[test]
    fn spheres_and_ellipsoids_within_stated_errors() {
        // measured: isotropic spheres r = 5, 10, 20 voxels; BBBC050 voxels (1.75 x 0.8 x 0.8 um)
        // with nuclei of 3-8 um radius; prolate and oblate ellipsoids
        let cases: [([f64; 3], [f64; 3], f64); 8] = [
            ([5.0; 3], [1.0; 3], 0.04),
            ([10.0; 3], [1.0; 3], 0.02),
            ([20.0; 3], [1.0; 3], 0.01),
            ([3.0; 3], [1.75, 0.8, 0.8], 0.06),
            ([5.0; 3], [1.75, 0.8, 0.8], 0.04),
            ([8.0; 3], [1.75, 0.8, 0.8], 0.03),
            ([9.0, 6.0, 6.0], [1.75, 0.8, 0.8], 0.04),
            ([4.0, 7.0, 5.0], [1.75, 0.8, 0.8], 0.04),
        ];
        for (a, v, tol) in cases {
            let e = relative_area_error(a, v);
            eprintln!("semi-axes {a:?} um, voxel {v:?}: area error {:+.2} %", 100.0 * e);
            assert!(e.abs() <= tol, "semi-axes {a:?}, voxel {v:?}: error {e}");
        }
    }

    #[test]
    fn a_single_voxel_and_a_box_cut_by_the_border() {
        // a lone voxel: 6 faces would be 6, Crofton sees a small ball-like blob, not 0
        let (_, s) = surface_areas(&[1], [1, 1, 1], [1.0; 3]).unwrap();
        assert!(s[0] > 2.0 && s[0] < 8.0, "{}", s[0]);
        // two labels touching: both get the shared face
        let lab = vec![1, 1, 2, 2];
        let (present, s) = surface_areas(&lab, [1, 1, 4], [1.0; 3]).unwrap();
        assert_eq!(present, vec![1, 2]);
        assert!((s[0] - s[1]).abs() < 1e-9 && s[0] > 0.0);
        // sparse, large ids cost tables of the labels present, not of the largest id
        let (present, s) = surface_areas(&[0, 49_999_999, 7, 0], [1, 1, 4], [1.0; 3]).unwrap();
        assert_eq!((present, s.len()), (vec![7, 49_999_999], 2));
        assert!(surface_areas(&[50_000_001], [1, 1, 1], [1.0; 3]).is_err());
        assert!(surface_areas(&lab, [1, 1, 3], [1.0; 3]).is_err());
    }

    #[test]
    fn nearest_neighbours_match_brute_force() {
        let mut rng = crate::synth::Rng::new(7);
        let pts: Vec<[f64; 3]> = (0..300).map(|_| [rng.uniform() * 50.0, rng.uniform() * 90.0, rng.uniform() * 90.0]).collect();
        let fast = nearest_neighbour_distances(&pts);
        for (i, p) in pts.iter().enumerate() {
            let brute = pts
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, q)| ((p[0] - q[0]).powi(2) + (p[1] - q[1]).powi(2) + (p[2] - q[2]).powi(2)).sqrt())
                .fold(f64::INFINITY, f64::min);
            assert!((fast[i] - brute).abs() < 1e-12);
        }
        assert!(nearest_neighbour_distances(&[[0.0; 3]])[0].is_nan());
        // a flat sheet (every z equal): the sweep runs along y or x, and still exactly
        let sheet: Vec<[f64; 3]> = (0..200).map(|_| [1.0, rng.uniform() * 90.0, rng.uniform() * 90.0]).collect();
        let fast = nearest_neighbour_distances(&sheet);
        for (i, p) in sheet.iter().enumerate() {
            let brute = sheet
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, q)| ((p[1] - q[1]).powi(2) + (p[2] - q[2]).powi(2)).sqrt())
                .fold(f64::INFINITY, f64::min);
            assert!((fast[i] - brute).abs() < 1e-12);
        }
    }

    #[test]
    fn rounds_and_generations() {
        use crate::track::Track;
        // 1 -> (2, 3) at frame 2; 2 -> (4, 5) at frame 4; 3 gap -> 6 at 5; 6 -> (7, 8) at 6
        let t = |id, start, end, parent| Track { id, start, end, parent };
        let tracks =
            vec![t(1, 0, 1, 0), t(2, 2, 3, 1), t(3, 2, 3, 1), t(4, 4, 7, 2), t(5, 4, 7, 2), t(6, 5, 5, 3), t(7, 6, 7, 6), t(8, 6, 7, 6)];
        let tracking = Tracking { first_frame: 0, tracks, assignment: vec![Default::default(); 8] };
        assert_eq!(generations(&tracking), vec![0, 1, 1, 2, 2, 1, 2, 2]);
        let r = division_rounds(&tracking);
        assert_eq!(r.len(), 2);
        assert_eq!((r[0].round, r[0].divisions, r[0].first_frame, r[0].spread_frames), (1, 1, 2, 0));
        assert_eq!((r[1].round, r[1].divisions, r[1].first_frame, r[1].last_frame, r[1].spread_frames), (2, 2, 4, 6, 2));
        assert!((r[1].mean_frame - 5.0).abs() < 1e-12 && (r[1].sd_frames - 1.0).abs() < 1e-12);
    }

    #[test]
    fn frame_rows_from_measures() {
        let (lab, dims) = ellipsoid([5.0; 3], [1.0; 3]);
        let img = vec![2.0f32; lab.len()];
        let f = FrameMeasures::new(3, &lab, dims, [1.0; 3], Some(&img)).unwrap();
        let rows = frame_criteria(&[f], None, Some(60.0));
        let r = &rows[0];
        assert_eq!((r.frame, r.nuclei, r.divisions), (3, 1, 0));
        assert_eq!(r.time, Some(180.0));
        assert!((r.volume_um3_sum / (4.0 / 3.0 * std::f64::consts::PI * 125.0) - 1.0).abs() < 0.03);
        assert!((r.sphericity_mean - 1.0).abs() < 0.05, "{}", r.sphericity_mean);
        assert_eq!(r.mean_intensity, 2.0);
        assert!(r.nearest_neighbour_um_mean.is_nan());
        let csv = criteria_csv(&rows);
        assert!(csv.lines().nth(1).unwrap().starts_with("3,180.0000,1,"));
        assert!(csv.lines().nth(1).unwrap().contains(",,0"), "NaN written as an empty cell: {csv}");
    }
}
