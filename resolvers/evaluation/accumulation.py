"""COCO's accumulate() and summarize() over the pool entries of all items.

The kernel reproduces pycocotools' float operations one for one (cumulative TP/FP counts as
floats, `tp / npig`, `tp / (fp + tp + eps)`, the right-to-left precision envelope, 101
recall points found as `searchsorted(side="left")`), so precision and recall are equal, not
close. The entries of each category are ranked by `argsort(-score, kind="mergesort")` over
the items' entries in item order and pool rank: COCO's concatenation across images.
"""

from dataclasses import dataclass

import numba
import numpy as np

from resolvers.evaluation.columns import Options, coco_recall_thresholds

STAT_NAMES: tuple[str, ...] = (
    "AP",
    "AP50",
    "AP75",
    "AP_small",
    "AP_medium",
    "AP_large",
    "AR1",
    "AR10",
    "AR100",
    "AR_small",
    "AR_medium",
    "AR_large",
)


@numba.njit(cache=True)
def _group_by_category(label: np.ndarray, n_labels: int) -> tuple[np.ndarray, np.ndarray]:
    """Entries grouped by category, stably (a counting sort)."""
    counts = np.zeros(n_labels + 1, dtype=np.int64)
    for i in range(len(label)):
        counts[label[i] + 1] += 1
    starts = np.cumsum(counts)
    fill = starts[:-1].copy()
    order = np.empty(len(label), dtype=np.int64)
    for i in range(len(label)):
        order[fill[label[i]]] = i
        fill[label[i]] += 1
    return order, starts


@numba.njit(cache=True, parallel=True)
def _accumulate(
    order: np.ndarray,
    starts: np.ndarray,
    rank: np.ndarray,
    score: np.ndarray,
    flags: np.ndarray,
    npig: np.ndarray,
    max_dets: np.ndarray,
    rec_thrs: np.ndarray,
    precision: np.ndarray,
    recall: np.ndarray,
    scores: np.ndarray,
) -> None:
    """Fill precision/recall/scores (pre-set to -1) category by category.

    Each category's entries (`order[starts[k]:starts[k+1]]`, in item order) are ranked by
    `argsort(-score, kind="mergesort")` and their flags gathered into a local block, then
    walked once per maxDets with every (area, threshold) counted side by side.

    Only true positives move the curve: recall rises and precision peaks there, so the
    envelope's maxima and the first index reaching each recall point are all at TP
    positions (or at index 0 for recall point 0). The kernel evaluates COCO's expressions
    at exactly those positions, with the counts COCO has there (`fp + tp` is the number of
    counted entries so far, exactly, as floats), hence the same floats."""
    n_labels = len(starts) - 1
    n_areas, n_thr = flags.shape[1], flags.shape[2]
    n_m, n_r = len(max_dets), len(rec_thrs)
    eps = np.spacing(1.0)
    n_at = n_areas * n_thr
    for k in numba.prange(n_labels):
        lo, hi = starts[k], starts[k + 1]
        n = hi - lo
        keys = np.empty(n)
        for i in range(n):
            keys[i] = -score[order[lo + i]]
        ranked = np.argsort(keys, kind="mergesort")
        local = np.empty((n, n_at), dtype=np.uint8)
        k_rank = np.empty(n, dtype=np.int64)
        k_score = np.empty(n)
        for i in range(n):
            e = order[lo + ranked[i]]
            k_rank[i] = rank[e]
            k_score[i] = score[e]
            for a in range(n_areas):
                for t in range(n_thr):
                    local[i, a * n_thr + t] = flags[e, a, t]
        # per (area, threshold): counted entries so far, and at each TP that count and the
        # TP's position among the picked entries
        counted = np.zeros(n_at, dtype=np.int64)
        n_tp = np.zeros(n_at, dtype=np.int64)
        tp_counted = np.empty((n_at, n + 1), dtype=np.int64)
        tp_pos = np.empty((n_at, n + 1), dtype=np.int64)
        picked_score = np.empty(n + 1)
        tp_pr = np.empty(n + 1)
        done = -1  # the maxDets index whose entries were the same set
        done_nd = -1
        for m in range(n_m - 1, -1, -1):
            nd = 0
            for i in range(n):
                nd += k_rank[i] < max_dets[m]
            if nd == done_nd:  # nested sets of equal size are equal: copy
                for a in range(n_areas):
                    for t in range(n_thr):
                        recall[t, k, a, m] = recall[t, k, a, done]
                        for r in range(n_r):
                            precision[t, r, k, a, m] = precision[t, r, k, a, done]
                            scores[t, r, k, a, m] = scores[t, r, k, a, done]
                continue
            counted[:] = 0
            n_tp[:] = 0
            nd = 0
            for i in range(n):
                if k_rank[i] >= max_dets[m]:
                    continue
                picked_score[nd] = k_score[i]
                for at in range(n_at):
                    f = local[i, at]
                    if f & 2:
                        continue
                    counted[at] += 1
                    if f & 1:
                        j = n_tp[at]
                        tp_counted[at, j] = counted[at]
                        tp_pos[at, j] = nd
                        n_tp[at] = j + 1
                nd += 1
            done, done_nd = m, nd
            for a in range(n_areas):
                n_pos = npig[k, a]
                if n_pos == 0:
                    continue
                for t in range(n_thr):
                    at = a * n_thr + t
                    count = n_tp[at]
                    for j in range(count):
                        tp = float(j + 1)
                        fp = float(tp_counted[at, j] - (j + 1))
                        tp_pr[j] = tp / (fp + tp + eps)
                    recall[t, k, a, m] = float(count) / n_pos if nd else 0.0
                    for j in range(count - 1, 0, -1):
                        if tp_pr[j] > tp_pr[j - 1]:
                            tp_pr[j - 1] = tp_pr[j]
                    j = 0
                    for r in range(n_r):
                        threshold = rec_thrs[r]
                        if nd == 0:
                            precision[t, r, k, a, m] = 0.0
                            scores[t, r, k, a, m] = 0.0
                        elif threshold <= 0.0:
                            # index 0: the envelope there is the best precision anywhere
                            precision[t, r, k, a, m] = tp_pr[0] if count else 0.0
                            scores[t, r, k, a, m] = picked_score[0]
                        else:
                            while j < count and float(j + 1) / n_pos < threshold:
                                j += 1
                            if j < count:
                                precision[t, r, k, a, m] = tp_pr[j]
                                scores[t, r, k, a, m] = picked_score[tp_pos[at, j]]
                            else:
                                precision[t, r, k, a, m] = 0.0
                                scores[t, r, k, a, m] = 0.0


def coco_accumulate(
    label: np.ndarray,
    rank: np.ndarray,
    score: np.ndarray,
    flags: np.ndarray,
    npig: np.ndarray,
    max_dets: tuple[int, ...],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """COCOeval.accumulate's `precision[T, R, K, A, M]`, `recall[T, K, A, M]` and
    `scores[T, R, K, A, M]` from pool entries (category `label`, `rank` in its pool, `score`,
    `flags[entry, area, thr]`) in item order, and `npig[K, A]`, the non-ignored ground truths
    per category and area range."""
    n_labels = npig.shape[0]
    order, starts = _group_by_category(np.ascontiguousarray(label, dtype=np.int64), n_labels)
    n_thr, n_areas = flags.shape[2], flags.shape[1]
    rec_thrs = coco_recall_thresholds()
    shape = (n_thr, len(rec_thrs), n_labels, n_areas, len(max_dets))
    precision, scores = np.full(shape, -1.0), np.full(shape, -1.0)
    recall = np.full((n_thr, n_labels, n_areas, len(max_dets)), -1.0)
    _accumulate(
        order,
        starts,
        np.ascontiguousarray(rank, dtype=np.int64),
        np.ascontiguousarray(score, dtype=np.float64),
        np.ascontiguousarray(flags),
        np.ascontiguousarray(npig, dtype=np.int64),
        np.asarray(max_dets, dtype=np.int64),
        rec_thrs,
        precision,
        recall,
        scores,
    )
    return precision, recall, scores


def count_positives(
    label: np.ndarray,
    crowd: np.ndarray,
    area: np.ndarray,
    n_labels: int,
    area_ranges: tuple[tuple[float, float], ...],
) -> np.ndarray:
    """`npig[K, A]`: ground truths that are neither crowd nor outside the area range."""
    npig = np.zeros((n_labels, len(area_ranges)), dtype=np.int64)
    keep = ~crowd
    for a, (lo, hi) in enumerate(area_ranges):
        inside = keep & (area >= lo) & (area <= hi)
        npig[:, a] = np.bincount(label[inside], minlength=n_labels)
    return npig


def _mean_valid(values: np.ndarray) -> float:
    if len(values[values > -1]) == 0:
        return -1.0
    return float(np.mean(values[values > -1]))


def summarize(precision: np.ndarray, recall: np.ndarray, options: Options) -> np.ndarray:
    """COCOeval.summarize()'s 12 stats, by its own expressions (same selections, same
    reduction order, hence the same floats)."""
    thresholds = options.thresholds()
    labels = list(options.area_labels)
    max_dets = list(options.max_detections)

    def one(ap: bool, iou: float | None = None, area: str = "all", max_det: int = 100) -> float:
        aind = [i for i, lbl in enumerate(labels) if lbl == area]
        mind = [i for i, m in enumerate(max_dets) if m == max_det]
        if ap:
            s = precision
            if iou is not None:
                s = s[np.where(iou == thresholds)[0]]
            s = s[:, :, :, aind, mind]
        else:
            s = recall
            if iou is not None:
                s = s[np.where(iou == thresholds)[0]]
            s = s[:, :, aind, mind]
        return _mean_valid(s)

    top = max_dets[2] if len(max_dets) > 2 else max_dets[-1]
    return np.array(
        [
            one(True),
            one(True, iou=0.5, max_det=top),
            one(True, iou=0.75, max_det=top),
            one(True, area="small", max_det=top),
            one(True, area="medium", max_det=top),
            one(True, area="large", max_det=top),
            one(False, max_det=max_dets[0]),
            one(False, max_det=max_dets[1] if len(max_dets) > 1 else max_dets[-1]),
            one(False, max_det=top),
            one(False, area="small", max_det=top),
            one(False, area="medium", max_det=top),
            one(False, area="large", max_det=top),
        ]
    )


def per_label_ap(precision: np.ndarray, area: int, max_det: int) -> np.ndarray:
    """Each category's AP: its precision at area `area` and maxDets index `max_det`, mean
    over the entries > -1 (-1 for a category without ground truth)."""
    return np.array(
        [_mean_valid(precision[:, :, k, area, max_det]) for k in range(precision.shape[2])]
    )


@dataclass
class CocoArrays:
    """What COCOeval.accumulate() and summarize() leave in `eval` and `stats`."""

    precision: np.ndarray
    recall: np.ndarray
    scores: np.ndarray
    stats: np.ndarray
