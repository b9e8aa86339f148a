"""Street scenes for the demo dataset: drawn with Pillow, the same for the same number every
time, each with the exact geometry of what it drew.

A scene is laid out first (`layout`: pure numbers from a seeded random generator) and drawn
second (`render`), so the demo's annotations are computed from the layout, not traced from the
pixels, and match them exactly: a vehicle's or a tree's box is the rectangle its parts fill, a
sign's polygon the outline Pillow filled. Coordinates are continuous pixels (a box covering the
whole image is 0, 0, WIDTH, HEIGHT), as Loom stores them.

Objects stand in slots side by side, so none hides another and every annotation is of a wholly
visible object.
"""

import io
import math
import random
from dataclasses import dataclass
from typing import Any

from PIL import Image, ImageDraw

WIDTH, HEIGHT = 320, 240
HORIZON = 130
"""Where the road starts; signs and trees stand on it, vehicles drive on it."""

SKIES = {"day": (135, 190, 235), "dusk": (235, 150, 110), "night": (25, 30, 60)}
ROAD = (90, 90, 95)
PAINT = (235, 235, 225)
BODY_COLOURS = [(200, 30, 45), (30, 90, 200), (240, 240, 240), (40, 40, 40), (250, 190, 30)]

ONTOLOGY = [
    {
        "name": "vehicle",
        "color": "#1f77b4",
        "children": [{"name": "car", "color": "#e6194b"}, {"name": "bus", "color": "#f58231"}],
    },
    {
        "name": "sign",
        "color": "#911eb4",
        "children": [{"name": "stop", "color": "#d62728"}, {"name": "yield", "color": "#ffe119"}],
    },
    {"name": "tree", "color": "#3cb44b"},
]
"""The labels of the scenes, as a dataset's ontology input."""


@dataclass(frozen=True)
class Drawn:
    """One object of a scene: its label path, and the annotation that outlines it."""

    label: str
    type: str
    coordinates: Any
    parts: tuple[tuple[str, tuple[float, ...], tuple[int, int, int]], ...]
    """What `render` draws: (rectangle | ellipse | polygon, geometry, colour), in order."""


@dataclass(frozen=True)
class Scene:
    name: str
    sky: str
    split: str
    objects: tuple[Drawn, ...]


def _box(left: float, top: float, right: float, bottom: float) -> dict[str, float]:
    return {"left": left, "top": top, "right": right, "bottom": bottom}


def _vehicle(rng: random.Random, left: int, right: int, bus: bool) -> Drawn:
    """A body with a cabin (a bus: windows) and two wheels, on the road."""
    width = right - left
    body_top = rng.randint(HORIZON + 30, HEIGHT - 60)
    height = rng.randint(28, 40) if bus else rng.randint(18, 26)
    body = (left, body_top, right, body_top + height)
    colour = rng.choice(BODY_COLOURS)
    radius = max(5, height // 3)
    wheels = [
        (x - radius, body[3] - radius, x + radius, body[3] + radius)
        for x in (left + width // 4, right - width // 4)
    ]
    if bus:
        cabin_top = body_top
        windows = [
            ("rectangle", (x, body_top + 4, x + 8, body_top + 12), (200, 230, 250))
            for x in range(left + 4, right - 10, 12)
        ]
        parts = [("rectangle", body, colour), *windows]
    else:
        cabin_top = body_top - height * 2 // 3
        cabin = (left + width // 5, cabin_top, right - width // 5, body_top)
        parts = [("rectangle", cabin, colour), ("rectangle", body, colour)]
    parts += [("ellipse", wheel, (20, 20, 20)) for wheel in wheels]
    box = _box(left, cabin_top, right, body[3] + radius)
    return Drawn("vehicle.bus" if bus else "vehicle.car", "box", box, tuple(parts))


def _sign(rng: random.Random, centre: float, stop: bool) -> Drawn:
    """A stop sign (octagon) or a yield sign (triangle, point down) on a pole; the polygon
    outlines the sign's face, not the pole."""
    radius = rng.randint(12, 20)
    cy = rng.randint(HORIZON - 70, HORIZON - 35)
    if stop:
        corners = [math.radians(22.5 + 45 * k) for k in range(8)]
        points = [(centre + radius * math.cos(a), cy + radius * math.sin(a)) for a in corners]
        colour = (200, 20, 30)
    else:
        points = [
            (centre - radius, cy - radius * 0.6),
            (centre + radius, cy - radius * 0.6),
            (centre, cy + radius),
        ]
        colour = (250, 250, 250)
    outline = [(round(x, 2), round(y, 2)) for x, y in points]
    face_bottom = max(y for _, y in outline)
    pole = (centre - 2, face_bottom, centre + 2, HORIZON + 10)
    parts = (
        ("rectangle", pole, (120, 120, 120)),
        ("polygon", tuple(v for point in outline for v in point), colour),
    )
    coordinates = [{"x": x, "y": y} for x, y in outline]
    return Drawn("sign.stop" if stop else "sign.yield", "polygon", coordinates, parts)


def _tree(rng: random.Random, centre: int) -> Drawn:
    radius = rng.randint(14, 24)
    trunk_bottom = HORIZON + rng.randint(0, 12)
    trunk_top = trunk_bottom - rng.randint(18, 30)
    canopy = (centre - radius, trunk_top - 2 * radius + 6, centre + radius, trunk_top + 6)
    trunk = (centre - 3, trunk_top, centre + 3, trunk_bottom)
    parts = (("rectangle", trunk, (110, 70, 40)), ("ellipse", canopy, (40, 140, 60)))
    return Drawn("tree", "box", _box(canopy[0], canopy[1], canopy[2], trunk_bottom), parts)


def layout(number: int) -> Scene:
    """Scene `number`: its sky, its split (one in five is validation) and one to four objects."""
    rng = random.Random(f"loom-demo-{number}")
    count = rng.randint(1, 4)
    slot = WIDTH // count
    objects = []
    for index in range(count):
        left, right = index * slot + 6, (index + 1) * slot - 6
        kind = rng.choice(["car", "car", "bus", "stop", "yield", "tree"])
        if kind in ("car", "bus"):
            width = min(right - left, rng.randint(50, 90) if kind == "car" else 110)
            start = rng.randint(left, right - width)
            objects.append(_vehicle(rng, start, start + width, kind == "bus"))
        elif kind == "tree":
            objects.append(_tree(rng, rng.randint(left + 25, right - 25)))
        else:
            objects.append(_sign(rng, rng.randint(left + 22, right - 22), kind == "stop"))
    return Scene(
        name=f"street-{number:03d}.png",
        sky=rng.choice(list(SKIES)),
        split="val" if number % 5 == 0 else "train",
        objects=tuple(objects),
    )


def render(scene: Scene) -> bytes:
    """The scene as a PNG: sky, road with a dashed lane line, then each object's parts."""
    image = Image.new("RGB", (WIDTH, HEIGHT), SKIES[scene.sky])
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, HORIZON, WIDTH, HEIGHT), fill=ROAD)
    for x in range(0, WIDTH, 40):
        draw.rectangle((x + 8, HEIGHT - 22, x + 28, HEIGHT - 19), fill=PAINT)
    for drawn in scene.objects:
        for shape, geometry, colour in drawn.parts:
            _fill(draw, shape, geometry, colour)
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=False)
    return out.getvalue()


def _fill(
    draw: ImageDraw.ImageDraw, shape: str, geometry: tuple[float, ...], colour: tuple[int, int, int]
) -> None:
    """Fill the continuous region `geometry` describes. Pillow's rectangles and ellipses include
    their right and bottom edge pixels, so those are drawn one pixel in."""
    if shape == "polygon":
        draw.polygon(geometry, fill=colour)
        return
    left, top, right, bottom = geometry
    inset = (left, top, right - 1, bottom - 1)
    if shape == "rectangle":
        draw.rectangle(inset, fill=colour)
    else:
        draw.ellipse(inset, fill=colour)
