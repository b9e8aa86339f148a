"""Paging through a committed run's match records: its true positives, false positives and
missed ground truths, item by item, so a frontend can browse the errors.

Records live in the per-item documents a commit writes (resolvers/model_run_commit.py) as
binary columns; a page reads item documents in item-id order from its cursor, decodes their
columns with numpy, and keeps the records that pass the filters. At IoU 0.5 each document's
label index (which labels it has per kind) lets MongoDB skip the items without any match.
The cursor is (item id, the record's row in that item), so pages stay disjoint and complete.
"""

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from bson import ObjectId

from resolvers.access import Access
from resolvers.errors import BadUserInput, Conflict
from resolvers.evaluation import FP, TP, item_arrays
from resolvers.evaluation.item_results import FORMAT_VERSION
from resolvers.model_runs import get_model_run
from resolvers.pagination import decode_cursor, encode_cursor

Kind = Literal["tp", "fp", "fn"]
SCAN_BATCH = 200
_COLUMNS = ("pred_label", "pred_score", "pred_status", "pred_match", "pred_iou")
_GT_COLUMNS = ("gt_label", "gt_crowd", "gt_match")


@dataclass
class MatchRecord:
    kind: Kind
    item_id: ObjectId
    prediction_id: ObjectId | None
    ground_truth_id: ObjectId | None
    label: str
    ground_truth_label: str | None
    confidence: float | None
    iou: float | None
    cursor: str


@dataclass
class MatchPage:
    records: list[MatchRecord]
    has_next_page: bool


CURSOR_ORDER = [("itemId", 1), ("row", 1)]


def _cursor(item: ObjectId, row: int) -> str:
    return encode_cursor({"itemId": item, "row": row}, CURSOR_ORDER)


def _decode_cursor(cursor: str) -> tuple[ObjectId, int]:
    (item, row), _ = decode_cursor(cursor, CURSOR_ORDER)
    if not isinstance(item, ObjectId) or not isinstance(row, int) or isinstance(row, bool):
        raise BadUserInput("Invalid cursor", field="after")
    return item, row


def _records(
    doc: dict[str, Any],
    kind: Kind,
    t: int,
    labels: list[str],
    label: str | None,
    min_confidence: float | None,
    min_iou: float | None,
) -> list[tuple[int, MatchRecord]]:
    """The item's records of this kind that pass the filters, with their rows."""
    state = doc["state"]
    item = doc["itemId"]
    found = []
    if kind == "fn":
        columns = item_arrays(state, _GT_COLUMNS)
        gt_label, crowd, matched = (columns[name] for name in _GT_COLUMNS)
        rows = np.flatnonzero((matched[:, t] < 0) & ~crowd)
        for row in rows:
            name = labels[gt_label[row]]
            if label is None or name == label:
                record = MatchRecord(
                    "fn",
                    item,
                    None,
                    doc["groundTruthIds"][row],
                    name,
                    name,
                    None,
                    None,
                    _cursor(item, int(row)),
                )
                found.append((int(row), record))
        return found
    columns = item_arrays(state, (*_COLUMNS, "gt_label"))
    pred_label, score, status, match, iou = (columns[name] for name in _COLUMNS)
    wanted = status[:, t] == (TP if kind == "tp" else FP)
    if min_confidence is not None:
        wanted &= score >= min_confidence
    if min_iou is not None:
        wanted &= iou[:, t] >= min_iou
    gt_label = columns["gt_label"]
    for row in np.flatnonzero(wanted):
        name = labels[pred_label[row]]
        if label is not None and name != label:
            continue
        gt = int(match[row, t])
        record = MatchRecord(
            kind,
            item,
            doc["predictionIds"][row],
            doc["groundTruthIds"][gt] if gt >= 0 else None,
            name,
            labels[gt_label[gt]] if gt >= 0 else None,
            float(score[row]),
            float(iou[row, t]) if gt >= 0 else None,
            _cursor(item, int(row)),
        )
        found.append((int(row), record))
    return found


async def match_page(
    access: Access,
    run_id: ObjectId,
    *,
    kind: Kind,
    label: str | None,
    min_confidence: float | None,
    min_iou: float | None,
    iou_threshold: float,
    first: int,
    after: str | None,
) -> MatchPage:
    run = await get_model_run(access, run_id)
    metrics = await access.db.model_run_metrics.find_one(
        {"_id": run_id}, {"iouThresholds": 1, "labels": 1, "stateVersion": 1}
    )
    if metrics is None:
        raise Conflict("The run has not been committed yet; commit it first")
    if metrics.get("stateVersion") != FORMAT_VERSION:
        raise Conflict("The run was committed by an earlier version of Loom; commit it again")
    thresholds = np.asarray(metrics["iouThresholds"])
    close = np.flatnonzero(np.isclose(thresholds, iou_threshold, atol=1e-9))
    if len(close) == 0:
        raise BadUserInput(
            f"iouThreshold {iou_threshold} is not one the run was committed with "
            f"({', '.join(f'{v:g}' for v in thresholds)})",
            field="iouThreshold",
        )
    t = int(close[0])
    query: dict[str, Any] = {"runId": run["_id"]}
    if np.isclose(thresholds[t], 0.5):
        query[f"index.{kind}"] = label if label is not None else {"$ne": []}
    start: tuple[ObjectId, int] | None = _decode_cursor(after) if after else None
    if start is not None:
        query["itemId"] = {"$gte": start[0]}
    records: list[MatchRecord] = []
    docs = access.db.model_run_items.find(
        query, {"index": 0, "counts": 0}, batch_size=SCAN_BATCH
    ).sort("itemId", 1)
    async for doc in docs:
        for row, record in _records(
            doc, kind, t, metrics["labels"], label, min_confidence, min_iou
        ):
            if start is not None and doc["itemId"] == start[0] and row <= start[1]:
                continue
            records.append(record)
            if len(records) > first:
                return MatchPage(records[:first], True)
    return MatchPage(records, False)
