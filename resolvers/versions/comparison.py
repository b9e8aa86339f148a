"""Comparing two versions of a dataset: items and annotations added, removed and changed.

An item's copy is matched with the other version's copy of the same live item (`itemId`), an
annotation with the other version's annotation of the same id; two copies differ when any
field differed — MongoDB compares them whole, as stored, so nothing is read into Python but
the verdicts. An item's copy holds its annotations, so an item counts as changed when one of
its annotations was added, removed or changed too. Annotations are counted per label: an added
or changed one under its label in the second version, a removed one under its label in the
first.
"""

from collections import Counter
from typing import Any

from bson import ObjectId
from pymongo.asynchronous.database import AsyncDatabase

from resolvers.access import Access
from resolvers.errors import BadUserInput
from resolvers.versions.lifecycle import ready_version

KINDS = ("added", "removed", "changed")
_OWN_FIELDS = ("_id", "versionId", "split")


def _item_content() -> dict[str, Any]:
    """An item's copy without what only its version gives it."""
    doc: Any = "$$ROOT"
    for field in _OWN_FIELDS:
        doc = {"$unsetField": {"field": field, "input": doc}}
    return doc


def _verdicts(scope: list[ObjectId], of_annotations: bool) -> list[dict[str, Any]]:
    """Per item (or annotation) of the two versions (`scope`: the first, then the second):
    added, removed or changed (the same ones are left out)."""
    first = scope[0]
    if of_annotations:
        unwound: list[dict[str, Any]] = [{"$unwind": "$annotations"}]
        key, content, label = "$annotations._id", "$annotations", "$annotations.label"
    else:
        unwound, key, content, label = [], "$itemId", _item_content(), None
    return [
        {"$match": {"versionId": {"$in": scope}}},
        # `$group` keeps the order documents arrive in: the first version's copy first.
        {"$sort": {"versionId": 1 if first < scope[1] else -1}},
        *unwound,
        {
            "$group": {
                "_id": key,
                "copies": {"$push": {"v": "$versionId", "doc": content}},
                "label": {"$last": label},
                "firstLabel": {"$first": label},
            }
        },
        {
            "$project": {
                "label": 1,
                "firstLabel": 1,
                "kind": {
                    "$switch": {
                        "branches": [
                            {
                                "case": {"$eq": [{"$size": "$copies"}, 2]},
                                "then": {
                                    "$cond": [
                                        {
                                            "$eq": [
                                                {"$arrayElemAt": ["$copies.doc", 0]},
                                                {"$arrayElemAt": ["$copies.doc", 1]},
                                            ]
                                        },
                                        "same",
                                        "changed",
                                    ]
                                },
                            },
                            {
                                "case": {"$eq": [{"$arrayElemAt": ["$copies.v", 0]}, first]},
                                "then": "removed",
                            },
                        ],
                        "default": "added",
                    }
                },
            }
        },
        {"$match": {"kind": {"$ne": "same"}}},
    ]


async def compare(
    access: Access, first_id: ObjectId, second_id: ObjectId, listed: int
) -> dict[str, Any]:
    """What changed from the first version to the second; `listed` item ids per kind."""
    first = await ready_version(access, first_id)
    second = await ready_version(access, second_id)
    if first["datasetId"] != second["datasetId"]:
        raise BadUserInput("Both versions must be versions of one dataset", field="b")
    db: AsyncDatabase = access.db
    scope = [first_id, second_id]
    labels: dict[str, Counter[str]] = {}
    counted: dict[str, list[ObjectId]] = {kind: [] for kind in KINDS}
    if first_id != second_id:
        await _compare(db, scope, labels, counted)
    return {
        "items": {
            kind: {"count": len(ids), "itemIds": sorted(ids)[:listed]}
            for kind, ids in counted.items()
        },
        "annotations": {
            kind: sum(per_label[kind] for per_label in labels.values()) for kind in KINDS
        },
        "labels": [
            {"label": label, **{kind: labels[label][kind] for kind in KINDS}}
            for label in sorted(labels)
        ],
    }


async def _compare(
    db: AsyncDatabase,
    scope: list[ObjectId],
    labels: dict[str, Counter[str]],
    counted: dict[str, list[ObjectId]],
) -> None:
    """Fill the verdicts of two different versions in."""
    annotations = _verdicts(scope, of_annotations=True)
    async for verdict in await db.version_items.aggregate(annotations, allowDiskUse=True):
        label = verdict["firstLabel"] if verdict["kind"] == "removed" else verdict["label"]
        labels.setdefault(label, Counter())[verdict["kind"]] += 1
    items = _verdicts(scope, of_annotations=False)
    async for verdict in await db.version_items.aggregate(items, allowDiskUse=True):
        counted[verdict["kind"]].append(verdict["_id"])
