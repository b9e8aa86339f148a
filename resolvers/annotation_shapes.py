"""An annotation's coordinates, checked and normalised per annotation type.

Coordinates travel as a JSON scalar, so anything may arrive. This module is the one place that
decides what a well-formed shape is, so everything downstream (drawing, matching, metrics,
export) can trust stored coordinates without checking them again. Failures are BAD_USER_INPUT
with `field="coordinates"`, plus `index` (and `face` for cuboids) naming the offending point.

Shapes accepted, and what is stored (all coordinates are pixels, origin at the top-left corner,
x to the right, y down; every number is stored as a float):

- point: `{"x", "y"}`, or a pair `[x, y]` -> `{"x", "y"}`.
- box: `{"left", "top", "right", "bottom"}` with left < right and top < bottom (a box has area).
- polygon: a list of at least 3 points, each `{"x", "y"}` or `[x, y]` -> a list of `{"x", "y"}`.
  Its signed (shoelace) area must not be zero, up to the precision of its coordinates: this
  refuses collinear or repeated points and outlines that cancel themselves out (a symmetric
  figure of eight); self-intersection is not otherwise checked.
- polyline: a list of at least 2 points, not all the same -> a list of `{"x", "y"}`.
- ellipse: `{"x", "y", "rx", "ry", "angle"?}`: centre, radii > 0, rotation in degrees (default 0)
  -> the same keys, angle brought into [0, 360).
- cuboid: `{"front": [4 points], "back": [4 points]}`, or a list of 8 points (front then back);
  each face in dtlpy's Cube order top-left, top-right, bottom-right, bottom-left, with non-zero
  area -> `{"front": [4 x {"x", "y"}], "back": [...]}`.
- pose: `{"points": [{"x", "y", "label", "visible"?}, ...], "template"?}`: at least one
  keypoint, labels non-empty and distinct (stored trimmed), visible a boolean (default true),
  template an optional non-empty string -> `{"template": str | None, "points": [{"x", "y", "label",
  "visible"}]}`.
- segmentation: COCO run-length encoding `{"size": [height, width], "counts": ...}`, counts being
  either the uncompressed list (alternating background/foreground run lengths in column-major
  order, starting with background) or COCO's compressed string. The runs must cover exactly
  height * width pixels and mark at least one pixel. Stored uncompressed and canonical: zero-length
  runs inside the list are merged away, so one mask has one stored form.
- classification: no coordinates: `null` or `{}` -> `None`.
- note: `{"text"}`, a string of 1 to 10,000 characters, not only whitespace -> unchanged.

Numbers are JSON ints or floats, finite; booleans are refused although Python counts them as
ints. Objects must have exactly the keys listed: a misspelt key is an error, not ignored.

When the item's width or height is known, every point of a point, box, polygon, polyline,
cuboid or pose, and an ellipse's centre, must lie in [0, width] x [0, height]: coordinates are
continuous, so a box covering the whole image is (0, 0, width, height). An ellipse's radii may
reach beyond the image. A segmentation's size must then equal [height, width]. When the size is
unknown (e.g. a non-image item) any finite value is accepted.

A shape has at most 100,000 points and a mask at most 100,000 runs: bigger ones are refused with
LimitExceeded (limits `maxPointsPerShape`, `maxRunsPerMask`) before any point is read, so a
hostile payload costs no more than its length.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np

from resolvers.errors import BadUserInput, LimitExceeded

MAX_POINTS = 100_000
MAX_RUNS = 100_000
MAX_NOTE_CHARS = 10_000
MAX_LABEL_CHARS = 100
# Keeps a mask's pixel count, hence every run length, within MongoDB's 64-bit integers.
MAX_MASK_SIDE = 2**31 - 1
_BOX_KEYS = ("left", "top", "right", "bottom")
_EPS = float(np.finfo(np.float64).eps)
_SLACK = 8  # rounding in scaling, centring and summing, on top of the inputs' own precision


class AnnotationType(StrEnum):
    BOX = "box"
    CLASSIFICATION = "classification"
    CUBOID = "cuboid"
    ELLIPSE = "ellipse"
    POINT = "point"
    POLYGON = "polygon"
    POLYLINE = "polyline"
    POSE = "pose"
    SEGMENTATION = "segmentation"
    NOTE = "note"


DTLPY_TYPES: dict[str, AnnotationType | None] = {
    "box": AnnotationType.BOX,
    "class": AnnotationType.CLASSIFICATION,
    "cube": AnnotationType.CUBOID,
    "ellipse": AnnotationType.ELLIPSE,
    "note": AnnotationType.NOTE,
    "point": AnnotationType.POINT,
    "segment": AnnotationType.POLYGON,
    "polyline": AnnotationType.POLYLINE,
    "pose": AnnotationType.POSE,
    "binary": AnnotationType.SEGMENTATION,
    "cube_3d": None,
    "comparison": None,
    "subtitle": None,
    "text_mark": None,
    "gis": None,
    "ref_semantic_3d": None,
    "polyline_3d": None,
    "text": None,
    "ref_image": None,
}
"""dtlpy's `AnnotationType` values (dtlpy/entities/annotation.py) and Loom's type of the same
shape, or None where Loom has no such shape. No dtlpy name is a different Loom type's name, so
both vocabularies are accepted side by side."""


def annotation_type(name: str) -> AnnotationType:
    """Loom's type for a Loom or dtlpy type name; ValueError (with what to send instead) for
    anything else, dtlpy's shapes that Loom does not have included."""
    if name in DTLPY_TYPES:
        loom = DTLPY_TYPES[name]
        if loom is None:
            raise ValueError(
                f"dtlpy's annotation type {name!r} has no Loom equivalent; Loom's types are "
                f"{', '.join(AnnotationType)}"
            )
        return loom
    try:
        return AnnotationType(name)
    except ValueError:
        raise ValueError(
            f"unknown annotation type {name!r}; Loom's types are {', '.join(AnnotationType)} "
            f"(dtlpy's {', '.join(k for k, v in DTLPY_TYPES.items() if v and k != v)} are "
            "accepted for theirs)"
        ) from None


def stored_type(name: str) -> str:
    """The type an annotation is stored with for a name a filter uses: dtlpy's names become
    Loom's, every other name (dtlpy's shapes Loom lacks included) stays, and matches nothing."""
    return str(DTLPY_TYPES.get(name) or name)


@dataclass(frozen=True)
class _Image:
    """The item's pixel size; either side may be unknown."""

    width: int | None
    height: int | None

    def first_outside(self, points: np.ndarray) -> int | None:
        outside = np.zeros(len(points), dtype=bool)
        if self.width is not None:
            outside |= (points[:, 0] < 0) | (points[:, 0] > self.width)
        if self.height is not None:
            outside |= (points[:, 1] < 0) | (points[:, 1] > self.height)
        hits = np.flatnonzero(outside)
        return int(hits[0]) if len(hits) else None

    def describe(self) -> str:
        sides = []
        if self.width is not None:
            sides.append(f"0 ≤ x ≤ {self.width}")
        if self.height is not None:
            sides.append(f"0 ≤ y ≤ {self.height}")
        return ", ".join(sides)


def validate_coordinates(
    type: AnnotationType, coordinates: Any, *, width: int | None, height: int | None
) -> Any:
    """The normalised coordinates to store for an annotation of this type on an item of this
    size, or BadUserInput saying what is wrong with them."""
    try:
        kind = AnnotationType(type)
    except ValueError:
        raise BadUserInput(f"unknown annotation type {type!r}", field="type") from None
    return _VALIDATORS[kind](coordinates, _Image(width, height))


# --- building blocks -------------------------------------------------------------------------


def _bad(message: str, **where: Any) -> BadUserInput:
    return BadUserInput(message, field="coordinates", **where)


def _too_many(limit: str, maximum: int, message: str) -> LimitExceeded:
    error = LimitExceeded(limit, maximum, message)
    error.extensions["field"] = "coordinates"
    return error


def _kind(value: Any) -> str:
    """The JSON name of a value's type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _show(value: float) -> str:
    value = float(value)  # numpy scalars would print as np.float64(...)
    return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)


def _number(value: Any, what: str, **where: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _bad(f"{what} must be a number, got {_kind(value)}", **where)
    try:
        number = float(value)
    except OverflowError:
        raise _bad(f"{what} must be a finite number, got one too large", **where) from None
    if not math.isfinite(number):
        raise _bad(f"{what} must be a finite number, got {value!r}", **where)
    return number


def _object(
    value: Any, what: str, required: tuple[str, ...], optional: tuple[str, ...] = (), **where: Any
) -> dict[str, Any]:
    """`value` as an object with all the required keys and nothing beyond the optional ones."""
    keys = ", ".join([*required, *(f"{k}?" for k in optional)])
    if not isinstance(value, dict):
        raise _bad(f"{what} must be an object {{{keys}}}, got {_kind(value)}", **where)
    missing = [k for k in required if k not in value]
    if missing:
        raise _bad(f"{what} is missing {', '.join(missing)}", **where)
    extra = sorted(str(k) for k in value if k not in required and k not in optional)
    if extra:
        raise _bad(f"{what} has unexpected keys {', '.join(extra)} (expected {keys})", **where)
    return value


def _point(value: Any, what: str, **where: Any) -> tuple[float, float]:
    if isinstance(value, list | tuple):
        if len(value) != 2:
            raise _bad(f"{what} must be a pair [x, y], got a list of {len(value)}", **where)
        x, y = value
    elif isinstance(value, dict):
        _object(value, what, ("x", "y"), **where)
        x, y = value["x"], value["y"]
    else:
        raise _bad(
            f"{what} must be an object {{x, y}} or a pair [x, y], got {_kind(value)}", **where
        )
    return _number(x, f"{what} x", **where), _number(y, f"{what} y", **where)


def _list(value: Any, what: str, minimum: int, noun: str = "points") -> list[Any]:
    if not isinstance(value, list | tuple):
        raise _bad(f"{what} must be a list of {noun}, got {_kind(value)}")
    if len(value) > MAX_POINTS:
        raise _too_many("maxPointsPerShape", MAX_POINTS, f"{what} has {len(value)} {noun}")
    if len(value) < minimum:
        needed = f"{minimum} {noun}" if minimum != 1 else f"one {noun.removesuffix('s')}"
        raise _bad(f"{what} needs at least {needed}, got {len(value)}")
    return list(value)


def _points(value: Any, what: str, minimum: int, image: _Image, **where: Any) -> np.ndarray:
    """A list of points as an (n, 2) array, each inside the image when its size is known."""
    items = _list(value, what, minimum)
    points = np.array(
        [_point(item, f"{what} point {i}", index=i, **where) for i, item in enumerate(items)],
        dtype=np.float64,
    ).reshape(-1, 2)
    _inside(points, image, f"{what} point", True, **where)
    return points


def _inside(points: np.ndarray, image: _Image, what: str, indexed: bool, **where: Any) -> None:
    """Refuses the first point outside the image; `indexed` names it by its place in a list."""
    i = image.first_outside(points)
    if i is None:
        return
    if indexed:
        what, where = f"{what} {i}", {"index": i, **where}
    x, y = points[i]
    raise _bad(
        f"{what} ({_show(x)}, {_show(y)}) lies outside the image ({image.describe()})", **where
    )


def _as_objects(points: np.ndarray) -> list[dict[str, float]]:
    return [{"x": float(x), "y": float(y)} for x, y in points]


def _encloses_area(points: np.ndarray) -> bool:
    """Whether the shoelace area is non-zero beyond the precision of the coordinates.

    Points are scaled into [-1, 1] (so huge coordinates cannot overflow) and centred (so an
    offset far from the origin does not drown a small area in cancellation). A float coordinate
    is only known to within `eps` of its magnitude, which moves twice the area by up to about
    `n * eps * extent`: anything smaller is indistinguishable from a flat outline."""
    scale = float(np.abs(points).max())
    if scale == 0:
        return False
    p = points / scale
    p = p - p.mean(axis=0)
    x, y = p[:, 0], p[:, 1]
    twice_area = float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))
    extent = float(np.ptp(p, axis=0).max())
    return abs(twice_area) > _SLACK * len(p) * _EPS * extent


def _text(value: Any, what: str, maximum: int, **where: Any) -> str:
    if not isinstance(value, str):
        raise _bad(f"{what} must be a string, got {_kind(value)}", **where)
    if not value.strip():
        raise _bad(f"{what} must not be empty", **where)
    if len(value) > maximum:
        raise _bad(f"{what} is {len(value)} characters long, at most {maximum} allowed", **where)
    return value


# --- one validator per type ------------------------------------------------------------------


def _validate_point(value: Any, image: _Image) -> dict[str, float]:
    point = np.array([_point(value, "point")])
    _inside(point, image, "point", False)
    return _as_objects(point)[0]


def _validate_box(value: Any, image: _Image) -> dict[str, float]:
    box = _object(value, "box", _BOX_KEYS)
    left, top, right, bottom = (_number(box[k], f"box {k}") for k in _BOX_KEYS)
    if not left < right:
        raise _bad(f"box left ({_show(left)}) must be less than right ({_show(right)})")
    if not top < bottom:
        raise _bad(f"box top ({_show(top)}) must be less than bottom ({_show(bottom)})")
    corners = np.array([[left, top], [right, bottom]])
    i = image.first_outside(corners)
    if i is not None:
        x, y = corners[i]
        corner = "(left, top)" if i == 0 else "(right, bottom)"
        raise _bad(
            f"box corner {corner} = ({_show(x)}, {_show(y)}) lies outside the image "
            f"({image.describe()})"
        )
    return {"left": left, "top": top, "right": right, "bottom": bottom}


def _validate_polygon(value: Any, image: _Image) -> list[dict[str, float]]:
    points = _points(value, "polygon", 3, image)
    if not _encloses_area(points):
        raise _bad(
            "polygon has zero area: its points are collinear or repeated, or its outline "
            "cancels itself out"
        )
    return _as_objects(points)


def _validate_polyline(value: Any, image: _Image) -> list[dict[str, float]]:
    points = _points(value, "polyline", 2, image)
    if float(np.ptp(points, axis=0).max()) == 0:
        raise _bad("polyline has zero length: all its points are the same")
    return _as_objects(points)


def _validate_ellipse(value: Any, image: _Image) -> dict[str, float]:
    ellipse = _object(value, "ellipse", ("x", "y", "rx", "ry"), ("angle",))
    x, y, rx, ry = (_number(ellipse[k], f"ellipse {k}") for k in ("x", "y", "rx", "ry"))
    angle = _number(ellipse.get("angle", 0), "ellipse angle")
    for name, radius in (("rx", rx), ("ry", ry)):
        if radius <= 0:
            raise _bad(f"ellipse {name} must be greater than 0, got {_show(radius)}")
    _inside(np.array([[x, y]]), image, "ellipse centre", False)
    # -1e-20 % 360 rounds to 360.0 itself; the stored range is half-open.
    angle = angle % 360.0
    return {"x": x, "y": y, "rx": rx, "ry": ry, "angle": 0.0 if angle == 360.0 else angle}


def _validate_cuboid(value: Any, image: _Image) -> dict[str, list[dict[str, float]]]:
    if isinstance(value, list | tuple):
        if len(value) != 8:
            raise _bad(f"cuboid as a list needs 8 points (front then back), got {len(value)}")
        faces = {"front": value[:4], "back": value[4:]}
    else:
        faces = _object(value, "cuboid", ("front", "back"))
    stored = {}
    for face in ("front", "back"):
        corners = faces[face]
        if not isinstance(corners, list | tuple) or len(corners) != 4:
            got = f"{len(corners)} points" if isinstance(corners, list | tuple) else _kind(corners)
            raise _bad(f"cuboid {face} face needs 4 points, got {got}", face=face)
        points = _points(corners, f"cuboid {face}", 4, image, face=face)
        if not _encloses_area(points):
            raise _bad(f"cuboid {face} face has zero area", face=face)
        stored[face] = _as_objects(points)
    return stored


def _validate_pose(value: Any, image: _Image) -> dict[str, Any]:
    pose = _object(value, "pose", ("points",), ("template",))
    template = pose.get("template")
    if template is not None:
        template = _text(template, "pose template", MAX_LABEL_CHARS).strip()
    keypoints = _list(pose["points"], "pose", 1, "keypoints")
    seen: set[str] = set()
    stored = []
    for i, keypoint in enumerate(keypoints):
        what = f"pose keypoint {i}"
        _object(keypoint, what, ("x", "y", "label"), ("visible",), index=i)
        x, y = _point({"x": keypoint["x"], "y": keypoint["y"]}, what, index=i)
        label = _text(keypoint["label"], f"{what} label", MAX_LABEL_CHARS, index=i).strip()
        if label in seen:
            raise _bad(f"pose has two keypoints labelled {label!r}", index=i)
        seen.add(label)
        visible = keypoint.get("visible")
        if visible is None:
            visible = True
        elif not isinstance(visible, bool):
            raise _bad(f"{what} visible must be true or false, got {_kind(visible)}", index=i)
        stored.append({"x": x, "y": y, "label": label, "visible": visible})
    _inside(np.array([[p["x"], p["y"]] for p in stored]), image, "pose keypoint", True)
    return {"template": template, "points": stored}


def _validate_segmentation(value: Any, image: _Image) -> dict[str, Any]:
    mask = _object(value, "segmentation", ("size", "counts"))
    height, width = _mask_size(mask["size"], image)
    counts = _mask_counts(mask["counts"])
    pixels = height * width
    for i, count in enumerate(counts):
        if count < 0:
            raise _bad(f"segmentation count {i} is negative ({count})", index=i)
        if count > pixels:
            raise _bad(
                f"segmentation count {i} ({_brief(count)}) is more than the mask's {pixels} pixels",
                index=i,
            )
    if sum(counts) != pixels:
        raise _bad(
            f"segmentation counts cover {sum(counts)} pixels, but size [{height}, {width}] "
            f"has {pixels}"
        )
    runs = _canonical_runs(counts)
    if len(runs) < 2:
        raise _bad("segmentation mask is empty: no run marks a pixel")
    return {"size": [height, width], "counts": runs}


def _mask_size(size: Any, image: _Image) -> tuple[int, int]:
    if not isinstance(size, list | tuple) or len(size) != 2:
        got = f"{len(size)} numbers" if isinstance(size, list | tuple) else _kind(size)
        raise _bad(f"segmentation size must be a pair [height, width], got {got}")
    height, width = (
        _whole(side, f"segmentation {name}")
        for side, name in zip(size, ("height", "width"), strict=True)
    )
    for side, name in ((height, "height"), (width, "width")):
        if not 1 <= side <= MAX_MASK_SIDE:
            raise _bad(
                f"segmentation {name} must be between 1 and {MAX_MASK_SIDE}, got {_brief(side)}"
            )
    if (image.height is not None and height != image.height) or (
        image.width is not None and width != image.width
    ):
        item = f"{_or_unknown(image.height)}, {_or_unknown(image.width)}"
        raise _bad(f"segmentation size [{height}, {width}] does not match the item's [{item}]")
    return height, width


def _mask_counts(counts: Any) -> list[int]:
    if isinstance(counts, str):
        decoded = _decode_coco_string(counts)
    elif isinstance(counts, list | tuple):
        if len(counts) > MAX_RUNS:
            raise _too_many("maxRunsPerMask", MAX_RUNS, f"segmentation has {len(counts)} runs")
        decoded = [_whole(c, f"segmentation count {i}", index=i) for i, c in enumerate(counts)]
    else:
        raise _bad(
            "segmentation counts must be a list of run lengths or a COCO compressed string, "
            f"got {_kind(counts)}"
        )
    if not decoded:
        raise _bad("segmentation counts must not be empty")
    return decoded


def _whole(value: Any, what: str, **where: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        got = repr(value) if isinstance(value, float) else _kind(value)
        raise _bad(f"{what} must be a whole number, got {got}", **where)
    return value


def _brief(number: int) -> str:
    """An integer for a message, without printing thousands of digits of a hostile one."""
    return str(number) if number.bit_length() <= 64 else f"a {number.bit_length()}-bit number"


def _or_unknown(side: int | None) -> str:
    return "?" if side is None else str(side)


def _canonical_runs(counts: list[int]) -> list[int]:
    """Run lengths with zero-length runs merged away: background first (possibly 0), then
    alternating, never a zero after the first. This is the form COCO's own encoder emits."""
    runs: list[int] = []
    for i, length in enumerate(counts):
        if length == 0:
            continue
        foreground = i % 2
        if runs and (len(runs) - 1) % 2 == foreground:
            runs[-1] += length
        elif not runs and foreground:
            runs.extend((0, length))
        else:
            runs.append(length)
    return runs


def _decode_coco_string(text: str) -> list[int]:
    """COCO's compressed counts (pycocotools' rleFrString): each count is a signed integer in
    little-endian groups of 5 bits, one character (code + 48) per group, bit 0x20 meaning "more
    groups follow" and bit 0x10 of the last group the sign; from the fourth count on, each is
    stored as the difference from the count two places before it."""
    if len(text) > 13 * MAX_RUNS:
        raise _too_many("maxRunsPerMask", MAX_RUNS, "segmentation counts string is too long")
    counts: list[int] = []
    position = 0
    while position < len(text):
        value = shift = 0
        while True:
            if position == len(text):
                raise _bad("segmentation counts string is truncated in its last run")
            code = ord(text[position]) - 48
            if not 0 <= code < 64:
                raise _bad(
                    "segmentation counts string has an invalid character "
                    f"{text[position]!r} at offset {position}",
                    offset=position,
                )
            position += 1
            value |= (code & 0x1F) << shift
            shift += 5
            if not code & 0x20:
                if code & 0x10:
                    value -= 1 << shift
                break
            if shift > 64:
                raise _bad("segmentation counts string encodes a run longer than any mask")
        if len(counts) > 2:
            value += counts[-2]
        counts.append(value)
        if len(counts) > MAX_RUNS:
            raise _too_many(
                "maxRunsPerMask", MAX_RUNS, "segmentation counts string has too many runs"
            )
    return counts


def _validate_classification(value: Any, image: _Image) -> None:
    if value is None or value == {}:
        return None
    raise _bad(f"classification takes no coordinates (send null), got {_kind(value)}")


def _validate_note(value: Any, image: _Image) -> dict[str, str]:
    note = _object(value, "note", ("text",))
    return {"text": _text(note["text"], "note text", MAX_NOTE_CHARS)}


_VALIDATORS: dict[AnnotationType, Callable[[Any, _Image], Any]] = {
    AnnotationType.BOX: _validate_box,
    AnnotationType.CLASSIFICATION: _validate_classification,
    AnnotationType.CUBOID: _validate_cuboid,
    AnnotationType.ELLIPSE: _validate_ellipse,
    AnnotationType.POINT: _validate_point,
    AnnotationType.POLYGON: _validate_polygon,
    AnnotationType.POLYLINE: _validate_polyline,
    AnnotationType.POSE: _validate_pose,
    AnnotationType.SEGMENTATION: _validate_segmentation,
    AnnotationType.NOTE: _validate_note,
}
