"""YOLO's (Ultralytics') text format: one line per object, coordinates normalised to the image.

A box is `class cx cy w h`; a polygon is `class x1 y1 x2 y2 …` (YOLO's segmentation lines),
each value a fraction of the image's width or height, written with 6 decimals (the format's
precision). Classes are numbered from 0 in name order, listed under `names` in `data.yaml`,
which names a list file of image paths per split subset (`train: train.txt`; everything under
both `train` and `val` when there is no split). Items without a known size cannot be
normalised: their objects are skipped.

Reading (an import, from a zip): the class names from `data.yaml` (`names` as a list or a
mapping from number to name; any one `.yaml` file will do) or else `classes.txt` / `obj.names`
(one name per line); then every `.txt` file under a `labels/` folder, one image each. Its
item's path is the label file's with the `labels` folder left out: `labels/train/a.txt` and
`train/labels/a.txt` are both the image `train/a`. The extension comes from the image when the
archive carries it (under the matching `images/` folder) or from a subset's list file named in
`data.yaml`; otherwise the item is found by path without extension. A line that is neither a
box (4 values) nor a polygon (6 or more, even), names a class `data.yaml` lacks, or has a value
outside [0, 1] (beyond the format's 6-decimal precision) is refused with its line number.
"""

import json
import math
from pathlib import PurePosixPath
from typing import Any

import yaml

from resolvers.interchange.import_archives import (
    Imported,
    ImportedImage,
    ImportedShape,
    ImportRefused,
    UploadedFiles,
    without_folder,
)

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


# --- reading ---------------------------------------------------------------------------------

SLACK = 1e-5
"""How far past the image's edge a value may be and still be read as on it: YOLO's 6 decimals
round `cx + w / 2` of a box reaching the edge to a hair beyond it."""
NAMES_FILES = ("classes.txt", "obj.names")


def _data_yaml(files: UploadedFiles) -> str | None:
    found = files.ending(".yaml", ".yml")
    if len(found) > 1:
        found = [name for name in found if PurePosixPath(name).stem == "data"] or found
    return found[0] if found else None


def check(files: UploadedFiles) -> None:
    if not files.is_zip:
        raise ImportRefused("Upload YOLO labels as a .zip with data.yaml and labels/*.txt")
    named = any(PurePosixPath(name).name in NAMES_FILES for name in files.names)
    if _data_yaml(files) is None and not named:
        raise ImportRefused("A YOLO archive needs data.yaml (or classes.txt) naming its classes")


def _class_names(files: UploadedFiles) -> tuple[dict[int, str], dict[str, Any]]:
    """The classes by number, and data.yaml's content (empty without one)."""
    name = _data_yaml(files)
    if name is None:
        listing = next(n for n in files.names if PurePosixPath(n).name in NAMES_FILES)
        lines = [line.strip() for line in files.text(listing).splitlines()]
        return dict(enumerate(line for line in lines if line)), {}
    try:
        config = yaml.safe_load(files.text(name))
    except yaml.YAMLError as exc:
        raise ImportRefused(f"{name} is not YAML: {exc}") from exc
    names = config.get("names") if isinstance(config, dict) else None
    if isinstance(names, list):
        names = dict(enumerate(names))
    valid = isinstance(names, dict) and all(
        isinstance(k, int) and isinstance(v, str | int) for k, v in names.items()
    )
    if not valid:
        raise ImportRefused(f"{name} needs `names`: a list of class names, or number: name")
    return {number: str(label) for number, label in names.items()}, config


def _listed(files: UploadedFiles, config: dict[str, Any]) -> dict[str, str]:
    """The image paths the subsets' list files name, by path without extension."""
    paths: dict[str, str] = {}
    for value in config.values():
        if not isinstance(value, str) or not value.endswith(".txt"):
            continue
        listing = files.find(value.removeprefix("./"))
        if listing is None:
            continue
        for line in files.text(listing).splitlines():
            path = PurePosixPath(line.strip().removeprefix("./"))
            if line.strip():
                paths[without_folder(path.with_suffix(""), ("images",))] = str(
                    PurePosixPath(without_folder(path, ("images",)))
                )
    return paths


def _number(token: str) -> float | None:
    try:
        value = float(token)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _on_image(values: list[float]) -> list[float] | None:
    """The values clamped into [0, 1], or None when one lies beyond the format's precision."""
    if any(v < -SLACK or v > 1 + SLACK for v in values):
        return None
    return [min(1.0, max(0.0, v)) for v in values]


def _shape(number: int, line: str, names: dict[int, str]) -> ImportedShape | None:
    tokens = line.split()
    if not tokens:
        return None
    where = f"line {number}"
    values = [_number(token) for token in tokens[1:]]
    if not tokens[0].isdigit():
        return ImportedShape(where, "", "box", None, problem=f"{tokens[0]!r} is no class number")
    if any(v is None for v in values):
        return ImportedShape(where, "", "box", None, problem="holds a value that is not a number")
    label = names.get(int(tokens[0]))
    if label is None:
        return ImportedShape(where, "", "box", None, problem=f"no class {tokens[0]}")
    numbers: list[float] = values  # type: ignore[assignment]
    if len(numbers) == 4:
        cx, cy, w, h = numbers
        kind, values_on = "box", _on_image([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
    elif len(numbers) >= 6 and len(numbers) % 2 == 0:
        kind, values_on = "polygon", _on_image(numbers)
    else:
        problem = f"needs 4 box values or 6 or more polygon values, not {len(numbers)}"
        return ImportedShape(where, label, "box", None, problem=problem)
    if values_on is None:
        problem = "has coordinates outside the image: YOLO's values are fractions in [0, 1]"
        return ImportedShape(where, label, kind, None, problem=problem)
    if kind == "box":
        coordinates: Any = dict(zip(("left", "top", "right", "bottom"), values_on, strict=True))
    else:
        coordinates = [[values_on[i], values_on[i + 1]] for i in range(0, len(values_on), 2)]
    return ImportedShape(where, label, kind, coordinates)


def read(files: UploadedFiles) -> Imported:
    check(files)
    names, config = _class_names(files)
    carried = files.images("images")
    listed = _listed(files, config)
    images = []
    for name in files.ending(".txt"):
        path = PurePosixPath(name)
        if "labels" not in path.parts[:-1]:
            continue
        stem = without_folder(path.with_suffix(""), ("labels",))
        member = carried.get(stem)
        known = stem + PurePosixPath(member).suffix if member else listed.get(stem)
        lines = files.text(name).splitlines()
        shapes = [s for n, line in enumerate(lines, 1) if (s := _shape(n, line, names))]
        image = ImportedImage(name, "", "/" + (known or stem), known is None, member, shapes, True)
        images.append(image)
        carried.pop(stem, None)
    for stem, member in carried.items():
        path = "/" + stem + PurePosixPath(member).suffix
        images.append(ImportedImage(member, "", path, False, member, [], True))
    return Imported(list(names.values()), images)


def to_pixels(kind: str, fractions: Any, width: int, height: int) -> Any:
    """A shape read in fractions of the image, in its pixels."""
    if kind == "box":
        return {
            "left": fractions["left"] * width,
            "top": fractions["top"] * height,
            "right": fractions["right"] * width,
            "bottom": fractions["bottom"] * height,
        }
    return [[x * width, y * height] for x, y in fractions]
