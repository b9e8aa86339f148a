"""The demo's street scenes: the annotations are where the pixels are, and each scene is the same
every time."""

import io

import numpy as np
from PIL import Image

from gateway import demo, demo_images
from resolvers.annotation_shapes import AnnotationType, validate_coordinates

SCENES = [demo_images.layout(n) for n in range(demo.IMAGES)]


def _pixels(scene: demo_images.Scene) -> np.ndarray:
    image = Image.open(io.BytesIO(demo_images.render(scene)))
    assert image.size == (demo_images.WIDTH, demo_images.HEIGHT)
    return np.asarray(image.convert("RGB"))


def _background(scene: demo_images.Scene, pixels: np.ndarray) -> np.ndarray:
    colours = [demo_images.SKIES[scene.sky], demo_images.ROAD, demo_images.PAINT]
    return np.any([np.all(pixels == colour, axis=-1) for colour in colours], axis=0)


def test_every_box_is_the_tightest_box_around_what_was_drawn():
    boxes = 0
    for scene in SCENES:
        pixels = _pixels(scene)
        drawn = ~_background(scene, pixels)
        padded = np.pad(drawn, 1)  # so the ring around a box at the image's edge is in range
        for shape in scene.objects:
            if shape.type != "box":
                continue
            boxes += 1
            box = shape.coordinates
            left, top, right, bottom = (box[k] for k in ("left", "top", "right", "bottom"))
            inside = drawn[top:bottom, left:right]
            edges = (inside[0], inside[-1], inside[:, 0], inside[:, -1])
            assert all(edge.any() for edge in edges), (scene.name, shape.label)
            ring = padded[top : bottom + 2, left : right + 2].copy()
            ring[1:-1, 1:-1] = False
            assert not ring.any(), (scene.name, shape.label)
    assert boxes > 50


def test_every_polygon_outlines_the_sign_face_drawn():
    polygons = 0
    for scene in SCENES:
        pixels = _pixels(scene)
        for shape in scene.objects:
            if shape.type != "polygon":
                continue
            polygons += 1
            xs = [p["x"] for p in shape.coordinates]
            ys = [p["y"] for p in shape.coordinates]
            face = shape.parts[-1][2]
            region = pixels[int(min(ys)) : int(max(ys)) + 2, int(min(xs)) : int(max(xs)) + 2]
            rows, columns = np.nonzero(np.all(region == face, axis=-1))
            assert abs(rows.min() + int(min(ys)) - min(ys)) <= 1
            assert abs(rows.max() + int(min(ys)) - max(ys)) <= 1
            assert abs(columns.min() + int(min(xs)) - min(xs)) <= 1
            assert abs(columns.max() + int(min(xs)) - max(xs)) <= 1
    assert polygons > 10


def test_every_annotation_is_a_valid_shape_inside_its_image():
    for scene in SCENES:
        for shape in scene.objects:
            validate_coordinates(
                AnnotationType(shape.type),
                shape.coordinates,
                width=demo_images.WIDTH,
                height=demo_images.HEIGHT,
            )


def test_a_scene_is_drawn_the_same_every_time_and_scenes_differ():
    assert demo_images.layout(7) == demo_images.layout(7)
    assert demo_images.render(demo_images.layout(7)) == demo_images.render(demo_images.layout(7))
    assert len({demo_images.render(scene) for scene in SCENES}) == len(SCENES)
    splits = [scene.split for scene in SCENES]
    assert splits.count("val") == demo.IMAGES // 5
