"""COCO imports: an export imported into a dataset of the same items reproduces its
annotations exactly; modes, missing labels and refused elements behave as documented, item by
item; unsafe or malformed uploads are refused clearly and change nothing."""

import io
import json
import stat
import zipfile

from bson import ObjectId

from resolvers.access import Action
from tests.datasets_world import image_bytes, make_world
from tests.test_dataset_versions import ADD_LABELS, _version
from tests.test_exports import EXPORT_VERSION, _exported, _scenes
from tests.test_roles import ALL_CASES, _attempt, project_caller, project_outcome
from tests.workers import run_command_here

IMPORT = """mutation($d: ID!, $file: Upload!, $input: ImportInput) {
  importAnnotations(datasetId: $d, file: $file, input: $input) { id type status } }"""
COMMAND = "query($id: ID!) { command(id: $id) { status error result } }"
FORK = """mutation($id: ID!, $input: ForkInput!) { forkDatasetVersion(id: $id, input: $input) {
  id input } }"""
FIELDS = ("type", "label", "coordinates", "attributes")
"""What COCO carries of an annotation (it has no status)."""


async def _upload(world, dataset: str, name: str, content: bytes, **options) -> dict:
    """The import's answer: its command, or the error it was refused with."""
    body = await world.client.upload(
        IMPORT, {"file": (name, content, "application/octet-stream")}, d=dataset,
        input=options or None,
    )  # fmt: skip
    return body


async def _imported(world, db, redis, settings, dataset: str, content: bytes, **options):
    body = await _upload(world, dataset, "coco.zip", content, **options)
    assert not body.get("errors"), body
    command = body["data"]["importAnnotations"]
    assert (command["type"], command["status"]) == ("import", "created")
    await run_command_here(db, redis, settings, command["id"])
    return (await world.client.data(COMMAND, id=command["id"]))["command"]


async def _held(db, dataset: str) -> dict[str, list[dict]]:
    """Each item's annotations by path, as Loom holds them (the fields an import sets)."""
    items = {i["_id"]: i["filename"] async for i in db.items.find({"datasetId": ObjectId(dataset)})}
    held: dict[str, list[dict]] = {path: [] for path in items.values()}
    async for doc in db.annotations.find({"datasetId": ObjectId(dataset)}).sort("_id", 1):
        held[items[doc["itemId"]]].append({k: doc[k] for k in FIELDS})
    return {path: sorted(docs, key=json.dumps) for path, docs in held.items()}


async def _counters_agree(db, dataset: str) -> None:
    total = await db.annotations.count_documents({"datasetId": ObjectId(dataset)})
    assert (await db.datasets.find_one({"_id": ObjectId(dataset)}))["annotationsCount"] == total
    async for item in db.items.find({"datasetId": ObjectId(dataset)}):
        n = await db.annotations.count_documents({"itemId": item["_id"]})
        assert (item["annotationsCount"], item["annotated"]) == (n, n > 0)


async def _fork_without_annotations(world, db, redis, settings, version: str, name: str) -> str:
    fork = {"name": name, "withAnnotations": False}
    started = (await world.client.data(FORK, id=version, input=fork))["forkDatasetVersion"]
    await run_command_here(db, redis, settings, started["id"])
    return started["input"]["targetId"]


async def test_an_exported_version_imported_into_the_same_items_is_reproduced_in_every_mode(
    member, db, redis, settings, http
):
    world = await make_world(member)
    await _scenes(world)
    version = await _version(world, db, redis, settings)
    exported = await _exported(
        world, db, redis, settings, http, EXPORT_VERSION, id=version, input={}
    )
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as rezipped:
        rezipped.writestr("annotations/instances.json", exported["archive"].read(
            "annotations/instances.json"))  # fmt: skip
    target = await _fork_without_annotations(world, db, redis, settings, version, "again")
    done = await _imported(world, db, redis, settings, target, archive.getvalue())
    assert done["status"] == "success", done["error"]
    assert done["result"]["importedAnnotations"] == 4
    assert done["result"]["errorsCount"] == 0
    original = {
        path: [d for d in docs if d["type"] != "point"]
        for path, docs in (await _held(db, world.dataset)).items()
    }
    assert await _held(db, target) == original
    await _counters_agree(db, target)
    again = await _imported(world, db, redis, settings, target, archive.getvalue(),
                            mode="CONCATENATE")  # fmt: skip
    assert again["result"]["importedAnnotations"] == 4
    doubled = await _held(db, target)
    assert {path: len(docs) for path, docs in doubled.items()} == {
        path: 2 * len(docs) for path, docs in original.items()
    }
    skipped = await _imported(world, db, redis, settings, target, archive.getvalue(), mode="SKIP")
    assert skipped["result"]["skippedItems"] == 3
    assert await _held(db, target) == doubled
    replaced = await _imported(world, db, redis, settings, target, archive.getvalue())
    assert replaced["result"]["replacedAnnotations"] == 8
    assert await _held(db, target) == original
    await _counters_agree(db, target)


def _coco(images: list[dict], annotations: list[dict], categories: list[dict]) -> bytes:
    return json.dumps({"images": images, "annotations": annotations,
                       "categories": categories}).encode()  # fmt: skip


async def test_each_item_is_all_or_nothing_and_every_refused_element_is_named(
    member, db, redis, settings
):
    world = await make_world(member)
    await world.client.data(ADD_LABELS, id=world.dataset, l=[{"name": "car"}])
    for name in ("a.png", "b.png"):
        await world.upload(name, image_bytes("PNG", 20, 10))
    content = _coco(
        images=[{"id": 1, "file_name": "a.png"}, {"id": 2, "file_name": "b.png"},
                {"id": 3, "file_name": "nowhere.png"}],
        annotations=[
            {"id": 10, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5]},
            {"id": 11, "image_id": 1, "category_id": 1, "bbox": [15, 5, 10, 10]},
            {"id": 12, "image_id": 2, "category_id": 1, "bbox": [0, 0, 4, 4], "iscrowd": 1},
            {"id": 13, "image_id": 2, "category_id": 2, "bbox": [1, 1, 2, 2]},
            {"id": 14, "image_id": 3, "category_id": 1, "bbox": [1, 1, 2, 2]},
        ],
        categories=[{"id": 1, "name": "car"}, {"id": 2, "name": "bus"}],
    )  # fmt: skip
    done = await _imported(world, db, redis, settings, world.dataset, content)
    assert done["status"] == "success", done["error"]
    result = done["result"]
    assert (result["importedAnnotations"], result["refusedItems"], result["unmatchedImages"]) == (
        0, 2, 1)  # fmt: skip
    elements = {error["element"]: error["message"] for error in result["errors"]}
    assert set(elements) == {"annotations[1] (id 11)", "annotations[3] (id 13)", "images[2]"}
    assert "width" in elements["annotations[1] (id 11)"] or "20" in elements[
        "annotations[1] (id 11)"]  # fmt: skip
    assert "bus" in elements["annotations[3] (id 13)"]
    assert elements["images[2]"] == "no item at /nowhere.png"
    assert await db.annotations.count_documents({}) == 0
    labelled = await _imported(world, db, redis, settings, world.dataset, content,
                               createMissingLabels=True)  # fmt: skip
    assert labelled["result"]["importedAnnotations"] == 2
    dataset = await db.datasets.find_one({"_id": ObjectId(world.dataset)})
    assert [label["name"] for label in dataset["labels"]] == ["car", "bus"]
    held = await _held(db, world.dataset)
    assert held["/a.png"] == []  # still refused: a box outside the image
    assert [(d["label"], d["attributes"]) for d in held["/b.png"]] == [
        ("bus", {}), ("car", {"iscrowd": True})]  # fmt: skip
    await _counters_agree(db, world.dataset)


def _zip(*members: tuple[str, bytes], link: str | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in members:
            archive.writestr(name, content)
        if link is not None:
            info = zipfile.ZipInfo(link)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, "/etc/passwd")
    return buffer.getvalue()


async def test_unsafe_or_malformed_uploads_are_refused_clearly_and_change_nothing(
    member, db, redis, settings
):
    world = await make_world(member)
    await world.upload("a.png", image_bytes("PNG", 20, 10))
    coco = _coco([{"id": 1, "file_name": "a.png"}],
                 [{"image_id": 1, "category_id": 1, "bbox": [1, 1, 2, 2]}],
                 [{"id": 1, "name": "car"}])  # fmt: skip
    refused = {
        "a path with '..'": _zip(("../coco.json", coco)),
        "an absolute path": _zip(("/tmp/coco.json", coco)),
        "a symbolic link": _zip(("coco.json", coco), link="images/a.png"),
        "zip bomb": _zip(("coco.json", coco), ("images/zeros.bin", bytes(50 << 20))),
        "one COCO .json file": _zip(("a.json", coco), ("b.json", coco)),
        "not a readable zip": b"PK\x03\x04 truncated",
        "Upload a COCO .json file": b"GIF89a",
    }
    for reason, content in refused.items():
        body = await _upload(world, world.dataset, "upload.zip", content)
        [error] = body["errors"]
        assert error["extensions"]["code"] == "BAD_USER_INPUT", body
        assert reason in error["message"], (reason, error["message"])
    assert await db.commands.count_documents({}) == 0
    assert await db["imports.files"].count_documents({}) == 0
    malformed = {
        "not JSON: Expecting": b'{"images": [',
        "images[0] needs a file_name": _coco([{"id": 1}], [], []),
        "must have a list 'categories'": b'{"images": [], "annotations": []}',
    }
    for reason, content in malformed.items():
        body = await _upload(world, world.dataset, "coco.json", content)
        command = body["data"]["importAnnotations"]
        await run_command_here(db, redis, settings, command["id"])
        done = (await world.client.data(COMMAND, id=command["id"]))["command"]
        assert done["status"] == "failed"
        assert reason in done["error"], (reason, done["error"])
    assert await db.annotations.count_documents({}) == 0


async def test_importing_follows_the_role_tables_and_stays_in_its_tenant(member, db):
    world = await make_world(member)
    await world.upload("a.png", image_bytes("PNG", 20, 10))
    content = _coco([{"id": 1, "file_name": "a.png"}], [], [])
    for case in ALL_CASES:
        client = await project_caller(member, world, case)
        body = await client.upload(
            IMPORT, {"file": ("c.json", content, "application/json")}, d=world.dataset
        )
        code = body["errors"][0]["extensions"]["code"] if body.get("errors") else None
        assert code == project_outcome(case, Action.WRITE_ANNOTATIONS), case.id
    rival = await make_world(member, org="rival")
    body = await rival.client.upload(
        IMPORT, {"file": ("c.json", content, "application/json")}, d=world.dataset
    )
    assert body["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    mine = await _upload(world, world.dataset, "c.json", content)
    command = mine["data"]["importAnnotations"]["id"]
    assert await _attempt(rival.client, COMMAND, id=command) == "NOT_FOUND"
    assert await _attempt(world.client, COMMAND, id=command) is None
