"""Committing a model run: match its predictions with the dataset's ground truth, store the
match records and the metrics — a Command carried out by a worker.

The work runs in phases, each recorded as the command's cursor:

1. **Which items.** Every item the first time, or when the options, the labels or the IoU
   type changed; otherwise only the items whose predictions changed since the last commit
   (`model_run_changes`, written with each upload) or whose ground truth did (annotations
   created or updated since then, or an item whose annotation count differs from the one the
   last commit saw — a deletion).
2. **Match.** Those items' ground truth and predictions are read into columns
   (resolvers/model_run_columns.py) and evaluated by the engine (resolvers/evaluation) in a
   thread, so the worker's event loop keeps renewing leases while numpy works.
3. **Store per item.** One document per item (`model_run_items`) holds the item's matching
   state and match records as binary columns, with the Mongo ids of its rows and an index of
   the labels it has per kind: one write per item, never one per prediction.
4. **Metrics.** The stored states of every item of the run are put together and accumulated
   into COCO's stats and Loom's curves (`model_run_metrics`), and the run is marked committed.

Every write is keyed or redone whole (a whole commit forgets the run's commit key before it
replaces the item documents, metrics are overwritten), and the change marks are removed only
at the end, so a worker killed at any point leaves the next one to do the same work again and
reach the same result.
"""

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, Literal

import numpy as np
from bson import ObjectId
from pydantic import Field, field_validator, model_validator
from pymongo import DeleteOne, InsertOne, ReplaceOne
from pymongo.asynchronous.database import AsyncDatabase

from resolvers import commands
from resolvers.access import Access
from resolvers.classification_metrics import classification_metrics
from resolvers.errors import BadUserInput
from resolvers.evaluation import ItemResults, Options, accumulate, evaluate_items
from resolvers.evaluation.item_results import FORMAT_VERSION, TP
from resolvers.inputs import Input, parse
from resolvers.model_run_columns import Columns, Labels, read_columns
from resolvers.model_runs import RunStatus, writable_model_run
from resolvers.timestamps import now

KIND = "commitModelRun"
WRITE_PAGE = 1_000
PARALLEL_PAGES = 2
KINDS = ("tp", "fp", "fn")


class LabelMatch(Input):
    ground_truth_label: str = Field(min_length=1, max_length=500)
    model_prediction_label: str = Field(min_length=1, max_length=500)


class AreaRange(Input):
    name: str = Field(min_length=1, max_length=50)
    min: float = Field(ge=0, allow_inf_nan=False)
    max: float = Field(gt=0, allow_inf_nan=False)


class CommitInput(Input):
    class_agnostic: bool = True
    allowed_label_matches: list[LabelMatch] | None = Field(None, max_length=10_000)
    iou_type: Literal["bbox", "segm"] = "bbox"
    iou_thresholds: list[float] | None = Field(None, min_length=1, max_length=20)
    area_ranges: list[AreaRange] | None = Field(None, min_length=1, max_length=10)
    max_detections: list[int] | None = Field(None, min_length=1, max_length=5)
    confidence_threshold: float = Field(0.5, ge=0, le=1, allow_inf_nan=False)
    full: bool = Field(False, description="recompute every item, changed or not")

    @field_validator("iou_thresholds")
    @classmethod
    def _thresholds(cls, values: list[float] | None) -> list[float] | None:
        if values is not None and (
            any(not 0 < v < 1 for v in values) or sorted(set(values)) != values
        ):
            raise ValueError("IoU thresholds must be increasing, each between 0 and 1")
        return values

    @field_validator("max_detections")
    @classmethod
    def _max_detections(cls, values: list[int] | None) -> list[int] | None:
        if values is not None and (
            any(not 1 <= v <= 10_000 for v in values) or sorted(set(values)) != values
        ):
            raise ValueError("maxDetections must be increasing, each from 1 to 10000")
        return values

    @model_validator(mode="after")
    def _ranges(self) -> "CommitInput":
        names = [r.name for r in self.area_ranges or []]
        if self.area_ranges is not None and "all" not in names:
            raise ValueError('areaRanges must include one named "all"')
        if len(set(names)) != len(names):
            raise ValueError("areaRanges must have distinct names")
        if any(r.min >= r.max for r in self.area_ranges or []):
            raise ValueError("each area range's min must be less than its max")
        return self


def _options(commit: CommitInput, labels: Labels) -> Options:
    pairs = None
    if commit.allowed_label_matches is not None:
        pairs = tuple(
            (labels.index(m.ground_truth_label), labels.index(m.model_prediction_label))
            for m in commit.allowed_label_matches
        )
    extra: dict[str, Any] = {}
    if commit.iou_thresholds is not None:
        extra["iou_thresholds"] = tuple(commit.iou_thresholds)
    if commit.area_ranges is not None:
        extra["area_ranges"] = tuple((r.min, r.max) for r in commit.area_ranges)
        extra["area_labels"] = tuple(r.name for r in commit.area_ranges)
    if commit.max_detections is not None:
        extra["max_detections"] = tuple(commit.max_detections)
    return Options(
        n_labels=max(1, len(labels.names)),
        class_agnostic=commit.class_agnostic and pairs is None,
        allowed_label_matches=pairs,
        iou_type=commit.iou_type,
        confidence_threshold=commit.confidence_threshold,
        **extra,
    )


async def start_commit(
    access: Access,
    run_id: ObjectId,
    data: dict[str, Any],
    enqueue: Callable[[dict[str, Any]], Awaitable[None]],
) -> dict[str, Any]:
    """Queue a commit of the run; while one is under way, that one is the answer."""
    run = await writable_model_run(access, run_id)
    commit = parse(CommitInput, data)
    if run["status"] == RunStatus.COMMITTING and run["commandId"] is not None:
        current = await access.db.commands.find_one({"_id": run["commandId"]})
        if current is not None and current["status"] in commands.UNFINISHED:
            return current
    command = commands.new_command(
        access, run, KIND, {"runId": run_id, **commit.model_dump(by_alias=True, mode="json")}
    )
    await access.db.commands.insert_one(command)
    marked = await access.db.model_runs.update_one(
        {"_id": run_id},
        {"$set": {"status": str(RunStatus.COMMITTING), "commandId": command["_id"]}},
    )
    if marked.matched_count == 0:
        await access.db.commands.delete_one({"_id": command["_id"]})
        raise BadUserInput("the model run was deleted", field="modelRunId")
    await enqueue(command)
    return command


async def _changed_items(db: AsyncDatabase, run: dict[str, Any], started: Any) -> list[ObjectId]:
    """Items whose predictions or ground truth changed since the last commit began."""
    since = run["lastCommitStartedAt"]
    changed = {
        doc["_id"]["itemId"]
        async for doc in db.model_run_changes.find(
            {"runId": run["_id"], "at": {"$lte": started}}, {"_id": 1}
        )
    }
    edited = db.annotations.find(
        {"datasetId": run["datasetId"], "updatedAt": {"$gt": since}},
        {"itemId": 1, "createdAt": 1},
    )
    created = 0
    async for doc in edited:
        changed.add(doc["itemId"])
        created += doc["createdAt"] > since
    # Deletions leave no annotation behind to find: the dataset's count tells whether any
    # happened (it is what the last commit saw plus what was created since, unless some
    # were deleted); only then are the items' counts compared with what the commit saw.
    dataset = await db.datasets.find_one({"_id": run["datasetId"]}, {"annotationsCount": 1})
    if dataset is None or dataset["annotationsCount"] != run.get("annotationsSeen", -1) + created:
        seen = {
            doc["itemId"]: doc["annotationsCount"]
            async for doc in db.model_run_items.find(
                {"runId": run["_id"]}, {"itemId": 1, "annotationsCount": 1}
            )
        }
        counts = db.items.find({"datasetId": run["datasetId"]}, {"annotationsCount": 1})
        async for item in counts:
            if seen.get(item["_id"], 0) != item["annotationsCount"]:
                changed.add(item["_id"])
    return sorted(changed)


def _labels_per_item(
    item: np.ndarray, label: np.ndarray, chosen: np.ndarray, n_items: int, names: list[str]
) -> list[list[str]]:
    """For each item, the names of the labels of its chosen rows, sorted, each once."""
    pairs = np.unique(item[chosen].astype(np.int64) * len(names) + label[chosen])
    per_item: list[list[str]] = [[] for _ in range(n_items)]
    for pair in pairs.tolist():
        per_item[pair // len(names)].append(names[pair % len(names)])
    for found in per_item:
        found.sort()
    return per_item


def _item_documents(
    run: dict[str, Any],
    columns: Columns,
    results: ItemResults,
    labels: Labels,
    threshold_50: int,
    annotation_counts: dict[ObjectId, int],
) -> list[dict[str, Any]]:
    """One document per evaluated item: state, row ids, counts and the label index — the
    counts and labels worked out for all items at once."""
    n = results.n_items
    status = results.pred_status[:, threshold_50]
    gt_miss = (results.gt_match[:, threshold_50] < 0) & ~results.gt_crowd
    pred_item, gt_item = results.pred_item, results.gt_item
    tp = np.bincount(pred_item[status == TP], minlength=n).tolist()
    fp = np.bincount(pred_item[status == 0], minlength=n).tolist()
    fn = np.bincount(gt_item[gt_miss], minlength=n).tolist()
    names = labels.names or [""]
    index = {
        "tp": _labels_per_item(pred_item, results.pred_label, status == TP, n, names),
        "fp": _labels_per_item(pred_item, results.pred_label, status == 0, n, names),
        "fn": _labels_per_item(gt_item, results.gt_label, gt_miss, n, names),
    }
    ground_ids = [columns.ground_ids[k] for k in results.gt_ids.tolist()]
    prediction_ids = [columns.prediction_ids[k] for k in results.pred_ids.tolist()]
    gt_start, pred_start = results.gt_start.tolist(), results.pred_start.tolist()
    docs = []
    for i, state in enumerate(results.to_item_dicts()):
        item = columns.items[i]
        docs.append(
            {
                "runId": run["_id"],
                "itemId": item,
                "annotationsCount": annotation_counts.get(item, 0),
                "state": state,
                "groundTruthIds": ground_ids[gt_start[i] : gt_start[i + 1]],
                "predictionIds": prediction_ids[pred_start[i] : pred_start[i + 1]],
                "counts": {"tp": tp[i], "fp": fp[i], "fn": fn[i], "errors": fp[i] + fn[i]},
                "index": {kind: found[i] for kind, found in index.items()},
            }
        )
    return docs


async def _annotation_counts(
    db: AsyncDatabase, run: dict[str, Any], items: list[ObjectId]
) -> dict[ObjectId, int]:
    found = db.items.find({"_id": {"$in": items}}, {"annotationsCount": 1})
    return {doc["_id"]: doc["annotationsCount"] async for doc in found}


async def run_commit(db: AsyncDatabase, command: dict[str, Any], lease: timedelta) -> None:
    """Carry out the commit; a failure marks the run failed (a resumed attempt marks it
    committing again) before the command records the error."""
    run = await db.model_runs.find_one_and_update(
        {"_id": command["input"]["runId"]},
        {"$set": {"status": str(RunStatus.COMMITTING), "commandId": command["_id"]}},
    )
    if run is None:
        raise RuntimeError("the model run was deleted before its commit")
    try:
        await _commit(db, run, command, lease)
    except Exception:
        await db.model_runs.update_one(
            {"_id": run["_id"]}, {"$set": {"status": str(RunStatus.FAILED)}}
        )
        raise


async def _commit(
    db: AsyncDatabase, run: dict[str, Any], command: dict[str, Any], lease: timedelta
) -> None:
    spec = {k: v for k, v in command["input"].items() if k != "runId"}
    commit = CommitInput.model_validate(spec)
    started = command["createdAt"]
    stored_labels = list(run.get("evaluationLabels") or [])
    stored_key = run.get("commitKey")
    whole = (
        commit.full
        or stored_key is None
        or run.get("lastCommitStartedAt") is None
        or run.get("stateVersion") != FORMAT_VERSION
    )
    dataset = await db.datasets.find_one({"_id": run["datasetId"]}, {"annotationsCount": 1})
    annotations_seen = dataset["annotationsCount"] if dataset else 0
    items: list[ObjectId] | None = None
    if not whole:
        items = await _changed_items(db, run, started)
        labels = Labels(list(stored_labels))
        columns = await read_columns(db, run, items, commit.iou_type, labels)
        options = _options(commit, labels)
        whole = len(labels.names) != len(stored_labels) or options.key() != stored_key
    if whole:
        items, labels = None, Labels()
        columns = await read_columns(db, run, None, commit.iou_type, labels)
        # Labels in name order, whatever order they were read in: class-agnostic COCO breaks
        # ties between equal scores by category order, so the order must not be an accident.
        paired = {
            name
            for match in commit.allowed_label_matches or []
            for name in (match.ground_truth_label, match.model_prediction_label)
        }
        names = sorted(set(labels.names) | paired)
        columns = columns.relabelled(labels.names, names)
        labels = Labels(names)
        options = _options(commit, labels)
    await _advance(db, command, "matched", 30, lease)
    results = await asyncio.to_thread(evaluate_items, columns.ground, columns.predictions, options)
    thresholds = options.thresholds()
    t50 = int(np.argmin(np.abs(thresholds - 0.5)))
    counts = await _annotation_counts(db, run, columns.items)
    docs = await asyncio.to_thread(_item_documents, run, columns, results, labels, t50, counts)
    await _write_items(db, run, docs, items, whole, command, lease)
    if whole:
        everything = results
    else:
        everything = await _all_item_results(db, run)
    metrics = await asyncio.to_thread(accumulate, everything, options)
    document = metrics.to_document()
    document.pop("item_counts")  # per item, they live in the items' documents
    document["labels"] = list(labels.names)
    document["iouThresholds"] = list(options.iou_thresholds)
    document["classification"] = await classification_metrics(db, run)
    document["options"] = spec
    document["stateVersion"] = FORMAT_VERSION
    await db.model_run_metrics.replace_one(
        {"_id": run["_id"]}, {"_id": run["_id"], "runId": run["_id"], **document}, upsert=True
    )
    await db.model_runs.update_one(
        {"_id": run["_id"]},
        {
            "$set": {
                "status": str(RunStatus.COMMITTED),
                "committedAt": now(),
                "lastCommitStartedAt": started,
                "annotationsSeen": annotations_seen,
                "commitKey": options.key(),
                "stateVersion": FORMAT_VERSION,
                "commitOptions": spec,
                "evaluationLabels": list(labels.names),
                "metrics": document["stats"],
                "changed": False,
                "updatedAt": now(),
            }
        },
    )
    await db.model_run_changes.delete_many({"runId": run["_id"], "at": {"$lte": started}})
    await db.commands.update_one(
        {"_id": command["_id"], "worker": command["worker"]},
        {"$set": {"result": {"items": len(docs), "full": whole}}},
    )


async def _advance(
    db: AsyncDatabase, command: dict[str, Any], phase: str, progress: int, lease: timedelta
) -> None:
    async with db.client.start_session() as session:
        await commands.advance(db, command, {"phase": phase}, progress, lease, session)


async def _write_items(
    db: AsyncDatabase,
    run: dict[str, Any],
    docs: list[dict[str, Any]],
    items: list[ObjectId] | None,
    whole: bool,
    command: dict[str, Any],
    lease: timedelta,
) -> None:
    """Store the evaluated items' documents, `PARALLEL_PAGES` pages at a time (mongod
    inserts on one core per command).

    A whole commit first forgets the run's commit key — so a commit cut short from here on
    leaves the next one whole, never an incremental commit over half the states — then drops
    the run's item documents and inserts the new ones (an insert costs half a replace). An
    incremental commit replaces the evaluated items' documents and drops those of items that
    have nothing left to evaluate."""
    if whole:
        await db.model_runs.update_one({"_id": run["_id"]}, {"$set": {"commitKey": None}})
        await db.model_run_items.delete_many({"runId": run["_id"]})
        writes: list[Any] = [InsertOne(doc) for doc in docs]
    else:
        evaluated = {doc["itemId"] for doc in docs}
        writes = [
            ReplaceOne({"runId": run["_id"], "itemId": doc["itemId"]}, doc, upsert=True)
            for doc in docs
        ]
        writes += [
            DeleteOne({"runId": run["_id"], "itemId": item})
            for item in items or []
            if item not in evaluated
        ]
    pages = [writes[start : start + WRITE_PAGE] for start in range(0, len(writes), WRITE_PAGE)]
    done = 0
    for first in range(0, len(pages), PARALLEL_PAGES):
        chosen = pages[first : first + PARALLEL_PAGES]
        await asyncio.gather(
            *(db.model_run_items.bulk_write(page, ordered=False) for page in chosen)
        )
        done += sum(map(len, chosen))
        await _advance(db, command, "storing", 40 + 50 * done // max(1, len(writes)), lease)


async def _all_item_results(db: AsyncDatabase, run: dict[str, Any]) -> ItemResults:
    # Accumulating needs the states' `data`, not their match records: half the bytes.
    part = {f"state.{key}": 1 for key in ("version", "options", "thresholds", "areas", "rows")}
    states = [
        doc["state"]
        async for doc in db.model_run_items.find(
            {"runId": run["_id"]}, {**part, "state.data": 1, "_id": 0}, batch_size=1_000
        ).sort("itemId", 1)
    ]
    return await asyncio.to_thread(ItemResults.from_item_dicts, states)
