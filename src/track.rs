//! Tracking nuclei through a time lapse: the per-frame nucleus tables of a segmented
//! 3D+t series in, tracks in the Cell Tracking Challenge (CTC) sense out.
//!
//! The method is the linear-assignment (LAP) framework of Jaqaman et al., Nature Methods
//! 2008, simplified to three steps, each an optimal assignment (Kuhn-Munkres, from the
//! `pathfinding` crate) rather than a greedy choice:
//!
//! 1. **Frame to frame.** Every nucleus of frame t may link to one of frame t+1. The cost
//!    of a link is the centroid distance in micrometres (the anisotropy of the grid is
//!    already in the micrometre coordinates), lowered when the two labels overlap; pairs
//!    farther than `max_displacement_um` are forbidden, and "no link" costs as much as the
//!    largest allowed link, so a link is made whenever one is allowed and conflicts are
//!    settled by the smallest total.
//! 2. **Gap closing and divisions, together.** The nuclei that start a chain without a
//!    predecessor compete for two kinds of predecessor in one second assignment: the end
//!    of a chain `g` frames earlier (1 <= g <= `max_gap`: the nucleus was missed for `g`
//!    frames; the cost is the distance over the search radius `max_displacement_um x
//!    (g + 1)`, times the volume ratio of the two, so that a half-size newcomer is not
//!    taken for a lost nucleus), or a mother at t, that is a nucleus at t whose own
//!    successor d1 at t+1 is, with the newcomer d2, within `division_max_distance_um` of
//!    her, and whose volume the two share ((vol d1 + vol d2) / vol m inside
//!    `division_volume_ratio`; the cost is her distance to d2 over that radius). Solving
//!    both in one assignment keeps a daughter from being claimed by an unrelated gap and
//!    settles competing mothers optimally.
//! 3. **Tracks.** At a division the mother's track ends at t and two tracks begin at t+1
//!    with the mother's track as parent. A bridged gap is written as the CTC conventions
//!    write it: the nucleus after the gap is a new track whose parent is the track before
//!    it, a parent with one child (a label may not be missing from frames between its B
//!    and E: the CTC's own validator, py-ctcmetrics `inspect_masks`, rejects that). Track
//!    ids are 1-based, in order of first frame, then label.
//!
//! Only the per-frame tables ([`FrameNuclei`], and optionally the voxel overlaps of each
//! consecutive pair, [`overlaps`]) are needed, never all label volumes at once. Each
//! assignment is split into the independent groups of detections that compete with each
//! other (connected components of the allowed pairs), so a frame of many nuclei costs a
//! set of small problems, not one cubic one; a group larger than [`MAX_ASSIGNMENT_GROUP`]
//! is refused with an error rather than left to run for hours.

use std::collections::{BTreeMap, HashMap};

use pathfinding::kuhn_munkres::kuhn_munkres_min;
use pathfinding::matrix::Matrix;
use rayon::prelude::*;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::measure::Nucleus;

/// Most frames one call links: far beyond any real time lapse, low enough that the
/// per-frame tables stay small.
pub const MAX_FRAMES: usize = 100_000;
/// Most nuclei per frame (an embryo has hundreds, a tissue tile thousands).
pub const MAX_NUCLEI_PER_FRAME: usize = 100_000;
/// Most nuclei over all frames, which bounds the memory of the link tables (~100 bytes each).
pub const MAX_DETECTIONS: usize = 10_000_000;
/// Most detections (rows plus columns) in one group of mutually competing detections. The
/// assignment is cubic in this size; a larger group means a search radius far larger
/// than the spacing of the nuclei, which the error message says.
pub const MAX_ASSIGNMENT_GROUP: usize = 3_000;
/// Largest coordinate accepted, in micrometres (10 m): keeps grid keys exact.
const MAX_COORDINATE_UM: f64 = 1e7;
/// Normalised costs (1 = the largest allowed) are solved as integers, with this resolution.
const COST_SCALE: f64 = 1_000_000.0;
/// Cost of a pair that must not be linked. Every row has its own finite "no link" column,
/// so an optimum never holds it; it is small enough that no sum of a group overflows.
const FORBIDDEN: i64 = 1_000_000_000_000;

/// Linking parameters. Defaults suit BBBC050-like embryos: voxel 1.75 x 0.8 x 0.8 um,
/// nuclei 5-12 um across, frames minutes apart.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TrackParams {
    /// Farthest a nucleus may move between consecutive frames, in micrometres. Default
    /// 8.0: about one nucleus diameter, so a nucleus found farther away is more likely a
    /// neighbour than itself, while a few micrometres of motion per frame (minutes apart)
    /// and the jump of a daughter's centroid from its mother's (about one daughter radius,
    /// 3-6 um) both fit.
    pub max_displacement_um: f64,
    /// Frames a nucleus may go missing and still be bridged (the track after the gap then
    /// has the track before it as parent, the CTC way of writing a gap). Default 1: a
    /// segmentation that misses a dim or merged nucleus in one frame is common; over longer
    /// gaps another nucleus is as likely to be the one found. The search radius across a
    /// gap of g frames is `max_displacement_um * (g + 1)`. 0 turns gap closing off.
    pub max_gap: usize,
    /// Farthest each daughter's centroid may lie from the mother's, in micrometres.
    /// Default 10.0: daughters begin about one daughter radius (~0.79 of the mother's,
    /// 4-5 um) from the mother's centre and move apart; 10 um allows that plus a frame's
    /// motion without reaching the neighbours. 0 turns division detection off.
    pub division_max_distance_um: f64,
    /// Allowed range of (daughter volumes summed) / (mother volume). Default (0.5, 1.6):
    /// daughters share the mother's volume (ratio ~1), and the segmentation of two freshly
    /// separated, touching daughters is off by tens of percent either way.
    pub division_volume_ratio: (f64, f64),
    /// How much the voxel overlap of two labels lowers their link cost, 0 to 1: the cost is
    /// the distance times (1 - weight x overlap fraction), the fraction being the overlap
    /// over the smaller nucleus. Default 0.5: frames minutes apart leave a nucleus
    /// overlapping its own successor, which is stronger evidence than a centroid alone,
    /// but the distance stays the main term. Unused when no overlaps are given.
    pub overlap_weight: f64,
}

impl Default for TrackParams {
    fn default() -> Self {
        TrackParams {
            max_displacement_um: 8.0,
            max_gap: 1,
            division_max_distance_um: 10.0,
            division_volume_ratio: (0.5, 1.6),
            overlap_weight: 0.5,
        }
    }
}

impl TrackParams {
    /// Refuses values that are not finite, negative, or absurd for nuclei (a displacement
    /// under a nanometre, distances over a millimetre, gaps over 10 frames, volume ratios outside (0, 10]).
    pub fn validate(&self) -> Result<()> {
        let d = self.max_displacement_um;
        if !(d.is_finite() && (0.001..=1000.0).contains(&d)) {
            return Err(Error::invalid(format!("max_displacement_um must be in [0.001, 1000] micrometres, got {d}")));
        }
        if self.max_gap > 10 {
            return Err(Error::invalid(format!("max_gap must be at most 10 frames, got {}", self.max_gap)));
        }
        let dd = self.division_max_distance_um;
        if !(dd.is_finite() && (0.0..=1000.0).contains(&dd)) {
            return Err(Error::invalid(format!("division_max_distance_um must be in [0, 1000] micrometres, got {dd}")));
        }
        let (lo, hi) = self.division_volume_ratio;
        if !(lo.is_finite() && hi.is_finite() && lo > 0.0 && lo <= hi && hi <= 10.0) {
            return Err(Error::invalid(format!("division_volume_ratio must satisfy 0 < low <= high <= 10, got ({lo}, {hi})")));
        }
        let w = self.overlap_weight;
        if !(w.is_finite() && (0.0..=1.0).contains(&w)) {
            return Err(Error::invalid(format!("overlap_weight must be in [0, 1], got {w}")));
        }
        Ok(())
    }
}

/// One segmented nucleus of one frame, as the linker needs it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Detection {
    /// Its label in the frame's segmentation (> 0, unique within the frame).
    pub label: u32,
    /// Centroid (z, y, x) in micrometres.
    pub centroid_um: [f64; 3],
    pub volume_um3: f64,
    /// Voxel count, to turn an overlap into a fraction; 0 when unknown (overlap unused).
    pub voxels: u64,
}

impl From<&Nucleus> for Detection {
    fn from(n: &Nucleus) -> Self {
        Detection { label: n.label, centroid_um: n.centroid_um, volume_um3: n.volume_um3, voxels: n.voxels }
    }
}

impl From<Nucleus> for Detection {
    fn from(n: Nucleus) -> Self {
        Detection::from(&n)
    }
}

/// The nuclei of one frame. Frames passed to [`link`] must be consecutive.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FrameNuclei {
    pub frame: usize,
    pub nuclei: Vec<Detection>,
}

impl FrameNuclei {
    /// From the output of [`crate::measure()`].
    pub fn from_measured(frame: usize, nuclei: &[Nucleus]) -> Self {
        FrameNuclei { frame, nuclei: nuclei.iter().map(Detection::from).collect() }
    }
}

/// Voxel counts of every (previous label, next label) pair that share voxels, both
/// nonzero, for two label volumes of the same grid.
pub fn overlaps(prev_labels: &[u32], next_labels: &[u32]) -> Result<HashMap<(u32, u32), u64>> {
    if prev_labels.len() != next_labels.len() {
        return Err(Error::invalid(format!("label volumes differ in size: {} and {} voxels", prev_labels.len(), next_labels.len())));
    }
    const CHUNK: usize = 1 << 16;
    Ok(prev_labels
        .par_chunks(CHUNK)
        .zip(next_labels.par_chunks(CHUNK))
        .fold(HashMap::new, |mut counts, (a, b)| {
            for (&la, &lb) in a.iter().zip(b) {
                if la != 0 && lb != 0 {
                    *counts.entry((la, lb)).or_insert(0u64) += 1;
                }
            }
            counts
        })
        .reduce(HashMap::new, |mut x, y| {
            for (k, v) in y {
                *x.entry(k).or_insert(0) += v;
            }
            x
        }))
}

/// One track: a nucleus present in every frame from `start` to `end` (inclusive);
/// `parent` is the mother's track id, or, for a nucleus found again after a gap, the
/// track before the gap (its only child); 0 for none.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct Track {
    pub id: u32,
    pub start: usize,
    pub end: usize,
    pub parent: u32,
}

/// A division: `daughters` (ascending ids) begin at `frame`, `parent` ended the frame before.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Division {
    pub frame: usize,
    pub parent: u32,
    pub daughters: [u32; 2],
}

/// The result of [`link`].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Tracking {
    /// Frame number of `assignment[0]` (the first frame given).
    pub first_frame: usize,
    /// Sorted by id, ids 1..=len.
    pub tracks: Vec<Track>,
    /// Per frame (from `first_frame` on): segmentation label -> track id.
    pub assignment: Vec<HashMap<u32, u32>>,
}

impl Tracking {
    /// The CTC `res_track.txt`: one `L B E P` line per track, sorted by L.
    pub fn res_track_txt(&self) -> String {
        res_track_txt(&self.tracks)
    }

    /// The divisions: every parent with exactly two daughter tracks (one child is a gap).
    pub fn divisions(&self) -> Vec<Division> {
        divisions(&self.tracks)
    }

    /// Rewrites the segmentation labels of `frame` as track ids (labels the tracking does
    /// not know become 0), giving the CTC label stack of that frame.
    pub fn relabel(&self, frame: usize, labels: &mut [u32]) -> Result<()> {
        let table = frame
            .checked_sub(self.first_frame)
            .and_then(|i| self.assignment.get(i))
            .ok_or_else(|| Error::invalid(format!("frame {frame} is not among the tracked frames")))?;
        for l in labels.iter_mut() {
            *l = table.get(l).copied().unwrap_or(0);
        }
        Ok(())
    }
}

/// CTC `res_track.txt` (also used for ground truth): `L B E P` per track, sorted by L.
pub fn res_track_txt(tracks: &[Track]) -> String {
    let mut sorted: Vec<&Track> = tracks.iter().collect();
    sorted.sort_by_key(|t| t.id);
    sorted.iter().map(|t| format!("{} {} {} {}\n", t.id, t.start, t.end, t.parent)).collect()
}

/// Divisions of a track list: every parent with exactly two daughter tracks, by frame
/// then parent. (One child is a nucleus found again after a gap; three or more is not a
/// division the CTC format describes; both are left out.)
pub fn divisions(tracks: &[Track]) -> Vec<Division> {
    let mut children: BTreeMap<u32, Vec<&Track>> = BTreeMap::new();
    for t in tracks.iter().filter(|t| t.parent != 0) {
        children.entry(t.parent).or_default().push(t);
    }
    let mut out: Vec<Division> = children
        .into_iter()
        .filter(|(_, c)| c.len() == 2)
        .map(|(parent, c)| {
            let (a, b) = (c[0].id.min(c[1].id), c[0].id.max(c[1].id));
            Division { frame: c[0].start.min(c[1].start), parent, daughters: [a, b] }
        })
        .collect();
    out.sort_by_key(|d| (d.frame, d.parent));
    out
}

/// Links the nuclei of consecutive frames into tracks; see the module documentation.
/// `overlaps[i]`, when given, holds the overlaps of frames i and i+1 (see [`overlaps`]).
pub fn link(frames: &[FrameNuclei], overlaps: Option<&[HashMap<(u32, u32), u64>]>, p: &TrackParams) -> Result<Tracking> {
    p.validate()?;
    check_frames(frames)?;
    if let Some(ov) = overlaps {
        if ov.len() != frames.len().saturating_sub(1) {
            return Err(Error::invalid(format!(
                "{} overlap tables given for {} frames (one per consecutive pair needed)",
                ov.len(),
                frames.len()
            )));
        }
    }
    let Some(first) = frames.first() else {
        return Ok(Tracking { first_frame: 0, tracks: Vec::new(), assignment: Vec::new() });
    };
    let nodes = Nodes::new(frames);

    // 1. frame to frame
    let links: Vec<Vec<Option<usize>>> = (0..frames.len().saturating_sub(1))
        .into_par_iter()
        .map(|t| link_pair(&frames[t].nuclei, &frames[t + 1].nuclei, overlaps.map(|o| &o[t]), p))
        .collect::<Result<_>>()?;
    let mut successor: Vec<Option<usize>> = vec![None; nodes.len()];
    let mut predecessor: Vec<Option<usize>> = vec![None; nodes.len()];
    for (t, rows) in links.iter().enumerate() {
        for (i, j) in rows.iter().enumerate() {
            if let Some(j) = j {
                let (a, b) = (nodes.id(t, i), nodes.id(t + 1, *j));
                successor[a] = Some(b);
                predecessor[b] = Some(a);
            }
        }
    }

    // 2. gap closing and divisions, one assignment
    let second = close_gaps_and_find_divisions(frames, &nodes, &successor, &predecessor, p)?;
    // the node whose track becomes the parent of a track starting at this node
    let mut parent_node: Vec<Option<usize>> = vec![None; nodes.len()];
    for join in second {
        match join {
            Join::Gap { end, start } => parent_node[start] = Some(end),
            Join::Division { mother, daughter } => {
                if let Some(first_daughter) = successor[mother].take() {
                    predecessor[first_daughter] = None;
                    parent_node[first_daughter] = Some(mother);
                }
                parent_node[daughter] = Some(mother);
            }
        }
    }

    // 3. tracks: one per chain of frame-to-frame links, in (first frame, label) order
    let mut heads: Vec<usize> = (0..nodes.len()).filter(|&n| predecessor[n].is_none()).collect();
    heads.sort_by_key(|&n| (nodes.frame_index(n), nodes.detection(frames, n).label));
    let mut track_of: Vec<u32> = vec![0; nodes.len()];
    let mut tracks: Vec<Track> = Vec::with_capacity(heads.len());
    for (k, &head) in heads.iter().enumerate() {
        let id = (k + 1) as u32;
        let mut node = head;
        loop {
            track_of[node] = id;
            match successor[node] {
                Some(next) => node = next,
                None => break,
            }
        }
        let start = first.frame + nodes.frame_index(head);
        let end = first.frame + nodes.frame_index(node);
        tracks.push(Track { id, start, end, parent: 0 });
    }
    for (k, &head) in heads.iter().enumerate() {
        if let Some(before) = parent_node[head] {
            tracks[k].parent = track_of[before];
        }
    }
    let assignment = (0..frames.len())
        .map(|t| frames[t].nuclei.iter().enumerate().map(|(i, d)| (d.label, track_of[nodes.id(t, i)])).collect())
        .collect();
    Ok(Tracking { first_frame: first.frame, tracks, assignment })
}

/// Sizes, frame numbering, labels and coordinates of the input.
fn check_frames(frames: &[FrameNuclei]) -> Result<()> {
    if frames.len() > MAX_FRAMES {
        return Err(Error::invalid(format!("{} frames given, at most {MAX_FRAMES} are linked at once", frames.len())));
    }
    let mut total = 0usize;
    let first = frames.first().map_or(0, |f| f.frame);
    for (i, f) in frames.iter().enumerate() {
        if first.checked_add(i) != Some(f.frame) {
            return Err(Error::invalid(format!(
                "frames must be consecutive: entry {i} is frame {}, expected {}",
                f.frame,
                first.saturating_add(i)
            )));
        }
        if f.nuclei.len() > MAX_NUCLEI_PER_FRAME {
            return Err(Error::invalid(format!(
                "frame {} holds {} nuclei, at most {MAX_NUCLEI_PER_FRAME} are linked",
                f.frame,
                f.nuclei.len()
            )));
        }
        total += f.nuclei.len();
        if total > MAX_DETECTIONS {
            return Err(Error::invalid(format!("more than {MAX_DETECTIONS} nuclei over all frames")));
        }
        let mut seen = std::collections::HashSet::with_capacity(f.nuclei.len());
        for d in &f.nuclei {
            if d.label == 0 || !seen.insert(d.label) {
                return Err(Error::invalid(format!("frame {}: label {} is zero or repeated", f.frame, d.label)));
            }
            if d.centroid_um.iter().any(|c| !(c.is_finite() && c.abs() <= MAX_COORDINATE_UM)) {
                return Err(Error::invalid(format!("frame {}: label {} has centroid {:?}", f.frame, d.label, d.centroid_um)));
            }
            if !(d.volume_um3.is_finite() && d.volume_um3 >= 0.0) {
                return Err(Error::invalid(format!("frame {}: label {} has volume {}", f.frame, d.label, d.volume_um3)));
            }
        }
    }
    Ok(())
}

/// Numbers every detection of every frame consecutively (frame by frame).
struct Nodes {
    /// First node id of each frame, plus the total at the end.
    offsets: Vec<usize>,
}

impl Nodes {
    fn new(frames: &[FrameNuclei]) -> Self {
        let mut offsets = Vec::with_capacity(frames.len() + 1);
        let mut sum = 0;
        offsets.push(0);
        for f in frames {
            sum += f.nuclei.len();
            offsets.push(sum);
        }
        Nodes { offsets }
    }
    fn len(&self) -> usize {
        self.offsets.last().copied().unwrap_or(0)
    }
    fn id(&self, frame_index: usize, i: usize) -> usize {
        self.offsets[frame_index] + i
    }
    /// Index of the frame holding `node` (a valid id).
    fn frame_index(&self, node: usize) -> usize {
        self.offsets.partition_point(|&o| o <= node) - 1
    }
    fn detection<'a>(&self, frames: &'a [FrameNuclei], node: usize) -> &'a Detection {
        let t = self.frame_index(node);
        &frames[t].nuclei[node - self.offsets[t]]
    }
}

fn distance(a: [f64; 3], b: [f64; 3]) -> f64 {
    ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2) + (a[2] - b[2]).powi(2)).sqrt()
}

/// Points hashed into cubic cells, to find those within a radius without comparing all pairs.
struct Grid {
    cell: f64,
    cells: HashMap<[i64; 3], Vec<usize>>,
}

impl Grid {
    /// `cell` > 0; points are finite and bounded (checked by the caller).
    fn new(points: impl Iterator<Item = (usize, [f64; 3])>, cell: f64) -> Self {
        let mut cells: HashMap<[i64; 3], Vec<usize>> = HashMap::new();
        for (i, p) in points {
            cells.entry(Self::key(p, cell)).or_default().push(i);
        }
        Grid { cell, cells }
    }
    fn key(p: [f64; 3], cell: f64) -> [i64; 3] {
        [(p[0] / cell).floor() as i64, (p[1] / cell).floor() as i64, (p[2] / cell).floor() as i64]
    }
    /// Calls `visit` with every point index whose cell may hold points within `radius` of
    /// `p` (a superset: the caller checks the distance).
    fn candidates(&self, p: [f64; 3], radius: f64, mut visit: impl FnMut(usize)) {
        let reach = (radius / self.cell).ceil().max(0.0) as i64;
        let span = (2 * reach + 1) as u128;
        if span.pow(3) > self.cells.len() as u128 {
            self.cells.values().flatten().for_each(|&i| visit(i));
            return;
        }
        let k = Self::key(p, self.cell);
        for dz in -reach..=reach {
            for dy in -reach..=reach {
                for dx in -reach..=reach {
                    if let Some(v) = self.cells.get(&[k[0] + dz, k[1] + dy, k[2] + dx]) {
                        v.iter().for_each(|&i| visit(i));
                    }
                }
            }
        }
    }
}

/// An allowed pairing of a row and a column, with its cost normalised so that 1 is the
/// cost of leaving the row unmatched.
struct Pair {
    row: usize,
    col: usize,
    cost: f64,
}

/// Minimum-cost assignment of rows to columns over the allowed `pairs`, where leaving a
/// row unmatched costs 1 and leaving a column unmatched costs nothing (the cost of a
/// newcomer is folded into the row's). Solved per connected group of competing rows and
/// columns, each as a rows x (columns + rows) Kuhn-Munkres problem whose extra columns are
/// the rows' own "no match" options. Returns each row's column.
fn assign(n_rows: usize, n_cols: usize, pairs: &[Pair]) -> Result<Vec<Option<usize>>> {
    let mut result = vec![None; n_rows];
    if pairs.is_empty() {
        return Ok(result);
    }
    // union-find over rows (0..n_rows) and columns (n_rows..)
    let mut parent: Vec<usize> = (0..n_rows + n_cols).collect();
    fn root(parent: &mut [usize], mut x: usize) -> usize {
        while parent[x] != x {
            parent[x] = parent[parent[x]];
            x = parent[x];
        }
        x
    }
    for pr in pairs {
        let (a, b) = (root(&mut parent, pr.row), root(&mut parent, n_rows + pr.col));
        if a != b {
            parent[a] = b;
        }
    }
    let mut groups: HashMap<usize, Vec<usize>> = HashMap::new();
    for (k, pr) in pairs.iter().enumerate() {
        groups.entry(root(&mut parent, pr.row)).or_default().push(k);
    }
    let mut groups: Vec<Vec<usize>> = groups.into_values().collect();
    groups.sort_by_key(|g| g[0]);
    for group in groups {
        let mut rows: Vec<usize> = group.iter().map(|&k| pairs[k].row).collect();
        let mut cols: Vec<usize> = group.iter().map(|&k| pairs[k].col).collect();
        rows.sort_unstable();
        rows.dedup();
        cols.sort_unstable();
        cols.dedup();
        if rows.len() + cols.len() > MAX_ASSIGNMENT_GROUP {
            return Err(Error::invalid(format!(
                "{} nuclei compete in one assignment (at most {MAX_ASSIGNMENT_GROUP}): the search radius is \
                 much larger than the spacing of the nuclei; lower max_displacement_um or division_max_distance_um",
                rows.len() + cols.len()
            )));
        }
        let width = cols.len() + rows.len();
        let mut costs = vec![FORBIDDEN; rows.len() * width];
        for (r, _) in rows.iter().enumerate() {
            costs[r * width + cols.len() + r] = COST_SCALE as i64;
        }
        for &k in &group {
            let pr = &pairs[k];
            // both found: rows and cols were built from these pairs
            let (Ok(r), Ok(c)) = (rows.binary_search(&pr.row), cols.binary_search(&pr.col)) else {
                return Err(Error::Internal("assignment group lost a pair".into()));
            };
            let cost = (pr.cost.clamp(0.0, 1.0) * COST_SCALE).round() as i64;
            let cell = &mut costs[r * width + c];
            *cell = (*cell).min(cost);
        }
        let matrix = Matrix::from_vec(rows.len(), width, costs).map_err(|e| Error::Internal(format!("cost matrix: {e:?}")))?;
        let (_, chosen) = kuhn_munkres_min(&matrix);
        for (r, &c) in chosen.iter().enumerate() {
            if c < cols.len() && matrix[(r, c)] < FORBIDDEN {
                result[rows[r]] = Some(cols[c]);
            }
        }
    }
    Ok(result)
}

/// Frame-to-frame links: for each nucleus of `prev`, the index of its successor in `next`.
fn link_pair(
    prev: &[Detection],
    next: &[Detection],
    overlap: Option<&HashMap<(u32, u32), u64>>,
    p: &TrackParams,
) -> Result<Vec<Option<usize>>> {
    let radius = p.max_displacement_um;
    let grid = Grid::new(next.iter().map(|d| d.centroid_um).enumerate(), radius);
    let mut pairs = Vec::new();
    for (i, a) in prev.iter().enumerate() {
        grid.candidates(a.centroid_um, radius, |j| {
            let b = &next[j];
            let d = distance(a.centroid_um, b.centroid_um);
            if d > radius {
                return;
            }
            let shared = overlap.and_then(|o| o.get(&(a.label, b.label))).copied().unwrap_or(0);
            let smaller = a.voxels.min(b.voxels);
            let fraction = if smaller == 0 { 0.0 } else { (shared as f64 / smaller as f64).min(1.0) };
            pairs.push(Pair { row: i, col: j, cost: d / radius * (1.0 - p.overlap_weight * fraction) });
        });
    }
    assign(prev.len(), next.len(), &pairs)
}

/// How unlike two volumes are, >= 1 (1 when either is unknown): a nucleus found again
/// after a gap has kept its size, and a half-size newcomer is more likely a daughter.
/// It multiplies the cost of a gap, as the intensity ratio does in Jaqaman et al.
fn volume_mismatch(a: f64, b: f64) -> f64 {
    if a > 0.0 && b > 0.0 {
        (a / b).max(b / a)
    } else {
        1.0
    }
}

/// A row of the second assignment: a node that may gain a successor.
enum Candidate {
    /// The last node of a chain, which may continue after a gap.
    ChainEnd(usize),
    /// A node with a successor, which may have divided into it and a newcomer.
    Mother(usize),
}

/// A decision of the second assignment.
enum Join {
    /// `end` (last node of a chain) continues, after a gap, at `start`.
    Gap { end: usize, start: usize },
    /// `mother` divides: its frame-to-frame successor and `daughter` are her daughters.
    Division { mother: usize, daughter: usize },
}

/// The second assignment: chain starts (columns) against chain ends across a gap and
/// mothers (rows); see the module documentation.
fn close_gaps_and_find_divisions(
    frames: &[FrameNuclei],
    nodes: &Nodes,
    successor: &[Option<usize>],
    predecessor: &[Option<usize>],
    p: &TrackParams,
) -> Result<Vec<Join>> {
    let n_frames = frames.len();
    let divisions_on = p.division_max_distance_um > 0.0;
    // chain starts after the first frame, per frame, as node ids
    let mut starts_by_frame: Vec<Vec<usize>> = vec![Vec::new(); n_frames];
    let mut column_of: HashMap<usize, usize> = HashMap::new();
    let mut columns: Vec<usize> = Vec::new();
    for (t, starts) in starts_by_frame.iter_mut().enumerate().skip(1) {
        for i in 0..frames[t].nuclei.len() {
            let n = nodes.id(t, i);
            if predecessor[n].is_none() {
                starts.push(n);
                column_of.insert(n, columns.len());
                columns.push(n);
            }
        }
    }
    if columns.is_empty() {
        return Ok(Vec::new());
    }
    let cell = p.max_displacement_um.max(p.division_max_distance_um);
    let grids: Vec<Grid> =
        starts_by_frame.iter().map(|s| Grid::new(s.iter().map(|&n| (n, nodes.detection(frames, n).centroid_um)), cell)).collect();

    let mut rows: Vec<Candidate> = Vec::new();
    let mut pairs: Vec<Pair> = Vec::new();
    for t in 0..n_frames.saturating_sub(1) {
        for (i, d) in frames[t].nuclei.iter().enumerate() {
            let n = nodes.id(t, i);
            match successor[n] {
                // a chain ends here: a gap may follow
                None => {
                    let row = rows.len();
                    let mut any = false;
                    for g in 1..=p.max_gap {
                        let target = t + 1 + g;
                        if target >= n_frames {
                            break;
                        }
                        let reach = p.max_displacement_um * (g + 1) as f64;
                        grids[target].candidates(d.centroid_um, reach, |s| {
                            let found = nodes.detection(frames, s);
                            let dist = distance(d.centroid_um, found.centroid_um);
                            if let (true, Some(&col)) = (dist <= reach, column_of.get(&s)) {
                                let cost = dist / reach * volume_mismatch(d.volume_um3, found.volume_um3);
                                pairs.push(Pair { row, col, cost });
                                any = true;
                            }
                        });
                    }
                    if any {
                        rows.push(Candidate::ChainEnd(n));
                    }
                }
                // a continuing nucleus: a mother if a newcomer beside her successor shares her volume
                Some(first_daughter) if divisions_on && d.volume_um3 > 0.0 => {
                    let reach = p.division_max_distance_um;
                    let d1 = nodes.detection(frames, first_daughter);
                    if distance(d.centroid_um, d1.centroid_um) > reach {
                        continue;
                    }
                    let row = rows.len();
                    let mut any = false;
                    grids[t + 1].candidates(d.centroid_um, reach, |s| {
                        let d2 = nodes.detection(frames, s);
                        let dist = distance(d.centroid_um, d2.centroid_um);
                        let ratio = (d1.volume_um3 + d2.volume_um3) / d.volume_um3;
                        let (lo, hi) = p.division_volume_ratio;
                        if let (true, Some(&col)) = (dist <= reach && ratio >= lo && ratio <= hi, column_of.get(&s)) {
                            pairs.push(Pair { row, col, cost: dist / reach });
                            any = true;
                        }
                    });
                    if any {
                        rows.push(Candidate::Mother(n));
                    }
                }
                Some(_) => {}
            }
        }
    }
    let chosen = assign(rows.len(), columns.len(), &pairs)?;
    Ok(rows
        .into_iter()
        .zip(chosen)
        .filter_map(|(row, c)| {
            let start = columns[c?];
            Some(match row {
                Candidate::ChainEnd(end) => Join::Gap { end, start },
                Candidate::Mother(mother) => Join::Division { mother, daughter: start },
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn det(label: u32, zyx: [f64; 3], volume: f64) -> Detection {
        Detection { label, centroid_um: zyx, volume_um3: volume, voxels: 0 }
    }

    fn frames_of(list: Vec<Vec<Detection>>) -> Vec<FrameNuclei> {
        list.into_iter().enumerate().map(|(frame, nuclei)| FrameNuclei { frame, nuclei }).collect()
    }

    /// What the CTC validator (py-ctcmetrics `valid`) requires: ids 1..=n in order, every
    /// track present in each frame from B to E and nowhere else, parents ending before
    /// their children begin.
    fn assert_ctc_valid(r: &Tracking) {
        for (k, t) in r.tracks.iter().enumerate() {
            assert_eq!(t.id as usize, k + 1);
            assert!(t.start <= t.end);
            if t.parent != 0 {
                assert!(r.tracks[t.parent as usize - 1].end < t.start, "{t:?}");
            }
            for (i, table) in r.assignment.iter().enumerate() {
                let frame = r.first_frame + i;
                let present = table.values().any(|&id| id == t.id);
                assert_eq!(present, (t.start..=t.end).contains(&frame), "track {} at frame {frame}", t.id);
            }
        }
    }

    /// Track id of `label` in frame `t`.
    fn tid(r: &Tracking, t: usize, label: u32) -> u32 {
        r.assignment[t][&label]
    }

    #[test]
    fn straight_movers_become_one_track_each() {
        let frames = frames_of(
            (0..5)
                .map(|t| {
                    let s = 2.0 * t as f64;
                    // labels change every frame: the linker must not rely on them
                    vec![det(10 + t as u32, [5.0, 10.0 + s, 10.0], 300.0), det(50 - t as u32, [5.0, 40.0, 40.0 - s], 300.0)]
                })
                .collect(),
        );
        let r = link(&frames, None, &TrackParams::default()).unwrap();
        assert_eq!(r.tracks.len(), 2);
        assert!(r.tracks.iter().all(|t| t.start == 0 && t.end == 4 && t.parent == 0));
        for t in 0..5 {
            assert_eq!(tid(&r, t, 10 + t as u32), 1);
            assert_eq!(tid(&r, t, 50 - t as u32), 2);
        }
        assert_eq!(r.res_track_txt(), "1 0 4 0\n2 0 4 0\n");
        assert!(r.divisions().is_empty());
    }

    #[test]
    fn assignment_beats_greedy_nearest_pair() {
        // Both nuclei move +3 um in x. The closest pair overall is B(t=1) -> A(t=2), 1 um;
        // taking it first (greedy) forces A(t=1) -> B(t=2), 7 um, total 8 um, against the
        // true 3 + 3 = 6 um.
        let frames = frames_of(vec![
            vec![det(1, [0.0, 0.0, -3.0], 300.0), det(2, [0.0, 0.0, 1.0], 300.0)],
            vec![det(1, [0.0, 0.0, 0.0], 300.0), det(2, [0.0, 0.0, 4.0], 300.0)],
            vec![det(1, [0.0, 0.0, 3.0], 300.0), det(2, [0.0, 0.0, 7.0], 300.0)],
        ]);
        let r = link(&frames, None, &TrackParams::default()).unwrap();
        assert_eq!(r.tracks.len(), 2);
        for t in 0..3 {
            assert_eq!((tid(&r, t, 1), tid(&r, t, 2)), (1, 2), "frame {t}");
        }
    }

    #[test]
    fn overlap_settles_an_ambiguous_link() {
        // two successors at equal distance: the one overlapping the nucleus wins
        let mut a = det(1, [0.0, 0.0, 0.0], 300.0);
        a.voxels = 100;
        let (mut b, mut c) = (det(1, [0.0, 0.0, -3.0], 300.0), det(2, [0.0, 0.0, 3.0], 300.0));
        b.voxels = 100;
        c.voxels = 100;
        let frames = frames_of(vec![vec![a], vec![b, c]]);
        let p = TrackParams { division_max_distance_um: 0.0, ..Default::default() };
        for (overlapping, other) in [(2u32, 1u32), (1, 2)] {
            let table = [HashMap::from([((1u32, overlapping), 60u64), ((1, other), 5)])];
            let r = link(&frames, Some(&table[..]), &p).unwrap();
            assert_eq!(tid(&r, 1, overlapping), tid(&r, 0, 1));
            assert_ne!(tid(&r, 1, other), tid(&r, 0, 1));
        }
        assert!(link(&frames, Some(&[][..]), &p).is_err());
    }

    #[test]
    fn overlaps_counts_shared_voxels() {
        let a = [0, 1, 1, 2, 2, 0];
        let b = [3, 3, 0, 3, 4, 4];
        let o = overlaps(&a, &b).unwrap();
        assert_eq!(o, HashMap::from([((1, 3), 1), ((2, 3), 1), ((2, 4), 1)]));
        assert!(overlaps(&a, &b[..5]).is_err());
    }

    #[test]
    fn division_ends_the_mother_and_starts_two_daughters() {
        let frames = frames_of(vec![
            vec![det(1, [10.0, 20.0, 20.0], 1000.0), det(2, [10.0, 60.0, 60.0], 1000.0)],
            vec![det(1, [10.0, 20.5, 20.0], 1000.0), det(2, [10.0, 60.0, 60.0], 1000.0)],
            // nucleus 1 divides along x: daughters 4 um either side
            vec![det(7, [10.0, 20.5, 16.0], 520.0), det(8, [10.0, 20.5, 24.0], 480.0), det(2, [10.0, 60.0, 61.0], 1000.0)],
            vec![det(7, [10.0, 20.5, 14.0], 520.0), det(8, [10.0, 20.5, 26.0], 480.0), det(2, [10.0, 60.0, 62.0], 1000.0)],
        ]);
        let r = link(&frames, None, &TrackParams::default()).unwrap();
        assert_eq!(r.tracks.len(), 4);
        let mother = tid(&r, 0, 1);
        assert_eq!(tid(&r, 1, 1), mother);
        let (d7, d8) = (tid(&r, 2, 7), tid(&r, 2, 8));
        assert_eq!((tid(&r, 3, 7), tid(&r, 3, 8)), (d7, d8));
        assert!(d7 != d8 && d7 != mother && d8 != mother);
        assert_eq!(r.divisions(), vec![Division { frame: 2, parent: mother, daughters: [d7.min(d8), d7.max(d8)] }]);
        // ids by first frame, then label: mother 1, other 2, daughters 3 (label 7) and 4
        assert_eq!(r.res_track_txt(), "1 0 1 0\n2 0 3 0\n3 2 3 1\n4 2 3 1\n");
        assert_ctc_valid(&r);
        // relabelling a frame gives the CTC label stack
        let mut stack = vec![0, 7, 8, 2, 9];
        r.relabel(2, &mut stack).unwrap();
        assert_eq!(stack, vec![0, 3, 4, 2, 0]);
        assert!(r.relabel(4, &mut stack).is_err());
    }

    #[test]
    fn no_division_when_the_volume_is_not_shared() {
        // a full-size newcomer beside a nucleus that kept its size is not a daughter
        let frames = frames_of(vec![
            vec![det(1, [10.0, 20.0, 20.0], 1000.0)],
            vec![det(1, [10.0, 20.0, 21.0], 1000.0), det(2, [10.0, 20.0, 27.0], 900.0)],
        ]);
        let r = link(&frames, None, &TrackParams::default()).unwrap();
        assert_eq!(r.res_track_txt(), "1 0 1 0\n2 1 1 0\n");
        assert!(r.divisions().is_empty());
    }

    #[test]
    fn one_frame_gap_is_bridged_as_a_single_child() {
        let frames = frames_of(vec![
            vec![det(1, [5.0, 10.0, 10.0], 300.0), det(2, [5.0, 50.0, 50.0], 300.0)],
            vec![det(1, [5.0, 10.0, 12.0], 300.0), det(2, [5.0, 50.0, 50.0], 300.0)],
            // nucleus 1 missed in this frame
            vec![det(2, [5.0, 50.0, 50.0], 300.0)],
            vec![det(4, [5.0, 10.0, 16.0], 300.0), det(2, [5.0, 50.0, 50.0], 300.0)],
        ]);
        // CTC: the nucleus after the gap is track 3, child of track 1, and no division
        let r = link(&frames, None, &TrackParams::default()).unwrap();
        assert_eq!(r.res_track_txt(), "1 0 1 0\n2 0 3 0\n3 3 3 1\n");
        assert_eq!((tid(&r, 0, 1), tid(&r, 1, 1), tid(&r, 3, 4)), (1, 1, 3));
        assert_ctc_valid(&r);
        assert!(r.divisions().is_empty());
        // without gap closing the reappearance is an unrelated new track
        let r = link(&frames, None, &TrackParams { max_gap: 0, ..Default::default() }).unwrap();
        assert_eq!(r.res_track_txt(), "1 0 1 0\n2 0 3 0\n3 3 3 0\n");
        // a two-frame gap is beyond the default
        let mut longer = frames.clone();
        longer.insert(2, FrameNuclei { frame: 2, nuclei: vec![det(2, [5.0, 50.0, 50.0], 300.0)] });
        for (i, f) in longer.iter_mut().enumerate() {
            f.frame = i;
        }
        assert_eq!(link(&longer, None, &TrackParams::default()).unwrap().tracks[2].parent, 0);
        assert_eq!(link(&longer, None, &TrackParams { max_gap: 2, ..Default::default() }).unwrap().tracks[2].parent, 1);
    }

    #[test]
    fn a_daughter_is_not_taken_for_a_nucleus_lost_in_a_gap() {
        // X (at x = 29) is missed in frame 2; in frame 3 mother M divides and one daughter
        // lands 4.5 um from both M and X. By distance alone the gap (4.5 um over two
        // frames) is the cheaper explanation; the halved volume says division.
        let frames = frames_of(vec![
            vec![det(1, [10.0, 20.0, 20.0], 1000.0), det(2, [10.0, 20.0, 29.0], 1000.0)],
            vec![det(1, [10.0, 20.0, 20.0], 1000.0), det(2, [10.0, 20.0, 29.0], 1000.0)],
            vec![det(1, [10.0, 20.0, 20.0], 1000.0)],
            vec![det(5, [10.0, 20.0, 16.0], 500.0), det(6, [10.0, 20.0, 24.5], 500.0)],
        ]);
        let r = link(&frames, None, &TrackParams::default()).unwrap();
        assert_eq!(r.res_track_txt(), "1 0 2 0\n2 0 1 0\n3 3 3 1\n4 3 3 1\n");
        assert_ctc_valid(&r);
        // a full-size nucleus at the same place is the lost one found again
        let mut same_size = frames.clone();
        same_size[3].nuclei[1].volume_um3 = 1000.0;
        let r = link(&same_size, None, &TrackParams::default()).unwrap();
        assert_eq!(r.res_track_txt(), "1 0 3 0\n2 0 1 0\n3 3 3 2\n");
    }

    #[test]
    fn appearance_and_disappearance_at_the_border() {
        // a nucleus leaves through x = 0 after frame 1; another enters at x = 60 in frame 2
        let frames = frames_of(vec![
            vec![det(1, [5.0, 30.0, 3.0], 300.0), det(2, [5.0, 30.0, 30.0], 300.0)],
            vec![det(1, [5.0, 30.0, 1.0], 300.0), det(2, [5.0, 30.0, 30.0], 300.0)],
            vec![det(2, [5.0, 30.0, 30.0], 300.0), det(3, [5.0, 30.0, 59.0], 80.0)],
            vec![det(2, [5.0, 30.0, 30.0], 300.0), det(3, [5.0, 30.0, 57.0], 200.0)],
        ]);
        let r = link(&frames, None, &TrackParams::default()).unwrap();
        assert_eq!(r.res_track_txt(), "1 0 1 0\n2 0 3 0\n3 2 3 0\n");
        assert_eq!(tid(&r, 3, 3), 3);
    }

    #[test]
    fn competing_mothers_are_assigned_optimally() {
        // two mothers 12 um apart divide at once; each keeps a daughter by frame linking,
        // the two newcomers go one to each, the nearer pairing
        let frames = frames_of(vec![
            vec![det(1, [10.0, 20.0, 20.0], 1000.0), det(2, [10.0, 20.0, 32.0], 1000.0)],
            vec![
                det(1, [10.0, 20.0, 16.0], 500.0),
                det(2, [10.0, 20.0, 36.0], 500.0),
                det(3, [10.0, 20.0, 24.0], 500.0),
                det(4, [10.0, 20.0, 28.0], 500.0),
            ],
        ]);
        let r = link(&frames, None, &TrackParams::default()).unwrap();
        let (m1, m2) = (tid(&r, 0, 1), tid(&r, 0, 2));
        let parent = |label| r.tracks[tid(&r, 1, label) as usize - 1].parent;
        assert_eq!((parent(1), parent(3)), (m1, m1));
        assert_eq!((parent(2), parent(4)), (m2, m2));
        assert_eq!(r.divisions().len(), 2);
        assert_ctc_valid(&r);
    }

    #[test]
    fn params_are_validated() {
        assert!(TrackParams::default().validate().is_ok());
        let bad = [
            TrackParams { max_displacement_um: 0.0, ..Default::default() },
            TrackParams { max_displacement_um: f64::NAN, ..Default::default() },
            TrackParams { max_displacement_um: 1e6, ..Default::default() },
            TrackParams { max_gap: 11, ..Default::default() },
            TrackParams { division_max_distance_um: -1.0, ..Default::default() },
            TrackParams { division_volume_ratio: (1.5, 1.0), ..Default::default() },
            TrackParams { division_volume_ratio: (0.0, 1.0), ..Default::default() },
            TrackParams { division_volume_ratio: (0.5, f64::INFINITY), ..Default::default() },
            TrackParams { overlap_weight: 1.5, ..Default::default() },
        ];
        for p in bad {
            assert!(matches!(p.validate(), Err(Error::InvalidArgument(_))), "{p:?}");
            assert!(link(&[], None, &p).is_err());
        }
    }

    #[test]
    fn bad_frames_are_refused() {
        let p = TrackParams::default();
        let ok = det(1, [0.0; 3], 1.0);
        let not_consecutive = vec![FrameNuclei { frame: 0, nuclei: vec![] }, FrameNuclei { frame: 2, nuclei: vec![] }];
        assert!(link(&not_consecutive, None, &p).is_err());
        let repeated = frames_of(vec![vec![ok.clone(), ok.clone()]]);
        assert!(link(&repeated, None, &p).is_err());
        let zero = frames_of(vec![vec![det(0, [0.0; 3], 1.0)]]);
        assert!(link(&zero, None, &p).is_err());
        let nan = frames_of(vec![vec![det(1, [f64::NAN, 0.0, 0.0], 1.0)]]);
        assert!(link(&nan, None, &p).is_err());
        let far = frames_of(vec![vec![det(1, [1e300, 0.0, 0.0], 1.0)]]);
        assert!(link(&far, None, &p).is_err());
        let negative = frames_of(vec![vec![det(1, [0.0; 3], -1.0)]]);
        assert!(link(&negative, None, &p).is_err());
        let crowded = frames_of(vec![(1..=MAX_NUCLEI_PER_FRAME as u32 + 1).map(|l| det(l, [0.0; 3], 1.0)).collect()]);
        assert!(link(&crowded, None, &p).is_err());
    }

    #[test]
    fn too_many_competitors_is_an_error_not_a_hang() {
        // 1,600 nuclei packed within the search radius in two frames
        let cloud: Vec<Detection> =
            (0..1600u32).map(|l| det(l + 1, [(l % 10) as f64 * 0.1, (l / 10 % 10) as f64 * 0.1, (l / 100) as f64 * 0.1], 1.0)).collect();
        let frames = frames_of(vec![cloud.clone(), cloud]);
        assert!(matches!(link(&frames, None, &TrackParams::default()), Err(Error::InvalidArgument(_))));
    }

    #[test]
    fn empty_frames() {
        let p = TrackParams::default();
        let r = link(&[], None, &p).unwrap();
        assert!(r.tracks.is_empty() && r.assignment.is_empty() && r.res_track_txt().is_empty());
        let frames = vec![
            FrameNuclei { frame: 5, nuclei: vec![] },
            FrameNuclei { frame: 6, nuclei: vec![det(3, [1.0; 3], 10.0)] },
            FrameNuclei { frame: 7, nuclei: vec![] },
            FrameNuclei { frame: 8, nuclei: vec![] },
        ];
        let r = link(&frames, None, &p).unwrap();
        assert_eq!(r.first_frame, 5);
        assert_eq!(r.res_track_txt(), "1 6 6 0\n");
        let mut stack = vec![3, 0];
        r.relabel(6, &mut stack).unwrap();
        assert_eq!(stack, vec![1, 0]);
        assert!(r.relabel(4, &mut stack).is_err());
    }
}
