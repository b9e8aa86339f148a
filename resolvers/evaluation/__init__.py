"""Loom's evaluation engine: COCO-exact matching and metrics for model runs, plus Loom's own
semantics (class-agnostic matching, allowed label pairs, per-prediction match records).

Numpy arrays in, numpy arrays and dataclasses out; no Strawberry, no MongoDB here.

    from resolvers.evaluation import (
        GroundTruths, Predictions, Options, evaluate_items, ItemResults, accumulate, Metrics,
    )

    results = evaluate_items(ground, predictions, options, n_items)   # -> ItemResults
    docs = results.to_item_dicts()         # one BSON-friendly dict per item (one bytes field)
    results = ItemResults.from_item_dicts(docs)   # or ItemResults.concat([...])
    item_arrays(docs[i], ["pred_status", "pred_match"])   # a few columns of one stored item
    metrics = accumulate(results, options)        # -> Metrics
    metrics.stats / named_stats, per_label_ap, extras (P/R/F1, curves, confusion, per-item
    counts), precision / recall / scores (COCOeval.eval's arrays); metrics.to_document().

A re-commit re-evaluates only changed items (`evaluate_items` on their rows, numbered
0..k-1), puts their dicts in place of the old ones and accumulates again.
"""

from resolvers.evaluation.accumulation import STAT_NAMES
from resolvers.evaluation.columns import GroundTruths, Options, Predictions
from resolvers.evaluation.curves import Curve, Extras
from resolvers.evaluation.item_results import FP, IGNORED, TP, ItemResults, item_arrays
from resolvers.evaluation.matching import evaluate_items
from resolvers.evaluation.metrics import Metrics, accumulate

__all__ = [
    "FP",
    "IGNORED",
    "STAT_NAMES",
    "TP",
    "Curve",
    "Extras",
    "GroundTruths",
    "ItemResults",
    "Metrics",
    "Options",
    "Predictions",
    "accumulate",
    "evaluate_items",
    "item_arrays",
]
