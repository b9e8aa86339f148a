"""Statistics of a dataset's live items or of a version's copies, computed by MongoDB.

Two aggregations, one over the items and one over the annotations (a version's: unwound
from its items' copies), each a `$facet` of groups and buckets, so the figures of a million
annotations cost two passes on the server and never bring the documents into Python.

Histograms use fixed edges, so two datasets (or a dataset and its versions) compare bucket for
bucket: box areas in pixels at COCO's small / medium / large boundaries (32², 96²) and powers of
two between, aspect ratios (width / height) around 1.
"""

import math
from typing import Any

from bson import ObjectId
from pymongo.asynchronous.database import AsyncDatabase

from resolvers.items import ItemSource

AREA_EDGES = [0, 16**2, 32**2, 64**2, 96**2, 128**2, 256**2, 512**2, 1024**2]
ASPECT_EDGES = [0, 0.25, 0.5, 0.75, 1, 4 / 3, 2, 4]
TOP = 100
"""Image sizes and attribute values listed, the most frequent first."""


def _histogram(field: str, edges: list[float]) -> list[dict[str, Any]]:
    return [
        {
            "$bucket": {
                "groupBy": field,
                "boundaries": [*edges, math.inf],
                "default": "none",
                "output": {"count": {"$sum": 1}},
            }
        }
    ]


def _top(key: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {"$group": {"_id": key, "count": {"$sum": 1}}},
        {"$sort": {"count": -1, "_id": 1}},
        {"$limit": TOP},
    ]


def _bucketed(groups: list[dict[str, Any]], edges: list[float]) -> list[dict[str, Any]]:
    """Every bucket of `edges`, empty ones too, as {low, high (None: unbounded), count}."""
    counts = {group["_id"]: group["count"] for group in groups}
    highs = [*edges[1:], None]
    return [
        {"low": low, "high": high, "count": counts.get(low, 0)}
        for low, high in zip(edges, highs, strict=True)
    ]


_BOX_SIDES = {
    "w": {"$subtract": ["$coordinates.right", "$coordinates.left"]},
    "h": {"$subtract": ["$coordinates.bottom", "$coordinates.top"]},
}


async def stats(db: AsyncDatabase, source: ItemSource, parent_id: ObjectId) -> dict[str, Any]:
    """The statistics of one dataset (`source` LIVE) or version (IN_VERSION)."""
    scope = {source.parent_field: parent_id}
    items_pipeline = [
        {"$match": scope},
        {
            "$facet": {
                "counts": [
                    {
                        "$group": {
                            "_id": None,
                            "items": {"$sum": 1},
                            "annotated": {"$sum": {"$cond": ["$annotated", 1, 0]}},
                        }
                    }
                ],
                "objects": [
                    {"$group": {"_id": "$annotationsCount", "count": {"$sum": 1}}},
                    {"$sort": {"_id": 1}},
                ],
                "sizes": _top({"width": "$width", "height": "$height"}),
            }
        },
    ]
    boxes = [
        {"$match": {"type": "box"}},
        {"$set": _BOX_SIDES},
        {"$set": {"area": {"$multiply": ["$w", "$h"]}, "aspect": {"$divide": ["$w", "$h"]}}},
    ]
    annotations_of = [{"$match": scope}]
    if source.in_version:
        annotations_of += [
            {"$unwind": "$annotations"},
            {"$replaceRoot": {"newRoot": "$annotations"}},
        ]
    annotations_pipeline = [
        *annotations_of,
        {
            "$facet": {
                "labels": [
                    {"$group": {"_id": {"label": "$label", "type": "$type"}, "n": {"$sum": 1}}},
                    {"$sort": {"_id.label": 1, "_id.type": 1}},
                ],
                "areas": [*boxes, *_histogram("$area", AREA_EDGES)],
                "aspects": [*boxes, *_histogram("$aspect", ASPECT_EDGES)],
                "attributes": [
                    {"$match": {"attributes": {"$ne": {}}}},
                    {"$project": {"pairs": {"$objectToArray": "$attributes"}}},
                    {"$unwind": "$pairs"},
                    *_top({"key": "$pairs.k", "value": "$pairs.v"}),
                ],
            }
        },
    ]
    (items,) = await (await db[source.items].aggregate(items_pipeline)).to_list()
    collection = db[source.items] if source.in_version else db.annotations
    (annotations,) = await (await collection.aggregate(annotations_pipeline)).to_list()
    counts = items["counts"][0] if items["counts"] else {"items": 0, "annotated": 0}
    return {
        "itemsCount": counts["items"],
        "annotatedItemsCount": counts["annotated"],
        "annotationsCount": sum(group["n"] for group in annotations["labels"]),
        "labels": [
            {"label": g["_id"]["label"], "type": g["_id"]["type"], "count": g["n"]}
            for g in annotations["labels"]
        ],
        "objectsPerItem": [{"objects": g["_id"], "items": g["count"]} for g in items["objects"]],
        "boxAreas": _bucketed(annotations["areas"], AREA_EDGES),
        "boxAspectRatios": _bucketed(annotations["aspects"], ASPECT_EDGES),
        "imageSizes": [
            {"width": g["_id"].get("width"), "height": g["_id"].get("height"), "count": g["count"]}
            for g in items["sizes"]
        ],
        "attributes": [
            {"key": g["_id"]["key"], "value": g["_id"]["value"], "count": g["count"]}
            for g in annotations["attributes"]
        ],
    }
