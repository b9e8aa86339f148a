"""Overlap (IoU) kernels, written to give pycocotools' floats bit for bit.

Boxes: the same expression order as pycocotools' C `bbIou` (`fmin(x+w) - fmax(x)`, then
`i / (da + ga - i)`, or `i / da` against a crowd region), so the matching that follows takes
the same branches as COCOeval's. Masks: hotcoco's native RLE kernel, which the tests hold to
`pycocotools.mask.iou`.
"""

from collections.abc import Sequence
from typing import Any

import numba
import numpy as np


@numba.njit(cache=True, inline="always")
def box_iou_pair(
    dx: float, dy: float, dw: float, dh: float, gx: float, gy: float, gw: float, gh: float,
    crowd: bool,
) -> float:  # fmt: skip
    """One pycocotools box IoU: intersection over union, or over the prediction's area when
    the ground truth is a crowd region; 0 when the boxes do not overlap."""
    w = min(dw + dx, gw + gx) - max(dx, gx)
    if w <= 0.0:
        return 0.0
    h = min(dh + dy, gh + gy) - max(dy, gy)
    if h <= 0.0:
        return 0.0
    i = w * h
    if crowd:
        return i / (dw * dh)
    return i / (dw * dh + gw * gh - i)


@numba.njit(cache=True)
def _box_iou_matrix(dt: np.ndarray, gt: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    out = np.zeros((dt.shape[0], gt.shape[0]))
    for d in range(dt.shape[0]):
        for g in range(gt.shape[0]):
            out[d, g] = box_iou_pair(
                dt[d, 0], dt[d, 1], dt[d, 2], dt[d, 3],
                gt[g, 0], gt[g, 1], gt[g, 2], gt[g, 3], crowd[g],
            )  # fmt: skip
    return out


def box_iou(dt: np.ndarray, gt: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    """`[D, G]` IoU of `[x, y, w, h]` boxes, as `pycocotools.mask.iou(dt, gt, crowd)`."""
    return _box_iou_matrix(
        np.ascontiguousarray(dt, dtype=np.float64).reshape(-1, 4),
        np.ascontiguousarray(gt, dtype=np.float64).reshape(-1, 4),
        np.ascontiguousarray(crowd, dtype=np.bool_),
    )


def mask_iou(dt: Sequence[dict[str, Any]], gt: Sequence[dict[str, Any]], crowd: Any) -> np.ndarray:
    """`[D, G]` IoU of COCO RLE masks through hotcoco's native kernel (crowd: over the
    prediction's area), as `pycocotools.mask.iou(dt, gt, crowd)`."""
    from hotcoco import primitives

    if len(dt) == 0 or len(gt) == 0:
        return np.zeros((len(dt), len(gt)))
    crowd = np.asarray(crowd, dtype=np.bool_)
    return np.asarray(primitives.mask_iou(list(dt), list(gt), crowd), dtype=np.float64)
