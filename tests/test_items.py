"""Items: uploads with real image headers, shared content, downloads, changes, deletion."""

import asyncio
import hashlib

import pytest
from bson import ObjectId

from tests.datasets_world import UPLOAD, image_bytes, make_world
from tests.snapshots import snapshot

ITEM = """query($id: ID!) { item(id: $id) { id name dir filename metadata tags description
  hidden downloadUrl dataset { id name itemsCount } } }"""
UPDATE_ITEM = """mutation($id: ID!, $input: ItemChangesInput!) {
  updateItem(id: $id, input: $input) { name dir filename metadata tags description hidden } }"""
MOVE = """mutation($d: ID!, $ids: [ID!]!, $dir: String!) {
  moveItems(datasetId: $d, itemIds: $ids, dir: $dir) }"""
DELETE_ITEMS = "mutation($d: ID!, $ids: [ID!]!) { deleteItems(datasetId: $d, itemIds: $ids) }"
COUNTS = "query($id: ID!) { dataset(id: $id) { itemsCount directories } }"
DUPLICATES = """query($id: ID!) { dataset(id: $id) {
  duplicates { sha256 count itemIds } } }"""


async def test_png_and_jpeg_uploads_report_their_pixel_size(member):
    world = await make_world(member)
    png = await world.upload("wide.png", image_bytes("PNG", 64, 32), "image/png")
    jpeg = await world.upload("tall.jpg", image_bytes("JPEG", 24, 48), "image/jpeg")
    assert (png["width"], png["height"], png["mimetype"]) == (64, 32, "image/png")
    assert (jpeg["width"], jpeg["height"], jpeg["mimetype"]) == (24, 48, "image/jpeg")


async def test_non_image_upload_has_no_dimensions_and_a_guessed_type(member):
    world = await make_world(member)
    item = await world.upload("notes.txt", b"hello", "application/octet-stream")
    assert (item["width"], item["height"], item["mimetype"]) == (None, None, "text/plain")
    assert item["size"] == 5
    assert item["sha256"] == hashlib.sha256(b"hello").hexdigest()


async def test_identical_uploads_share_one_stored_file(member, db):
    world = await make_world(member)
    content = image_bytes("PNG", 16, 16)
    first = await world.upload("a.png", content)
    second = await world.upload("b.png", content, dir="/copies")
    assert first["sha256"] == second["sha256"]
    assert await db.blobs.count_documents({}) == 1
    assert (await db.blobs.find_one())["refs"] == 2
    assert await db["files.files"].count_documents({}) == 1


async def test_upload_stores_metadata_tags_and_directory(member):
    world = await make_world(member)
    item = await world.upload(
        "a.png",
        image_bytes("PNG", 4, 4),
        dir="/train/city",
        metadata={"split": "train", "weather": {"rain": True}},
        tags=["night"],
    )
    assert item["filename"] == "/train/city/a.png"
    assert item["metadata"]["user"] == {"split": "train", "weather": {"rain": True}}
    assert item["metadata"]["system"] == {"originalName": "a.png"}
    dataset = await world.client.data(COUNTS, id=world.dataset)
    assert dataset["dataset"] == {"itemsCount": 1, "directories": ["/", "/train", "/train/city"]}


@pytest.mark.parametrize(
    "item_input",
    [
        {"name": "a/b.png"},
        {"dir": "relative"},
        {"metadata": {"$where": 1}},
        {"metadata": {"a.b": 1}},
        {"metadata": {"blob": "x" * 70_000}},
        {"tags": ["x" * 101]},
    ],
    ids=["slash-in-name", "relative-dir", "dollar-key", "dotted-key", "huge", "long-tag"],
)
async def test_bad_upload_input_is_refused_and_stores_nothing(member, db, item_input):
    world = await make_world(member)
    before = await snapshot(db)
    body = await world.client.upload(
        UPLOAD,
        {"file": ("a.png", image_bytes("PNG", 4, 4), "image/png")},
        dataset=world.dataset,
        input=item_input,
    )
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert await snapshot(db) == before


async def test_same_path_twice_is_a_conflict_and_the_second_copy_is_not_kept(member, db):
    world = await make_world(member)
    await world.upload("a.png", image_bytes("PNG", 4, 4))
    before = await snapshot(db)
    body = await world.client.upload(
        UPLOAD,
        {"file": ("a.png", image_bytes("PNG", 5, 5), "image/png")},
        dataset=world.dataset,
    )
    assert body["errors"][0]["extensions"]["code"] == "CONFLICT"
    assert await snapshot(db) == before


async def test_fifty_concurrent_uploads_leave_exact_counters_and_shared_files(member, db):
    world = await make_world(member)
    same = image_bytes("PNG", 10, 10)
    uploads = [
        world.upload(f"img-{i:02}.png", same if i % 2 else image_bytes("PNG", 11 + i, 10))
        for i in range(50)
    ]
    items = await asyncio.gather(*uploads)
    assert len({item["id"] for item in items}) == 50
    counts = await world.client.data(COUNTS, id=world.dataset)
    assert counts["dataset"]["itemsCount"] == 50
    assert await db.items.count_documents({"datasetId": ObjectId(world.dataset)}) == 50
    blobs = {b["_id"]: b["refs"] for b in await db.blobs.find().to_list()}
    assert len(blobs) == 26
    assert blobs[hashlib.sha256(same).hexdigest()] == 25
    assert await db["files.files"].count_documents({}) == 26


async def test_download_streams_the_file_with_its_type_to_callers_who_may_see_it(member, http):
    world = await make_world(member)
    content = image_bytes("JPEG", 20, 10)
    item = await world.upload("photo.jpg", content, "image/jpeg")
    url = f"/items/{item['id']}/file"
    response = await http.get(url, headers={"Authorization": f"Bearer {world.client.key}"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/jpeg"
    assert response.content == content
    assert (await http.get(url)).status_code == 401
    stranger, _ = await member("other", "owner")
    refused = await http.get(url, headers={"Authorization": f"Bearer {stranger.key}"})
    assert refused.status_code == 404
    assert refused.json()["error"]["code"] == "NOT_FOUND"
    assert content not in refused.content


async def test_item_changes_rename_move_retag_and_replace_user_metadata(member):
    world = await make_world(member)
    item = await world.upload("a.png", image_bytes("PNG", 4, 4), metadata={"old": 1})
    changed = await world.client.data(
        UPDATE_ITEM,
        id=item["id"],
        input={
            "name": "b.png",
            "dir": "/val",
            "metadata": {"new": 2},
            "tags": ["x"],
            "description": "d",
            "hidden": True,
        },
    )
    assert changed["updateItem"] == {
        "name": "b.png",
        "dir": "/val",
        "filename": "/val/b.png",
        "metadata": {"user": {"new": 2}, "system": {"originalName": "a.png"}},
        "tags": ["x"],
        "description": "d",
        "hidden": True,
    }
    assert "/val" in (await world.client.data(COUNTS, id=world.dataset))["dataset"]["directories"]


async def test_moving_items_onto_an_existing_name_moves_none_of_them(member, db):
    world = await make_world(member)
    a = await world.upload("a.png", image_bytes("PNG", 4, 4))
    b = await world.upload("b.png", image_bytes("PNG", 5, 5))
    await world.upload("b.png", image_bytes("PNG", 6, 6), dir="/target")
    before = await snapshot(db)
    code = await world.client.code(MOVE, d=world.dataset, ids=[a["id"], b["id"]], dir="/target")
    assert code == "CONFLICT"
    assert await snapshot(db) == before
    moved = await world.client.data(MOVE, d=world.dataset, ids=[a["id"]], dir="/target")
    assert moved["moveItems"] == 1


async def test_deleting_items_updates_counts_and_frees_unshared_files(member, db):
    world = await make_world(member)
    shared = image_bytes("PNG", 4, 4)
    a = await world.upload("a.png", shared)
    await world.upload("b.png", shared)
    c = await world.upload("c.png", image_bytes("PNG", 7, 7))
    deleted = await world.client.data(DELETE_ITEMS, d=world.dataset, ids=[a["id"], c["id"]])
    assert deleted["deleteItems"] == 2
    assert (await world.client.data(COUNTS, id=world.dataset))["dataset"]["itemsCount"] == 1
    assert [b["refs"] for b in await db.blobs.find().to_list()] == [1]
    assert await db["files.files"].count_documents({}) == 1


async def test_deleting_an_item_of_another_dataset_deletes_nothing(member, db):
    world = await make_world(member)
    item = await world.upload("a.png", image_bytes("PNG", 4, 4))
    other = await make_world(member, org="beta")
    before = await snapshot(db)
    assert await other.client.code(DELETE_ITEMS, d=other.dataset, ids=[item["id"]]) == "NOT_FOUND"
    assert await snapshot(db) == before


async def test_duplicates_group_items_by_content_with_counts(member):
    world = await make_world(member)
    twice = image_bytes("PNG", 4, 4)
    thrice = image_bytes("PNG", 5, 5)
    ids = {}
    for name, content in [("a", twice), ("b", twice), ("c", thrice), ("d", thrice), ("e", thrice)]:
        ids[name] = (await world.upload(f"{name}.png", content))["id"]
    await world.upload("unique.png", image_bytes("PNG", 6, 6))
    groups = (await world.client.data(DUPLICATES, id=world.dataset))["dataset"]["duplicates"]
    assert [(g["count"], sorted(g["itemIds"])) for g in groups] == [
        (3, sorted([ids["c"], ids["d"], ids["e"]])),
        (2, sorted([ids["a"], ids["b"]])),
    ]
    assert groups[0]["sha256"] == hashlib.sha256(thrice).hexdigest()
