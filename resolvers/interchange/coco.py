"""COCO's instances format: Loom's shapes as COCO annotations, and the file's fixed parts.

What COCO holds of Loom's shapes: boxes (`bbox` [x, y, width, height]), polygons
(`segmentation` [[x1, y1, x2, y2, …]], their box and shoelace area) and segmentation masks
(`segmentation` {size, counts} as Loom stores them: COCO's uncompressed RLE, column-major;
box and area from the runs, as pycocotools' `toBbox` and `area` give them). `iscrowd` is 1 for
an annotation whose `attributes.iscrowd` is true (what a COCO import sets). Other shapes
(points, poses, classifications, …) have no place in the instances format and are counted as
skipped, per type.

Categories are the ontology's labels by path (`vehicle.car`), with the labels annotations use
that the ontology lacks, sorted by name, ids from 1; `supercategory` is the parent path (the
label itself at the top). Images and annotations are numbered from 1 in the export's order.

Reading (an import): the one `.json` file of the upload, read whole and checked for COCO's
shape first (a file that is not JSON, or not COCO, is refused with the place it went wrong).
`file_name` is the item's path (`train/a.png` is `/train/a.png`); the archive carries the
image when it holds that path, or it under `images/`, or next to the JSON file. A polygon
segmentation becomes one Loom polygon per ring, an RLE mask a segmentation, anything else the
box; `iscrowd: 1` becomes the attribute `iscrowd: true`.
"""

import json
from pathlib import PurePosixPath
from typing import Any

from resolvers.interchange.import_archives import (
    Imported,
    ImportedImage,
    ImportedShape,
    ImportRefused,
    UploadedFiles,
)

SHAPES = ("box", "polygon", "segmentation")


def categories(label_paths: list[str]) -> list[dict[str, Any]]:
    return [
        {"id": n, "name": path, "supercategory": path.rpartition(".")[0] or path}
        for n, path in enumerate(sorted(set(label_paths)), start=1)
    ]


def image(number: int, item: dict[str, Any], file_name: str) -> dict[str, Any]:
    return {
        "id": number,
        "file_name": file_name,
        "width": item["width"],
        "height": item["height"],
        "loom_id": str(item["itemId"] if "itemId" in item else item["_id"]),
    }


def _polygon_area(flat: list[float]) -> float:
    xs, ys = flat[0::2], flat[1::2]
    twice = sum(xs[i] * ys[i - 1] - xs[i - 1] * ys[i] for i in range(len(xs)))
    return abs(twice) / 2


def _rle_box(size: list[int], counts: list[int]) -> tuple[list[float], float]:
    """Box and area of an uncompressed column-major RLE, as pycocotools computes them."""
    height = size[0]
    start, area = 0, 0
    x_min = y_min = float("inf")
    x_max = y_max = float("-inf")
    for index, run in enumerate(counts):
        if index % 2 and run:
            end = start + run - 1
            first, last = divmod(start, height), divmod(end, height)
            x_min, x_max = min(x_min, first[0]), max(x_max, last[0])
            if first[0] == last[0]:
                y_min, y_max = min(y_min, first[1]), max(y_max, last[1])
            else:
                y_min, y_max = 0, height - 1
            area += run
        start += run
    return [float(x_min), float(y_min), float(x_max - x_min + 1), float(y_max - y_min + 1)], area


def annotation(number: int, image_id: int, category_id: int, doc: dict[str, Any]) -> dict[str, Any]:
    """One Loom annotation (of a type in SHAPES) as a COCO annotation."""
    shape = doc["coordinates"]
    if doc["type"] == "box":
        width, height = shape["right"] - shape["left"], shape["bottom"] - shape["top"]
        bbox, area, segmentation = [shape["left"], shape["top"], width, height], width * height, []
    elif doc["type"] == "polygon":
        flat = [value for point in shape for value in (point["x"], point["y"])]
        xs, ys = flat[0::2], flat[1::2]
        bbox = [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]
        area, segmentation = _polygon_area(flat), [flat]
    else:
        bbox, area = _rle_box(shape["size"], shape["counts"])
        segmentation = {"size": shape["size"], "counts": shape["counts"]}
    return {
        "id": number,
        "image_id": image_id,
        "category_id": category_id,
        "bbox": bbox,
        "area": area,
        "segmentation": segmentation,
        "iscrowd": 1 if doc["attributes"].get("iscrowd") is True else 0,
        "loom_id": str(doc["_id"]),
    }


# --- reading ---------------------------------------------------------------------------------


def check(files: UploadedFiles) -> str:
    """The name of the upload's one COCO file; ImportRefused when it has none or several."""
    if not files.is_zip:
        if not files.head().startswith(b"{"):
            raise ImportRefused("Upload a COCO .json file, or a .zip holding one")
        return files.names[0]
    found = files.ending(".json")
    if len(found) != 1:
        raise ImportRefused(
            f"The archive must hold one COCO .json file; it holds {len(found)}", files=found[:10]
        )
    return found[0]


def _require(condition: bool, where: str, what: str) -> None:
    if not condition:
        raise ImportRefused(f"{where} {what}")


def _checked(name: str, doc: Any) -> dict[str, Any]:
    """The COCO document's shape: ImportRefused naming the first element that is wrong."""
    _require(isinstance(doc, dict), name, "must be a JSON object")
    for key in ("images", "annotations", "categories"):
        _require(isinstance(doc.get(key), list), name, f"must have a list {key!r}")
    for index, image in enumerate(doc["images"]):
        where = f"{name}: images[{index}]"
        _require(isinstance(image, dict), where, "must be an object")
        _require(isinstance(image.get("id"), int), where, "needs an integer id")
        _require(isinstance(image.get("file_name"), str), where, "needs a file_name")
    for index, category in enumerate(doc["categories"]):
        where = f"{name}: categories[{index}]"
        _require(isinstance(category, dict), where, "must be an object")
        _require(isinstance(category.get("id"), int), where, "needs an integer id")
        _require(isinstance(category.get("name"), str), where, "needs a name")
    for index, annotation in enumerate(doc["annotations"]):
        where = f"{name}: annotations[{index}]"
        _require(isinstance(annotation, dict), where, "must be an object")
        for key in ("image_id", "category_id"):
            _require(isinstance(annotation.get(key), int), where, f"needs an integer {key}")
    return doc


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _points(ring: Any) -> Any:
    """A COCO polygon `[x1, y1, x2, y2, …]` as points; anything else as it came, for the
    polygon's validation to refuse."""
    if not isinstance(ring, list) or len(ring) % 2:
        return ring
    return [[ring[i], ring[i + 1]] for i in range(0, len(ring), 2)]


def _geometry(annotation: dict[str, Any]) -> list[tuple[str, Any]]:
    """The Loom shapes of one COCO annotation: its polygons, its mask, or its box."""
    segmentation = annotation.get("segmentation")
    if isinstance(segmentation, list) and segmentation:
        return [("polygon", _points(ring)) for ring in segmentation]
    if isinstance(segmentation, dict):
        return [("segmentation", segmentation)]
    box = annotation.get("bbox")
    numbers = isinstance(box, list) and len(box) == 4 and all(map(_is_number, box))
    if not numbers:
        return [("box", box)]  # refused by the box's validation, which says why
    x, y, width, height = box
    return [("box", {"left": x, "top": y, "right": x + width, "bottom": y + height})]


def _shapes(index: int, annotation: dict[str, Any], label_of: dict[int, str]) -> list:
    where = f"annotations[{index}]" + (f" (id {annotation['id']})" if "id" in annotation else "")
    label = label_of.get(annotation["category_id"])
    if label is None:
        problem = f"no category {annotation['category_id']}"
        return [ImportedShape(where, "", "box", None, problem=problem)]
    attributes = dict(annotation.get("attributes") or {})
    if annotation.get("iscrowd") in (1, True):
        attributes["iscrowd"] = True
    return [
        ImportedShape(where, label, kind, coordinates, attributes)
        for kind, coordinates in _geometry(annotation)
    ]


def read(files: UploadedFiles) -> Imported:
    name = check(files)
    try:
        doc = _checked(name, json.loads(files.read(name)))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ImportRefused(f"{name} is not JSON: {exc}") from exc
    label_of = {category["id"]: category["name"] for category in doc["categories"]}
    per_image: dict[int, list[ImportedShape]] = {}
    for index, annotation in enumerate(doc["annotations"]):
        shapes = per_image.setdefault(annotation["image_id"], [])
        shapes += _shapes(index, annotation, label_of)
    beside = PurePosixPath(name).parent
    images = []
    for index, image in enumerate(doc["images"]):
        path = image["file_name"].lstrip("/")
        member = files.find(path, f"images/{path}", str(beside / path))
        shapes = per_image.get(image["id"], [])
        images.append(ImportedImage(name, f"images[{index}]", "/" + path, False, member, shapes))
    return Imported(list(label_of.values()), images)
