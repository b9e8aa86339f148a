"""Reading a model run: an item's predictions (Nucleus' loc / refloc / iloc / prediction_loc),
the last commit's metrics and its per-item counts."""

from typing import Any

from bson import ObjectId

from resolvers.access import Access
from resolvers.dql import MAX_OFFSET
from resolvers.errors import BadUserInput, LimitExceeded, NotFound
from resolvers.model_runs import get_model_run
from resolvers.pagination import Page, PageRequest, paginate

MAX_PREDICTIONS_PER_ITEM = 1000


async def _item_of(
    access: Access,
    run: dict[str, Any],
    item_id: ObjectId | None,
    reference_id: str | None,
    index: int | None,
) -> ObjectId:
    given = [
        name
        for name, v in (("itemId", item_id), ("referenceId", reference_id), ("index", index))
        if v is not None
    ]
    if len(given) != 1:
        raise BadUserInput("give exactly one of itemId, referenceId and index", field="itemId")
    query: dict[str, Any] = {"datasetId": run["datasetId"]}
    if item_id is not None:
        query["_id"] = item_id
        found = await access.db.items.find_one(query, {"_id": 1})
    elif reference_id is not None:
        query["referenceId"] = reference_id
        found = await access.db.items.find_one(query, {"_id": 1})
    else:
        assert index is not None
        if index < 0:
            raise BadUserInput("index must not be negative", field="index")
        if index > MAX_OFFSET:
            raise LimitExceeded("maxOffset", MAX_OFFSET, f"index {index} is too deep")
        cursor = access.db.items.find(query, {"_id": 1}).sort("_id", 1).skip(index).limit(1)
        found = next(iter(await cursor.to_list()), None)
    if found is None:
        raise NotFound(f"No such item in the run's dataset ({given[0]})", field=given[0])
    return found["_id"]


async def predictions_of(
    access: Access,
    run_id: ObjectId,
    *,
    item_id: ObjectId | None = None,
    reference_id: str | None = None,
    index: int | None = None,
    annotation_id: str | None = None,
) -> list[dict[str, Any]]:
    """The predictions of one item of the run (of one annotationId, if given), in upload order."""
    run = await get_model_run(access, run_id)
    item = await _item_of(access, run, item_id, reference_id, index)
    query: dict[str, Any] = {"runId": run_id, "itemId": item}
    if annotation_id is not None:
        query["annotationId"] = annotation_id
    cursor = access.db.predictions.find(query).sort("_id", 1).limit(MAX_PREDICTIONS_PER_ITEM)
    return await cursor.to_list()


async def metrics_of(access: Access, run_id: ObjectId) -> dict[str, Any] | None:
    await get_model_run(access, run_id)
    return await access.db.model_run_metrics.find_one({"_id": run_id})


ITEM_ORDERS: dict[str, list[tuple[str, int]]] = {
    "item": [("itemId", 1)],
    "errors": [("counts.errors", -1)],
    "falsePositives": [("counts.fp", -1)],
    "falseNegatives": [("counts.fn", -1)],
}
"""How a run's items page: by item id, or those with the most errors (FP + FN) first."""


async def item_counts(access: Access, run_id: ObjectId, page: PageRequest, order: str) -> Page:
    """The last commit's TP / FP / FN counts (IoU 0.5) of the run's items."""
    await get_model_run(access, run_id)
    return await paginate(
        access.db.model_run_items,
        {"runId": run_id},
        page,
        ITEM_ORDERS[order],
        {"itemId": 1, "counts": 1},
    )
