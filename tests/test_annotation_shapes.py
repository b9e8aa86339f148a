"""Coordinates per annotation type: well-formed shapes are stored in one documented form, and
every malformed one is refused as BAD_USER_INPUT on the `coordinates` field, saying why."""

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from resolvers.annotation_shapes import MAX_POINTS, MAX_RUNS, AnnotationType, validate_coordinates
from resolvers.errors import BadUserInput, LimitExceeded

W, H = 100, 80  # the item's width and height in most cases below


def _points(*pairs: tuple[float, float]) -> list[dict[str, float]]:
    return [{"x": x, "y": y} for x, y in pairs]


SQUARE = [[10, 10], [20, 10], [20, 20], [10, 20]]
SQUARE_STORED = _points((10, 10), (20, 10), (20, 20), (10, 20))
BACK = [[12, 8], [22, 8], [22, 18], [12, 18]]
BACK_STORED = _points((12, 8), (22, 8), (22, 18), (12, 18))

# Masks encoded by pycocotools 2.0.11 (`mask.encode`), with their uncompressed runs.
COCO_3x4 = ([3, 4], "41202", [4, 1, 2, 1, 4])
COCO_7x9 = (
    [7, 9],
    "01110O00012OO33MN0O30MO00017OK1NO0",
    [
        0,
        1,
        1,
        2,
        1,
        1,
        1,
        1,
        1,
        2,
        3,
        1,
        2,
        4,
        5,
        1,
        3,
        1,
        2,
        4,
        2,
        1,
        1,
        1,
        1,
        1,
        2,
        8,
        1,
        3,
        2,
        1,
        1,
        1,
    ],
)
COCO_40x50 = (
    [40, 50],
    "m3i0?000000000000\\O" + "C==C" * 29 + "C==700000000S6",
    [125] + [25, 15] * 7 + [5, 2, 18, 15] * 30 + [25, 15] * 4 + [25, 210],
)
COCO_300x200 = ([300, 200], "0R9:" + "0" * 297 + "hd>", [0] + [290, 10] * 149 + [290, 15010])
COCO_FULL_2x2 = ([2, 2], "04", [0, 4])
COCO_VECTORS = [COCO_3x4, COCO_7x9, COCO_40x50, COCO_300x200, COCO_FULL_2x2]

VALID: list[Any] = [
    # point
    ("point", {"x": 3, "y": 4.5}, W, H, {"x": 3.0, "y": 4.5}),
    ("point", [3, 4.5], W, H, {"x": 3.0, "y": 4.5}),
    ("point", {"x": W, "y": H}, W, H, {"x": 100.0, "y": 80.0}),
    ("point", {"x": -5e9, "y": 1e12}, None, None, {"x": -5e9, "y": 1e12}),
    ("point", {"x": 50, "y": -3}, W, None, {"x": 50.0, "y": -3.0}),
    # box
    (
        "box",
        {"left": 1, "top": 2, "right": 30.5, "bottom": 40},
        W,
        H,
        {"left": 1.0, "top": 2.0, "right": 30.5, "bottom": 40.0},
    ),
    (
        "box",
        {"left": 0, "top": 0, "right": W, "bottom": H},
        W,
        H,
        {"left": 0.0, "top": 0.0, "right": 100.0, "bottom": 80.0},
    ),
    (
        "box",
        {"left": -10, "top": -10, "right": 1e6, "bottom": 1e6},
        None,
        None,
        {"left": -10.0, "top": -10.0, "right": 1e6, "bottom": 1e6},
    ),
    # polygon
    ("polygon", [[0, 0], [10, 0], [0, 10]], W, H, _points((0, 0), (10, 0), (0, 10))),
    (
        "polygon",
        [{"x": 0, "y": 0}, [10, 0], {"x": 0.5, "y": 10}],
        W,
        H,
        _points((0, 0), (10, 0), (0.5, 10)),
    ),
    ("polygon", [*SQUARE, [10, 10]], W, H, [*SQUARE_STORED, {"x": 10.0, "y": 10.0}]),
    (
        "polygon",
        [[1e9, 1e9], [1e9 + 1, 1e9], [1e9, 1e9 + 1]],
        None,
        None,
        _points((1e9, 1e9), (1e9 + 1, 1e9), (1e9, 1e9 + 1)),
    ),
    ("polygon", [[0, 0], [90, 0], [0, 0.01]], W, H, _points((0, 0), (90, 0), (0, 0.01))),
    # polyline
    ("polyline", [[0, 0], [10, 5]], W, H, _points((0, 0), (10, 5))),
    ("polyline", [[0, 0], [0, 0], [10, 5]], W, H, _points((0, 0), (0, 0), (10, 5))),
    # ellipse
    (
        "ellipse",
        {"x": 50, "y": 40, "rx": 10, "ry": 5},
        W,
        H,
        {"x": 50.0, "y": 40.0, "rx": 10.0, "ry": 5.0, "angle": 0.0},
    ),
    (
        "ellipse",
        {"x": 50, "y": 40, "rx": 500, "ry": 0.5, "angle": -90},
        W,
        H,
        {"x": 50.0, "y": 40.0, "rx": 500.0, "ry": 0.5, "angle": 270.0},
    ),
    (
        "ellipse",
        {"x": 1, "y": 1, "rx": 1, "ry": 1, "angle": 720},
        W,
        H,
        {"x": 1.0, "y": 1.0, "rx": 1.0, "ry": 1.0, "angle": 0.0},
    ),
    (
        "ellipse",
        {"x": 1, "y": 1, "rx": 1, "ry": 1, "angle": -1e-20},
        W,
        H,
        {"x": 1.0, "y": 1.0, "rx": 1.0, "ry": 1.0, "angle": 0.0},
    ),
    # cuboid
    (
        "cuboid",
        {"front": SQUARE, "back": BACK},
        W,
        H,
        {"front": SQUARE_STORED, "back": BACK_STORED},
    ),
    ("cuboid", SQUARE + BACK, W, H, {"front": SQUARE_STORED, "back": BACK_STORED}),
    # pose
    (
        "pose",
        {"template": " person ", "points": [{"x": 5, "y": 6, "label": " nose "}]},
        W,
        H,
        {"template": "person", "points": [{"x": 5.0, "y": 6.0, "label": "nose", "visible": True}]},
    ),
    (
        "pose",
        {
            "points": [
                {"x": 5, "y": 6, "label": "left eye", "visible": False},
                {"x": 7, "y": 6, "label": "right eye", "visible": None},
            ],
            "template": None,
        },
        W,
        H,
        {
            "template": None,
            "points": [
                {"x": 5.0, "y": 6.0, "label": "left eye", "visible": False},
                {"x": 7.0, "y": 6.0, "label": "right eye", "visible": True},
            ],
        },
    ),
    # segmentation
    ("segmentation", {"size": [2, 3], "counts": [2, 3, 1]}, 3, 2, None),
    ("segmentation", {"size": [2, 3], "counts": [2, 3, 0, 1]}, 3, 2, [2, 4]),
    ("segmentation", {"size": [2, 3], "counts": [0, 1, 5]}, None, None, [0, 1, 5]),
    ("segmentation", {"size": [2, 3], "counts": [1, 2, 3, 0, 0]}, 3, 2, [1, 2, 3]),
    *(
        ("segmentation", {"size": size, "counts": text}, size[1], size[0], runs)
        for size, text, runs in COCO_VECTORS
    ),
    # classification and note
    ("classification", None, W, H, None),
    ("classification", {}, W, H, None),
    ("note", {"text": "check the\nleft wheel"}, None, None, {"text": "check the\nleft wheel"}),
    ("note", {"text": "n" * 10_000}, W, H, {"text": "n" * 10_000}),
]


def _expected(case: tuple) -> Any:
    """Segmentation rows give only the stored runs (None: unchanged)."""
    kind, coordinates, _, _, expected = case
    if kind != "segmentation":
        return expected
    runs = coordinates["counts"] if expected is None else expected
    return {"size": coordinates["size"], "counts": runs}


@pytest.mark.parametrize("case", VALID, ids=lambda case: case[0])
def test_well_formed_coordinates_are_stored_in_the_documented_form(case: tuple) -> None:
    kind, coordinates, width, height, _ = case
    stored = validate_coordinates(AnnotationType(kind), coordinates, width=width, height=height)
    assert stored == _expected(case)


@pytest.mark.parametrize("case", VALID, ids=lambda case: case[0])
def test_stored_coordinates_validate_to_themselves(case: tuple) -> None:
    kind, coordinates, width, height, _ = case
    stored = validate_coordinates(AnnotationType(kind), coordinates, width=width, height=height)
    assert validate_coordinates(AnnotationType(kind), stored, width=width, height=height) == stored


def test_coordinates_are_stored_as_floats_even_when_sent_as_ints() -> None:
    stored = validate_coordinates(AnnotationType.POLYGON, SQUARE, width=W, height=H)
    assert all(type(p["x"]) is float and type(p["y"]) is float for p in stored)
    box = validate_coordinates(
        AnnotationType.BOX, {"left": 1, "top": 2, "right": 3, "bottom": 4}, width=W, height=H
    )
    assert all(type(v) is float for v in box.values())


def test_type_may_be_given_as_its_plain_string() -> None:
    assert validate_coordinates("point", [1, 2], width=W, height=H) == {"x": 1.0, "y": 2.0}  # type: ignore[arg-type]


def test_unknown_type_is_refused_on_the_type_field() -> None:
    with pytest.raises(BadUserInput) as caught:
        validate_coordinates("circle", {}, width=W, height=H)  # type: ignore[arg-type]
    assert caught.value.extensions["field"] == "type"


OK_BOX = {"left": 1, "top": 2, "right": 3, "bottom": 4}
OK_ELLIPSE = {"x": 5, "y": 5, "rx": 2, "ry": 3, "angle": 0}
OK_POSE_POINT = {"x": 5, "y": 6, "label": "nose"}

INVALID: list[Any] = [
    # wrong kind of JSON
    ("box-as-list", "box", [1, 2, 3, 4], W, H, "box must be an object"),
    ("box-as-string", "box", "1,2,3,4", W, H, "got a string"),
    ("box-null", "box", None, W, H, "got null"),
    ("point-as-number", "point", 5, W, H, "point must be an object {x, y} or a pair"),
    ("point-triple", "point", [1, 2, 3], W, H, "pair [x, y], got a list of 3"),
    ("polygon-as-object", "polygon", {"points": SQUARE}, W, H, "must be a list of points"),
    ("polygon-point-string", "polygon", [[0, 0], "1,1", [0, 1]], W, H, "polygon point 1 must"),
    ("ellipse-as-list", "ellipse", [5, 5, 2, 3], W, H, "ellipse must be an object"),
    ("cuboid-as-string", "cuboid", "cube", W, H, "cuboid must be an object"),
    ("pose-as-list", "pose", [OK_POSE_POINT], W, H, "pose must be an object"),
    ("pose-points-object", "pose", {"points": OK_POSE_POINT}, W, H, "must be a list"),
    ("segmentation-list", "segmentation", [1, 2], 3, 2, "segmentation must be an object"),
    ("counts-object", "segmentation", {"size": [1, 1], "counts": {}}, 1, 1, "counts must be"),
    ("size-scalar", "segmentation", {"size": 6, "counts": [6]}, None, None, "size must be a pair"),
    ("size-triple", "segmentation", {"size": [1, 2, 3], "counts": [6]}, None, None, "pair"),
    ("classification-list", "classification", [], W, H, "classification takes no coordinates"),
    ("classification-object", "classification", {"x": 1}, W, H, "takes no coordinates"),
    ("note-null", "note", None, W, H, "note must be an object {text}"),
    ("note-string", "note", "hello", W, H, "note must be an object"),
    ("note-text-number", "note", {"text": 5}, W, H, "note text must be a string"),
    # missing and extra keys
    ("box-missing-bottom", "box", {"left": 1, "top": 2, "right": 3}, W, H, "missing bottom"),
    ("box-extra-angle", "box", {**OK_BOX, "angle": 5}, W, H, "unexpected keys angle"),
    ("point-extra-z", "point", {"x": 1, "y": 2, "z": 3}, W, H, "unexpected keys z"),
    ("point-misspelt", "point", {"x": 1, "Y": 2}, W, H, "missing y"),
    ("ellipse-extra", "ellipse", {**OK_ELLIPSE, "theta": 1}, W, H, "unexpected keys theta"),
    ("ellipse-no-ry", "ellipse", {"x": 5, "y": 5, "rx": 2}, W, H, "missing ry"),
    ("cuboid-extra", "cuboid", {"front": SQUARE, "back": BACK, "angle": 0}, W, H, "unexpected"),
    ("cuboid-no-back", "cuboid", {"front": SQUARE}, W, H, "missing back"),
    ("pose-extra", "pose", {"points": [OK_POSE_POINT], "id": 1}, W, H, "unexpected keys id"),
    ("keypoint-extra", "pose", {"points": [{**OK_POSE_POINT, "z": 0}]}, W, H, "unexpected"),
    ("keypoint-no-label", "pose", {"points": [{"x": 1, "y": 1}]}, W, H, "missing label"),
    ("segmentation-extra", "segmentation", {"size": [1, 1], "counts": [0, 1], "x": 0}, 1, 1, "x"),
    ("note-extra", "note", {"text": "a", "author": "b"}, W, H, "unexpected keys author"),
    # numbers that are not finite numbers
    ("nan", "point", {"x": math.nan, "y": 1}, W, H, "point x must be a finite number"),
    ("inf", "box", {**OK_BOX, "right": math.inf}, None, None, "box right must be a finite"),
    ("minus-inf", "polygon", [[0, 0], [1, 0], [0, -math.inf]], None, None, "point 2 y"),
    ("huge-int", "point", {"x": 10**400, "y": 1}, None, None, "got one too large"),
    ("bool-x", "point", {"x": True, "y": 1}, W, H, "point x must be a number, got a boolean"),
    ("bool-in-pair", "polygon", [[0, 0], [1, False], [0, 1]], W, H, "got a boolean"),
    ("string-number", "box", {**OK_BOX, "left": "1"}, W, H, "box left must be a number"),
    ("null-number", "ellipse", {**OK_ELLIPSE, "rx": None}, W, H, "ellipse rx must be a number"),
    ("nan-angle", "ellipse", {**OK_ELLIPSE, "angle": math.nan}, W, H, "angle must be a finite"),
    ("bool-keypoint", "pose", {"points": [{**OK_POSE_POINT, "y": True}]}, W, H, "got a boolean"),
    # shapes without extent
    ("left-eq-right", "box", {**OK_BOX, "right": 1}, W, H, "left (1) must be less than right"),
    ("left-gt-right", "box", {**OK_BOX, "left": 5}, W, H, "left (5) must be less than right (3)"),
    ("top-eq-bottom", "box", {**OK_BOX, "bottom": 2}, W, H, "top (2) must be less than bottom"),
    ("top-gt-bottom", "box", {**OK_BOX, "top": 9}, W, H, "top (9) must be less than bottom (4)"),
    ("polygon-2-points", "polygon", [[0, 0], [1, 1]], W, H, "needs at least 3 points, got 2"),
    ("polygon-empty", "polygon", [], W, H, "needs at least 3 points, got 0"),
    ("polygon-collinear", "polygon", [[0, 0], [5, 5], [10, 10]], W, H, "zero area"),
    ("polygon-repeated", "polygon", [[1, 1], [1, 1], [1, 1], [1, 1]], W, H, "zero area"),
    ("polygon-backtrack", "polygon", [[0, 0], [10, 0], [20, 0], [10, 0]], W, H, "zero area"),
    (
        "polygon-figure-eight",
        "polygon",
        [[0, 0], [10, 10], [10, 0], [0, 10]],
        W,
        H,
        "zero area",
    ),
    (
        "polygon-collinear-far-away",
        "polygon",
        [[1e9, 1e9], [1e9 + 0.1, 1e9 + 0.2], [1e9 + 0.3, 1e9 + 0.6]],
        None,
        None,
        "zero area",
    ),
    ("polyline-1-point", "polyline", [[0, 0]], W, H, "needs at least 2 points, got 1"),
    ("polyline-same-points", "polyline", [[3, 3], [3, 3]], W, H, "zero length"),
    ("ellipse-zero-rx", "ellipse", {**OK_ELLIPSE, "rx": 0}, W, H, "rx must be greater than 0"),
    ("ellipse-negative-ry", "ellipse", {**OK_ELLIPSE, "ry": -1}, W, H, "ry must be greater"),
    ("cuboid-7-points", "cuboid", (SQUARE + BACK)[:7], W, H, "needs 8 points"),
    ("cuboid-3-front", "cuboid", {"front": SQUARE[:3], "back": BACK}, W, H, "front face needs 4"),
    ("cuboid-flat-back", "cuboid", {"front": SQUARE, "back": [[1, 1]] * 4}, W, H, "back face"),
    ("pose-no-points", "pose", {"points": []}, W, H, "needs at least one keypoint, got 0"),
    # text
    ("pose-blank-label", "pose", {"points": [{**OK_POSE_POINT, "label": " "}]}, W, H, "empty"),
    ("pose-label-number", "pose", {"points": [{**OK_POSE_POINT, "label": 3}]}, W, H, "string"),
    (
        "pose-duplicate-labels",
        "pose",
        {"points": [OK_POSE_POINT, {**OK_POSE_POINT, "label": " nose"}]},
        W,
        H,
        "two keypoints labelled 'nose'",
    ),
    ("pose-blank-template", "pose", {"points": [OK_POSE_POINT], "template": ""}, W, H, "empty"),
    ("pose-visible-string", "pose", {"points": [{**OK_POSE_POINT, "visible": "yes"}]}, W, H, "vis"),
    ("note-empty", "note", {"text": ""}, W, H, "note text must not be empty"),
    ("note-blank", "note", {"text": " \n\t"}, W, H, "note text must not be empty"),
    ("note-too-long", "note", {"text": "n" * 10_001}, W, H, "10001 characters long, at most"),
    # outside the image
    ("point-right-of-image", "point", {"x": 100.5, "y": 1}, W, H, "lies outside the image"),
    ("point-negative", "point", [1, -0.1], W, H, "point (1, -0.1) lies outside"),
    ("point-below-image", "point", {"x": 1, "y": 81}, None, H, "0 ≤ y ≤ 80"),
    ("box-too-wide", "box", {**OK_BOX, "right": 101}, W, H, "corner (right, bottom)"),
    ("box-above-image", "box", {**OK_BOX, "top": -1}, W, H, "corner (left, top)"),
    ("polygon-outside", "polygon", [[0, 0], [10, 0], [0, 90]], W, H, "polygon point 2 (0, 90)"),
    ("polyline-outside", "polyline", [[-1, 0], [10, 0]], W, H, "polyline point 0"),
    ("ellipse-centre-out", "ellipse", {**OK_ELLIPSE, "x": 200}, W, H, "ellipse centre (200, 5)"),
    ("cuboid-outside", "cuboid", [*SQUARE, *BACK[:3], [12, 81]], W, H, "cuboid back point 3"),
    (
        "keypoint-outside",
        "pose",
        {"points": [OK_POSE_POINT, {"x": -2, "y": 1, "label": "tail"}]},
        W,
        H,
        "pose keypoint 1 (-2, 1) lies outside",
    ),
    # segmentation
    ("rle-short", "segmentation", {"size": [2, 3], "counts": [2, 3]}, 3, 2, "cover 5 pixels"),
    ("rle-long", "segmentation", {"size": [2, 3], "counts": [2, 3, 2]}, 3, 2, "but size [2, 3]"),
    ("rle-negative", "segmentation", {"size": [2, 3], "counts": [4, -1, 3]}, 3, 2, "negative"),
    ("rle-float", "segmentation", {"size": [2, 3], "counts": [2, 3.0, 1]}, 3, 2, "whole number"),
    ("rle-bool", "segmentation", {"size": [1, 2], "counts": [True, 1]}, 2, 1, "whole number"),
    ("rle-empty-list", "segmentation", {"size": [2, 3], "counts": []}, 3, 2, "not be empty"),
    ("rle-no-foreground", "segmentation", {"size": [2, 3], "counts": [6]}, 3, 2, "mask is empty"),
    ("rle-zero-runs", "segmentation", {"size": [2, 3], "counts": [2, 0, 4]}, 3, 2, "empty"),
    ("rle-huge-count", "segmentation", {"size": [2, 3], "counts": [10**400]}, 3, 2, "-bit number"),
    ("rle-size-swapped", "segmentation", {"size": [3, 2], "counts": [1, 5]}, 3, 2, "[2, 3]"),
    ("rle-size-other", "segmentation", {"size": [2, 3], "counts": [1, 5]}, 30, 20, "match"),
    ("rle-height-differs", "segmentation", {"size": [2, 3], "counts": [1, 5]}, None, 4, "[4, ?]"),
    ("rle-zero-height", "segmentation", {"size": [0, 3], "counts": [0]}, None, None, "between 1"),
    ("rle-float-size", "segmentation", {"size": [2.0, 3], "counts": [1, 5]}, 3, 2, "whole"),
    ("rle-giant-size", "segmentation", {"size": [2**31, 1], "counts": [1]}, None, None, "between"),
    ("rle-bad-char", "segmentation", {"size": [3, 4], "counts": "41 02"}, 4, 3, "character ' '"),
    ("rle-truncated", "segmentation", {"size": [3, 4], "counts": "4120m"}, 4, 3, "truncated"),
    ("rle-string-sum", "segmentation", {"size": [3, 4], "counts": "4120"}, 4, 3, "cover 8 pixels"),
    ("rle-string-negative", "segmentation", {"size": [1, 5], "counts": "O"}, 5, 1, "negative"),
    ("rle-endless-run", "segmentation", {"size": [1, 1], "counts": "o" * 20}, 1, 1, "longer"),
]


@pytest.mark.parametrize(
    ("kind", "coordinates", "width", "height", "message"),
    [pytest.param(*case[1:], id=case[0]) for case in INVALID],
)
def test_malformed_coordinates_are_refused_saying_why(
    kind: str, coordinates: Any, width: int | None, height: int | None, message: str
) -> None:
    with pytest.raises(BadUserInput) as caught:
        validate_coordinates(AnnotationType(kind), coordinates, width=width, height=height)
    assert caught.value.extensions["field"] == "coordinates"
    assert message in caught.value.message


def test_a_point_outside_the_image_is_named_by_its_index() -> None:
    with pytest.raises(BadUserInput) as caught:
        validate_coordinates(
            AnnotationType.POLYGON, [[0, 0], [10, 0], [10, 10], [200, 5]], width=W, height=H
        )
    assert caught.value.extensions == {"field": "coordinates", "index": 3}


def test_a_malformed_point_is_named_by_its_index() -> None:
    with pytest.raises(BadUserInput) as caught:
        validate_coordinates(AnnotationType.POLYLINE, [[0, 0], [1, math.nan]], width=W, height=H)
    assert caught.value.extensions == {"field": "coordinates", "index": 1}
    assert caught.value.message == "polyline point 1 y must be a finite number, got nan"


def test_a_cuboid_point_is_named_by_its_face_and_index() -> None:
    with pytest.raises(BadUserInput) as caught:
        validate_coordinates(
            AnnotationType.CUBOID,
            {"front": SQUARE, "back": [*BACK[:2], [1, "2"], BACK[3]]},
            width=W,
            height=H,
        )
    assert caught.value.extensions == {"field": "coordinates", "index": 2, "face": "back"}


def test_a_negative_run_is_named_by_its_index() -> None:
    with pytest.raises(BadUserInput) as caught:
        validate_coordinates(
            AnnotationType.SEGMENTATION, {"size": [2, 3], "counts": [4, -1, 3]}, width=3, height=2
        )
    assert caught.value.extensions == {"field": "coordinates", "index": 1}


def test_a_polygon_of_the_largest_allowed_size_is_accepted() -> None:
    n = MAX_POINTS
    ring = [
        [50 + 30 * math.cos(2 * math.pi * i / n), 40 + 30 * math.sin(2 * math.pi * i / n)]
        for i in range(n)
    ]
    stored = validate_coordinates(AnnotationType.POLYGON, ring, width=W, height=H)
    assert len(stored) == n


@pytest.mark.parametrize("kind", ["polygon", "polyline"])
def test_a_shape_over_the_point_limit_is_refused_before_its_points_are_read(kind: str) -> None:
    with pytest.raises(LimitExceeded) as caught:
        validate_coordinates(AnnotationType(kind), [None] * (MAX_POINTS + 1), width=W, height=H)
    assert caught.value.extensions == {
        "field": "coordinates",
        "limit": "maxPointsPerShape",
        "max": MAX_POINTS,
    }


def test_a_pose_over_the_point_limit_is_refused() -> None:
    with pytest.raises(LimitExceeded) as caught:
        validate_coordinates(
            AnnotationType.POSE, {"points": [None] * (MAX_POINTS + 1)}, width=W, height=H
        )
    assert caught.value.extensions["field"] == "coordinates"


@pytest.mark.parametrize(
    "counts", [[1] * (MAX_RUNS + 1), "1" * (MAX_RUNS + 1)], ids=["list", "string"]
)
def test_a_mask_over_the_run_limit_is_refused(counts: Any) -> None:
    size = [1, MAX_RUNS + 1]
    with pytest.raises(LimitExceeded) as caught:
        validate_coordinates(
            AnnotationType.SEGMENTATION, {"size": size, "counts": counts}, width=None, height=None
        )
    assert caught.value.extensions["limit"] == "maxRunsPerMask"
    assert caught.value.extensions["field"] == "coordinates"


def _coco_string(counts: list[int]) -> str:
    """pycocotools' rleToString, to generate compressed masks beyond the fixed vectors."""
    out = []
    for i, count in enumerate(counts):
        x = count - counts[i - 2] if i > 2 else count
        while True:
            c = x & 0x1F
            x >>= 5
            more = x != -1 if c & 0x10 else x != 0
            out.append(chr((c | 0x20 if more else c) + 48))
            if not more:
                break
    return "".join(out)


def test_the_reference_encoder_reproduces_pycocotools() -> None:
    for _, text, runs in COCO_VECTORS:
        assert _coco_string(runs) == text


# Up to 60 runs of up to 2**25 pixels: large deltas of both signs, within the 2**31 mask side.
@given(st.lists(st.integers(min_value=1, max_value=2**25), min_size=2, max_size=60))
def test_any_compressed_mask_decodes_to_its_runs(runs: list[int]) -> None:
    pixels = sum(runs)
    stored = validate_coordinates(
        AnnotationType.SEGMENTATION,
        {"size": [1, pixels], "counts": _coco_string(runs)},
        width=pixels,
        height=1,
    )
    assert stored == {"size": [1, pixels], "counts": runs}


_coordinate = st.integers(min_value=-(10**6), max_value=10**6)
_small = st.integers(min_value=-1000, max_value=1000)


def _accepted(polygon: list) -> bool:
    try:
        validate_coordinates(AnnotationType.POLYGON, polygon, width=None, height=None)
    except BadUserInput:
        return False
    return True


@given(st.lists(st.tuples(_coordinate, _coordinate), min_size=3, max_size=3))
def test_an_integer_triangle_is_accepted_exactly_when_it_is_not_flat(triangle: list) -> None:
    (ax, ay), (bx, by), (cx, cy) = triangle
    twice_area = (bx - ax) * (cy - ay) - (by - ay) * (cx - ax)
    assert _accepted(triangle) == (twice_area != 0)


@given(_coordinate, _coordinate, _small, _small, _small, _small)
def test_three_points_on_one_line_are_always_refused(
    x: int, y: int, dx: int, dy: int, k: int, m: int
) -> None:
    assert not _accepted([[x, y], [x + k * dx, y + k * dy], [x + m * dx, y + m * dy]])
