"""Dataset and version statistics: every figure equals the one computed in Python from the
same documents, and a version's stay as they were when the dataset changes."""

import math
from collections import Counter

from bson import ObjectId

from resolvers.versions.stats import AREA_EDGES, ASPECT_EDGES
from tests.datasets_world import image_bytes, make_world
from tests.test_dataset_versions import _version

CREATE_MANY = """mutation($inputs: [AnnotationInput!]!) {
  createAnnotations(inputs: $inputs) { id } }"""
FIELDS = """itemsCount annotatedItemsCount annotationsCount
  labels { label type count } objectsPerItem { objects items }
  boxAreas { low high count } boxAspectRatios { low high count }
  imageSizes { width height count } attributes { key value count }"""
DATASET_STATS = f"query($id: ID!) {{ dataset(id: $id) {{ stats {{ {FIELDS} }} }} }}"
VERSION_STATS = f"query($id: ID!) {{ datasetVersion(id: $id) {{ stats {{ {FIELDS} }} }} }}"


def _box(left: float, top: float, width: float, height: float) -> dict:
    return {"left": left, "top": top, "right": left + width, "bottom": top + height}


def _buckets(values: list[float], edges: list[float]) -> list[dict]:
    highs = [*edges[1:], None]
    return [
        {
            "low": low,
            "high": high,
            "count": sum(1 for v in values if low <= v < (math.inf if high is None else high)),
        }
        for low, high in zip(edges, highs, strict=True)
    ]


def _expected(items: list[dict], annotations: list[dict]) -> dict:
    """The statistics, computed here from the documents themselves."""
    boxes = [a["coordinates"] for a in annotations if a["type"] == "box"]
    sides = [(b["right"] - b["left"], b["bottom"] - b["top"]) for b in boxes]
    per_item = Counter(a["itemId"] for a in annotations)
    sizes = Counter((i["width"], i["height"]) for i in items)
    pairs = Counter((k, v) for a in annotations for k, v in a["attributes"].items())
    labels = Counter((a["label"], a["type"]) for a in annotations)
    return {
        "itemsCount": len(items),
        "annotatedItemsCount": sum(1 for i in items if per_item[i["_id"]]),
        "annotationsCount": len(annotations),
        "labels": [{"label": k[0], "type": k[1], "count": n} for k, n in sorted(labels.items())],
        "objectsPerItem": [
            {"objects": k, "items": n}
            for k, n in sorted(Counter(per_item[i["_id"]] for i in items).items())
        ],
        "boxAreas": _buckets([w * h for w, h in sides], AREA_EDGES),
        "boxAspectRatios": _buckets([w / h for w, h in sides], ASPECT_EDGES),
        "imageSizes": [
            {"width": w, "height": h, "count": n}
            for (w, h), n in sorted(sizes.items(), key=lambda kv: (-kv[1], kv[0]))
        ],
        "attributes": [
            {"key": k, "value": v, "count": n}
            for (k, v), n in sorted(pairs.items(), key=lambda kv: (-kv[1], kv[0]))
        ],
    }


async def test_stats_equal_the_figures_computed_from_the_documents_and_versions_keep_theirs(
    member, db, redis, settings
):
    world = await make_world(member)
    sizes = [(640, 480), (640, 480), (100, 50), (300, 300), (640, 480)]
    items = [
        await world.upload(f"{n}.png", image_bytes("PNG", w, h, (n, n, n)))
        for n, (w, h) in enumerate(sizes)
    ]
    shapes = [
        (0, "car", _box(0, 0, 10, 10), {"colour": "red"}),
        (0, "car", _box(5, 5, 40, 20), {"colour": "blue"}),
        (0, "person", _box(1, 1, 20, 60), {"colour": "red", "occluded": True}),
        (1, "car", _box(0, 0, 200, 100), {}),
        (2, "person", _box(0, 0, 99, 49), {"occluded": False}),
        (3, "car", _box(10, 10, 2, 8), {"colour": "red"}),
        (3, "car", _box(0, 0, 300, 300), {}),
    ]
    inputs = [
        {
            "itemId": items[i]["id"],
            "type": "BOX",
            "label": label,
            "coordinates": box,
            "attributes": attributes,
        }
        for i, label, box, attributes in shapes
    ]
    inputs.append({"itemId": items[1]["id"], "type": "CLASSIFICATION", "label": "day"})
    await world.client.data(CREATE_MANY, inputs=inputs)
    dataset = ObjectId(world.dataset)
    live_items = await db.items.find({"datasetId": dataset}).to_list()
    live_annotations = await db.annotations.find({"datasetId": dataset}).to_list()
    expected = _expected(live_items, live_annotations)
    assert expected["boxAreas"][0]["count"] == 2  # the 10 x 10 and 2 x 8 boxes, below 16²
    assert (await world.client.data(DATASET_STATS, id=world.dataset))["dataset"]["stats"] == (
        expected
    )
    version = await _version(world, db, redis, settings)
    assert (await world.client.data(VERSION_STATS, id=version))["datasetVersion"]["stats"] == (
        expected
    )
    await world.client.data(
        CREATE_MANY,
        inputs=[
            {
                "itemId": items[4]["id"],
                "type": "BOX",
                "label": "bus",
                "coordinates": _box(0, 0, 600, 400),
                "attributes": {"colour": "red"},
            }
        ],
    )
    changed = (await world.client.data(DATASET_STATS, id=world.dataset))["dataset"]["stats"]
    assert changed["annotationsCount"] == expected["annotationsCount"] + 1
    assert (await world.client.data(VERSION_STATS, id=version))["datasetVersion"]["stats"] == (
        expected
    )


async def test_the_stats_of_an_empty_dataset_are_zeros_and_empty_buckets(member):
    world = await make_world(member)
    got = (await world.client.data(DATASET_STATS, id=world.dataset))["dataset"]["stats"]
    assert got == _expected([], [])
    assert {bucket["count"] for bucket in got["boxAreas"]} == {0}
