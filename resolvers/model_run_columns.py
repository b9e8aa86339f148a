"""Ground truth and predictions of a model run, read from MongoDB into the engine's columns.

Only what the engine needs is read (a projection, in large batches), and each shape becomes
COCO's geometry for the commit's IoU type:

- `bbox`: a box as `[x, y, w, h]`; a polygon, a cuboid (all eight corners) or a mask by the
  box enclosing it. A ground truth's area is its shape's own (a polygon's by the shoelace
  formula, a mask's pixel count), a prediction's its box's, as COCO's loadRes computes it.
- `segm`: masks as COCO RLE; polygons and boxes are rasterised at the item's size, as
  pycocotools' frPyObjects does. Cuboids have no mask and are left out of a segm commit.

Classifications have no geometry and never enter a detection commit. A ground truth is a
crowd region when its `attributes.iscrowd` is true (what a COCO import sets).
"""

import asyncio
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from bson import ObjectId
from hotcoco import mask as coco_mask
from pymongo.asynchronous.database import AsyncDatabase

from resolvers.evaluation.columns import GroundTruths, IouType, Predictions

SHAPES: dict[str, tuple[str, ...]] = {
    "bbox": ("box", "polygon", "cuboid", "segmentation"),
    "segm": ("box", "polygon", "segmentation"),
}
BATCH = 10_000


@dataclass
class Labels:
    """Label names ↔ the engine's label indices; indices never change once given, so per-item
    results stored by one commit stay valid for the next."""

    names: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._index = {name: i for i, name in enumerate(self.names)}

    def index(self, name: str) -> int:
        if name not in self._index:
            self._index[name] = len(self.names)
            self.names.append(name)
        return self._index[name]

    def indices(self, names: list[str]) -> list[int]:
        """`index` of each name; one dict lookup at C speed each once every name is known."""
        try:
            return list(map(self._index.__getitem__, names))
        except KeyError:
            return [self.index(name) for name in names]


@dataclass
class Rows:
    """One side's columns while reading, item by item: each item's Mongo id and row count,
    the rest a row each as the engine wants them, and the Mongo id of every row."""

    groups: list[ObjectId] = field(default_factory=list)
    counts: list[int] = field(default_factory=list)
    label: list[int] = field(default_factory=list)
    area: list[float] = field(default_factory=list)
    bbox: list[np.ndarray] = field(default_factory=list)
    masks: list[dict[str, Any]] = field(default_factory=list)
    extra: list[Any] = field(default_factory=list)
    ids: list[ObjectId] = field(default_factory=list)

    def add_item(self, item: ObjectId, count: int) -> None:
        """The next `count` rows are of `item` (consecutive rows of one item add up)."""
        if self.groups and self.groups[-1] == item:
            self.counts[-1] += count
        else:
            self.groups.append(item)
            self.counts.append(count)

    def boxes(self) -> np.ndarray:
        return np.concatenate(self.bbox) if self.bbox else np.zeros((0, 4))

    def item_ranks(self, rank: dict[ObjectId, int]) -> np.ndarray:
        """Each row's item as its rank among the commit's items."""
        ranks = np.fromiter((rank[g] for g in self.groups), np.int64, len(self.groups))
        return np.repeat(ranks, np.asarray(self.counts, dtype=np.int64))


@dataclass
class Columns:
    """What the engine evaluates, and how to name its rows and items in MongoDB again."""

    ground: GroundTruths
    predictions: Predictions
    items: list[ObjectId]
    ground_ids: list[ObjectId]
    prediction_ids: list[ObjectId]

    def relabelled(self, names: list[str], order: list[str]) -> "Columns":
        """The same rows with label indices into `order` instead of `names`."""
        index = {name: i for i, name in enumerate(order)}
        mapping = np.array([index[name] for name in names] or [0], dtype=np.int64)
        return replace(
            self,
            ground=replace(self.ground, label=mapping[self.ground.label]),
            predictions=replace(self.predictions, label=mapping[self.predictions.label]),
        )


def _points_box(points: list[dict[str, float]]) -> list[float]:
    xs = [p["x"] for p in points]
    ys = [p["y"] for p in points]
    return [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]


def _shoelace(points: list[dict[str, float]]) -> float:
    xs = np.array([p["x"] for p in points])
    ys = np.array([p["y"] for p in points])
    return float(abs(np.dot(xs, np.roll(ys, -1)) - np.dot(ys, np.roll(xs, -1))) / 2)


def _rle(doc: dict[str, Any], item: dict[str, Any]) -> dict[str, Any]:
    """The shape as a compressed COCO RLE at the item's size."""
    shape, coordinates = doc["type"], doc["coordinates"]
    if shape == "segmentation":
        height, width = coordinates["size"]
        return coco_mask.frPyObjects(coordinates, height, width)
    height, width = item["height"], item["width"]
    if shape == "polygon":
        flat = [v for p in coordinates for v in (p["x"], p["y"])]
        return coco_mask.frPyObjects([flat], height, width)[0]
    box = coordinates
    xywh = [box["left"], box["top"], box["right"] - box["left"], box["bottom"] - box["top"]]
    return coco_mask.frPyObjects([xywh], height, width)[0]


def geometry(doc: dict[str, Any], ground: bool) -> tuple[list[float], float]:
    """(enclosing box, area) of a shape for a bbox commit."""
    shape, coordinates = doc["type"], doc["coordinates"]
    if shape == "box":
        x, y = coordinates["left"], coordinates["top"]
        w, h = coordinates["right"] - x, coordinates["bottom"] - y
        return [x, y, w, h], w * h
    if shape == "segmentation":
        rle = _rle(doc, {})
        box = [float(v) for v in coco_mask.toBbox(rle)]
        return box, float(coco_mask.area(rle)) if ground else box[2] * box[3]
    points = coordinates if shape == "polygon" else coordinates["front"] + coordinates["back"]
    box = _points_box(points)
    if ground and shape == "polygon":
        return box, _shoelace(points)
    return box, box[2] * box[3]


def _crowd(value: Any) -> bool:
    return value is True or value == 1


def _box_side(side: str) -> dict[str, Any]:
    """A box's side; 0 for the other shapes (their box is worked out from their points)."""
    return {"$cond": [{"$eq": ["$type", "box"]}, f"$coordinates.{side}", 0]}


async def _read_boxes(
    db: AsyncDatabase, collection: str, query: dict[str, Any], labels: Labels
) -> Rows:
    """A bbox commit's rows, grouped by item on the server: a box's numbers come as plain
    arrays, so only the other shapes' coordinates are decoded as documents."""
    ground = collection == "annotations"
    extra = {"$in": ["$attributes.iscrowd", [True, 1]]} if ground else "$confidence"
    pipeline = [
        {"$match": {**query, "type": {"$in": list(SHAPES["bbox"])}}},
        # Within an item, rows go in id order (COCO's annotation order): ties between equal
        # IoUs or equal scores are broken by it, so it must not depend on a plan's index.
        {"$sort": {"itemId": 1, "_id": 1}},
        {
            "$group": {
                "_id": "$itemId",
                "ids": {"$push": "$_id"},
                "labels": {"$push": "$label"},
                **{side: {"$push": _box_side(side)} for side in ("left", "top", "right", "bottom")},
                "shapes": {
                    "$push": {
                        "$cond": [
                            {"$eq": ["$type", "box"]},
                            None,
                            {"type": "$type", "coordinates": "$coordinates"},
                        ]
                    }
                },
                "extra": {"$push": extra},
            }
        },
    ]
    rows = Rows()
    sides: dict[str, list[float]] = {side: [] for side in ("left", "top", "right", "bottom")}
    others: list[tuple[int, dict[str, Any]]] = []
    cursor = await db[collection].aggregate(pipeline, allowDiskUse=True, batchSize=1000)
    async for group in cursor:
        start = len(rows.ids)
        rows.add_item(group["_id"], len(group["ids"]))
        rows.ids.extend(group["ids"])
        rows.label.extend(labels.indices(group["labels"]))
        rows.extra.extend(group["extra"])
        for side, values in sides.items():
            values.extend(group[side])
        others.extend((start + k, s) for k, s in enumerate(group["shapes"]) if s is not None)
    # One array per side for every row at once: per item, numpy's call overhead dominates.
    left, top = np.array(sides["left"], dtype=float), np.array(sides["top"], dtype=float)
    box = np.column_stack(
        [left, top, np.array(sides["right"], dtype=float) - left,
         np.array(sides["bottom"], dtype=float) - top]
    )  # fmt: skip
    area = box[:, 2] * box[:, 3]
    for row, shape in others:
        box[row], area[row] = geometry(shape, ground)
    rows.bbox.append(box)
    rows.area = area.tolist()
    return rows


async def _read_masks(
    db: AsyncDatabase,
    collection: str,
    query: dict[str, Any],
    sizes: dict[ObjectId, dict[str, Any]],
    labels: Labels,
) -> Rows:
    """A segm commit's rows, one document at a time (each becomes an RLE anyway)."""
    ground = collection == "annotations"
    projection = {"itemId": 1, "type": 1, "label": 1, "coordinates": 1}
    projection["attributes.iscrowd" if ground else "confidence"] = 1
    rows = Rows()
    cursor = (
        db[collection]
        .find({**query, "type": {"$in": list(SHAPES["segm"])}}, projection, batch_size=BATCH)
        .sort([("itemId", 1), ("_id", 1)])
    )
    async for doc in cursor:
        rle = _rle(doc, sizes[doc["itemId"]])
        rows.add_item(doc["itemId"], 1)
        rows.ids.append(doc["_id"])
        rows.label.append(labels.index(doc["label"]))
        rows.masks.append(rle)
        rows.bbox.append(np.asarray(coco_mask.toBbox(rle), dtype=float).reshape(1, 4))
        rows.area.append(float(coco_mask.area(rle)))
        crowd = (doc.get("attributes") or {}).get("iscrowd")
        rows.extra.append(_crowd(crowd) if ground else doc["confidence"])
    return rows


async def read_columns(
    db: AsyncDatabase,
    run: dict[str, Any],
    item_ids: list[ObjectId] | None,
    iou_type: IouType,
    labels: Labels,
) -> Columns:
    """The ground truth of the run's dataset and the run's predictions, on the given items
    (every item when None), as engine columns."""
    dataset = {"datasetId": run["datasetId"]}
    chosen = {"itemId": {"$in": item_ids}} if item_ids is not None else {}
    sizes: dict[ObjectId, dict[str, Any]] = {}
    if iou_type == "segm":
        found = db.items.find(
            {**dataset, **({"_id": {"$in": item_ids}} if item_ids is not None else {})},
            {"width": 1, "height": 1},
            batch_size=BATCH,
        )
        sizes = {item["_id"]: item async for item in found}
    truth_query = {**dataset, **chosen}
    guess_query = {"runId": run["_id"], **chosen}
    if iou_type == "bbox":
        # Both reads at once: MongoDB works on one while this process decodes the other.
        truth, guesses = await asyncio.gather(
            _read_boxes(db, "annotations", truth_query, labels),
            _read_boxes(db, "predictions", guess_query, labels),
        )
    else:
        truth = await _read_masks(db, "annotations", truth_query, sizes, labels)
        guesses = await _read_masks(db, "predictions", guess_query, sizes, labels)
    # Items in id order: COCO breaks ties between equal scores by image order, so a commit
    # that re-evaluates some items must put them back in the same order a full one uses.
    ordered = sorted(set(truth.groups) | set(guesses.groups))
    rank = {item: i for i, item in enumerate(ordered)}
    return Columns(
        ground=GroundTruths(
            item=truth.item_ranks(rank),
            label=truth.label,
            area=truth.area,
            crowd=np.array(truth.extra, dtype=bool),
            ids=np.arange(len(truth.ids)),
            bbox=truth.boxes(),
            masks=truth.masks if iou_type == "segm" else None,
        ),
        predictions=Predictions(
            item=guesses.item_ranks(rank),
            label=guesses.label,
            area=guesses.area,
            score=guesses.extra,
            ids=np.arange(len(guesses.ids)),
            bbox=guesses.boxes(),
            masks=guesses.masks if iou_type == "segm" else None,
        ),
        items=ordered,
        ground_ids=truth.ids,
        prediction_ids=guesses.ids,
    )
