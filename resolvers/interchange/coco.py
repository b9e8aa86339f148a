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
"""

from typing import Any

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
