"""Per-item evaluation state: everything accumulate needs, kept per item so a re-commit
re-evaluates only the items that changed.

`ItemResults` holds the columns of many items back to back (item-major). Rows point at other
rows (a prediction's matched ground truth, a pool entry's prediction) by global position;
`to_item_dicts` turns those into positions within the item, so each item's dict stands alone
and `from_item_dicts` / `concat` can put any items back together.
"""

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

FORMAT_VERSION = 1

# Prediction status per IoU threshold, in match records.
FP = 0
TP = 1
IGNORED = 2  # matched a crowd region, outside the area range unmatched, or cut by maxDets

# Which row space each referencing column points into ("gt" / "pred"), for re-basing.
_POINTS_TO = {
    "gt_match": "pred",
    "pred_match": "gt",
    "pred_confusion": "gt",
    "entry_pred": "pred",
    "aware_pred": "pred",
}
# Which row space each column is a row of.
_ROWS_OF = {
    "gt_ids": "gt",
    "gt_label": "gt",
    "gt_crowd": "gt",
    "gt_area": "gt",
    "gt_match": "gt",
    "pred_ids": "pred",
    "pred_label": "pred",
    "pred_score": "pred",
    "pred_status": "pred",
    "pred_match": "pred",
    "pred_iou": "pred",
    "pred_confusion": "pred",
    "entry_pred": "entry",
    "entry_label": "entry",
    "entry_rank": "entry",
    "entry_flags": "entry",
    "aware_pred": "aware",
    "aware_label": "aware",
    "aware_rank": "aware",
    "aware_flags": "aware",
}


@dataclass
class ItemResults:
    """Matching results of items 0..n_items-1.

    Ground truths and predictions are in item-major order, the input's order within an item
    (`gt_ids` / `pred_ids` say which input row each is). Match records, per IoU threshold of
    the options (area "all", maxDets[-1]):

    - `pred_status[n_pred, T]` int8: FP 0, TP 1, IGNORED 2; `pred_match[n_pred, T]` int32: the
      matched gt row or -1; `pred_iou[n_pred, T]`: that match's IoU (0.0 when unmatched);
    - `gt_match[n_gt, T]` int32: the matching prediction row or -1 (a miss unless crowd);
    - `pred_confusion[n_pred]` int32: the gt row a class-agnostic matching at IoU 0.5 pairs
      the prediction with, -1 for none, -2 when maxDets cut it.

    COCO pool entries (`entry_*`, per item by pool label then rank within the pool; a
    prediction allowed into several pools has one entry in each) carry, per area range and
    threshold, the MATCHED|IGNORED bits of evaluateImg's dtMatches/dtIgnore. `aware_*` are
    the class-aware entries (area "all" only) that class-agnostic mode keeps for per-label AP.
    """

    options_key: str
    n_items: int
    n_thresholds: int
    n_areas: int
    gt_start: np.ndarray
    pred_start: np.ndarray
    entry_start: np.ndarray
    aware_start: np.ndarray
    gt_ids: np.ndarray
    gt_label: np.ndarray
    gt_crowd: np.ndarray
    gt_area: np.ndarray
    gt_match: np.ndarray
    pred_ids: np.ndarray
    pred_label: np.ndarray
    pred_score: np.ndarray
    pred_status: np.ndarray
    pred_match: np.ndarray
    pred_iou: np.ndarray
    pred_confusion: np.ndarray
    entry_pred: np.ndarray
    entry_label: np.ndarray
    entry_rank: np.ndarray
    entry_flags: np.ndarray
    aware_pred: np.ndarray
    aware_label: np.ndarray
    aware_rank: np.ndarray
    aware_flags: np.ndarray

    @property
    def gt_item(self) -> np.ndarray:
        return np.repeat(np.arange(self.n_items), np.diff(self.gt_start))

    @property
    def pred_item(self) -> np.ndarray:
        return np.repeat(np.arange(self.n_items), np.diff(self.pred_start))

    def _starts(self, space: str) -> np.ndarray:
        return getattr(self, f"{space}_start")

    def to_item_dicts(self) -> list[dict[str, Any]]:
        """One BSON-friendly dict per item: each column's slice as `bytes` with its dtype and
        shape, references made relative to the item."""
        items = []
        for item in range(self.n_items):
            arrays: dict[str, Any] = {}
            for name, space in _ROWS_OF.items():
                starts = self._starts(space)
                part = getattr(self, name)[starts[item] : starts[item + 1]]
                target = _POINTS_TO.get(name)
                if target is not None:
                    base = self._starts(target)[item]
                    part = np.where(part >= 0, part - base, part).astype(part.dtype)
                arrays[name] = {
                    "dtype": part.dtype.str,
                    "shape": list(part.shape),
                    "data": np.ascontiguousarray(part).tobytes(),
                }
            items.append(
                {
                    "version": FORMAT_VERSION,
                    "options": self.options_key,
                    "thresholds": self.n_thresholds,
                    "areas": self.n_areas,
                    "arrays": arrays,
                }
            )
        return items

    @classmethod
    def from_item_dicts(cls, items: Sequence[dict[str, Any]]) -> "ItemResults":
        """Items 0..len(items)-1 from their dicts (as `to_item_dicts` made them)."""
        if not items:
            raise ValueError("no items")
        first = items[0]
        for doc in items:
            if doc.get("version") != FORMAT_VERSION:
                raise ValueError(f"item results version {doc.get('version')} is not supported")
            if doc["options"] != first["options"]:
                raise ValueError("item results were computed under different options")
        counts = {space: np.zeros(len(items) + 1, dtype=np.int64) for space in _SPACES}
        columns: dict[str, list[np.ndarray]] = {name: [] for name in _ROWS_OF}
        for i, doc in enumerate(items):
            for name, space in _ROWS_OF.items():
                spec = doc["arrays"][name]
                array = np.frombuffer(spec["data"], dtype=np.dtype(spec["dtype"]))
                columns[name].append(array.reshape(spec["shape"]))
                counts[space][i + 1] = spec["shape"][0]
        starts = {space: np.cumsum(c) for space, c in counts.items()}
        values: dict[str, Any] = {}
        for name in _ROWS_OF:
            parts = columns[name]
            target = _POINTS_TO.get(name)
            if target is not None:
                parts = [
                    np.where(p >= 0, p + starts[target][i], p).astype(p.dtype)
                    for i, p in enumerate(parts)
                ]
            values[name] = np.concatenate(parts)
        return cls(
            options_key=first["options"],
            n_items=len(items),
            n_thresholds=first["thresholds"],
            n_areas=first["areas"],
            **{f"{space}_start": starts[space] for space in _SPACES},
            **values,
        )

    @classmethod
    def concat(cls, parts: Sequence["ItemResults"]) -> "ItemResults":
        """The items of `parts`, in order, renumbered 0..n-1."""
        if not parts:
            raise ValueError("nothing to concatenate")
        for part in parts:
            if part.options_key != parts[0].options_key:
                raise ValueError("item results were computed under different options")
        offsets = {
            space: np.cumsum([0] + [int(p._starts(space)[-1]) for p in parts]) for space in _SPACES
        }
        values: dict[str, Any] = {}
        for name, target in ((n, _POINTS_TO.get(n)) for n in _ROWS_OF):
            arrays = [getattr(p, name) for p in parts]
            if target is not None:
                arrays = [
                    np.where(a >= 0, a + offsets[target][i], a).astype(a.dtype)
                    for i, a in enumerate(arrays)
                ]
            values[name] = np.concatenate(arrays)
        starts = {}
        for space in _SPACES:
            pieces = [p._starts(space)[:-1] + offsets[space][i] for i, p in enumerate(parts)]
            starts[f"{space}_start"] = np.concatenate([*pieces, [offsets[space][-1]]])
        return cls(
            options_key=parts[0].options_key,
            n_items=sum(p.n_items for p in parts),
            n_thresholds=parts[0].n_thresholds,
            n_areas=parts[0].n_areas,
            **starts,
            **values,
        )

    def select(self, items: Sequence[int]) -> "ItemResults":
        """The given items, renumbered 0..len(items)-1 (through their dicts)."""
        docs = self.to_item_dicts()
        return ItemResults.from_item_dicts([docs[i] for i in items])

    def equals(self, other: "ItemResults") -> bool:
        """Field-for-field equality (arrays exactly)."""
        for f in fields(self):
            a, b = getattr(self, f.name), getattr(other, f.name)
            if isinstance(a, np.ndarray):
                if a.dtype != b.dtype or a.shape != b.shape or not np.array_equal(a, b):
                    return False
            elif a != b:
                return False
        return True


_SPACES = ("gt", "pred", "entry", "aware")
