"""COCO exports: the archive a worker writes loads in pycocotools and in supervision with the
same counts per label, holds the boxes, polygons and masks Loom stores, honours the export's
options, and is downloaded only by those who may read its project."""

import io
import json
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import supervision as sv
from bson import ObjectId
from pycocotools import mask as coco_mask
from pycocotools.coco import COCO

from tests.datasets_world import image_bytes, make_world
from tests.test_dataset_versions import ADD_LABELS, CREATE_MANY, _version
from tests.workers import run_command_here

EXPORT_DATASET = """mutation($d: ID!, $input: ExportInput!) {
  exportDataset(datasetId: $d, input: $input) { id type status } }"""
EXPORT_VERSION = """mutation($id: ID!, $input: ExportInput!) {
  exportDatasetVersion(id: $id, input: $input) { id type status } }"""
COMMAND = "query($id: ID!) { command(id: $id) { status error result archiveUrl } }"
SPLIT = """mutation($id: ID!, $input: SplitInput!) {
  splitDatasetVersion(id: $id, input: $input) { id } }"""
BOX = {"left": 2, "top": 3, "right": 12, "bottom": 9}
TRIANGLE = [{"x": 1, "y": 1}, {"x": 15, "y": 2}, {"x": 8, "y": 14}]


def _mask(height: int, width: int) -> dict:
    """A 4 x 6 block at x 3..8, y 5..8, as COCO's uncompressed column-major runs."""
    pixels = np.zeros((height, width), dtype=np.uint8)
    pixels[5:9, 3:9] = 1
    flat = pixels.flatten(order="F")
    runs, current, length = [], 0, 0
    for value in flat:
        if value == current:
            length += 1
        else:
            runs.append(length)
            current, length = value, 1
    runs.append(length)
    return {"size": [height, width], "counts": runs}


async def _scenes(world) -> list[dict]:
    await world.client.data(
        ADD_LABELS, id=world.dataset, l=[{"name": "vehicle", "children": [{"name": "car"}]}]
    )
    items = [
        await world.upload(f"{n}.png", image_bytes("PNG", 16, 16, (n, 40, 90)), dir="/train")
        for n in range(3)
    ]
    a, b, c = items
    await world.client.data(
        CREATE_MANY,
        inputs=[
            {"itemId": a["id"], "type": "BOX", "label": "vehicle.car", "coordinates": BOX},
            {"itemId": a["id"], "type": "POLYGON", "label": "vehicle", "coordinates": TRIANGLE},
            {"itemId": b["id"], "type": "SEGMENTATION", "label": "vehicle.car",
             "coordinates": _mask(16, 16), "attributes": {"iscrowd": True}},
            {"itemId": b["id"], "type": "POINT", "label": "vehicle",
             "coordinates": {"x": 1, "y": 1}},
            {"itemId": c["id"], "type": "BOX", "label": "vehicle", "coordinates": BOX,
             "status": "APPROVED"},
        ],
    )  # fmt: skip
    return items


async def _exported(world, db, redis, settings, http, query: str, **variables) -> dict:
    """Run the export; its command's result and the archive's members."""
    started = (await world.client.data(query, **variables)).popitem()[1]
    assert (started["type"], started["status"]) == ("export", "created")
    await run_command_here(db, redis, settings, started["id"])
    done = (await world.client.data(COMMAND, id=started["id"]))["command"]
    assert done["status"] == "success", done["error"]
    headers = {"Authorization": f"Bearer {world.client.key}"}
    response = await http.get(done["archiveUrl"], headers=headers)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    return {"result": done["result"], "url": done["archiveUrl"], "archive": archive}


async def test_a_coco_export_loads_in_pycocotools_with_the_shapes_loom_holds(
    member, db, redis, settings, http, tmp_path: Path
):
    world = await make_world(member)
    await _scenes(world)
    exported = await _exported(
        world, db, redis, settings, http, EXPORT_DATASET, d=world.dataset,
        input={"includeFiles": True},
    )  # fmt: skip
    assert exported["result"]["images"] == 3
    assert exported["result"]["annotations"] == 4
    assert exported["result"]["skipped"] == {"point": 1}
    archive = exported["archive"]
    assert sorted(archive.namelist()) == [
        "annotations/instances.json", "images/train/0.png", "images/train/1.png",
        "images/train/2.png",
    ]  # fmt: skip
    assert archive.read("images/train/1.png") == image_bytes("PNG", 16, 16, (1, 40, 90))
    path = tmp_path / "instances.json"
    path.write_bytes(archive.read("annotations/instances.json"))
    coco = COCO(str(path))
    names = {c["id"]: c["name"] for c in coco.loadCats(coco.getCatIds())}
    assert sorted(names.values()) == ["vehicle", "vehicle.car"]
    assert {c["name"]: c["supercategory"] for c in coco.loadCats(coco.getCatIds())} == {
        "vehicle": "vehicle", "vehicle.car": "vehicle",
    }  # fmt: skip
    per_label = Counter(names[a["category_id"]] for a in coco.loadAnns(coco.getAnnIds()))
    assert per_label == {"vehicle.car": 2, "vehicle": 2}
    by_file = {img["file_name"]: img for img in coco.loadImgs(coco.getImgIds())}
    assert set(by_file) == {"train/0.png", "train/1.png", "train/2.png"}
    assert {(img["width"], img["height"]) for img in by_file.values()} == {(16, 16)}
    first = coco.loadAnns(coco.getAnnIds(imgIds=[by_file["train/0.png"]["id"]]))
    box = next(a for a in first if a["segmentation"] == [])
    assert (box["bbox"], box["area"], box["iscrowd"]) == ([2, 3, 10, 6], 60, 0)
    polygon = next(a for a in first if a["segmentation"])
    assert polygon["segmentation"] == [[1, 1, 15, 2, 8, 14]]
    assert polygon["bbox"] == [1, 1, 14, 13]
    rle = coco_mask.frPyObjects(polygon["segmentation"], 16, 16)
    assert polygon["area"] == 87.5  # shoelace; pycocotools rasterises to whole pixels
    assert coco_mask.area(coco_mask.merge(rle)) > 0
    [crowd] = coco.loadAnns(coco.getAnnIds(imgIds=[by_file["train/1.png"]["id"]]))
    assert crowd["iscrowd"] == 1
    mask = coco.annToMask(crowd)
    assert int(mask.sum()) == crowd["area"] == 24
    encoded = coco_mask.frPyObjects(crowd["segmentation"], 16, 16)
    assert list(coco_mask.toBbox(encoded)) == crowd["bbox"] == [3, 5, 6, 4]
    archive.extractall(tmp_path / "archive")
    dataset = sv.DetectionDataset.from_coco(
        images_directory_path=str(tmp_path / "archive" / "images"),
        annotations_path=str(tmp_path / "archive" / "annotations" / "instances.json"),
        force_masks=True,
    )
    seen: Counter[str] = Counter()
    boxes: dict[str, list] = {}
    for image_path, _, detections in dataset:
        name = Path(image_path).relative_to(tmp_path / "archive" / "images").as_posix()
        seen.update(dataset.classes[class_id] for class_id in detections.class_id)
        boxes[name] = sorted(detections.xyxy.tolist())
    assert seen == per_label
    assert boxes["train/0.png"] == sorted([[2, 3, 12, 9], [1, 1, 15, 14]])
    assert boxes["train/1.png"] == [[3, 5, 9, 9]]


async def test_an_export_of_a_version_split_and_statuses_holds_only_what_was_asked(
    member, db, redis, settings, http, tmp_path: Path
):
    world = await make_world(member)
    a, _, _ = await _scenes(world)
    version = await _version(world, db, redis, settings)
    halves = {"ratios": [{"name": "train", "ratio": 0.5}, {"name": "rest", "ratio": 0.5}],
              "seed": "3"}  # fmt: skip
    await world.client.data(SPLIT, id=version, input=halves)
    await world.client.data(
        CREATE_MANY,
        inputs=[{"itemId": a["id"], "type": "BOX", "label": "vehicle", "coordinates": BOX}],
    )
    exported = await _exported(
        world, db, redis, settings, http, EXPORT_VERSION, id=version,
        input={"split": "train", "statuses": ["APPROVED", "CLEAR"]},
    )  # fmt: skip
    train = await db.version_items.distinct(
        "itemId", {"versionId": ObjectId(version), "split": "train"}
    )
    archive = exported["archive"]
    assert archive.namelist() == ["annotations/instances.json"]
    document = json.loads(archive.read("annotations/instances.json"))
    assert sorted(img["loom_id"] for img in document["images"]) == sorted(map(str, train))
    held = [x for item in await db.version_items.find({"versionId": ObjectId(version),
            "split": "train"}).to_list() for x in item["annotations"]]  # fmt: skip
    expected = sorted(str(x["_id"]) for x in held if x["type"] != "point")
    assert sorted(x["loom_id"] for x in document["annotations"]) == expected
    approved = await _exported(
        world, db, redis, settings, http, EXPORT_VERSION, id=version,
        input={"statuses": ["APPROVED"], "filter": {"name": {"$in": ["2.png", "0.png"]}}},
    )  # fmt: skip
    only = json.loads(approved["archive"].read("annotations/instances.json"))
    assert [img["file_name"] for img in only["images"]] == ["train/0.png", "train/2.png"]
    assert len(only["annotations"]) == 1
    assert only["annotations"][0]["image_id"] == 2


async def test_exports_are_refused_clearly_and_their_archives_kept_from_other_tenants(
    member, db, redis, settings, http
):
    world = await make_world(member)
    await _scenes(world)
    version = await _version(world, db, redis, settings)
    bad = [
        (EXPORT_DATASET, {"d": world.dataset, "input": {"split": "train"}}),
        (EXPORT_VERSION, {"id": version, "input": {"split": "nope"}}),
        (EXPORT_DATASET, {"d": world.dataset, "input": {"filter": {"split": "train"}}}),
        (EXPORT_DATASET, {"d": world.dataset, "input": {"filter": {"$where": "1"}}}),
        (EXPORT_DATASET, {"d": world.dataset, "input": {"statuses": []}}),
    ]
    for query, variables in bad:
        assert await world.client.code(query, **variables) == "BAD_USER_INPUT", variables
    assert await db.commands.count_documents({"type": "export"}) == 0
    exported = await _exported(
        world, db, redis, settings, http, EXPORT_DATASET, d=world.dataset, input={}
    )
    rival = await make_world(member, org="rival")
    assert await rival.client.code(EXPORT_DATASET, d=world.dataset, input={}) == "NOT_FOUND"
    assert await rival.client.code(EXPORT_VERSION, id=version, input={}) == "NOT_FOUND"
    other = {"Authorization": f"Bearer {rival.client.key}"}
    assert (await http.get(exported["url"], headers=other)).status_code == 404
    assert (await http.get(exported["url"])).status_code == 401


def _counted(dataset) -> tuple[Counter, dict[str, list]]:
    """Objects per class name, and each image's sorted boxes, as supervision loaded them."""
    seen: Counter[str] = Counter()
    boxes: dict[str, list] = {}
    for image_path, _, detections in dataset:
        seen.update(dataset.classes[class_id] for class_id in detections.class_id)
        boxes[Path(image_path).name] = sorted(detections.xyxy.round(3).tolist())
    return seen, boxes


async def test_yolo_and_voc_exports_load_in_supervision_with_their_splits(
    member, db, redis, settings, http, tmp_path: Path
):
    world = await make_world(member)
    await _scenes(world)
    version = await _version(world, db, redis, settings)
    halves = {"ratios": [{"name": "train", "ratio": 0.5}, {"name": "val", "ratio": 0.5}],
              "seed": "11"}  # fmt: skip
    await world.client.data(SPLIT, id=version, input=halves)
    split = {
        f"{d['name']}": d["split"]
        async for d in db.version_items.find({"versionId": ObjectId(version)})
    }
    both = {"format": "YOLO", "includeFiles": True}
    yolo = await _exported(world, db, redis, settings, http, EXPORT_VERSION, id=version, input=both)
    assert yolo["result"]["skipped"] == {"segmentation": 1, "point": 1}
    yolo["archive"].extractall(tmp_path / "yolo")
    data = (tmp_path / "yolo" / "data.yaml").read_text()
    assert 'train: "train.txt"' in data
    assert 'val: "val.txt"' in data
    listed = (tmp_path / "yolo" / "train.txt").read_text().split()
    train = [f"./images/train/{name}" for name, subset in split.items() if subset == "train"]
    assert sorted(listed) == sorted(train)
    loaded = sv.DetectionDataset.from_yolo(
        images_directory_path=str(tmp_path / "yolo" / "images" / "train"),
        annotations_directory_path=str(tmp_path / "yolo" / "labels" / "train"),
        data_yaml_path=str(tmp_path / "yolo" / "data.yaml"),
    )
    seen, boxes = _counted(loaded)
    assert seen == {"vehicle.car": 1, "vehicle": 2}
    assert boxes["0.png"] == sorted([[2, 3, 12, 9], [1, 1, 15, 14]])
    assert boxes["2.png"] == [[2, 3, 12, 9]]
    voc = await _exported(
        world, db, redis, settings, http, EXPORT_VERSION, id=version,
        input={"format": "VOC", "includeFiles": True},
    )  # fmt: skip
    assert voc["result"]["skipped"] == {"segmentation": 1, "point": 1, "polygon": 1}
    voc["archive"].extractall(tmp_path / "voc")
    subsets = tmp_path / "voc" / "ImageSets" / "Main"
    assert sorted((subsets / "val.txt").read_text().split()) == sorted(
        f"train/{Path(n).stem}" for n, s in split.items() if s == "val"
    )
    loaded = sv.DetectionDataset.from_pascal_voc(
        images_directory_path=str(tmp_path / "voc" / "images" / "train"),
        annotations_directory_path=str(tmp_path / "voc" / "Annotations" / "train"),
    )
    seen, boxes = _counted(loaded)
    assert seen == {"vehicle.car": 1, "vehicle": 1}
    assert boxes["0.png"] == [[2, 3, 12, 9]]
    assert boxes["2.png"] == [[2, 3, 12, 9]]
