//! Synthetic 3D+t series with ground-truth tracks, for testing the tracker and its outputs.
//!
//! Ellipsoid nuclei wander by a small random walk (a move that would bring two nuclei
//! too close is rejected), divide in synchronous rounds as early embryos do, and dim with
//! time (bleaching). At a division the mother's track ends and two daughters begin, each
//! with half her volume (radius x 2^(-1/3) ~ 0.79), on opposite sides of her centre along
//! a random axis, and are pushed apart over the next frames. Labels hold the ground-truth
//! track ids (the CTC convention), so a series is its own CTC ground truth together with
//! [`Series::res_track_txt`]. Rendering follows [`crate::synth`]: blur, shot and read
//! noise, brightness falling with depth. Deterministic per seed.

use rayon::prelude::*;

use crate::error::{voxel_count, Error, Result};
use crate::postprocess::gaussian;
use crate::synth::Rng;
use crate::track::{self, Track};

/// Nuclei are this much longer along z than across. Milder than the ~1.8 of
/// [`crate::synth`] (there the axial blur of BBBC050 is imitated): the centroid of a daughter
/// born along z then stays within the default linking radius of her mother's.
const Z_STRETCH: f64 = 1.2;
/// Lateral radius of the first nuclei, micrometres (BBBC050's 4-cell nuclei are ~6-8 um).
const START_RADIUS_UM: (f64, f64) = (6.0, 7.0);
/// A daughter's radius over her mother's: half the volume.
const DAUGHTER_RADIUS_FACTOR: f64 = 0.793_700_525_984_099_8;
/// Daughters' centres lie this many daughter radii from the mother's: they start just apart.
const SIBLING_OFFSET: f64 = 1.05;
/// Speed, micrometres per frame, at which each daughter is pushed away from her sister...
const SEPARATION_UM_PER_FRAME: f64 = 1.0;
/// ...and for how many frames after her birth.
const SEPARATION_FRAMES: usize = 2;
/// Least surface-to-surface gap between nuclei other than sisters (micrometres, z distances
/// divided by [`Z_STRETCH`]), so that the ground truth never has merged-looking neighbours.
const MIN_GAP_UM: f64 = 3.0;
/// Attempts before a crowded volume is reported instead of looping on.
const PLACEMENT_TRIES: usize = 20_000;
const AXIS_TRIES: usize = 500;
const MOVE_TRIES: usize = 20;
/// Replays of the whole run when a division finds no room.
const SIMULATION_ATTEMPTS: usize = 50;
/// Largest series generated: frames x voxels (6 bytes each).
const MAX_VOXEL_FRAMES: usize = 256 << 20;
const MAX_NUCLEI: usize = 10_000;

#[derive(Clone, Debug, PartialEq)]
pub struct SeriesParams {
    /// (z, y, x) voxels of every frame. Default [32, 96, 96]: room for 16 nuclei.
    pub dims: [usize; 3],
    /// (z, y, x) micrometres. Default BBBC050's [1.75, 0.8, 0.8].
    pub voxel_size: [f64; 3],
    /// Default 12: two rounds of division (4 -> 8 -> 16 nuclei) with frames between.
    pub frames: usize,
    /// Nuclei in frame 0. Default 4 (an early embryo).
    pub start_nuclei: usize,
    /// Every nucleus divides in frames that are multiples of this; 0 = never. Default 4.
    pub division_every: usize,
    /// Length of each nucleus's random step per frame, micrometres (at most 5). Default 1.0,
    /// well inside the linker's default 8 um.
    pub drift_um_per_frame: f64,
    pub seed: u64,
}

impl Default for SeriesParams {
    fn default() -> Self {
        SeriesParams {
            dims: [32, 96, 96],
            voxel_size: [1.75, 0.8, 0.8],
            frames: 12,
            start_nuclei: 4,
            division_every: 4,
            drift_um_per_frame: 1.0,
            seed: 1,
        }
    }
}

/// One frame: raw 16-bit image and labels whose values are ground-truth track ids.
#[derive(Clone, Debug, PartialEq)]
pub struct SeriesFrame {
    pub image: Vec<u16>,
    pub labels: Vec<u32>,
}

/// A generated series and its ground truth.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub frames: Vec<SeriesFrame>,
    /// Ground-truth tracks, ids 1..=len in order of birth (first frame, then id).
    pub tracks: Vec<Track>,
    pub dims: [usize; 3],
    pub voxel_size: [f64; 3],
}

impl Series {
    /// The ground truth's CTC `man_track.txt` / `res_track.txt` (`L B E P` per track).
    pub fn res_track_txt(&self) -> String {
        track::res_track_txt(&self.tracks)
    }
}

/// A nucleus alive in one frame.
#[derive(Clone, Debug)]
struct Cell {
    track: u32,
    /// (z, y, x) micrometres.
    centre: [f64; 3],
    /// Lateral semi-axis, micrometres; along z it is `Z_STRETCH` times longer.
    radius: f64,
    brightness: f64,
    /// Track id of the sister born with it (0 for the first nuclei): sisters may touch.
    sister: u32,
    /// Velocity, micrometres per frame, pushing it away from its sister...
    push: [f64; 3],
    /// ...for this many more frames.
    push_frames: usize,
}

fn semi_axes(radius: f64) -> [f64; 3] {
    [Z_STRETCH * radius, radius, radius]
}

/// Surface-to-surface gap of two nuclei, after undoing the z stretch (exact for two
/// ellipsoids of the same shape: they become spheres).
fn gap(c1: [f64; 3], r1: f64, c2: [f64; 3], r2: f64) -> f64 {
    let d = (((c1[0] - c2[0]) / Z_STRETCH).powi(2) + (c1[1] - c2[1]).powi(2) + (c1[2] - c2[2]).powi(2)).sqrt();
    d - r1 - r2
}

/// The whole nucleus lies at least one voxel inside the volume (no nucleus is cut by the
/// border, so every ground-truth volume is complete).
fn inside(c: [f64; 3], radius: f64, extent: [f64; 3], voxel: [f64; 3]) -> bool {
    let a = semi_axes(radius);
    (0..3).all(|k| c[k] - a[k] >= voxel[k] && c[k] + a[k] <= extent[k] - voxel[k])
}

/// A uniformly random direction.
fn unit(rng: &mut Rng) -> [f64; 3] {
    for _ in 0..64 {
        let v = [rng.normal(), rng.normal(), rng.normal()];
        let n = (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt();
        if n > 1e-6 {
            return [v[0] / n, v[1] / n, v[2] / n];
        }
    }
    [0.0, 0.0, 1.0]
}

impl SeriesParams {
    pub fn validate(&self) -> Result<()> {
        let n = voxel_count(self.dims)?;
        crate::plan::check_voxel_size(self.voxel_size, "the voxel size")?;
        if self.frames == 0 || self.frames.saturating_mul(n) > MAX_VOXEL_FRAMES {
            return Err(Error::invalid(format!(
                "{} frames of {:?} voxels: need 1 to {} voxel-frames",
                self.frames, self.dims, MAX_VOXEL_FRAMES
            )));
        }
        let rounds = (self.frames - 1).checked_div(self.division_every).unwrap_or(0);
        let final_count =
            u32::try_from(rounds).ok().and_then(|r| self.start_nuclei.checked_shl(r)).filter(|&c| c >> rounds == self.start_nuclei);
        if self.start_nuclei == 0 || final_count.is_none_or(|c| c > MAX_NUCLEI) {
            return Err(Error::invalid(format!(
                "{} nuclei dividing {rounds} times: need 1 to {MAX_NUCLEI} nuclei at the end",
                self.start_nuclei
            )));
        }
        // the smallest nuclei must still cover a few voxels along every axis
        let smallest = START_RADIUS_UM.0 * DAUGHTER_RADIUS_FACTOR.powi(rounds as i32);
        let a = semi_axes(smallest);
        if (0..3).any(|k| a[k] < 1.5 * self.voxel_size[k]) {
            return Err(Error::invalid(format!(
                "after {rounds} divisions nuclei are {:.1} um across, too small for voxels of {:?} um",
                2.0 * smallest,
                self.voxel_size
            )));
        }
        let d = self.drift_um_per_frame;
        if !(d.is_finite() && (0.0..=5.0).contains(&d)) {
            return Err(Error::invalid(format!("drift_um_per_frame must be in [0, 5], got {d}")));
        }
        Ok(())
    }
}

/// Generates a series; an error when the parameters are out of range or the nuclei do not
/// fit in the volume (fewer nuclei, fewer divisions or a larger volume then).
pub fn generate_series(p: &SeriesParams) -> Result<Series> {
    p.validate()?;
    let mut rng = Rng::new(p.seed);
    // A round of divisions can find a mother boxed in by her neighbours; the random walk
    // is then replayed (same generator, so still deterministic per seed) rather than
    // giving up on a volume that usually has room.
    for _ in 0..SIMULATION_ATTEMPTS {
        if let Some((tracks, states)) = simulate(p, &mut rng)? {
            let frames = states.par_iter().enumerate().map(|(t, cells)| render(cells, t, p)).collect();
            return Ok(Series { frames, tracks, dims: p.dims, voxel_size: p.voxel_size });
        }
    }
    Err(crowded(p, "dividing"))
}

fn crowded(p: &SeriesParams, what: &str) -> Error {
    Error::invalid(format!("{what}: the nuclei do not fit in {:?} voxels; use fewer or a larger volume", p.dims))
}

/// The ground-truth tracks and, per frame, the nuclei alive.
type Run = (Vec<Track>, Vec<Vec<Cell>>);

/// One run of the motion and divisions, or `None` when a division found no room; an error
/// when even the first nuclei do not fit.
fn simulate(p: &SeriesParams, rng: &mut Rng) -> Result<Option<Run>> {
    let v = p.voxel_size;
    let extent = [p.dims[0] as f64 * v[0], p.dims[1] as f64 * v[1], p.dims[2] as f64 * v[2]];
    let mut tracks: Vec<Track> = Vec::new();
    let mut cells: Vec<Cell> = Vec::new();
    let mut tries = 0;
    while cells.len() < p.start_nuclei {
        tries += 1;
        if tries > PLACEMENT_TRIES {
            return Err(crowded(p, "placing the first nuclei"));
        }
        let radius = rng.range(START_RADIUS_UM.0, START_RADIUS_UM.1);
        let a = semi_axes(radius);
        let centre = [rng.range(a[0], extent[0] - a[0]), rng.range(a[1], extent[1] - a[1]), rng.range(a[2], extent[2] - a[2])];
        if inside(centre, radius, extent, v) && cells.iter().all(|o| gap(centre, radius, o.centre, o.radius) >= MIN_GAP_UM) {
            let id = tracks.len() as u32 + 1;
            tracks.push(Track { id, start: 0, end: 0, parent: 0 });
            cells.push(Cell { track: id, centre, radius, brightness: rng.range(0.7, 1.3), sister: 0, push: [0.0; 3], push_frames: 0 });
        }
    }

    let mut states: Vec<Vec<Cell>> = vec![cells.clone()];
    for t in 1..p.frames {
        if p.division_every > 0 && t % p.division_every == 0 {
            let mothers = std::mem::take(&mut cells);
            for (k, m) in mothers.iter().enumerate() {
                let radius = m.radius * DAUGHTER_RADIUS_FACTOR;
                let offset = SIBLING_OFFSET * radius;
                let mut placed = None;
                for _ in 0..AXIS_TRIES {
                    let axis = unit(rng);
                    let step = [Z_STRETCH * offset * axis[0], offset * axis[1], offset * axis[2]];
                    let pair = [0, 1, 2].map(|i| m.centre[i] + step[i]);
                    let other = [0, 1, 2].map(|i| m.centre[i] - step[i]);
                    // clear of the daughters placed so far and of the mothers still to divide
                    let fits = [pair, other].iter().all(|&c| {
                        inside(c, radius, extent, v)
                            && cells.iter().all(|o| gap(c, radius, o.centre, o.radius) >= MIN_GAP_UM)
                            && mothers[k + 1..].iter().all(|o| gap(c, radius, o.centre, o.radius) >= MIN_GAP_UM)
                    });
                    if fits {
                        placed = Some((axis, pair, other));
                        break;
                    }
                }
                let Some((axis, first, second)) = placed else {
                    return Ok(None);
                };
                let (id1, id2) = (tracks.len() as u32 + 1, tracks.len() as u32 + 2);
                let away = [Z_STRETCH * axis[0], axis[1], axis[2]].map(|a| a * SEPARATION_UM_PER_FRAME);
                for (id, sister, centre, sign) in [(id1, id2, first, 1.0), (id2, id1, second, -1.0)] {
                    tracks.push(Track { id, start: t, end: t, parent: m.track });
                    cells.push(Cell {
                        track: id,
                        centre,
                        radius,
                        brightness: m.brightness * rng.range(0.95, 1.05),
                        sister,
                        push: away.map(|a| sign * a),
                        push_frames: SEPARATION_FRAMES,
                    });
                }
            }
        } else {
            for i in 0..cells.len() {
                let me = cells[i].clone();
                let push = if me.push_frames > 0 { me.push } else { [0.0; 3] };
                for _ in 0..MOVE_TRIES {
                    let u = unit(rng);
                    let c = [0, 1, 2].map(|k| me.centre[k] + u[k] * p.drift_um_per_frame + push[k]);
                    let clear = cells.iter().enumerate().all(|(j, o)| {
                        let least = if o.track == me.sister { 0.0 } else { MIN_GAP_UM };
                        j == i || gap(c, me.radius, o.centre, o.radius) >= least
                    });
                    if inside(c, me.radius, extent, v) && clear {
                        cells[i].centre = c;
                        break;
                    }
                }
                cells[i].push_frames = me.push_frames.saturating_sub(1);
            }
        }
        for c in &cells {
            // ids are 1..=len, so this index exists
            if let Some(tr) = tracks.get_mut(c.track as usize - 1) {
                tr.end = t;
            }
        }
        states.push(cells.clone());
    }
    Ok(Some((tracks, states)))
}

/// Labels and image of one frame, as [`crate::synth::generate`] renders a volume: each
/// voxel takes the nucleus of smallest normalised radius (< 1), chromatin texture brighter
/// towards the rim, a mild blur, brightness falling with depth and with time (half lost
/// by the last frame), shot and read noise.
fn render(cells: &[Cell], t: usize, p: &SeriesParams) -> SeriesFrame {
    let [nz, ny, nx] = p.dims;
    let v = p.voxel_size;
    let n = nz * ny * nx;
    let mut labels = vec![0u32; n];
    let mut signal = vec![0f32; n];
    let mut best = vec![1.0f64; n];
    for c in cells {
        let a = semi_axes(c.radius);
        // voxel indices whose centres ((i + 0.5) * v) may fall inside the nucleus
        let range = |k: usize, len: usize| {
            let lo = ((c.centre[k] - a[k]) / v[k] - 0.5).floor().max(0.0) as usize;
            let hi = (((c.centre[k] + a[k]) / v[k] - 0.5).ceil().max(0.0) as usize).min(len - 1);
            lo..=hi
        };
        for z in range(0, nz) {
            let dz = ((z as f64 + 0.5) * v[0] - c.centre[0]) / a[0];
            for y in range(1, ny) {
                let dy = ((y as f64 + 0.5) * v[1] - c.centre[1]) / a[1];
                for x in range(2, nx) {
                    let dx = ((x as f64 + 0.5) * v[2] - c.centre[2]) / a[2];
                    let d = dz * dz + dy * dy + dx * dx;
                    let i = (z * ny + y) * nx + x;
                    if d < best[i] {
                        best[i] = d;
                        labels[i] = c.track;
                        signal[i] = (c.brightness * (0.85 + 0.15 * d)) as f32;
                    }
                }
            }
        }
    }
    let blurred = gaussian(&signal, p.dims, [0.5 / v[0], 0.3 / v[1], 0.3 / v[2]]);
    let bleach = 1.0 - 0.5 * t as f64 / (p.frames.max(2) - 1) as f64;
    const DEPTH_FALLOFF: f64 = 0.3;
    const PHOTONS: f64 = 1000.0;
    const OFFSET: f64 = 100.0;
    const READ_NOISE: f64 = 4.0;
    let frame_seed = p.seed.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ (t as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let image = blurred
        .par_iter()
        .enumerate()
        .map(|(i, &s)| {
            let z = i / (ny * nx);
            let depth = 1.0 - DEPTH_FALLOFF * z as f64 / (nz.max(2) - 1) as f64;
            let lambda = (s as f64 * depth * bleach + 0.03) * PHOTONS;
            let mut r = Rng::new(frame_seed ^ i as u64);
            let shot = lambda + lambda.sqrt() * r.normal();
            (OFFSET + shot.max(0.0) + READ_NOISE * r.normal()).round().clamp(0.0, 65535.0) as u16
        })
        .collect();
    SeriesFrame { image, labels }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::measure;
    use crate::track::{link, overlaps, FrameNuclei, TrackParams, Tracking};
    use std::collections::{BTreeSet, HashMap};

    #[test]
    fn series_is_deterministic_and_labels_are_the_alive_tracks() {
        let p = SeriesParams::default();
        let s = generate_series(&p).unwrap();
        assert_eq!(s, generate_series(&p).unwrap());
        assert_ne!(s.frames[0].image, generate_series(&SeriesParams { seed: 2, ..p.clone() }).unwrap().frames[0].image);
        assert_eq!(s.frames.len(), 12);
        // 4 -> 8 at frame 4 -> 16 at frame 8
        assert_eq!(s.tracks.len(), 4 + 8 + 16);
        for (t, f) in s.frames.iter().enumerate() {
            let present: BTreeSet<u32> = f.labels.iter().copied().filter(|&l| l > 0).collect();
            let alive: BTreeSet<u32> = s.tracks.iter().filter(|tr| tr.start <= t && t <= tr.end).map(|tr| tr.id).collect();
            assert_eq!(present, alive, "frame {t}");
            assert_eq!(alive.len(), [4, 8, 16][t / 4]);
        }
        let txt = s.res_track_txt();
        assert!(txt.starts_with("1 0 3 0\n2 0 3 0\n3 0 3 0\n4 0 3 0\n5 4 7 1\n6 4 7 1\n"), "{txt}");
        assert_eq!(txt.lines().count(), 28);
        assert_eq!(track::divisions(&s.tracks).len(), 4 + 8);
        // nuclei brighter than background, and dimmer at the end than at the start
        let fg_mean = |f: &SeriesFrame| {
            let (sum, n) =
                f.labels.iter().zip(&f.image).filter(|(l, _)| **l > 0).fold((0.0, 0.0), |(s, n), (_, &v)| (s + v as f64, n + 1.0));
            sum / n
        };
        let bg_mean = |f: &SeriesFrame| {
            let (sum, n) =
                f.labels.iter().zip(&f.image).filter(|(l, _)| **l == 0).fold((0.0, 0.0), |(s, n), (_, &v)| (s + v as f64, n + 1.0));
            sum / n
        };
        assert!(fg_mean(&s.frames[0]) > 2.0 * bg_mean(&s.frames[0]));
        assert!(fg_mean(&s.frames[11]) < 0.8 * fg_mean(&s.frames[0]));
    }

    #[test]
    fn daughters_halve_the_volume_and_separate() {
        let s = generate_series(&SeriesParams::default()).unwrap();
        let m = |t: usize| measure(&s.frames[t].labels, s.dims, s.voxel_size, None).unwrap();
        let (before, at, after) = (m(3), m(4), m(6));
        let find = |ns: &[crate::Nucleus], id: u32| ns.iter().find(|n| n.label == id).cloned().unwrap();
        for d in track::divisions(&s.tracks).iter().filter(|d| d.frame == 4) {
            let mother = find(&before, d.parent);
            let [a, b] = d.daughters.map(|id| find(&at, id));
            let ratio = (a.volume_um3 + b.volume_um3) / mother.volume_um3;
            assert!((0.8..1.2).contains(&ratio), "volume ratio {ratio}");
            let dist =
                |x: &crate::Nucleus, y: &crate::Nucleus| (0..3).map(|k| (x.centroid_um[k] - y.centroid_um[k]).powi(2)).sum::<f64>().sqrt();
            let [a2, b2] = d.daughters.map(|id| find(&after, id));
            assert!(dist(&a2, &b2) > dist(&a, &b) + 1.0, "daughters of {} do not separate", d.parent);
        }
    }

    #[test]
    fn crowded_or_absurd_parameters_are_errors() {
        let d = SeriesParams::default();
        for p in [
            SeriesParams { start_nuclei: 200, ..d.clone() },
            SeriesParams { start_nuclei: 0, ..d.clone() },
            SeriesParams { frames: 0, ..d.clone() },
            SeriesParams { frames: 40, ..d.clone() },
            SeriesParams { division_every: 1, frames: 40, ..d.clone() },
            SeriesParams { dims: [0, 96, 96], ..d.clone() },
            SeriesParams { dims: [8, 16, 16], ..d.clone() },
            SeriesParams { voxel_size: [f64::NAN, 0.8, 0.8], ..d.clone() },
            SeriesParams { drift_um_per_frame: -1.0, ..d.clone() },
        ] {
            assert!(matches!(generate_series(&p), Err(Error::InvalidArgument(_))), "{p:?}");
        }
        // one nucleus fits, its daughters never do: the replays give up with an error
        let boxed = SeriesParams { dims: [12, 24, 24], start_nuclei: 1, frames: 5, ..d.clone() };
        assert!(generate_series(&SeriesParams { frames: 4, ..boxed.clone() }).is_ok());
        assert!(matches!(generate_series(&boxed), Err(Error::InvalidArgument(m)) if m.contains("dividing")));
        // no division at all is fine
        let s = generate_series(&SeriesParams { division_every: 0, frames: 3, ..d }).unwrap();
        assert_eq!(s.res_track_txt(), "1 0 2 0\n2 0 2 0\n3 0 2 0\n4 0 2 0\n");
    }

    /// Tracks the ground-truth label frames of a series with default parameters.
    fn track_ground_truth(s: &Series, with_overlaps: bool) -> Tracking {
        let frames: Vec<FrameNuclei> = s
            .frames
            .iter()
            .enumerate()
            .map(|(t, f)| FrameNuclei::from_measured(t, &measure(&f.labels, s.dims, s.voxel_size, None).unwrap()))
            .collect();
        let tables: Vec<HashMap<(u32, u32), u64>> = s.frames.windows(2).map(|w| overlaps(&w[0].labels, &w[1].labels).unwrap()).collect();
        link(&frames, with_overlaps.then_some(&tables[..]), &TrackParams::default()).unwrap()
    }

    #[test]
    fn linking_the_ground_truth_labels_reproduces_the_tracks() {
        for seed in [1, 2, 3] {
            let s = generate_series(&SeriesParams { seed, ..Default::default() }).unwrap();
            for with_overlaps in [false, true] {
                let r = track_ground_truth(&s, with_overlaps);
                let case = format!("seed {seed}, overlaps {with_overlaps}");
                assert_eq!(r.tracks.len(), s.tracks.len(), "{case}");
                // each ground-truth track maps to one result track, and no two to the same
                let mut map: HashMap<u32, u32> = HashMap::new();
                for (t, table) in r.assignment.iter().enumerate() {
                    for (&gt, &res) in table {
                        assert_eq!(*map.entry(gt).or_insert(res), res, "{case}: track {gt} split at frame {t}");
                    }
                }
                let images: BTreeSet<u32> = map.values().copied().collect();
                assert_eq!((map.len(), images.len()), (s.tracks.len(), s.tracks.len()), "{case}");
                // same spans and same lineage
                for g in &s.tracks {
                    let res = r.tracks[map[&g.id] as usize - 1];
                    let parent = if g.parent == 0 { 0 } else { map[&g.parent] };
                    assert_eq!((res.start, res.end, res.parent), (g.start, g.end, parent), "{case}: track {}", g.id);
                }
                assert_eq!(r.divisions().len(), track::divisions(&s.tracks).len(), "{case}");
                // ids follow (first frame, label) and the labels are the ground-truth ids,
                // so the CTC file itself comes out identical
                assert_eq!(r.res_track_txt(), s.res_track_txt(), "{case}");
            }
        }
    }
}
