"""Imports of whole archives, in every format: an export with its images imported into an
empty dataset uploads the images as items and reproduces the annotations (exactly for COCO and
VOC, to YOLO's 6 decimals); YOLO labels and VOC XML without images find their items by path;
bad lines, objects and XML are refused with their place; roles and tenants hold."""

import io
import json
import zipfile
from collections import Counter

import pytest
from bson import ObjectId

from resolvers.access import Action
from tests.datasets_world import CREATE_DATASET, image_bytes, make_world
from tests.test_dataset_versions import ADD_LABELS, CREATE_MANY
from tests.test_exports import BOX, EXPORT_DATASET, _exported, _scenes
from tests.test_imports import COMMAND, IMPORT, _counters_agree
from tests.test_roles import PROJECT_CASES, project_caller, project_outcome
from tests.workers import run_command_here

KEPT = {
    "COCO": ("box", "polygon", "segmentation"),
    "YOLO": ("box", "polygon"),
    "VOC": ("box",),
}
"""The shapes each format holds."""
YOLO_PRECISION = 16 * 1e-6
"""6 decimals of a 16-pixel image's side."""


def _zip(*members: tuple[str, bytes | str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in members:
            archive.writestr(name, content)
    return buffer.getvalue()


def _rezipped(archive: zipfile.ZipFile, keep=lambda name: True) -> bytes:
    return _zip(*((name, archive.read(name)) for name in archive.namelist() if keep(name)))


async def _new_dataset(world, name: str) -> str:
    created = await world.client.data(CREATE_DATASET, project=world.project, input={"name": name})
    return created["createDataset"]["id"]


async def _import(world, db, redis, settings, dataset: str, content: bytes, client=None, **options):
    """The import's finished command (status, error, result)."""
    body = await (client or world.client).upload(
        IMPORT, {"file": ("upload.zip", content, "application/zip")}, d=dataset, input=options
    )
    assert not body.get("errors"), body
    command = body["data"]["importAnnotations"]["id"]
    await run_command_here(db, redis, settings, command)
    return (await world.client.data(COMMAND, id=command))["command"]


async def _shapes(db, dataset: str) -> dict[str, list[dict]]:
    """Each item's annotations by path: type, label, coordinates, attributes."""
    paths = {i["_id"]: i["filename"] async for i in db.items.find({"datasetId": ObjectId(dataset)})}
    held: dict[str, list[dict]] = {path: [] for path in paths.values()}
    async for doc in db.annotations.find({"datasetId": ObjectId(dataset)}):
        shape = {k: doc[k] for k in ("type", "label", "coordinates", "attributes")}
        held[paths[doc["itemId"]]].append(shape)
    ordered = {
        path: sorted(docs, key=lambda d: (d["type"], d["label"])) for path, docs in held.items()
    }
    return ordered


def _numbers(coordinates) -> list[float]:
    if isinstance(coordinates, dict):
        return [v for key in sorted(coordinates) for v in _numbers(coordinates[key])]
    if isinstance(coordinates, list):
        return [v for value in coordinates for v in _numbers(value)]
    return [coordinates]


async def _items(db, dataset: str) -> dict[str, tuple]:
    found = db.items.find({"datasetId": ObjectId(dataset)})
    return {i["filename"]: (i["sha256"], i["width"], i["height"]) async for i in found}


@pytest.mark.parametrize("fmt", ["COCO", "YOLO", "VOC"])
async def test_an_export_with_its_images_imported_into_an_empty_dataset_is_reproduced(
    fmt, member, db, redis, settings, http
):
    world = await make_world(member)
    a, _, c = await _scenes(world)
    flags = {"difficult": True, "truncated": True} if fmt == "VOC" else {}
    edge = {"itemId": c["id"], "type": "BOX", "label": "vehicle.car",
            "coordinates": {**BOX, "right": 16}, "attributes": flags}  # fmt: skip
    await world.client.data(CREATE_MANY, inputs=[edge])
    exported = await _exported(
        world, db, redis, settings, http, EXPORT_DATASET, d=world.dataset,
        input={"format": fmt, "includeFiles": True},
    )  # fmt: skip
    target = await _new_dataset(world, f"from {fmt}")
    content = _rezipped(exported["archive"])
    done = await _import(world, db, redis, settings, target, content, format=fmt)
    assert done["status"] == "success", done["error"]
    result = done["result"]
    assert (result["createdItems"], result["errorsCount"]) == (3, 0), result
    assert await _items(db, target) == await _items(db, world.dataset)
    created = await db.items.find_one({"datasetId": ObjectId(target), "filename": a["filename"]})
    headers = {"Authorization": f"Bearer {world.client.key}"}
    download = await http.get(f"/items/{created['_id']}/file", headers=headers)
    assert download.content == image_bytes("PNG", 16, 16, (0, 40, 90))
    original = {
        path: [d for d in docs if d["type"] in KEPT[fmt]]
        for path, docs in (await _shapes(db, world.dataset)).items()
    }
    imported = await _shapes(db, target)
    assert result["importedAnnotations"] == sum(map(len, original.values()))
    assert {p: [(d["type"], d["label"]) for d in docs] for p, docs in imported.items()} == {
        p: [(d["type"], d["label"]) for d in docs] for p, docs in original.items()
    }
    if fmt == "YOLO":  # no attributes; coordinates to the format's precision
        for path, docs in original.items():
            for mine, theirs in zip(imported[path], docs, strict=True):
                assert mine["coordinates"] == pytest.approx(
                    theirs["coordinates"], abs=YOLO_PRECISION
                ) if mine["type"] == "box" else _numbers(mine["coordinates"]) == pytest.approx(
                    _numbers(theirs["coordinates"]), abs=YOLO_PRECISION)  # fmt: skip
    else:
        assert imported == original
    await _counters_agree(db, target)
    again = await _import(world, db, redis, settings, target, content, format=fmt)
    assert (again["result"]["createdItems"], again["result"]["replacedAnnotations"]) == (
        0, result["importedAnnotations"])  # fmt: skip
    assert await db.items.count_documents({"datasetId": ObjectId(target)}) == 3
    dataset = await db.datasets.find_one({"_id": ObjectId(target)})
    assert (dataset["itemsCount"], dataset["directories"]) == (3, ["/", "/train"])
    await _counters_agree(db, target)
    assert a["filename"] in imported


async def test_labels_without_images_find_their_items_by_path_and_by_path_without_extension(
    member, db, redis, settings, http
):
    world = await make_world(member)
    await _scenes(world)
    for fmt in ("YOLO", "VOC"):
        exported = await _exported(world, db, redis, settings, http, EXPORT_DATASET,
                                   d=world.dataset, input={"format": fmt})  # fmt: skip
        target = await _new_dataset(world, f"{fmt} by path")
        for n in range(3):
            await world.upload_to(target, f"{n}.png", image_bytes("PNG", 16, 16), dir="/train")
        archive = _rezipped(exported["archive"])
        done = await _import(world, db, redis, settings, target, archive, format=fmt)
        assert done["status"] == "success", done["error"]
        assert (done["result"]["updatedItems"], done["result"]["createdItems"]) == (3, 0)
        assert done["result"]["importedAnnotations"] == {"YOLO": 3, "VOC": 2}[fmt]
    stems = await _new_dataset(world, "stems")
    await world.upload_to(stems, "a.jpg", image_bytes("JPEG", 10, 10))
    for name in ("b.png", "b.jpg"):
        await world.upload_to(stems, name, image_bytes("PNG", 10, 10))
    labels = _zip(("data.yaml", "names: [car]\n"), ("labels/a.txt", "0 0.5 0.5 0.2 0.2\n"),
                  ("labels/b.txt", "0 0.5 0.5 0.2 0.2\n"), ("labels/c.txt", ""))  # fmt: skip
    done = await _import(world, db, redis, settings, stems, labels, format="YOLO")
    result = done["result"]
    assert (result["importedAnnotations"], result["unmatchedImages"]) == (1, 2), result
    assert {e["file"]: e["message"] for e in result["errors"]} == {
        "labels/b.txt": "2 items match /b.*: give the extension",
        "labels/c.txt": "no item at /c.*",
    }
    [box] = (await _shapes(db, stems))["/a.jpg"]
    assert box["coordinates"] == {"left": 4, "top": 4, "right": 6, "bottom": 6}


async def test_bad_yolo_lines_and_voc_objects_refuse_their_item_whole_naming_each_place(
    member, db, redis, settings
):
    world = await make_world(member)
    await world.client.data(ADD_LABELS, id=world.dataset, l=[{"name": "car"}])
    for name in ("a.png", "b.png"):
        await world.upload(name, image_bytes("PNG", 20, 10))
    yolo = _zip(
        ("data.yaml", "names:\n  0: car\n"),
        ("labels/a.txt", "0 0.5 0.5 0.1 0.1\n3 0.5 0.5 0.1 0.1\n0 0.5 0.5 0.1\n\n"
         "0 1.5 0.5 0.1 0.1\nx 0.5 0.5 0.1 0.1\n0 0.5 nan 0.1 0.1\n"),
        ("labels/b.txt", "0 0.5 0.5 0.1 0.1\n0 0.1 0.1 0.9 0.1 0.5 0.9\n"),
    )  # fmt: skip
    done = await _import(world, db, redis, settings, world.dataset, yolo, format="YOLO")
    result = done["result"]
    assert (result["importedAnnotations"], result["refusedItems"]) == (2, 1), result
    places = {(e["file"], e["element"]): e["message"] for e in result["errors"]}
    assert places == {
        ("labels/a.txt", "line 2"): "no class 3",
        ("labels/a.txt", "line 3"): "needs 4 box values or 6 or more polygon values, not 3",
        ("labels/a.txt", "line 5"): "has coordinates outside the image: YOLO's values are "
        "fractions in [0, 1]",
        ("labels/a.txt", "line 6"): "'x' is no class number",
        ("labels/a.txt", "line 7"): "holds a value that is not a number",
    }
    shapes = await _shapes(db, world.dataset)
    assert shapes["/a.png"] == []
    assert [d["type"] for d in shapes["/b.png"]] == ["box", "polygon"]
    assert shapes["/b.png"][0]["coordinates"] == {"left": 9, "top": 4.5, "right": 11,
                                                   "bottom": 5.5}  # fmt: skip
    voc = _zip(
        ("Annotations/a.xml", "<annotation><filename>a.png</filename>"
         "<object><name>car</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax>"
         "<ymax>5</ymax></bndbox></object>"
         "<object><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax><ymax>5</ymax></bndbox>"
         "</object>"
         "<object><name>car</name><bndbox><xmin>1</xmin><xmax>5</xmax></bndbox></object>"
         "<object><name>car</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>50</xmax>"
         "<ymax>5</ymax></bndbox></object></annotation>"),
        ("Annotations/b.xml", "<annotation><filename>b.png</filename><object><name>car</name>"
         "<bndbox><xmin>0</xmin><ymin>1</ymin><xmax>20</xmax><ymax>10</ymax></bndbox>"
         "<difficult>1</difficult></object></annotation>"),
    )  # fmt: skip
    done = await _import(world, db, redis, settings, world.dataset, voc, format="VOC")
    result = done["result"]
    assert (result["importedAnnotations"], result["refusedItems"]) == (1, 1), result
    places = {(e["file"], e["element"]): e["message"] for e in result["errors"]}
    assert set(places) == {("Annotations/a.xml", f"object[{n}]") for n in (2, 3, 4)}
    assert places[("Annotations/a.xml", "object[2]")] == "needs a <name>"
    assert "numbers xmin, ymin, xmax and ymax" in places[("Annotations/a.xml", "object[3]")]
    assert "outside the image" in places[("Annotations/a.xml", "object[4]")]
    shapes = await _shapes(db, world.dataset)
    assert shapes["/a.png"] == []
    [box] = shapes["/b.png"]
    assert (box["coordinates"], box["attributes"]) == (
        {"left": 0, "top": 0, "right": 20, "bottom": 10}, {"difficult": True})  # fmt: skip
    await _counters_agree(db, world.dataset)


async def test_a_voc_devkit_layout_uploads_its_jpeg_images_by_their_file_names(
    member, db, redis, settings
):
    world = await make_world(member)
    jpeg = image_bytes("JPEG", 30, 20)
    voc = _zip(
        ("VOC2007/Annotations/000005.xml", "<annotation><folder>VOC2007</folder>"
         "<filename>000005.jpg</filename><object><name>chair</name><bndbox><xmin>3</xmin>"
         "<ymin>4</ymin><xmax>30</xmax><ymax>20</ymax></bndbox></object></annotation>"),
        ("VOC2007/JPEGImages/000005.jpg", jpeg),
        ("__MACOSX/VOC2007/._000005.xml", b"\x00\x05\x16\x07"),
    )  # fmt: skip
    done = await _import(world, db, redis, settings, world.dataset, voc, format="VOC")
    assert done["status"] == "success", done["error"]
    assert (done["result"]["createdItems"], done["result"]["importedAnnotations"]) == (1, 1)
    [item] = await db.items.find({"datasetId": ObjectId(world.dataset)}).to_list()
    assert (item["filename"], item["mimetype"], item["width"], item["height"]) == (
        "/VOC2007/000005.jpg", "image/jpeg", 30, 20)  # fmt: skip
    [box] = (await _shapes(db, world.dataset))["/VOC2007/000005.jpg"]
    assert box["coordinates"] == {"left": 2, "top": 3, "right": 30, "bottom": 20}


async def test_malformed_files_fail_the_import_before_anything_is_written(
    member, db, redis, settings
):
    world = await make_world(member)
    png = image_bytes("PNG", 8, 8)
    good = "<annotation><filename>a.png</filename></annotation>"
    laughs = ('<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
              '<!ENTITY lol2 "&lol;&lol;&lol;&lol;">]><annotation>&lol2;</annotation>')  # fmt: skip
    failing = {
        "VOC": {
            "b.xml is not well-formed XML (line 1, column": _zip(
                ("a.xml", good), ("a.png", png), ("b.xml", "<annotation><object>")),
            "declares a DTD or entities": _zip(("a.xml", good), ("a.png", png),
                                               ("b.xml", laughs)),
            "the root element is <html>": _zip(("a.xml", good), ("b.xml", "<html/>")),
        },
        "YOLO": {
            "data.yaml is not YAML": _zip(("data.yaml", "names: [car\n"), ("images/a.png", png),
                                          ("labels/a.txt", "")),
            "data.yaml needs `names`": _zip(("data.yaml", "nc: 2\n"), ("labels/a.txt", "")),
            "labels/a.txt is not UTF-8 text": _zip(("data.yaml", "names: [car]"),
                                                   ("labels/a.txt", b"\xff\xfe0 0.5")),
        },
    }  # fmt: skip
    for fmt, cases in failing.items():
        for reason, content in cases.items():
            done = await _import(world, db, redis, settings, world.dataset, content, format=fmt)
            assert done["status"] == "failed", (reason, done)
            assert reason in done["error"], (reason, done["error"])
    assert await db.items.count_documents({}) == 0
    assert await db.annotations.count_documents({}) == 0
    assert await db.blobs.count_documents({}) == 0


async def test_uploads_a_format_cannot_read_are_refused_and_nothing_is_stored(member, db):
    world = await make_world(member)
    refused = {
        ("YOLO", "Upload YOLO labels as a .zip"): b"0 0.5 0.5 0.1 0.1\n",
        ("YOLO", "needs data.yaml (or classes.txt)"): _zip(("labels/a.txt", "0 0 0 1 1")),
        ("YOLO", "a path with '..'"): _zip(("data.yaml", "names: [a]"), ("../labels/a.txt", "")),
        ("VOC", "holds no Pascal VOC .xml file"): _zip(("a.json", "{}")),
        ("VOC", "Upload a Pascal VOC .xml file"): b'{"images": []}',
        ("COCO", "one COCO .json file"): _zip(("a.xml", "<annotation/>")),
    }
    for (fmt, reason), content in refused.items():
        body = await world.client.upload(
            IMPORT, {"file": ("upload", content, "application/zip")}, d=world.dataset,
            input={"format": fmt},
        )  # fmt: skip
        [error] = body["errors"]
        assert error["extensions"]["code"] == "BAD_USER_INPUT", body
        assert reason in error["message"], (reason, error["message"])
    assert await db.commands.count_documents({}) == 0
    assert await db["imports.files"].count_documents({}) == 0


async def test_images_are_uploaded_only_for_roles_that_may_upload_items(
    member, db, redis, settings
):
    world = await make_world(member)
    archive = _zip(("data.yaml", "names: [car]"), ("images/a.png", image_bytes("PNG", 8, 8)),
                   ("labels/a.txt", "0 0.5 0.5 0.5 0.5\n"))  # fmt: skip
    for case in PROJECT_CASES:
        if project_outcome(case, Action.WRITE_ANNOTATIONS) is not None:
            continue
        client = await project_caller(member, world, case)
        target = await _new_dataset(world, f"for {case.id}")
        done = await _import(world, db, redis, settings, target, archive, client, format="YOLO")
        may_upload = project_outcome(case, Action.WRITE_ITEMS) is None
        assert done["result"].get("createdItems", 0) == int(may_upload), case.id
        assert await db.items.count_documents({"datasetId": ObjectId(target)}) == may_upload
        if not may_upload:
            [error] = done["result"]["errors"]
            assert error["message"] == "no item at /a.png, and your role may not upload items"


async def test_an_import_writes_only_into_its_own_dataset_whatever_other_tenants_hold(
    member, db, redis, settings
):
    world = await make_world(member)
    rival = await make_world(member, org="rival")
    png = image_bytes("PNG", 8, 8)
    theirs = await rival.upload("a.png", png)
    archive = _zip(("data.yaml", "names: [car]"), ("images/a.png", png),
                   ("labels/a.txt", "0 0.5 0.5 0.5 0.5\n"))  # fmt: skip
    done = await _import(world, db, redis, settings, world.dataset, archive, format="YOLO")
    assert done["result"]["createdItems"] == 1
    [mine] = await db.items.find({"datasetId": ObjectId(world.dataset)}).to_list()
    assert (str(mine["orgId"]), mine["filename"]) == (world.org, "/a.png")
    assert mine["_id"] != ObjectId(theirs["id"])
    rival_items = await db.items.find({"datasetId": ObjectId(rival.dataset)}).to_list()
    assert [(i["annotationsCount"], i["_id"]) for i in rival_items] == [(0, ObjectId(theirs["id"]))]
    assert Counter(a["orgId"] for a in await db.annotations.find().to_list()) == {
        ObjectId(world.org): 1}  # fmt: skip
    rival_dataset = await db.datasets.find_one({"_id": ObjectId(rival.dataset)})
    assert (rival_dataset["itemsCount"], rival_dataset["annotationsCount"]) == (1, 0)
    assert json.dumps(done["result"]).count(rival.dataset) == 0


async def test_a_lone_voc_xml_or_coco_json_upload_is_read_whatever_its_name(
    member, db, redis, settings
):
    world = await make_world(member)
    await world.upload("a.png", image_bytes("PNG", 20, 10))
    xml = ("<annotation><filename>a.png</filename><object><name>car</name><bndbox><xmin>2</xmin>"
           "<ymin>2</ymin><xmax>6</xmax><ymax>6</ymax></bndbox></object></annotation>")  # fmt: skip
    coco = json.dumps({"images": [{"id": 1, "file_name": "a.png"}], "categories": [
        {"id": 1, "name": "bus"}], "annotations": [
        {"image_id": 1, "category_id": 1, "bbox": [0, 0, 2, 2]}]})  # fmt: skip
    for fmt, content in (("VOC", xml), ("COCO", coco)):
        done = await _import(world, db, redis, settings, world.dataset, content.encode(),
                             format=fmt, mode="CONCATENATE")  # fmt: skip
        assert (done["status"], done["result"]["importedAnnotations"]) == ("success", 1), done
    shapes = (await _shapes(db, world.dataset))["/a.png"]
    assert [(d["label"], d["coordinates"]) for d in shapes] == [
        ("bus", {"left": 0, "top": 0, "right": 2, "bottom": 2}),
        ("car", {"left": 1, "top": 1, "right": 6, "bottom": 6}),
    ]
