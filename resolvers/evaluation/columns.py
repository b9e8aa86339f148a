"""The engine's inputs: ground truths and predictions of a set of items, as columns.

The commit builds these from MongoDB; the engine never sees a document. Rows are addressed by
position; `ids` is opaque (the commit maps it back to its Mongo ids) and travels with the
results so match records can name the rows they pair.
"""

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

IouType = Literal["bbox", "segm"]

COCO_AREA_RANGES: tuple[tuple[float, float], ...] = (
    (0.0, 1e5**2),
    (0.0, 32.0**2),
    (32.0**2, 96.0**2),
    (96.0**2, 1e5**2),
)
COCO_AREA_LABELS: tuple[str, ...] = ("all", "small", "medium", "large")


def coco_iou_thresholds() -> np.ndarray:
    """[.5:.05:.95], built exactly as pycocotools' Params does (the floats matter: summarize
    looks .5 and .75 up by equality)."""
    return np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)


def coco_recall_thresholds() -> np.ndarray:
    """The 101 recall points of COCO's interpolated precision, as pycocotools builds them."""
    return np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)


def _column(values: Any, dtype: Any, n: int | None, name: str) -> np.ndarray:
    array = np.ascontiguousarray(np.asarray(values, dtype=dtype))
    if array.ndim != 1 or (n is not None and len(array) != n):
        raise ValueError(f"{name}: expected {n} values in one dimension, got {array.shape}")
    return array


def _boxes(bbox: Any, n: int) -> np.ndarray:
    if bbox is None:
        return np.zeros((n, 4), dtype=np.float64)
    array = np.ascontiguousarray(np.asarray(bbox, dtype=np.float64).reshape(-1, 4))
    if len(array) != n:
        raise ValueError(f"bbox: expected ({n}, 4), got {array.shape}")
    return array


def _check_rows(rows: Any, own: str, dtype: Any) -> None:
    """Make each column of ground truths or predictions a contiguous array of its dtype, one
    value per row (`own` is the side's own column: crowd or score)."""
    rows.item = _column(rows.item, np.int64, None, "item")
    n = len(rows.item)
    rows.label = _column(rows.label, np.int64, n, "label")
    rows.area = _column(rows.area, np.float64, n, "area")
    setattr(rows, own, _column(getattr(rows, own), dtype, n, own))
    rows.ids = _column(rows.ids, np.int64, n, "ids")
    rows.bbox = _boxes(rows.bbox, n)
    if rows.masks is not None and len(rows.masks) != n:
        raise ValueError(f"masks: expected {n}, got {len(rows.masks)}")


@dataclass
class GroundTruths:
    """Ground-truth annotations. `bbox` is `[x, y, w, h]` in pixels (required for iou_type
    "bbox"); `masks` holds COCO RLE dicts `{"size": [h, w], "counts": ...}` (required for
    "segm"). `area` is what COCO's area ranges test (for segm, the mask's area). A `crowd`
    region is matched by intersection over the prediction's area and may absorb any number of
    predictions, which are then ignored rather than counted."""

    item: np.ndarray
    label: np.ndarray
    area: np.ndarray
    crowd: np.ndarray
    ids: np.ndarray
    bbox: np.ndarray | None = None
    masks: list[dict[str, Any]] | None = None

    def __post_init__(self) -> None:
        _check_rows(self, "crowd", np.bool_)

    def __len__(self) -> int:
        return len(self.item)


@dataclass
class Predictions:
    """A model's predictions, columns as in GroundTruths plus a confidence `score`."""

    item: np.ndarray
    label: np.ndarray
    area: np.ndarray
    score: np.ndarray
    ids: np.ndarray
    bbox: np.ndarray | None = None
    masks: list[dict[str, Any]] | None = None

    def __post_init__(self) -> None:
        _check_rows(self, "score", np.float64)

    def __len__(self) -> int:
        return len(self.item)


@dataclass(frozen=True)
class Options:
    """How to match and what to measure.

    `n_labels` fixes the label index range 0..n_labels-1: every label is one COCO category,
    with or without ground truth (those without get -1, as in COCOeval).
    `class_agnostic` matches any prediction with any ground truth of its item (COCOeval
    useCats=0); False is COCOeval's default useCats=1. `allowed_label_matches`, when given,
    makes matching class-aware plus those (gt_label, pred_label) pairs, whatever
    `class_agnostic` says. `confidence_threshold` only affects Loom's extra metrics
    (P/R/F1, confusion matrix, per-item counts), never the COCO stats.
    """

    n_labels: int
    class_agnostic: bool = True
    allowed_label_matches: tuple[tuple[int, int], ...] | None = None
    iou_type: IouType = "bbox"
    iou_thresholds: tuple[float, ...] = field(
        default_factory=lambda: tuple(coco_iou_thresholds().tolist())
    )
    area_ranges: tuple[tuple[float, float], ...] = COCO_AREA_RANGES
    area_labels: tuple[str, ...] = COCO_AREA_LABELS
    max_detections: tuple[int, ...] = (1, 10, 100)
    confidence_threshold: float = 0.5

    def __post_init__(self) -> None:
        pairs = self.allowed_label_matches
        if pairs is not None:
            pairs = tuple(sorted({(int(g), int(p)) for g, p in pairs}))
            object.__setattr__(self, "allowed_label_matches", pairs)
        object.__setattr__(self, "iou_thresholds", tuple(float(t) for t in self.iou_thresholds))
        object.__setattr__(
            self, "area_ranges", tuple((float(lo), float(hi)) for lo, hi in self.area_ranges)
        )
        object.__setattr__(self, "max_detections", tuple(int(m) for m in self.max_detections))
        if len(self.area_ranges) != len(self.area_labels):
            raise ValueError("area_ranges and area_labels differ in length")
        if "all" not in self.area_labels:
            raise ValueError('area_labels must include "all" (match records use it)')
        if self.iou_type not in ("bbox", "segm"):
            raise ValueError(f"iou_type must be bbox or segm, not {self.iou_type!r}")
        if self.n_labels < 1:
            raise ValueError("n_labels must be at least 1")

    @property
    def mode(self) -> Literal["agnostic", "aware", "pairs"]:
        if self.allowed_label_matches is not None:
            return "pairs"
        return "agnostic" if self.class_agnostic else "aware"

    def thresholds(self) -> np.ndarray:
        return np.asarray(self.iou_thresholds, dtype=np.float64)

    def key(self) -> str:
        """What per-item results depend on; a stored item is reusable only under the same
        key (the confidence threshold is applied at accumulate time, so it is not part)."""
        return repr(
            (
                self.n_labels,
                self.mode,
                self.allowed_label_matches,
                self.iou_type,
                self.iou_thresholds,
                self.area_ranges,
                self.max_detections[-1],
            )
        )
