"""Reference (NumPy/SciPy/scikit-image) post-processing and metrics.

This module is the executable specification that the Rust library is tested
against: the same marker rules, the same watershed (scikit-image's), the same
metric definitions.  It is also what ``qcanet-train`` uses to pick thresholds
on the validation embryos.  It is deliberately plain and slow-ish.
"""
from __future__ import annotations

from dataclasses import dataclass, asdict, field

import numpy as np


# --------------------------------------------------------------------------
# metrics
# --------------------------------------------------------------------------
MATCH_THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)


@dataclass
class Matching:
    """Detection at one IoU threshold, as StarDist's ``matching.py`` defines it."""

    threshold: float
    tp: int
    fp: int
    fn: int
    precision: float
    recall: float
    f1: float
    ap: float                   # TP / (TP + FP + FN), StarDist's "accuracy"
    mean_matched_score: float
    panoptic_quality: float
    matched_score_sum: float

    @classmethod
    def pooled(cls, records):
        """Detection over many files: counts summed, then the ratios (StarDist's
        ``matching_dataset(..., by_image=False)``), as ``qcanet evaluate`` pools."""
        records = list(records)
        tp = sum(r.tp for r in records)
        return cls.from_counts(records[0].threshold if records else 0.0, tp, tp + sum(r.fp for r in records),
                               tp + sum(r.fn for r in records), sum(r.matched_score_sum for r in records))

    @classmethod
    def from_counts(cls, threshold, tp, n_pred, n_gt, score_sum):
        fp, fn = n_pred - tp, n_gt - tp
        return cls(threshold, tp, fp, fn, _safe_div(tp, tp + fp), _safe_div(tp, tp + fn),
                   _safe_div(2 * tp, 2 * tp + fp + fn), _safe_div(tp, tp + fp + fn),
                   _safe_div(score_sum, tp), _safe_div(score_sum, tp + fp / 2 + fn / 2), float(score_sum))


@dataclass
class Metrics:
    """One record per comparison; every ratio is 0 when its denominator is."""

    iou: float
    seg: float
    mucov: float
    seg_ctc: float
    f1: float
    precision: float
    recall: float
    n_gt: int
    n_pred: int
    n_matched: int
    matching: list = field(default_factory=list)

    def as_dict(self):
        return asdict(self)


def _safe_div(a, b):
    return float(a) / float(b) if b else 0.0


def contingency(pred: np.ndarray, gt: np.ndarray):
    """Voxel counts of every (gt label, pred label) pair, labels compacted.

    Returns (table, gt_ids, pred_ids) where table[i, j] counts voxels with
    gt == gt_ids[i] and pred == pred_ids[j]; index 0 is background in both.
    """
    if pred.shape != gt.shape:
        raise ValueError(f"shape mismatch: pred {pred.shape} vs gt {gt.shape}")
    gt_ids, gt_inv = np.unique(gt.ravel(), return_inverse=True)
    pr_ids, pr_inv = np.unique(pred.ravel(), return_inverse=True)
    if gt_ids[0] != 0:
        gt_ids = np.concatenate([[0], gt_ids]); gt_inv = gt_inv + 1
    if pr_ids[0] != 0:
        pr_ids = np.concatenate([[0], pr_ids]); pr_inv = pr_inv + 1
    table = np.bincount(gt_inv.astype(np.int64) * len(pr_ids) + pr_inv,
                        minlength=len(gt_ids) * len(pr_ids)).reshape(len(gt_ids), len(pr_ids))
    return table, gt_ids, pr_ids


def _overlaps(t):
    """From a contingency table: (intersections gt x pred, gt sizes, pred sizes, Jaccard)."""
    inter = t[1:, 1:]
    gt_size = t[1:, :].sum(axis=1)
    pr_size = t[:, 1:].sum(axis=0)
    union = gt_size[:, None] + pr_size[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        jac = np.where(union > 0, inter / union, 0.0)
    return inter, gt_size, pr_size, jac


def _authors_terms(jac, cover):
    """The QCANet authors' rule (funalab/QCANet ``src/tools/evaluation_seg.py``), one
    term per row: walk the columns in ascending label order; whenever a Jaccard index is
    ``>=`` the best so far it becomes the best and the coverage becomes the larger of the
    coverage so far and ``cover`` (the *ground-truth* nucleus's covered fraction, in SEG
    and MUCov alike). The best counts when that coverage exceeds 0.5, else 0."""
    terms = np.zeros(jac.shape[0])
    for i in range(jac.shape[0]):
        best = cov = 0.0
        for j in np.flatnonzero(jac[i] > 0):
            if jac[i, j] >= best:
                best, cov = jac[i, j], max(cov, cover[i, j])
        terms[i] = best if cov > 0.5 else 0.0
    return terms


def _seg_terms(inter, gt_size, jac):
    """Per ground-truth nucleus: its SEG term under the authors' rule."""
    return _authors_terms(jac, inter / np.maximum(gt_size, 1)[:, None])


def _matching(jac, threshold):
    """StarDist's optimal one-to-one matching: (pairs, IoU sum) at ``threshold``."""
    from scipy.optimize import linear_sum_assignment
    n_gt, n_pred = jac.shape
    if min(n_gt, n_pred) == 0:
        return 0, 0.0
    n_matched = min(n_gt, n_pred)
    costs = -(jac >= threshold).astype(float) - jac / (2 * n_matched)
    r, c = linear_sum_assignment(costs)
    ok = jac[r, c] >= threshold
    return int(ok.sum()), float(jac[r, c][ok].sum())


def evaluate(pred: np.ndarray, gt: np.ndarray) -> Metrics:
    """IoU, SEG and MUCov (the QCANet authors' rules), CTC SEG, and detection scores at
    IoU 0.5..0.9 of a predicted label volume.

    >>> gt = np.zeros((1, 1, 8), np.uint32); gt[0, 0, :4] = 1; gt[0, 0, 4:] = 2
    >>> pr = np.zeros_like(gt); pr[0, 0, :3] = 5
    >>> m = evaluate(pr, gt)
    >>> (round(m.iou, 3), m.seg, m.mucov, m.n_gt, m.n_pred, m.n_matched)
    (0.375, 0.375, 0.75, 2, 1, 1)
    >>> [(r.threshold, r.tp, r.fp, r.fn, round(r.ap, 3)) for r in m.matching[:3]]
    [(0.5, 1, 0, 1, 0.5), (0.6, 1, 0, 1, 0.5), (0.7, 1, 0, 1, 0.5)]
    """
    t, _, _ = contingency(pred, gt)
    t = t.astype(np.float64)
    fg_inter = t[1:, 1:].sum()
    fg_union = t.sum() - t[0, 0]
    iou = _safe_div(fg_inter, fg_union)
    inter, gt_size, pr_size, jac = _overlaps(t)
    n_gt, n_pred = inter.shape
    seg = seg_ctc = mucov = 0.0
    if n_gt and n_pred:
        cover = inter / gt_size[:, None]
        seg = float(_authors_terms(jac, cover).mean())
        mucov = float(_authors_terms(jac.T, cover.T).mean())
        seg_ctc = float(np.where(inter > 0.5 * gt_size[:, None], jac, 0.0).sum(axis=1).mean())
    matching = [Matching.from_counts(th, *_counts(jac, th, n_pred, n_gt)) for th in MATCH_THRESHOLDS]
    m = matching[0]
    return Metrics(iou=iou, seg=seg, mucov=mucov, seg_ctc=seg_ctc, f1=m.f1,
                   precision=m.precision, recall=m.recall,
                   n_gt=int(n_gt), n_pred=int(n_pred), n_matched=m.tp, matching=matching)


def _counts(jac, threshold, n_pred, n_gt):
    tp, score = _matching(jac, threshold)
    return tp, int(n_pred), int(n_gt), score


def per_nucleus_seg(pred: np.ndarray, gt: np.ndarray):
    """Each ground-truth nucleus's SEG term: (gt ids, sizes in voxels, Jaccard or 0).

    A nucleus scores its best Jaccard index under the authors' coverage rule
    (``_authors_terms``); ``evaluate(...).seg`` is the mean of these terms.

    >>> gt = np.zeros((1, 1, 8), np.uint32); gt[0, 0, :4] = 1; gt[0, 0, 4:] = 2
    >>> pr = np.zeros_like(gt); pr[0, 0, :3] = 5
    >>> ids, size, score = per_nucleus_seg(pr, gt)
    >>> ids.tolist(), size.tolist(), score.tolist()
    ([1, 2], [4, 4], [0.75, 0.0])
    """
    t, gt_ids, _ = contingency(pred, gt)
    inter, gt_size, _, jac = _overlaps(t.astype(np.float64))
    if inter.shape[1] == 0:
        return gt_ids[1:], gt_size.astype(np.int64), np.zeros(len(gt_size))
    return gt_ids[1:], gt_size.astype(np.int64), _seg_terms(inter, gt_size, jac)


def seg_by_size(pairs, voxel_size, edges_um3=(300.0, 700.0, 1500.0)):
    """SEG broken down by ground-truth nucleus volume, over many (pred, gt) pairs.

    Returns one row per volume class: dict(lo, hi, n, covered, matched, seg):
    ``covered`` counts nuclei with a nonzero SEG term (more than half of them covered
    along the authors' walk, even if a prediction also holds a neighbour), ``matched`` those whose
    term exceeds 0.5, and ``seg`` is the class's mean term.
    Where SEG is lost -- tiny objects, mid-sized dim nuclei, or the boundaries of
    large ones -- is what decides the next training change.

    >>> gt = np.zeros((1, 1, 8), np.uint32); gt[0, 0, :4] = 1; gt[0, 0, 4:] = 2
    >>> pr = np.zeros_like(gt); pr[0, 0, :3] = 5
    >>> [(r["n"], r["covered"], r["matched"], r["seg"]) for r in seg_by_size([(pr, gt)], (1, 1, 1), (3.5,))]
    [(0, 0, 0, 0.0), (2, 1, 1, 0.375)]
    """
    vox = float(np.prod(voxel_size))
    sizes, scores = [], []
    for pred, gt in pairs:
        _, s, sc = per_nucleus_seg(pred, gt)
        sizes.append(s * vox); scores.append(sc)
    sizes = np.concatenate(sizes) if sizes else np.zeros(0)
    scores = np.concatenate(scores) if scores else np.zeros(0)
    bounds = [0.0, *edges_um3, float("inf")]
    rows = []
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        sel = (sizes >= lo) & (sizes < hi)
        n = int(sel.sum())
        rows.append(dict(lo=lo, hi=hi, n=n, covered=int((scores[sel] > 0).sum()),
                         matched=int((scores[sel] > 0.5).sum()), seg=float(scores[sel].mean()) if n else 0.0))
    return rows


# --------------------------------------------------------------------------
# post-processing
# --------------------------------------------------------------------------
def local_maxima_markers(centre: np.ndarray, mask: np.ndarray, threshold: float,
                         sigma_um: float, voxel_size) -> np.ndarray:
    """Markers = 26-connected plateaus of 3x3x3 local maxima of the smoothed
    centre map, above ``threshold`` and inside ``mask``."""
    from scipy import ndimage as ndi
    sm = centre.astype(np.float32)
    if sigma_um > 0:
        sm = ndi.gaussian_filter(sm, sigma=[sigma_um / v for v in voxel_size], mode="nearest",
                                 truncate=2.0)
    peaks = (sm == ndi.maximum_filter(sm, size=3, mode="nearest")) & (sm > threshold) & mask
    lab, _ = ndi.label(peaks, structure=np.ones((3, 3, 3), bool))
    return lab


def postprocess(fg: np.ndarray, centre: np.ndarray, voxel_size=(1.75, 0.8, 0.8), *,
                fg_threshold=0.5, centre_threshold=0.5, markers="local-max", sigma_um=1.0,
                landscape="distance", min_volume_um3=0.0, fill_holes=True) -> np.ndarray:
    """NSN/NDN probabilities -> label volume (uint32), the library's pipeline."""
    from scipy import ndimage as ndi
    from skimage.segmentation import watershed
    mask = fg > fg_threshold
    if fill_holes:
        mask = ndi.binary_fill_holes(mask)
    # the library's names, and the older spellings it still reads (README, "Defaults")
    markers = {"local_max": "local-max", "cc": "components"}.get(markers, markers)
    landscape = {"edt": "distance"}.get(landscape, landscape)
    if markers not in ("local-max", "components") or landscape not in ("distance", "centre"):
        raise ValueError(f"markers {markers!r} / landscape {landscape!r}")
    if markers == "local-max":
        mk = local_maxima_markers(centre, mask, centre_threshold, sigma_um, voxel_size)
    else:
        mk, _ = ndi.label((centre > centre_threshold) & mask, structure=np.ones((3, 3, 3), bool))
    if landscape == "distance":
        land = -ndi.distance_transform_edt(mask, sampling=voxel_size)
    else:
        land = -centre.astype(np.float64)
    lab = watershed(land, mk, mask=mask).astype(np.uint32)
    rest, n_rest = ndi.label(mask & (lab == 0), structure=np.ones((3, 3, 3), bool))
    if n_rest:
        lab[rest > 0] = rest[rest > 0] + lab.max()
    if min_volume_um3 > 0:
        vox = float(np.prod(voxel_size))
        counts = np.bincount(lab.ravel())
        small = counts * vox < min_volume_um3
        small[0] = False
        lab[small[lab]] = 0
    ids = np.unique(lab)
    ids = ids[ids > 0]
    lut = np.zeros(int(lab.max()) + 1, np.uint32)
    lut[ids] = np.arange(1, len(ids) + 1, dtype=np.uint32)
    return lut[lab]
