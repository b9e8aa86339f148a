"""`accumulate(item_results, options) -> Metrics`: COCO's stats and arrays over all items,
per-label AP, and Loom's extra metrics, with `Metrics.to_document()` for storage."""

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from resolvers.evaluation.accumulation import (
    STAT_NAMES,
    coco_accumulate,
    count_positives,
    per_label_ap,
    summarize,
)
from resolvers.evaluation.columns import Options
from resolvers.evaluation.curves import Extras, extras
from resolvers.evaluation.item_results import ItemResults
from resolvers.evaluation.matching import _index_of_half


@dataclass
class Metrics:
    """Everything a commit stores about a model run's evaluation.

    `stats`: COCOeval.summarize()'s 12 numbers (names in STAT_NAMES); `precision[T, R, K, A,
    M]`, `recall[T, K, A, M]`, `scores` as in COCOeval.eval (K is 1 class-agnostic).
    `per_label_ap`: each label's AP (area all, maxDets[-1]); in class-agnostic mode from a
    class-aware matching, as AP per label means nothing when labels do not have to agree.
    `extras`: P/R/F1, curves, confusion matrix and per-item counts (see curves.py).
    """

    options: Options
    stats: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    scores: np.ndarray
    per_label_ap: np.ndarray
    extras: Extras

    @property
    def named_stats(self) -> dict[str, float]:
        return dict(zip(STAT_NAMES, (float(s) for s in self.stats), strict=True))

    def to_document(self, include_arrays: bool = False) -> dict[str, Any]:
        """A JSON/BSON-friendly dict (lists of floats, no NaN; labels by index). The COCO
        precision/recall arrays (10 x 101 x K x 4 x 3 floats) only if `include_arrays`."""
        x = self.extras
        per_label = [
            {
                "label": label,
                "ap": _finite(self.per_label_ap[label]),
                "tp": int(x.tp[label]),
                "fp": int(x.fp[label]),
                "fn": int(x.fn[label]),
                "precision": float(x.precision[label]),
                "recall": float(x.recall[label]),
                "f1": float(x.f1[label]),
                "curve": x.curves[label].to_document(),
            }
            for label in range(self.options.n_labels)
        ]
        doc: dict[str, Any] = {
            "stats": {k: _finite(v) for k, v in self.named_stats.items()},
            "mode": self.options.mode,
            "iou_thresholds": list(self.options.iou_thresholds),
            "extras_iou_threshold": x.iou_threshold,
            "confidence_threshold": x.confidence_threshold,
            "overall": {
                "precision": x.overall_precision,
                "recall": x.overall_recall,
                "f1": x.overall_f1,
                "by_iou": x.by_iou,
                "curve": x.overall_curve.to_document(),
            },
            "per_label": per_label,
            "confusion": {
                "labels": [*range(self.options.n_labels), "background"],
                "matrix": x.confusion.tolist(),
            },
            "item_counts": {
                "tp": x.item_counts[:, 0].tolist(),
                "fp": x.item_counts[:, 1].tolist(),
                "fn": x.item_counts[:, 2].tolist(),
            },
        }
        if include_arrays:
            doc["precision"] = self.precision.tolist()
            doc["recall"] = self.recall.tolist()
        return doc


def _finite(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def accumulate(results: ItemResults, options: Options) -> Metrics:
    """COCOeval.accumulate() + summarize() over all items of `results`, and Loom's extras."""
    if results.options_key != options.key():
        raise ValueError("item results were computed under different options")
    n_labels = options.n_labels
    thresholds = options.thresholds()
    a_all = options.area_labels.index("all")
    m_last = len(options.max_detections) - 1
    agnostic = options.mode == "agnostic"
    pool_label = np.zeros_like(results.gt_label) if agnostic else results.gt_label
    npig = count_positives(
        pool_label,
        results.gt_crowd,
        results.gt_area,
        1 if agnostic else n_labels,
        options.area_ranges,
    )
    precision, recall, scores = coco_accumulate(
        results.entry_label if not agnostic else np.zeros_like(results.entry_label),
        results.entry_rank,
        results.pred_score[results.entry_pred],
        results.entry_flags,
        npig,
        options.max_detections,
    )
    stats = summarize(precision, recall, options)
    if agnostic:
        aware_npig = count_positives(
            results.gt_label,
            results.gt_crowd,
            results.gt_area,
            n_labels,
            (options.area_ranges[a_all],),
        )
        aware_precision, _, _ = coco_accumulate(
            results.aware_label,
            results.aware_rank,
            results.pred_score[results.aware_pred],
            results.aware_flags[:, None, :],
            aware_npig,
            (options.max_detections[-1],),
        )
        label_ap = per_label_ap(aware_precision, 0, 0)
    else:
        label_ap = per_label_ap(precision, a_all, m_last)
    lo, hi = options.area_ranges[a_all]
    gt_positive = ~results.gt_crowd & (results.gt_area >= lo) & (results.gt_area <= hi)
    extra = extras(
        n_items=results.n_items,
        n_labels=n_labels,
        thresholds=thresholds,
        half=_index_of_half(thresholds),
        confidence=options.confidence_threshold,
        pred_item=results.pred_item,
        pred_label=results.pred_label,
        pred_score=results.pred_score,
        pred_status=results.pred_status,
        gt_item=results.gt_item,
        gt_label=results.gt_label,
        gt_positive=gt_positive,
        gt_match=results.gt_match,
        pred_confusion=results.pred_confusion,
        gt_crowd=results.gt_crowd,
    )
    return Metrics(
        options=options,
        stats=stats,
        precision=precision,
        recall=recall,
        scores=scores,
        per_label_ap=label_ap,
        extras=extra,
    )
