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

import numpy as np

from resolvers.evaluation.item_results import FP, TP

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
    pred_score: np.ndarray,
    pred_tp: np.ndarray,
    gt_score: np.ndarray,
    n_positive: int,
) -> Curve:
    """`pred_score`/`pred_tp`: the counted (not ignored) predictions, by descending score,
    and whether each is a TP; `gt_score`: ascending, for each matched positive ground truth
    its prediction's score."""
    if len(pred_score) == 0:
        empty = np.zeros(0)
        return Curve(empty, empty, empty, empty, None, 0.0, 0.0, 0.0)
    score, tp = pred_score, pred_tp
    last = np.r_[score[1:] != score[:-1], True]  # the end of each run of tied scores
    thresholds = score[last]
    tp_count = np.cumsum(tp)[last]
    counted = np.arange(1, len(score) + 1)[last]
    precision = tp_count / counted
    matched_gts = len(gt_score) - np.searchsorted(gt_score, thresholds, side="left")
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


def _at_threshold(
    status: np.ndarray,
    counted: np.ndarray,
    pred_label: np.ndarray,
    gt_label: np.ndarray,
    gt_positive: np.ndarray,
    gt_found: np.ndarray,
    n_labels: int,
) -> tuple[np.ndarray, ...]:
    tp = np.bincount(pred_label[counted & (status == TP)], minlength=n_labels)
    fp = np.bincount(pred_label[counted & (status == FP)], minlength=n_labels)
    positives = np.bincount(gt_label[gt_positive], minlength=n_labels)
    found = np.bincount(gt_label[gt_positive & gt_found], minlength=n_labels)
    return tp, fp, positives, found


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
    confident = pred_score >= confidence
    # overall P/R/F1 at every IoU threshold, all thresholds at once
    kept = pred_status[confident]
    tp_t = (kept == TP).sum(axis=0)
    fp_t = (kept == FP).sum(axis=0)
    positive_match = gt_match[gt_positive]
    found_t = ((positive_match >= 0) & confident[np.maximum(positive_match, 0)]).sum(axis=0)
    p_t = _ratio(tp_t, tp_t + fp_t)
    r_t = _ratio(found_t, int(gt_positive.sum()))
    by_iou = {
        "precision": p_t.tolist(),
        "recall": r_t.tolist(),
        "f1": f1_score(p_t, r_t).tolist(),
    }
    status = pred_status[:, half]
    gt_pred = gt_match[:, half]
    found = (gt_pred >= 0) & confident[np.maximum(gt_pred, 0)] & gt_positive
    tp, fp, positives, matched = _at_threshold(
        status, confident, pred_label, gt_label, gt_positive, found, n_labels
    )
    precision = _ratio(tp, tp + fp)
    recall = _ratio(matched, positives)

    # Curves: the counted predictions by label, each label's by descending score (one
    # sort for all labels), and likewise the matched positive ground truths' scores.
    counted = np.flatnonzero(status != 2)
    by_score = counted[np.argsort(-pred_score[counted])]
    by_label = by_score[np.argsort(pred_label[by_score], kind="stable")]
    pred_cuts = np.searchsorted(pred_label[by_label], np.arange(n_labels + 1))
    sorted_score, sorted_tp = pred_score[by_label], status[by_label] == TP
    gt_has = np.flatnonzero((gt_pred >= 0) & gt_positive)
    gt_scores = pred_score[gt_pred[gt_has]]
    gt_order = np.lexsort((gt_scores, gt_label[gt_has]))  # by label, then score ascending
    gt_cuts = np.searchsorted(gt_label[gt_has][gt_order], np.arange(n_labels + 1))
    gt_sorted = gt_scores[gt_order]
    curves = [
        sweep(
            sorted_score[pred_cuts[k] : pred_cuts[k + 1]],
            sorted_tp[pred_cuts[k] : pred_cuts[k + 1]],
            gt_sorted[gt_cuts[k] : gt_cuts[k + 1]],
            int(positives[k]),
        )
        for k in range(n_labels)
    ]
    overall = sweep(
        pred_score[by_score], status[by_score] == TP, np.sort(gt_scores), int(positives.sum())
    )

    # Confusion: class-agnostic pairing at IoU 0.5, confident predictions only.
    background = n_labels
    confusion = np.zeros((n_labels + 1, n_labels + 1), dtype=np.int64)
    use = confident & (pred_confusion != -2)
    paired = use & (pred_confusion >= 0)
    paired_gt = pred_confusion[paired]
    real = ~gt_crowd[paired_gt]
    side = n_labels + 1
    cells = np.concatenate(
        [
            gt_label[paired_gt[real]] * side + pred_label[paired][real],
            background * side + pred_label[use & (pred_confusion == -1)],
        ]
    )
    taken = np.zeros(len(gt_label), dtype=np.bool_)
    taken[paired_gt] = True
    cells = np.concatenate([cells, gt_label[gt_positive & ~taken] * side + background])
    confusion += np.bincount(cells, minlength=side * side).reshape(side, side)

    item_counts = np.stack(
        [
            np.bincount(pred_item[confident & (status == TP)], minlength=n_items),
            np.bincount(pred_item[confident & (status == FP)], minlength=n_items),
            np.bincount(gt_item[gt_positive & ~found], minlength=n_items),
        ],
        axis=1,
    )
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
