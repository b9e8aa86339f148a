"""Loom's metrics beyond COCO's, from the match records: precision/recall/F1 at a confidence
threshold, PR and F1-vs-confidence curves with the best threshold, a confusion matrix with a
background row and column, and per-item TP/FP/FN counts.

A confidence threshold is applied after matching, which equals matching only the
predictions above it: the greedy pass takes predictions by descending score, so a
prediction's match never depends on lower-scored ones. (The maxDets cut still counts every
prediction.) Recall counts matched ground truths and precision matched predictions, which
differ only when a match may cross labels (class-agnostic or allowed pairs).
"""

from dataclasses import dataclass
from typing import Any

import numba
import numpy as np

from resolvers.evaluation.item_results import FP, IGNORED, TP

CURVE_POINTS = 101


def _ratio(num: np.ndarray | float, den: np.ndarray | float) -> np.ndarray:
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    return np.divide(num, den, out=np.zeros(np.broadcast(num, den).shape), where=den > 0)


def f1_score(precision: np.ndarray, recall: np.ndarray) -> np.ndarray:
    return _ratio(2.0 * precision * recall, precision + recall)


def _cap(n: int) -> np.ndarray:
    """At most CURVE_POINTS indices spread evenly over n points, first and last kept."""
    if n <= CURVE_POINTS:
        return np.arange(n)
    return np.unique(np.round(np.linspace(0, n - 1, CURVE_POINTS)).astype(np.int64))


@dataclass
class Curve:
    """A confidence sweep over one label (or all): at each distinct prediction score,
    from high to low, the precision, recall and F1 of the predictions scoring at least it.
    Stored capped to CURVE_POINTS points; the best threshold is found on the full sweep."""

    thresholds: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray
    best_threshold: float | None
    best_f1: float
    best_precision: float
    best_recall: float

    def to_document(self) -> dict[str, Any]:
        return {
            "thresholds": self.thresholds.tolist(),
            "precision": self.precision.tolist(),
            "recall": self.recall.tolist(),
            "f1": self.f1.tolist(),
            "best_threshold": self.best_threshold,
            "best_f1": self.best_f1,
            "best_precision": self.best_precision,
            "best_recall": self.best_recall,
        }


def sweep(
    scores: np.ndarray,
    tp_scores: np.ndarray,
    gt_scores: np.ndarray,
    n_positive: int,
) -> Curve:
    """`scores`: the counted (not ignored) predictions' scores, `tp_scores` those of the TPs
    among them, `gt_scores` for each matched positive ground truth its prediction's score,
    all in any order. At each distinct score the counts of those scoring at least it: three
    plain sorts, no argsort."""
    if len(scores) == 0:
        empty = np.zeros(0)
        return Curve(empty, empty, empty, empty, None, 0.0, 0.0, 0.0)
    score = np.sort(scores)[::-1]
    last = np.r_[score[1:] != score[:-1], True]  # the end of each run of tied scores
    thresholds = score[last]
    counted = np.flatnonzero(last) + 1
    tp_sorted, gt_sorted = np.sort(tp_scores), np.sort(gt_scores)
    tp_count = len(tp_sorted) - np.searchsorted(tp_sorted, thresholds, side="left")
    precision = tp_count / counted
    matched_gts = len(gt_sorted) - np.searchsorted(gt_sorted, thresholds, side="left")
    recall = _ratio(matched_gts, n_positive)
    f1 = f1_score(precision, recall)
    best = int(np.argmax(f1))
    keep = _cap(len(thresholds))
    return Curve(
        thresholds=thresholds[keep],
        precision=precision[keep],
        recall=recall[keep],
        f1=f1[keep],
        best_threshold=float(thresholds[best]),
        best_f1=float(f1[best]),
        best_precision=float(precision[best]),
        best_recall=float(recall[best]),
    )


@dataclass
class Extras:
    """Loom's extra metrics at one IoU threshold (0.5 by default)."""

    iou_threshold: float
    confidence_threshold: float
    # per label, at the confidence threshold
    tp: np.ndarray  # matched predictions of the label
    fp: np.ndarray
    fn: np.ndarray  # unmatched positive ground truths of the label
    matched_gts: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray
    overall_precision: float
    overall_recall: float
    overall_f1: float
    by_iou: dict[str, list[float]]  # overall precision/recall/F1 at each IoU threshold
    curves: list[Curve]
    overall_curve: Curve
    confusion: np.ndarray  # [gt label + background, predicted label + background]
    item_counts: np.ndarray  # [n_items, 3]: tp, fp, fn


@numba.njit(cache=True)
def _counts(
    n_items, n_labels, half, confidence, pred_score, pred_item, pred_label, pred_status,
    gt_item, gt_label, gt_positive, gt_match, pred_confusion, gt_crowd,
):  # fmt: skip
    """Every count of the extras in one pass over predictions and one over ground truths:
    per threshold TP/FP/found; per label, at `half`, TP/FP/positives/matched; the confusion
    matrix; per-item TP/FP/FN. And the curves' inputs grouped by label (`*_start`): the
    counted predictions' scores, the TPs' among them, the matched positive ground truths'."""
    n_thr = pred_status.shape[1]
    n_pred, n_gt = len(pred_label), len(gt_label)
    confident = np.empty(n_pred, dtype=np.bool_)
    for d in range(n_pred):
        confident[d] = pred_score[d] >= confidence
    tp_t = np.zeros(n_thr, dtype=np.int64)
    fp_t = np.zeros(n_thr, dtype=np.int64)
    found_t = np.zeros(n_thr, dtype=np.int64)
    tp = np.zeros(n_labels, dtype=np.int64)
    fp = np.zeros(n_labels, dtype=np.int64)
    positives = np.zeros(n_labels, dtype=np.int64)
    matched = np.zeros(n_labels, dtype=np.int64)
    side = n_labels + 1
    confusion = np.zeros((side, side), dtype=np.int64)
    item_counts = np.zeros((n_items, 3), dtype=np.int64)
    taken = np.zeros(len(gt_label), dtype=np.bool_)
    for d in range(len(pred_label)):
        c = pred_confusion[d]
        if not confident[d]:
            continue
        for t in range(n_thr):
            s = pred_status[d, t]
            if s == TP:
                tp_t[t] += 1
            elif s == FP:
                fp_t[t] += 1
        s = pred_status[d, half]
        if s == TP:
            tp[pred_label[d]] += 1
            item_counts[pred_item[d], 0] += 1
        elif s == FP:
            fp[pred_label[d]] += 1
            item_counts[pred_item[d], 1] += 1
        if c >= 0:
            taken[c] = True
            if not gt_crowd[c]:
                confusion[gt_label[c], pred_label[d]] += 1
        elif c == -1:
            confusion[n_labels, pred_label[d]] += 1
    for g in range(len(gt_label)):
        if not gt_positive[g]:
            continue
        for t in range(n_thr):
            m = gt_match[g, t]
            if m >= 0 and confident[m]:
                found_t[t] += 1
        positives[gt_label[g]] += 1
        m = gt_match[g, half]
        if m >= 0 and confident[m]:
            matched[gt_label[g]] += 1
        else:
            item_counts[gt_item[g], 2] += 1
        if not taken[g]:
            confusion[gt_label[g], n_labels] += 1
    # the curves' inputs, by a counting sort on the label
    c_start = np.zeros(n_labels + 1, dtype=np.int64)
    tp_start = np.zeros(n_labels + 1, dtype=np.int64)
    gt_start = np.zeros(n_labels + 1, dtype=np.int64)
    for d in range(n_pred):
        s = pred_status[d, half]
        if s != IGNORED:
            c_start[pred_label[d] + 1] += 1
            if s == TP:
                tp_start[pred_label[d] + 1] += 1
    for g in range(n_gt):
        if gt_positive[g] and gt_match[g, half] >= 0:
            gt_start[gt_label[g] + 1] += 1
    c_start, tp_start, gt_start = np.cumsum(c_start), np.cumsum(tp_start), np.cumsum(gt_start)
    c_fill, tp_fill, gt_fill = c_start[:-1].copy(), tp_start[:-1].copy(), gt_start[:-1].copy()
    c_scores = np.empty(c_start[-1])
    tp_scores = np.empty(tp_start[-1])
    gt_scores = np.empty(gt_start[-1])
    for d in range(n_pred):
        s = pred_status[d, half]
        if s != IGNORED:
            k = pred_label[d]
            c_scores[c_fill[k]] = pred_score[d]
            c_fill[k] += 1
            if s == TP:
                tp_scores[tp_fill[k]] = pred_score[d]
                tp_fill[k] += 1
    for g in range(n_gt):
        m = gt_match[g, half]
        if gt_positive[g] and m >= 0:
            k = gt_label[g]
            gt_scores[gt_fill[k]] = pred_score[m]
            gt_fill[k] += 1
    return (
        tp_t, fp_t, found_t, tp, fp, positives, matched, confusion, item_counts,
        c_scores, c_start, tp_scores, tp_start, gt_scores, gt_start,
    )  # fmt: skip


def extras(
    *,
    n_items: int,
    n_labels: int,
    thresholds: np.ndarray,
    half: int,
    confidence: float,
    pred_item: np.ndarray,
    pred_label: np.ndarray,
    pred_score: np.ndarray,
    pred_status: np.ndarray,
    gt_item: np.ndarray,
    gt_label: np.ndarray,
    gt_positive: np.ndarray,
    gt_match: np.ndarray,
    pred_confusion: np.ndarray,
    gt_crowd: np.ndarray,
) -> Extras:
    """All extra metrics from the records (`pred_status[:, t]`, `gt_match[:, t]`) and the
    class-agnostic IoU-0.5 pairing (`pred_confusion`)."""
    (
        tp_t, fp_t, found_t, tp, fp, positives, matched, confusion, item_counts,
        c_scores, c_start, tp_scores, tp_start, gt_scores, gt_start,
    ) = _counts(
        n_items, n_labels, half, float(confidence), np.ascontiguousarray(pred_score),
        pred_item, pred_label, np.ascontiguousarray(pred_status), gt_item, gt_label,
        gt_positive, np.ascontiguousarray(gt_match), pred_confusion, gt_crowd,
    )  # fmt: skip
    # overall P/R/F1 at every IoU threshold
    p_t = _ratio(tp_t, tp_t + fp_t)
    r_t = _ratio(found_t, int(positives.sum()))
    by_iou = {
        "precision": p_t.tolist(),
        "recall": r_t.tolist(),
        "f1": f1_score(p_t, r_t).tolist(),
    }
    precision = _ratio(tp, tp + fp)
    recall = _ratio(matched, positives)

    curves = [
        sweep(
            c_scores[c_start[k] : c_start[k + 1]],
            tp_scores[tp_start[k] : tp_start[k + 1]],
            gt_scores[gt_start[k] : gt_start[k + 1]],
            int(positives[k]),
        )
        for k in range(n_labels)
    ]
    overall = sweep(c_scores, tp_scores, gt_scores, int(positives.sum()))
    return Extras(
        iou_threshold=float(thresholds[half]),
        confidence_threshold=float(confidence),
        tp=tp,
        fp=fp,
        fn=positives - matched,
        matched_gts=matched,
        precision=precision,
        recall=recall,
        f1=f1_score(precision, recall),
        overall_precision=float(_ratio(tp.sum(), tp.sum() + fp.sum())),
        overall_recall=float(_ratio(matched.sum(), positives.sum())),
        overall_f1=float(
            f1_score(_ratio(tp.sum(), tp.sum() + fp.sum()), _ratio(matched.sum(), positives.sum()))
        ),
        by_iou=by_iou,
        curves=curves,
        overall_curve=overall,
        confusion=confusion,
        item_counts=item_counts,
    )
