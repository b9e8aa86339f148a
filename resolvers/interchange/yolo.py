"""YOLO's (Ultralytics') text format: one line per object, coordinates normalised to the image.

A box is `class cx cy w h`; a polygon is `class x1 y1 x2 y2 …` (YOLO's segmentation lines),
each value a fraction of the image's width or height, written with 6 decimals (the format's
precision). Classes are numbered from 0 in name order, listed under `names` in `data.yaml`,
which names a list file of image paths per split subset (`train: train.txt`; everything under
both `train` and `val` when there is no split). Items without a known size cannot be
normalised: their objects are skipped.
"""

import json
from typing import Any

SHAPES = ("box", "polygon")


def _fraction(value: float, extent: float) -> str:
    return f"{value / extent:.6f}"


def line(class_id: int, doc: dict[str, Any], width: int, height: int) -> str:
    shape = doc["coordinates"]
    if doc["type"] == "box":
        w, h = shape["right"] - shape["left"], shape["bottom"] - shape["top"]
        cx, cy = shape["left"] + w / 2, shape["top"] + h / 2
        values = [_fraction(cx, width), _fraction(cy, height)]
        values += [_fraction(w, width), _fraction(h, height)]
    else:
        values = [
            value
            for point in shape
            for value in (_fraction(point["x"], width), _fraction(point["y"], height))
        ]
    return " ".join([str(class_id), *values])


def data_yaml(names: list[str], subsets: dict[str, str]) -> str:
    """`data.yaml`: the class names and each subset's list file (JSON strings are YAML)."""
    lines = ["path: .", *(f"{name}: {json.dumps(path)}" for name, path in subsets.items())]
    lines.append(f"nc: {len(names)}")
    lines.append("names:")
    lines += [f"  {number}: {json.dumps(name)}" for number, name in enumerate(names)]
    return "\n".join(lines) + "\n"
