"""A real, dependency-free detector for demos and tests: boxes around saturated colour regions.

It is the built-in function `detect-colour-regions` (registered under `loom.functions`): it
reads the execution's item, finds the connected regions of strongly saturated pixels of each
configured hue, and predicts one box per region big enough, labelled by its hue. Confidence
grows with how much of its box the region fills and how saturated it is, so predictions are
computed from the pixels, never canned — a region that fills its box (a sign, a car body)
scores higher than a sprawling one.

Connected components are found on runs: each row's runs of masked pixels are joined to the
overlapping runs of the row above (4-connectivity) with a union-find over runs, which keeps
the Python work proportional to the number of runs, not of pixels.
"""

import io
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from resolvers.functions import FunctionContext, LoomFunction

HUES: dict[str, tuple[float, float]] = {
    "red": (345.0, 15.0),
    "orange": (15.0, 40.0),
    "yellow": (40.0, 70.0),
    "green": (75.0, 165.0),
    "blue": (190.0, 260.0),
    "purple": (260.0, 320.0),
}
"""Hue ranges in degrees; red wraps around 0."""


class DetectorInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    labels: dict[str, str] = Field(
        default_factory=lambda: {"green": "tree", "red": "sign.stop", "yellow": "sign.yield"},
        description="hue name → label to predict; hues not named are not detected",
    )
    min_area: int = Field(40, ge=1, description="smallest region, in pixels")
    min_saturation: float = Field(0.45, ge=0, le=1)
    min_value: float = Field(0.25, ge=0, le=1)


@dataclass(frozen=True)
class Region:
    hue: str
    left: int
    top: int
    right: int
    bottom: int
    pixels: int
    saturation: float

    @property
    def confidence(self) -> float:
        fill = self.pixels / ((self.right - self.left) * (self.bottom - self.top))
        return round(min(1.0, 0.5 * fill + 0.5 * self.saturation), 4)


def _hsv(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hue in degrees, saturation and value in 0..1, per pixel."""
    colour = rgb.astype(np.float64) / 255.0
    high, low = colour.max(axis=2), colour.min(axis=2)
    spread = high - low
    safe = np.where(spread > 0, spread, 1.0)
    r, g, b = colour[..., 0], colour[..., 1], colour[..., 2]
    hue = np.select(
        [high == r, high == g],
        [((g - b) / safe) % 6, (b - r) / safe + 2],
        default=(r - g) / safe + 4,
    )
    saturation = np.where(high > 0, spread / np.where(high > 0, high, 1.0), 0.0)
    return hue * 60.0, saturation, high


def _runs(mask: np.ndarray) -> list[tuple[int, int, int]]:
    """(row, first column, end column) of every run of True pixels, row by row."""
    padded = np.zeros((mask.shape[0], mask.shape[1] + 2), dtype=np.int8)
    padded[:, 1:-1] = mask
    edges = np.diff(padded, axis=1)
    rows, starts = np.nonzero(edges == 1)
    _, ends = np.nonzero(edges == -1)
    return list(zip(rows.tolist(), starts.tolist(), ends.tolist(), strict=True))


def _components(mask: np.ndarray) -> list[list[tuple[int, int, int]]]:
    """The 4-connected regions of `mask`, each as its runs."""
    runs = _runs(mask)
    parent = list(range(len(runs)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    previous: list[int] = []  # the runs of the row above the current one
    current: list[int] = []
    for i, (row, start, end) in enumerate(runs):
        if current and runs[current[0]][0] != row:
            previous = current if runs[current[0]][0] == row - 1 else []
            current = []
        current.append(i)
        for j in previous:
            _, other_start, other_end = runs[j]
            if other_start < end and start < other_end:
                parent[root(i)] = root(j)
    regions: dict[int, list[tuple[int, int, int]]] = {}
    for i, run in enumerate(runs):
        regions.setdefault(root(i), []).append(run)
    return list(regions.values())


def detect(image: Image.Image, settings: DetectorInput) -> list[Region]:
    """Every saturated region of a named hue with at least `min_area` pixels."""
    rgb = np.asarray(image.convert("RGB"))
    hue, saturation, value = _hsv(rgb)
    vivid = (saturation >= settings.min_saturation) & (value >= settings.min_value)
    found = []
    for name in settings.labels:
        low, high = HUES[name]
        in_range = (hue >= low) | (hue < high) if low > high else (hue >= low) & (hue < high)
        mask = vivid & in_range
        for runs in _components(mask):
            pixels = sum(end - start for _, start, end in runs)
            if pixels < settings.min_area:
                continue
            rows = [row for row, _, _ in runs]
            region_saturation = float(
                np.mean([saturation[row, start:end].mean() for row, start, end in runs])
            )
            found.append(
                Region(
                    name,
                    min(start for _, start, _ in runs),
                    min(rows),
                    max(end for _, _, end in runs),
                    max(rows) + 1,
                    pixels,
                    region_saturation,
                )
            )
    return found


async def _detect(data: DetectorInput, context: FunctionContext) -> dict[str, Any]:
    unknown = set(data.labels) - set(HUES)
    if unknown:
        raise ValueError(f"unknown hues {sorted(unknown)}; known: {', '.join(HUES)}")
    content = await context.read_file()
    regions = detect(Image.open(io.BytesIO(content)), data)
    context.log.info("%d regions found", len(regions))
    return {"predictions": [as_prediction(region, data.labels) for region in regions]}


def as_prediction(region: Region, labels: dict[str, str]) -> dict[str, Any]:
    """A region as uploadPredictions takes a prediction (the item left to the caller)."""
    return {
        "type": "box",
        "label": labels[region.hue],
        "coordinates": {
            "left": region.left,
            "top": region.top,
            "right": region.right,
            "bottom": region.bottom,
        },
        "confidence": region.confidence,
    }


detect_colour_regions = LoomFunction(
    "Predict a box around each saturated colour region of the item's image, labelled by hue.",
    DetectorInput,
    _detect,
)
