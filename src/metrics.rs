//! Segmentation accuracy from one contingency table (DESIGN.md, "Metrics").
//!
//! - `iou`: voxel IoU of the foregrounds (label > 0).
//! - `seg`: mean over ground-truth nuclei of the IoU with their best-IoU predicted
//!   nucleus, counted only when that nucleus covers more than half of the
//!   ground-truth one (QCANet's SEG).
//! - `mucov`: mean over predicted nuclei of the IoU with their best-IoU
//!   ground-truth nucleus, counted only when it covers more than half of the
//!   predicted one.
//! - `seg_ctc`: Cell Tracking Challenge SEG: per ground-truth nucleus, the IoU
//!   with the predicted nucleus holding more than half of its voxels, else 0.
//! - `f1`, `precision`, `recall`: detection at IoU > 0.5 (a one-to-one match).
//! Every ratio with an empty denominator is 0. `qcanet.reference.evaluate`
//! (Python) defines the same numbers and the tests compare the two.

use std::collections::HashMap;

use rayon::prelude::*;
use serde::Serialize;

use crate::error::{Error, Result};

#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Metrics {
    pub iou: f64,
    pub seg: f64,
    pub mucov: f64,
    pub seg_ctc: f64,
    pub f1: f64,
    pub precision: f64,
    pub recall: f64,
    pub n_gt: u32,
    pub n_pred: u32,
    pub n_matched: u32,
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
    let pairs = pred
        .par_chunks(chunk)
        .zip(gt.par_chunks(chunk))
        .map(part)
        .reduce(HashMap::new, |mut a, b| {
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

/// Compares a predicted label volume with the ground truth (same length, C order).
pub fn evaluate(pred: &[u32], gt: &[u32]) -> Result<Metrics> {
    if pred.len() != gt.len() {
        return Err(Error::invalid(format!("prediction has {} voxels, ground truth {}", pred.len(), gt.len())));
    }
    let t = table(pred, gt);
    let total = pred.len() as u64;
    let fg_union = total - t.both_bg;
    let fg_inter: u64 = t.pairs.iter().filter(|((g, p), _)| *g != 0 && *p != 0).map(|(_, c)| c).sum();
    let jac = |g: u32, p: u32, c: u64| c as f64 / (t.gt_size[&g] + t.pred_size[&p] - c) as f64;
    // best (highest IoU) partner per label; ties go to the smaller id, as numpy's argmax
    let mut best_for_gt: HashMap<u32, (f64, u32, u64)> = HashMap::new();
    let mut best_for_pred: HashMap<u32, (f64, u32, u64)> = HashMap::new();
    let mut seg_ctc_sum = 0.0;
    let mut matched = 0u32;
    for (&(g, p), &c) in &t.pairs {
        if g == 0 || p == 0 {
            continue;
        }
        let j = jac(g, p, c);
        let better = |cur: &(f64, u32, u64), id: u32| j > cur.0 || (j == cur.0 && id < cur.1);
        let e = best_for_gt.entry(g).or_insert((-1.0, u32::MAX, 0));
        if better(e, p) {
            *e = (j, p, c);
        }
        let e = best_for_pred.entry(p).or_insert((-1.0, u32::MAX, 0));
        if better(e, g) {
            *e = (j, g, c);
        }
        if 2 * c > t.gt_size[&g] {
            seg_ctc_sum += j;
        }
        if j > 0.5 {
            matched += 1;
        }
    }
    let (n_gt, n_pred) = (t.gt_size.len() as u32, t.pred_size.len() as u32);
    let seg_sum: f64 = best_for_gt
        .iter()
        .filter(|(g, (_, _, c))| 2 * c > t.gt_size[g])
        .map(|(_, (j, _, _))| j)
        .sum();
    let mucov_sum: f64 = best_for_pred
        .iter()
        .filter(|(p, (_, _, c))| 2 * c > t.pred_size[p])
        .map(|(_, (j, _, _))| j)
        .sum();
    let both = n_gt > 0 && n_pred > 0;
    Ok(Metrics {
        iou: ratio(fg_inter as f64, fg_union as f64),
        seg: if both { seg_sum / n_gt as f64 } else { 0.0 },
        mucov: if both { mucov_sum / n_pred as f64 } else { 0.0 },
        seg_ctc: if both { seg_ctc_sum / n_gt as f64 } else { 0.0 },
        f1: ratio(2.0 * matched as f64, (n_gt + n_pred) as f64),
        precision: ratio(matched as f64, n_pred as f64),
        recall: ratio(matched as f64, n_gt as f64),
        n_gt,
        n_pred,
        n_matched: matched,
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
        // gt 1 = 10 voxels; pred 7 covers 6 of them but is huge (IoU small);
        // pred 8 covers the other 4 exactly (IoU 0.4, best IoU, but under half)
        let mut gt = vec![0u32; 60];
        let mut pr = vec![0u32; 60];
        for i in 0..10 {
            gt[i] = 1;
        }
        for i in 0..6 {
            pr[i] = 7;
        }
        for i in 10..60 {
            pr[i] = 7;
        }
        for i in 6..10 {
            pr[i] = 8;
        }
        let m = evaluate(&pr, &gt).unwrap();
        assert_eq!(m.seg, 0.0);
        assert!((m.seg_ctc - 6.0 / 60.0).abs() < 1e-12);
    }
}
