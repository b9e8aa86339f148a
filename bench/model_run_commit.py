"""A model run's whole commit from MongoDB, and a re-commit after 1 % of its items changed.

The bench set of bench/evaluation.py is stored as Loom stores it — items, box annotations
(crowd regions flagged in `attributes.iscrowd`), a model run and its box predictions — in a
fresh database, then committed by the worker's own code (`run_commit`, in this process): read
ground truth and predictions, match, write one document per item, accumulate, write the
metrics. Then the predictions of 1 % of the items are replaced through the upload path
(`predictions.store`, which marks the items changed) and the run is committed again.

bench/evaluation.py runs this after its in-memory evaluators; run alone, it times
pycocotools' evaluate() + accumulate() on the same set first. Either way the goals compare
times taken side by side, each on one line ending `(goal <op> <target>: MET | NOT MET)`:
- the whole commit at least 6 x faster than pycocotools' evaluate() + accumulate() alone;
- the re-commit at most 10 % of the whole commit's time.
"""

import argparse
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
from bson import ObjectId

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.harness import database_urls, drop_database, run_async, with_db  # noqa: E402
from resolvers import commands, predictions  # noqa: E402
from resolvers.evaluation import (  # noqa: E402
    GroundTruths,
    ItemResults,
    Options,
    Predictions,
    accumulate,
    evaluate_items,
)
from resolvers.model_run_commit import KIND, run_commit  # noqa: E402
from resolvers.timestamps import new_document  # noqa: E402
from resolvers.transactions import in_transaction  # noqa: E402

COMMIT_SPEEDUP = 6.0
RECOMMIT_SHARE = 0.10
LEASE = timedelta(minutes=10)
CHANGED_SHARE = 0.01
INSERT_BATCH = 10_000


@dataclass
class CommitTimes:
    whole_s: float
    recommit_s: float
    recommit_items: int
    stats: dict[str, float | None]


def _box(xywh: np.ndarray) -> dict[str, float]:
    x, y, w, h = (float(v) for v in xywh)
    return {"left": x, "top": y, "right": x + w, "bottom": y + h}


async def _store(db: Any, ground: GroundTruths, preds: Predictions, n_items: int) -> dict:
    """The set as Loom's documents; the run's document, as created by createModelRun."""
    org, project, dataset, version = ObjectId(), ObjectId(), ObjectId(), ObjectId()
    scope = {"orgId": org, "projectId": project}
    item_ids = [ObjectId() for _ in range(n_items)]
    counts = np.bincount(ground.item, minlength=n_items)
    await db.datasets.insert_one(
        new_document(None, _id=dataset, **scope, name="bench", annotationsCount=len(ground))
    )
    await db.items.insert_many(
        [
            new_document(
                None,
                _id=item,
                **scope,
                datasetId=dataset,
                filename=f"/{i}.png",
                width=640,
                height=480,
                annotationsCount=int(counts[i]),
            )
            for i, item in enumerate(item_ids)
        ]
    )
    annotations = [
        new_document(
            None,
            **scope,
            datasetId=dataset,
            itemId=item_ids[ground.item[k]],
            type="box",
            label=f"label{ground.label[k]}",
            coordinates=_box(ground.bbox[k]),
            attributes={"iscrowd": bool(ground.crowd[k])},
        )
        for k in range(len(ground))
    ]
    for start in range(0, len(annotations), INSERT_BATCH):
        await db.annotations.insert_many(annotations[start : start + INSERT_BATCH])
    run = new_document(
        None, **scope, modelId=ObjectId(), modelVersionId=version, datasetId=dataset,
        name="bench", description="", metadata={}, labels=[], status="created",
        predictionsCount=len(preds), changed=True, commandId=None, committedAt=None,
        commitOptions=None, metrics=None,
    )  # fmt: skip
    await db.model_runs.insert_one(run)
    docs = [_prediction(run, item_ids[preds.item[k]], preds, k, f"{k}") for k in range(len(preds))]
    for start in range(0, len(docs), INSERT_BATCH):
        await db.predictions.insert_many(docs[start : start + INSERT_BATCH])
    run["itemIds"] = item_ids
    return run


def _prediction(run: dict, item: ObjectId, preds: Predictions, k: int, key: str) -> dict:
    return new_document(
        None, orgId=run["orgId"], projectId=run["projectId"], runId=run["_id"],
        datasetId=run["datasetId"], itemId=item, annotationId=key, type="box",
        label=f"label{preds.label[k]}", coordinates=_box(preds.bbox[k]),
        confidence=float(preds.score[k]), classPdf=None, metadata={},
    )  # fmt: skip


async def _commit(db: Any, run: dict) -> float:
    command = new_document(
        None, orgId=run["orgId"], projectId=run["projectId"], type=KIND, status="created",
        progress=0, input={"runId": run["_id"], "classAgnostic": False}, cursor=None,
        attempts=0, leaseUntil=None, worker=None, error=None,
    )  # fmt: skip
    await db.commands.insert_one(command)
    claimed = await commands.claim(db, command["_id"], "bench", LEASE)
    began = time.perf_counter()
    await run_commit(db, claimed, LEASE)
    return time.perf_counter() - began


async def _change_items(db: Any, run: dict, preds: Predictions, seed: int) -> int:
    """Move every prediction of 1 % of the items a little, through the upload path."""
    rng = np.random.default_rng(seed + 1)
    n_items = len(run["itemIds"])
    chosen = rng.choice(n_items, max(1, int(n_items * CHANGED_SHARE)), replace=False)
    rows = np.flatnonzero(np.isin(preds.item, chosen))
    moved = preds.bbox[rows].copy()
    moved[:, :2] += rng.normal(0, 2, (len(rows), 2))
    docs = []
    for row, box in zip(rows, moved, strict=True):
        doc = _prediction(run, run["itemIds"][preds.item[row]], preds, int(row), f"{row}")
        doc["coordinates"] = _box(box)
        docs.append(doc)

    async def work(session: Any) -> None:
        await predictions.store(db, run, docs, True, session)

    await in_transaction(db, work)
    return len(chosen)


def warm_kernels(ground: GroundTruths, preds: Predictions, n_items: int, options: Options) -> None:
    """Compile or load every numba kernel a commit runs — matching, the per-item state's
    packing both ways, accumulation — as a worker that has committed before has them."""
    results = evaluate_items(ground, preds, options, n_items)
    accumulate(ItemResults.from_item_dicts(results.to_item_dicts()), options)


def measure_commits(
    ground: GroundTruths, preds: Predictions, n_items: int, seed: int = 0
) -> CommitTimes:
    """Store the set, commit it whole, change 1 % of the items, commit again."""
    with database_urls() as (mongodb_url, _, origin):
        print(f"MongoDB: {origin}")
        db_name = f"bench_commit_{uuid.uuid4().hex[:8]}"

        async def work(_: Any, db: Any) -> CommitTimes:
            from gateway.indexes import ensure_indexes

            await ensure_indexes(db)
            began = time.perf_counter()
            run = await _store(db, ground, preds, n_items)
            print(f"stored the set in MongoDB in {time.perf_counter() - began:.1f} s")
            whole = await _commit(db, run)
            stored = await db.model_run_metrics.find_one({"_id": run["_id"]})
            changed = await _change_items(db, run, preds, seed)
            again = await _commit(db, run)
            return CommitTimes(whole, again, changed, stored["stats"])

        try:
            return run_async(with_db(mongodb_url, db_name, work))
        finally:
            drop_database(mongodb_url, db_name)


def commit_goals(
    commit: CommitTimes, pycocotools_s: float | None, pycocotools_stats: np.ndarray | None
) -> bool:
    """Print the figures and one line per goal; whether every goal was met."""
    print(
        f"whole commit from MongoDB (read, match, metrics, write match records): "
        f"{commit.whole_s:.2f} s; re-commit after {commit.recommit_items} items changed: "
        f"{commit.recommit_s:.2f} s"
    )
    met = True
    if pycocotools_s is not None and pycocotools_stats is not None:
        stored = np.array([-1.0 if v is None else v for v in commit.stats.values()])
        d = float(np.max(np.abs(stored - pycocotools_stats)))
        print(f"whole commit: largest stat difference from pycocotools = {d:.3g}")
        speedup = pycocotools_s / commit.whole_s
        ok = speedup >= COMMIT_SPEEDUP
        met &= ok
        print(
            f"pycocotools evaluate+accumulate / loom whole commit = {speedup:.1f}x "
            f"(goal >= {COMMIT_SPEEDUP:g}x: {'MET' if ok else 'NOT MET'})"
        )
    share = commit.recommit_s / commit.whole_s
    ok = share <= RECOMMIT_SHARE
    met &= ok
    print(
        f"re-commit / whole commit = {share:.1%} "
        f"(goal <= {RECOMMIT_SHARE:.0%}: {'MET' if ok else 'NOT MET'})"
    )
    return met


def main() -> int:
    from bench.evaluation import coco_dicts, make_bench_set, pycocotools_run

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    ground, preds, n_items, n_labels = make_bench_set(args.seed)
    seconds, evaluation = pycocotools_run(*coco_dicts(ground, preds, n_items, n_labels))
    print(f"pycocotools evaluate+accumulate: {seconds:.2f} s")
    warm_kernels(ground, preds, n_items, Options(n_labels=n_labels, class_agnostic=False))
    commit = measure_commits(ground, preds, n_items, args.seed)
    return 0 if commit_goals(commit, seconds, evaluation.stats) else 1


if __name__ == "__main__":
    sys.exit(main())
