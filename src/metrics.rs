//! Segmentation accuracy from one contingency table of (ground truth, prediction) voxel
//! counts, built in one pass.
//!
//! - `iou`: voxel IoU of the foregrounds (label > 0).
//! - `seg` and `mucov` exactly as the QCANet authors' evaluation code computes them
//!   (funalab/QCANet `src/tools/evaluation_seg.py`, which gives the paper's figures):
//!   for each ground-truth nucleus g (SEG) or predicted nucleus p (MUCov), the nuclei of
//!   the other volume that overlap it are visited in ascending label order; whenever one's
//!   IoU is `>=` the best so far it becomes the best, and the "coverage" becomes the
//!   larger of the coverage so far and |g∩p|/|g| -- the coverage of the *ground-truth*
//!   nucleus in both metrics, because their `iou()` returns TP/(TP+FN) with the ground
//!   truth as its second argument. The best IoU counts when that coverage exceeds 0.5,
//!   else 0. SEG is the mean over ground-truth nuclei, MUCov over predicted ones.
//! - `seg_ctc`: Cell Tracking Challenge SEG: per ground-truth nucleus, the IoU with the
//!   predicted nucleus holding more than half of its voxels, else 0.
//! - `matching`: detection at IoU thresholds 0.5, 0.6, 0.7, 0.8, 0.9 with a one-to-one
//!   optimal matching, as StarDist's `matching.py` defines it (pairs with IoU >= the
//!   threshold, the most pairs, ties broken by the larger IoU sum): TP, FP, FN,
//!   precision, recall, F1, `ap` (StarDist's "accuracy", TP / (TP + FP + FN), which the
//!   StarDist, EmbedSeg and Cellpose papers report as average precision), mean matched
//!   IoU and panoptic quality. `f1`, `precision`, `recall`, `n_matched` repeat the 0.5 row.
//!
//! Every ratio with an empty denominator is 0 (the authors' code divides by zero there).
//! `qcanet.reference.evaluate` (Python) defines the same numbers; the tests hold the two
//! together and check SEG and MUCov against a plain transcription of the authors' loops.

use std::collections::HashMap;

use pathfinding::kuhn_munkres::kuhn_munkres;
use pathfinding::matrix::Matrix;
use rayon::prelude::*;
use serde::Serialize;

use crate::error::{Error, Result};

/// IoU thresholds of the detection scores (`Metrics::matching`).
pub const MATCH_THRESHOLDS: [f64; 5] = [0.5, 0.6, 0.7, 0.8, 0.9];

/// Detection scores at one IoU threshold (StarDist's `matching.py` record).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Matching {
    pub threshold: f64,
    pub tp: u32,
    pub fp: u32,
    #[serde(rename = "fn")]
    pub fn_: u32,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    /// TP / (TP + FP + FN): StarDist's "accuracy", reported in the field as AP.
    pub ap: f64,
    /// Mean IoU of the matched pairs.
    pub mean_matched_score: f64,
    /// Sum of matched IoUs / (TP + FP/2 + FN/2).
    pub panoptic_quality: f64,
    /// Sum of the matched pairs' IoU (what pooling over files needs).
    pub matched_score_sum: f64,
}

impl Matching {
    /// The record from counts: `tp` pairs matched out of `n_pred` predictions and
    /// `n_gt` ground-truth nuclei, their IoUs summing to `score_sum`.
    pub fn from_counts(threshold: f64, tp: u32, n_pred: u32, n_gt: u32, score_sum: f64) -> Matching {
        let (fp, fn_) = (n_pred - tp, n_gt - tp);
        let (t, p, n) = (tp as f64, fp as f64, fn_ as f64);
        Matching {
            threshold,
            tp,
            fp,
            fn_,
            precision: ratio(t, t + p),
            recall: ratio(t, t + n),
            f1: ratio(2.0 * t, 2.0 * t + p + n),
            ap: ratio(t, t + p + n),
            mean_matched_score: ratio(score_sum, t),
            panoptic_quality: ratio(score_sum, t + p / 2.0 + n / 2.0),
            matched_score_sum: score_sum,
        }
    }

    /// Scores of many files pooled (counts summed, then the ratios): StarDist's
    /// `matching_dataset(..., by_image=False)`.
    pub fn pooled(items: &[Matching]) -> Matching {
        let threshold = items.first().map_or(0.0, |m| m.threshold);
        let (mut tp, mut np, mut ng, mut s) = (0u32, 0u32, 0u32, 0.0);
        for m in items {
            tp += m.tp;
            np += m.tp + m.fp;
            ng += m.tp + m.fn_;
            s += m.matched_score_sum;
        }
        Matching::from_counts(threshold, tp, np, ng, s)
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Metrics {
    pub iou: f64,
    pub seg: f64,
    pub mucov: f64,
    pub seg_ctc: f64,
    /// F1, precision, recall and matched pairs at IoU >= 0.5 (`matching[0]`).
    pub f1: f64,
    pub precision: f64,
    pub recall: f64,
    pub n_gt: u32,
    pub n_pred: u32,
    pub n_matched: u32,
    /// One record per threshold of [`MATCH_THRESHOLDS`].
    pub matching: [Matching; 5],
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        0.0
    }
}

/// Sparse (gt, pred) -> voxel count table, plus per-label sizes.
struct Table {
    pairs: HashMap<(u32, u32), u64>,
    gt_size: HashMap<u32, u64>,
    pred_size: HashMap<u32, u64>,
    both_bg: u64,
}

fn table(pred: &[u32], gt: &[u32]) -> Table {
    // one pass, parallel over chunks; consecutive equal pairs are run-length folded
    let part = |(p, g): (&[u32], &[u32])| {
        let mut m: HashMap<(u32, u32), u64> = HashMap::new();
        let mut last = (u32::MAX, u32::MAX);
        let mut run = 0u64;
        for (&a, &b) in p.iter().zip(g) {
            let key = (b, a);
            if key == last {
                run += 1;
            } else {
                if run > 0 {
                    *m.entry(last).or_insert(0) += run;
                }
                last = key;
                run = 1;
            }
        }
        if run > 0 {
            *m.entry(last).or_insert(0) += run;
        }
        m
    };
    let chunk = (pred.len() / (4 * rayon::current_num_threads()).max(1)).max(1 << 14);
    let pairs = pred.par_chunks(chunk).zip(gt.par_chunks(chunk)).map(part).reduce(HashMap::new, |mut a, b| {
        for (k, v) in b {
            *a.entry(k).or_insert(0) += v;
        }
        a
    });
    let mut gt_size = HashMap::new();
    let mut pred_size = HashMap::new();
    let mut both_bg = 0;
    for (&(g, p), &c) in &pairs {
        if g == 0 && p == 0 {
            both_bg = c;
        }
        if g != 0 {
            *gt_size.entry(g).or_insert(0) += c;
        }
        if p != 0 {
            *pred_size.entry(p).or_insert(0) += c;
        }
    }
    Table { pairs, gt_size, pred_size, both_bg }
}

/// One overlapping pair: ground-truth label, predicted label, shared voxels.
#[derive(Clone, Copy)]
struct Pair {
    g: u32,
    p: u32,
    c: u64,
}

/// The authors' rule for one nucleus: `pairs` are its overlaps in ascending label order
/// of the other volume, each with (IoU, coverage of the ground-truth nucleus). Returns
/// the term it adds to SEG or MUCov.
fn authors_term(pairs: impl Iterator<Item = (f64, f64)>) -> f64 {
    let (mut best, mut coverage) = (0.0f64, 0.0f64);
    for (iou, cov) in pairs {
        if iou >= best {
            best = iou;
            coverage = coverage.max(cov);
        }
    }
    if coverage > 0.5 {
        best
    } else {
        0.0
    }
}

/// The one-to-one matching of StarDist's `matching.py` at `threshold`: among pairs with
/// IoU >= threshold, the most pairs, then the largest IoU sum. Returns (pairs, IoU sum).
/// Pairs at or above 0.5 form tiny connected groups (a nucleus has at most two such
/// partners, and two only on an exact tie), so the assignment runs per group.
fn optimal_matching(cands: &[(u32, u32, f64)], threshold: f64) -> (u32, f64) {
    let edges: Vec<&(u32, u32, f64)> = cands.iter().filter(|e| e.2 >= threshold).collect();
    // connected groups by union-find over gt ids and pred ids (pred ids offset)
    let mut index: HashMap<(bool, u32), usize> = HashMap::new();
    let mut parent: Vec<usize> = Vec::new();
    fn root(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    let mut node = |key: (bool, u32), parent: &mut Vec<usize>| -> usize {
        *index.entry(key).or_insert_with(|| {
            parent.push(parent.len());
            parent.len() - 1
        })
    };
    let mut ends = Vec::with_capacity(edges.len());
    for e in &edges {
        let (a, b) = (node((false, e.0), &mut parent), node((true, e.1), &mut parent));
        let (ra, rb) = (root(&mut parent, a), root(&mut parent, b));
        parent[ra] = rb;
        ends.push(a);
    }
    let mut groups: HashMap<usize, Vec<&(u32, u32, f64)>> = HashMap::new();
    for (e, a) in edges.iter().zip(ends) {
        groups.entry(root(&mut parent, a)).or_default().push(e);
    }
    let (mut tp, mut sum) = (0u32, 0.0f64);
    for group in groups.values() {
        if group.len() == 1 {
            tp += 1;
            sum += group[0].2;
            continue;
        }
        let mut gs: Vec<u32> = group.iter().map(|e| e.0).collect();
        let mut ps: Vec<u32> = group.iter().map(|e| e.1).collect();
        gs.sort_unstable();
        gs.dedup();
        ps.sort_unstable();
        ps.dedup();
        // rows must not outnumber columns
        let swap = gs.len() > ps.len();
        let (rows, cols) = if swap { (&ps, &gs) } else { (&gs, &ps) };
        // weight: a pair counts far more than any IoU sum (most pairs first), IoU in 1e-9
        let unit = 1_000_000_000i64;
        let pair_weight = unit * (rows.len() as i64 + 1);
        let mut w = Matrix::new(rows.len(), cols.len(), 0i64);
        let mut iou_of = HashMap::new();
        for e in group {
            let (r, c) = if swap { (e.1, e.0) } else { (e.0, e.1) };
            let (ri, ci) = (rows.binary_search(&r).unwrap_or(0), cols.binary_search(&c).unwrap_or(0));
            w[(ri, ci)] = pair_weight + (e.2 * unit as f64).round() as i64;
            iou_of.insert((ri, ci), e.2);
        }
        let (_, assign) = kuhn_munkres(&w);
        for (ri, &ci) in assign.iter().enumerate() {
            if let Some(j) = iou_of.get(&(ri, ci)) {
                tp += 1;
                sum += j;
            }
        }
    }
    (tp, sum)
}

/// Compares a predicted label volume with the ground truth (same length, C order).
pub fn evaluate(pred: &[u32], gt: &[u32]) -> Result<Metrics> {
    if pred.len() != gt.len() {
        return Err(Error::invalid(format!("prediction has {} voxels, ground truth {}", pred.len(), gt.len())));
    }
    let t = table(pred, gt);
    let total = pred.len() as u64;
    let fg_union = total - t.both_bg;
    let mut pairs: Vec<Pair> = t.pairs.iter().filter(|((g, p), _)| *g != 0 && *p != 0).map(|(&(g, p), &c)| Pair { g, p, c }).collect();
    let fg_inter: u64 = pairs.iter().map(|e| e.c).sum();
    let iou = |e: &Pair| e.c as f64 / (t.gt_size[&e.g] + t.pred_size[&e.p] - e.c) as f64;
    let cover = |e: &Pair| e.c as f64 / t.gt_size[&e.g] as f64;
    let (n_gt, n_pred) = (t.gt_size.len() as u32, t.pred_size.len() as u32);

    // SEG: per ground-truth nucleus, its overlaps in ascending predicted label
    pairs.sort_unstable_by_key(|e| (e.g, e.p));
    let seg_sum: f64 = pairs.chunk_by(|a, b| a.g == b.g).map(|run| authors_term(run.iter().map(|e| (iou(e), cover(e))))).sum();
    let seg_ctc_sum: f64 = pairs.iter().filter(|e| 2 * e.c > t.gt_size[&e.g]).map(iou).sum();
    // MUCov: per predicted nucleus, its overlaps in ascending ground-truth label
    pairs.sort_unstable_by_key(|e| (e.p, e.g));
    let mucov_sum: f64 = pairs.chunk_by(|a, b| a.p == b.p).map(|run| authors_term(run.iter().map(|e| (iou(e), cover(e))))).sum();

    let cands: Vec<(u32, u32, f64)> = pairs.iter().map(|e| (e.g, e.p, iou(e))).filter(|c| c.2 >= MATCH_THRESHOLDS[0]).collect();
    let matching = MATCH_THRESHOLDS.map(|th| {
        let (tp, sum) = optimal_matching(&cands, th);
        Matching::from_counts(th, tp, n_pred, n_gt, sum)
    });
    let m05 = matching[0];
    Ok(Metrics {
        iou: ratio(fg_inter as f64, fg_union as f64),
        seg: ratio(seg_sum, n_gt as f64),
        mucov: ratio(mucov_sum, n_pred as f64),
        seg_ctc: ratio(seg_ctc_sum, n_gt as f64),
        f1: m05.f1,
        precision: m05.precision,
        recall: m05.recall,
        n_gt,
        n_pred,
        n_matched: m05.tp,
        matching,
    })
}

/// How far two segmentations of one volume partition its foreground alike (a run against
/// another run: GPU and CPU, blocks and whole volume). Each label of `a` is matched to the
/// label of `b` it overlaps most (label numbers need not agree); a foreground voxel (of
/// either) agrees when it is foreground in both and in matched nuclei. The rule of
/// `tools/compare_labels.py`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Agreement {
    pub fg_voxels: u64,
    pub differing_voxels: u64,
    /// 1 - differing / foreground (1 when neither has foreground).
    pub agreement: f64,
    pub nuclei_a: u32,
    pub nuclei_b: u32,
}

/// The [`Agreement`] of `a` with `b` (same length, C order).
///
/// ```
/// let r = qcanet::metrics::agreement(&[0, 1, 1, 2, 2], &[0, 5, 5, 5, 7]).unwrap();
/// assert_eq!((r.fg_voxels, r.differing_voxels, r.agreement), (4, 1, 0.75));
/// ```
pub fn agreement(a: &[u32], b: &[u32]) -> Result<Agreement> {
    if a.len() != b.len() {
        return Err(Error::invalid(format!("{} voxels against {}", a.len(), b.len())));
    }
    // table(pred, gt) keys pairs as (gt, pred): here (b, a)
    let t = table(a, b);
    let fg = a.len() as u64 - t.both_bg;
    let mut best: HashMap<u32, (u32, u64)> = HashMap::new();
    for (&(lb, la), &c) in &t.pairs {
        if la != 0 {
            let e = best.entry(la).or_insert((lb, c));
            // ties go to the smaller label, so the result does not depend on hashing
            if c > e.1 || (c == e.1 && lb < e.0) {
                *e = (lb, c);
            }
        }
    }
    let same: u64 = best.values().filter(|(lb, _)| *lb != 0).map(|(_, c)| c).sum();
    let differing = fg - same;
    Ok(Agreement {
        fg_voxels: fg,
        differing_voxels: differing,
        agreement: if fg == 0 { 1.0 } else { 1.0 - differing as f64 / fg as f64 },
        nuclei_a: t.pred_size.len() as u32,
        nuclei_b: t.gt_size.len() as u32,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_made_case_matches_the_reference_doctest() {
        // qcanet.reference.evaluate doctest: gt = [1,1,1,1,2,2,2,2], pred = [5,5,5,0,...]
        let gt = [1, 1, 1, 1, 2, 2, 2, 2];
        let pr = [5, 5, 5, 0, 0, 0, 0, 0];
        let m = evaluate(&pr, &gt).unwrap();
        assert!((m.iou - 0.375).abs() < 1e-12);
        assert!((m.seg - 0.375).abs() < 1e-12);
        assert!((m.mucov - 0.75).abs() < 1e-12);
        assert_eq!((m.n_gt, m.n_pred, m.n_matched), (2, 1, 1));
        assert!((m.f1 - 2.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn perfect_and_empty() {
        let a = [0, 1, 1, 2, 2, 0];
        let m = evaluate(&a, &a).unwrap();
        assert_eq!((m.iou, m.seg, m.mucov, m.seg_ctc, m.f1), (1.0, 1.0, 1.0, 1.0, 1.0));
        let z = [0u32; 6];
        let m = evaluate(&z, &z).unwrap();
        assert_eq!((m.iou, m.seg, m.mucov, m.f1, m.n_gt), (0.0, 0.0, 0.0, 0.0, 0));
        let m = evaluate(&z, &a).unwrap();
        assert_eq!((m.seg, m.recall, m.n_gt, m.n_pred), (0.0, 0.0, 2, 0));
        assert!(evaluate(&z[..5], &a).is_err());
    }

    #[test]
    fn seg_and_ctc_seg_differ_when_the_best_iou_is_not_the_cover() {
        // gt 1 = 10 voxels; pred 7 covers 6 of them but is huge (IoU 0.1); pred 8 covers
        // the other 4 exactly (IoU 0.4, the best IoU, but under half of gt 1). The authors'
        // loop keeps the coverage 0.6 it met at pred 7 while moving the best to pred 8,
        // so SEG counts 0.4; CTC SEG takes the covering pred 7's 0.1.
        let mut gt = vec![0u32; 60];
        let mut pr = vec![0u32; 60];
        gt[..10].fill(1);
        pr[..6].fill(7);
        pr[10..].fill(7);
        pr[6..10].fill(8);
        let m = evaluate(&pr, &gt).unwrap();
        assert!((m.seg - 0.4).abs() < 1e-12, "{}", m.seg);
        assert!((m.seg_ctc - 6.0 / 60.0).abs() < 1e-12);
        // MUCov: pred 7 (IoU 0.1, coverage of gt 0.6) counts 0.1; pred 8 (0.4, 0.4) 0
        assert!((m.mucov - 0.05).abs() < 1e-12, "{}", m.mucov);
    }

    /// The authors' evaluation loops written out plainly (dense masks, every label id in
    /// ascending order, `>=` on the best IoU, coverage of the ground-truth nucleus
    /// max-accumulated), with the mean over the labels present.
    fn authors_loops(pred: &[u32], gt: &[u32]) -> (f64, f64) {
        let ids = |v: &[u32]| {
            let mut s: Vec<u32> = v.iter().copied().filter(|&a| a > 0).collect();
            s.sort_unstable();
            s.dedup();
            s
        };
        let (gs, ps) = (ids(gt), ids(pred));
        // (IoU, |g & p| / |g|) of ground-truth g and prediction p
        let score = |g: u32, p: u32| {
            let (mut tp, mut fp, mut fn_) = (0f64, 0f64, 0f64);
            for (&a, &b) in pred.iter().zip(gt) {
                match (a == p, b == g) {
                    (true, true) => tp += 1.0,
                    (true, false) => fp += 1.0,
                    (false, true) => fn_ += 1.0,
                    _ => {}
                }
            }
            (tp / (tp + fp + fn_), tp / (tp + fn_))
        };
        let term = |pairs: Vec<(f64, f64)>| {
            let (mut best, mut cov) = (0.0, 0.0f64);
            for (j, c) in pairs {
                if j >= best {
                    best = j;
                    cov = cov.max(c);
                }
            }
            if cov > 0.5 {
                best
            } else {
                0.0
            }
        };
        let seg: f64 = gs.iter().map(|&g| term(ps.iter().map(|&p| score(g, p)).collect())).sum();
        let mucov: f64 = ps.iter().map(|&p| term(gs.iter().map(|&g| score(g, p)).collect())).sum();
        let mean = |s: f64, n: usize| {
            if n > 0 && !gs.is_empty() && !ps.is_empty() {
                s / n as f64
            } else {
                0.0
            }
        };
        (mean(seg, gs.len()), mean(mucov, ps.len()))
    }

    #[test]
    fn seg_and_mucov_equal_the_authors_loops() {
        // random blobs: overlapping boxes of random ids, in a prediction and a ground truth
        let mut state = 12345u64;
        let mut rnd = |n: u64| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (state >> 33) % n
        };
        let dims = [6usize, 12, 12];
        let n = dims.iter().product::<usize>();
        let paint = |v: &mut Vec<u32>, id: u32, rnd: &mut dyn FnMut(u64) -> u64| {
            let (z0, y0, x0) = (rnd(5) as usize, rnd(10) as usize, rnd(10) as usize);
            let (dz, dy, dx) = (1 + rnd(3) as usize, 1 + rnd(5) as usize, 1 + rnd(5) as usize);
            for z in z0..(z0 + dz).min(dims[0]) {
                for y in y0..(y0 + dy).min(dims[1]) {
                    for x in x0..(x0 + dx).min(dims[2]) {
                        v[(z * dims[1] + y) * dims[2] + x] = id;
                    }
                }
            }
        };
        for case in 0..60 {
            let mut gt = vec![0u32; n];
            let mut pr = vec![0u32; n];
            for id in 1..=(2 + case % 7) as u32 {
                paint(&mut gt, id, &mut rnd);
            }
            for k in 0..(1 + case % 9) as u32 {
                paint(&mut pr, 3 + 5 * k + (rnd(4) as u32), &mut rnd);
            }
            let m = evaluate(&pr, &gt).unwrap();
            let (seg, mucov) = authors_loops(&pr, &gt);
            assert!((m.seg - seg).abs() < 1e-12, "case {case}: seg {} vs {seg}", m.seg);
            assert!((m.mucov - mucov).abs() < 1e-12, "case {case}: mucov {} vs {mucov}", m.mucov);
        }
    }

    #[test]
    fn matching_is_one_to_one_and_optimal() {
        // gt 1 (4 voxels) is split exactly in half by preds 2 and 3 (IoU 0.5 each): one
        // pair at most per nucleus, the other prediction is a false positive
        let gt = [1, 1, 1, 1, 0, 0];
        let pr = [2, 2, 3, 3, 0, 0];
        let m = evaluate(&pr, &gt).unwrap();
        assert_eq!((m.matching[0].tp, m.matching[0].fp, m.matching[0].fn_), (1, 1, 0));
        assert!((m.matching[0].ap - 0.5).abs() < 1e-12);
        assert_eq!(m.matching[1].tp, 0);
        // a chain g1 ~ p5 ~ g2 ~ p6 where taking p5 for g2 would lose a pair
        let gt = [1, 1, 2, 2, 2, 2, 0, 0];
        let pr = [5, 5, 5, 5, 6, 6, 0, 0];
        // IoU(g1,p5)=2/4=0.5, IoU(g2,p5)=2/6, IoU(g2,p6)=2/4=0.5 -> two pairs at 0.5
        let m = evaluate(&pr, &gt).unwrap();
        assert_eq!(m.matching[0].tp, 2);
        assert!((m.matching[0].mean_matched_score - 0.5).abs() < 1e-12);
        let pooled = Matching::pooled(&[m.matching[0], m.matching[0]]);
        assert_eq!((pooled.tp, pooled.fp, pooled.fn_), (4, 0, 0));
        assert_eq!(pooled.ap, 1.0);
    }

    #[test]
    fn optimal_matching_prefers_more_pairs_then_larger_iou() {
        // two gt and two preds, all four pairs above threshold: the assignment must take
        // the pairing with the larger IoU sum (0.9 + 0.8 over 0.85 + 0.6)
        let cands = [(1, 10, 0.9), (1, 11, 0.85), (2, 10, 0.6), (2, 11, 0.8)];
        let (tp, sum) = optimal_matching(&cands, 0.5);
        assert_eq!(tp, 2);
        assert!((sum - 1.7).abs() < 1e-12);
        // three gt on one pred: one pair, the best
        let (tp, sum) = optimal_matching(&[(1, 9, 0.5), (2, 9, 0.7), (3, 9, 0.6)], 0.5);
        assert_eq!((tp, sum), (1, 0.7));
        assert_eq!(optimal_matching(&[(1, 9, 0.5)], 0.6), (0, 0.0));
    }
}
