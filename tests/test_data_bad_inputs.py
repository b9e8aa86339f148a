"""Every data mutation refuses malformed input with BAD_USER_INPUT and writes nothing."""

import pytest

from tests.datasets_world import image_bytes, make_world
from tests.snapshots import snapshot

UPDATE_DATASET = """mutation($id: ID!, $input: DatasetChangesInput!) {
  updateDataset(id: $id, input: $input) { id } }"""
UPDATE_ITEM = """mutation($id: ID!, $input: ItemChangesInput!) {
  updateItem(id: $id, input: $input) { id } }"""
MOVE = """mutation($d: ID!, $ids: [ID!]!, $dir: String!) {
  moveItems(datasetId: $d, itemIds: $ids, dir: $dir) }"""
DELETE_ITEMS = "mutation($d: ID!, $ids: [ID!]!) { deleteItems(datasetId: $d, itemIds: $ids) }"
CLONE = """mutation($id: ID!, $input: CloneDatasetInput!) {
  cloneDataset(datasetId: $id, input: $input) { id } }"""
DELETE_ANNOTATIONS = "mutation($ids: [ID!]!) { deleteAnnotations(ids: $ids) }"


@pytest.fixture
async def world_with_item(member):
    world = await make_world(member)
    item = await world.upload("a.png", image_bytes("PNG", 4, 4))
    return world, item["id"]


CASES = [
    ("update-dataset-nothing", UPDATE_DATASET, lambda w, i: {"id": w.dataset, "input": {}}),
    (
        "update-dataset-long-name",
        UPDATE_DATASET,
        lambda w, i: {"id": w.dataset, "input": {"name": "n" * 101}},
    ),
    ("update-item-nothing", UPDATE_ITEM, lambda w, i: {"id": i, "input": {}}),
    ("update-item-slash", UPDATE_ITEM, lambda w, i: {"id": i, "input": {"name": "a/b"}}),
    ("update-item-dir", UPDATE_ITEM, lambda w, i: {"id": i, "input": {"dir": "../up"}}),
    (
        "update-item-metadata",
        UPDATE_ITEM,
        lambda w, i: {"id": i, "input": {"metadata": {"$set": 1}}},
    ),
    ("move-bad-dir", MOVE, lambda w, i: {"d": w.dataset, "ids": [i], "dir": "nowhere"}),
    ("move-bad-id", MOVE, lambda w, i: {"d": w.dataset, "ids": ["zz"], "dir": "/a"}),
    ("move-too-many", MOVE, lambda w, i: {"d": w.dataset, "ids": [i] * 1001, "dir": "/a"}),
    ("delete-too-many", DELETE_ITEMS, lambda w, i: {"d": w.dataset, "ids": [i] * 1001}),
    ("clone-empty-name", CLONE, lambda w, i: {"id": w.dataset, "input": {"name": " "}}),
    ("clone-taken-name", CLONE, lambda w, i: {"id": w.dataset, "input": {"name": "cars"}}),
    ("delete-annotation-bad-id", DELETE_ANNOTATIONS, lambda w, i: {"ids": ["nope"]}),
]


@pytest.mark.parametrize(("query", "variables"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
async def test_malformed_data_mutation_is_refused_and_writes_nothing(
    world_with_item, db, query, variables
):
    world, item = world_with_item
    before = await snapshot(db)
    code = await world.client.code(query, **variables(world, item))
    assert code == (
        "CONFLICT"
        if variables(world, item).get("input") == {"name": "cars"}
        else ("BAD_USER_INPUT")
    )
    assert await snapshot(db) == before
