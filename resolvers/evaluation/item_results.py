"""Per-item evaluation state: everything accumulate needs, kept per item so a re-commit
re-evaluates only the items that changed, and the match records beside it.

`ItemResults` holds the columns of many items back to back (item-major). Rows point at other
rows (a prediction's matched ground truth, a pool entry's prediction) by global position;
`to_item_dicts` turns those into positions within the item, so each item's dict stands alone
and `from_item_dicts` / `concat` can put any items back together.

Stored layout (FORMAT_VERSION 3), one small dict per item, cheap to encode and decode as
BSON (binary fields, not a subdocument per column):

    {"version": 3, "options": <Options.key()>, "thresholds": T, "areas": A,
     "rows": [n_gt, n_pred, n_entry, n_aware], "data": <bytes>, "records": <bytes>}

The columns are in two parts: `data`, what accumulate reads (labels, scores, statuses, pool
entries), and `records`, what only match records read (row ids, matched rows and their IoUs:
more than half the bytes). A re-commit reads every item's `data` and none of its `records`.
Each part is its columns back to back in the order of `COLUMNS`, each little-endian with its
fixed dtype and shape (rows of its space, then T or A x T for the per-threshold columns),
wider columns first so each starts aligned. `item_arrays(doc, names)` reads a few columns of
one stored dict without building ItemResults. States of other versions are not read: a run
whose states are older is committed whole again.
"""

from collections.abc import Sequence
from dataclasses import dataclass, fields
from functools import cache
from typing import Any

import numba
import numpy as np

FORMAT_VERSION = 3

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
_SPACES = ("gt", "pred", "entry", "aware")

# The stored columns, in order within their part: name, dtype, trailing shape ("" one value
# per row, "T" per IoU threshold, "AT" per area range and threshold), part. Widest first.
COLUMNS: tuple[tuple[str, str, str, str], ...] = (
    ("gt_ids", "<i8", "", "records"),
    ("pred_ids", "<i8", "", "records"),
    ("pred_iou", "<f4", "T", "records"),
    ("pred_match", "<i4", "T", "records"),
    ("gt_area", "<f8", "", "data"),
    ("pred_score", "<f8", "", "data"),
    ("gt_label", "<i4", "", "data"),
    ("gt_match", "<i4", "T", "data"),
    ("pred_label", "<i4", "", "data"),
    ("pred_confusion", "<i4", "", "data"),
    ("entry_pred", "<i4", "", "data"),
    ("entry_label", "<i4", "", "data"),
    ("entry_rank", "<i4", "", "data"),
    ("aware_pred", "<i4", "", "data"),
    ("aware_label", "<i4", "", "data"),
    ("aware_rank", "<i4", "", "data"),
    ("gt_crowd", "|b1", "", "data"),
    ("pred_status", "|i1", "T", "data"),
    ("entry_flags", "|u1", "AT", "data"),
    ("aware_flags", "|u1", "T", "data"),
)
PARTS = ("data", "records")
RECORD_COLUMNS = tuple(c[0] for c in COLUMNS if c[3] == "records")
"""Columns only match records read; None in ItemResults read without them."""
assert {c[0] for c in COLUMNS} == set(_ROWS_OF)


@dataclass(frozen=True)
class _Layout:
    """Where each column sits in an item's `data`, for T thresholds and A area ranges."""

    names: tuple[str, ...]
    dtypes: tuple[np.dtype, ...]
    trailing: tuple[tuple[int, ...], ...]
    space: np.ndarray  # column -> index into _SPACES
    row_bytes: np.ndarray  # column -> bytes per row

    def item_bytes(self, rows: np.ndarray) -> np.ndarray:
        """`data`'s length for items whose row counts per space are `rows[..., 4]`."""
        per_space = np.zeros(len(_SPACES), dtype=np.int64)
        np.add.at(per_space, self.space, self.row_bytes)
        return rows @ per_space


@cache
def _layout(n_thresholds: int, n_areas: int, part: str) -> _Layout:
    shapes = {"": (), "T": (n_thresholds,), "AT": (n_areas, n_thresholds)}
    columns = [c for c in COLUMNS if c[3] == part]
    dtypes = tuple(np.dtype(c[1]) for c in columns)
    trailing = tuple(shapes[c[2]] for c in columns)
    return _Layout(
        names=tuple(c[0] for c in columns),
        dtypes=dtypes,
        trailing=trailing,
        space=np.array([_SPACES.index(_ROWS_OF[c[0]]) for c in columns], dtype=np.int64),
        row_bytes=np.array(
            [d.itemsize * int(np.prod(t)) for d, t in zip(dtypes, trailing, strict=True)],
            dtype=np.int64,
        ),
    )


@numba.njit(cache=True, parallel=True)
def _pack(columns, row_bytes, space, starts, item_offset, out):  # fmt: skip
    """Item by item, each column's rows of the item, back to back, into `out`."""
    n_items = len(item_offset) - 1
    for i in numba.prange(n_items):
        pos = item_offset[i]
        for c in range(len(columns)):
            size = row_bytes[c]
            lo = starts[space[c], i] * size
            hi = starts[space[c], i + 1] * size
            out[pos : pos + hi - lo] = columns[c][lo:hi]
            pos += hi - lo


@numba.njit(cache=True, parallel=True)
def _unpack(data, item_offset, row_bytes, space, starts, columns):  # fmt: skip
    """The inverse of `_pack`: each item's bytes back into the columns."""
    n_items = len(item_offset) - 1
    for i in numba.prange(n_items):
        pos = item_offset[i]
        for c in range(len(columns)):
            size = row_bytes[c]
            lo = starts[space[c], i] * size
            hi = starts[space[c], i + 1] * size
            columns[c][lo:hi] = data[pos : pos + hi - lo]
            pos += hi - lo


@numba.njit(cache=True, parallel=True)
def _shift_refs(values, row_start, target_start, sign, out):  # fmt: skip
    """`out[r] = values[r] + sign * target_start[item of r]` where >= 0 (references), else
    kept (-1 none, -2 cut); rows by item per `row_start`. `out` may be `values`."""
    for i in numba.prange(len(row_start) - 1):
        base = sign * target_start[i]
        for r in range(row_start[i], row_start[i + 1]):
            for k in range(values.shape[1]):
                v = values[r, k]
                out[r, k] = v + base if v >= 0 else v


def _rebase(
    values: np.ndarray, row_start: np.ndarray, target_start: np.ndarray, sign: int, copy: bool
) -> np.ndarray:
    """References shifted by their item's first target row (sign 1: item to global
    positions, -1: back); a new int32 array when `copy`, else in place."""
    width = int(np.prod(values.shape[1:]))
    flat = np.ascontiguousarray(values, dtype=np.int32).reshape(len(values), width)
    out = np.empty_like(flat) if copy else flat
    _shift_refs(flat, row_start, target_start, np.int32(sign), out)
    return out.reshape(values.shape)


def _check_version(doc: dict[str, Any]) -> None:
    if doc.get("version") != FORMAT_VERSION:
        raise ValueError(f"item results version {doc.get('version')} is not supported")


def item_arrays(doc: dict[str, Any], names: Sequence[str]) -> dict[str, np.ndarray]:
    """One stored item's named columns straight from its dict (`to_item_dicts`' format),
    read-only views of its bytes; references are relative to the item, as stored (a
    prediction's `pred_match` is a row of this item's ground truths, and so on)."""
    _check_version(doc)
    rows = [int(r) for r in doc["rows"]]
    wanted = set(names)
    out = {}
    for part in PARTS:
        layout = _layout(int(doc["thresholds"]), int(doc["areas"]), part)
        if wanted.isdisjoint(layout.names):
            continue
        data = doc[part]
        sizes = [
            rows[s] * b
            for s, b in zip(layout.space.tolist(), layout.row_bytes.tolist(), strict=True)
        ]
        if len(data) != sum(sizes):
            raise ValueError("item results data do not match their row counts")
        offset = 0
        for c, name in enumerate(layout.names):
            if name in wanted:
                shape = (rows[layout.space[c]], *layout.trailing[c])
                count = int(np.prod(shape))
                array = np.frombuffer(data, dtype=layout.dtypes[c], count=count, offset=offset)
                out[name] = array.reshape(shape)
            offset += sizes[c]
    missing = wanted - set(out)
    if missing:
        raise KeyError(f"no such item result columns: {sorted(missing)}")
    return {name: out[name] for name in names}


def _unpacked(
    layout: _Layout,
    items: Sequence[dict[str, Any]],
    part: str,
    rows: np.ndarray,
    starts: np.ndarray,
) -> dict[str, np.ndarray]:
    """One part of every item's dict back into whole columns, references made global."""
    data = [doc[part] for doc in items]
    item_size = layout.item_bytes(rows)
    if not np.array_equal(np.fromiter(map(len, data), np.int64, len(data)), item_size):
        raise ValueError("item results data do not match their row counts")
    item_offset = np.concatenate([[0], np.cumsum(item_size)]).astype(np.int64)
    totals = starts[:, -1]
    buffers = tuple(
        np.empty(int(totals[layout.space[c]] * layout.row_bytes[c]), dtype=np.uint8)
        for c in range(len(layout.names))
    )
    # one numpy buffer filled item by item: b"".join's 50 MB bytes costs 4x as much
    joined = np.empty(int(item_offset[-1]), dtype=np.uint8)
    view = memoryview(joined)
    bounds = item_offset.tolist()
    for i, doc_data in enumerate(data):
        view[bounds[i] : bounds[i + 1]] = doc_data
    _unpack(joined, item_offset, layout.row_bytes, layout.space, starts, buffers)
    values = {}
    for c, name in enumerate(layout.names):
        space = int(layout.space[c])
        array = buffers[c].view(layout.dtypes[c]).reshape((totals[space], *layout.trailing[c]))
        array = array.astype(array.dtype.newbyteorder("="), copy=False)
        target = _POINTS_TO.get(name)
        if target is not None:  # a fresh buffer: in place
            array = _rebase(array, starts[space], starts[_SPACES.index(target)], 1, copy=False)
        values[name] = array
    return values


@dataclass
class ItemResults:
    """Matching results of items 0..n_items-1.

    Ground truths and predictions are in item-major order, the input's order within an item
    (`gt_ids` / `pred_ids` say which input row each is). Match records, per IoU threshold of
    the options (area "all", maxDets[-1]):

    - `pred_status[n_pred, T]` int8: FP 0, TP 1, IGNORED 2; `pred_match[n_pred, T]` int32: the
      matched gt row or -1; `pred_iou[n_pred, T]` float32: that match's IoU (0.0 when
      unmatched), to the 7 digits match records show;
    - `gt_match[n_gt, T]` int32: the matching prediction row or -1 (a miss unless crowd);
    - `pred_confusion[n_pred]` int32: the gt row a class-agnostic matching at IoU 0.5 pairs
      the prediction with, -1 for none, -2 when maxDets cut it.

    COCO pool entries (`entry_*`, per item by pool label then rank within the pool; a
    prediction allowed into several pools has one entry in each) carry, per area range and
    threshold, the MATCHED|IGNORED bits of evaluateImg's dtMatches/dtIgnore. `aware_*` are
    the class-aware entries (area "all" only) that class-agnostic mode keeps for per-label AP.

    Read from stored dicts without their `records` part (`RECORD_COLUMNS`), those columns
    are None: such results accumulate, but do not name rows or pack again.
    """

    options_key: str
    n_items: int
    n_thresholds: int
    n_areas: int
    gt_start: np.ndarray
    pred_start: np.ndarray
    entry_start: np.ndarray
    aware_start: np.ndarray
    gt_ids: np.ndarray | None
    gt_label: np.ndarray
    gt_crowd: np.ndarray
    gt_area: np.ndarray
    gt_match: np.ndarray
    pred_ids: np.ndarray | None
    pred_label: np.ndarray
    pred_score: np.ndarray
    pred_status: np.ndarray
    pred_match: np.ndarray | None
    pred_iou: np.ndarray | None
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

    def _starts_table(self) -> np.ndarray:
        return np.stack([self._starts(space).astype(np.int64) for space in _SPACES])

    def _packed(self, part: str, starts: np.ndarray) -> tuple[np.ndarray, list[int]]:
        """One part's columns, item by item, in one buffer; (the buffer, item offsets)."""
        layout = _layout(self.n_thresholds, self.n_areas, part)
        columns = []
        for name, dtype, trailing in zip(layout.names, layout.dtypes, layout.trailing, strict=True):
            values = getattr(self, name)
            if values is None:
                raise ValueError(f"{name} was not read: these results cannot be stored")
            if values.shape[1:] != trailing:
                raise ValueError(f"{name}: shape {values.shape} does not fit the layout")
            target = _POINTS_TO.get(name)
            if target is not None:
                own = starts[_SPACES.index(_ROWS_OF[name])]
                values = _rebase(values, own, starts[_SPACES.index(target)], -1, copy=True)
            values = np.ascontiguousarray(values, dtype=dtype)
            columns.append(values.reshape(-1).view(np.uint8))
        item_size = layout.item_bytes(np.diff(starts, axis=1).T)
        item_offset = np.concatenate([[0], np.cumsum(item_size)]).astype(np.int64)
        out = np.empty(int(item_offset[-1]), dtype=np.uint8)
        _pack(tuple(columns), layout.row_bytes, layout.space, starts, item_offset, out)
        return out, item_offset.tolist()

    def to_item_dicts(self) -> list[dict[str, Any]]:
        """One BSON-friendly dict per item (the module docstring's layout), references made
        relative to the item. Columns are re-based and packed for all items at once."""
        starts = self._starts_table()
        rows = np.diff(starts, axis=1).T.tolist()
        packed = {part: self._packed(part, starts) for part in PARTS}
        header = {
            "version": FORMAT_VERSION,
            "options": self.options_key,
            "thresholds": self.n_thresholds,
            "areas": self.n_areas,
        }
        # one small bytes per item (one 50 MB bytes, then slices, costs twice the copying)
        return [
            {
                **header,
                "rows": rows[i],
                **{
                    part: out[offsets[i] : offsets[i + 1]].tobytes()
                    for part, (out, offsets) in packed.items()
                },
            }
            for i in range(self.n_items)
        ]

    @classmethod
    def from_item_dicts(cls, items: Sequence[dict[str, Any]]) -> "ItemResults":
        """Items 0..len(items)-1 from their dicts (as `to_item_dicts` made them, or without
        their `records`, all alike): each part's bytes joined and unpacked at once."""
        if not items:
            raise ValueError("no items")
        first = items[0]
        key, n_thr, n_areas = first["options"], int(first["thresholds"]), int(first["areas"])
        parts = [part for part in PARTS if part in first]
        for doc in items:
            _check_version(doc)
            if doc["options"] != key:
                raise ValueError("item results were computed under different options")
            if doc["thresholds"] != n_thr or doc["areas"] != n_areas:
                raise ValueError("item results differ in thresholds or area ranges")
            if [part for part in PARTS if part in doc] != parts or "data" not in parts:
                raise ValueError("item results were read with different parts")
        rows = np.array([doc["rows"] for doc in items], dtype=np.int64).reshape(-1, len(_SPACES))
        starts = np.zeros((len(_SPACES), len(items) + 1), dtype=np.int64)
        np.cumsum(rows.T, axis=1, out=starts[:, 1:])
        values: dict[str, Any] = dict.fromkeys(RECORD_COLUMNS)
        for part in parts:
            values.update(_unpacked(_layout(n_thr, n_areas, part), items, part, rows, starts))
        return cls(
            options_key=key,
            n_items=len(items),
            n_thresholds=n_thr,
            n_areas=n_areas,
            **{f"{space}_start": starts[i] for i, space in enumerate(_SPACES)},
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
            if any(a is None for a in arrays):
                values[name] = None
                continue
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
            if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
                if not (isinstance(a, np.ndarray) and isinstance(b, np.ndarray)):
                    return False
                if a.dtype != b.dtype or a.shape != b.shape or not np.array_equal(a, b):
                    return False
            elif a != b:
                return False
        return True
