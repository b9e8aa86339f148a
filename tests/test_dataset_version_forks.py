"""Forks and comparisons of dataset versions: a fork is an editable dataset holding what the
version held (files shared, even of items deleted since), and a comparison names exactly the
items and annotations added, removed and changed between two versions."""

from bson import ObjectId

from tests.datasets_world import image_bytes, make_world
from tests.test_dataset_splits import SPLIT
from tests.test_dataset_versions import (
    BOX,
    CREATE_MANY,
    DELETE_ITEMS,
    LIVE,
    UPDATE_ANNOTATION,
    UPDATE_ITEM,
    VERSION,
    _seeded,
    _version,
    _version_named,
)
from tests.workers import run_command_here

FORK = """mutation($id: ID!, $input: ForkInput!) { forkDatasetVersion(id: $id, input: $input) {
  id type status input } }"""
DATASET = """query($id: ID!) { dataset(id: $id) { name description readonly itemsCount
  annotationsCount labels { name } items(first: 50) { nodes {
    name metadata tags downloadUrl annotations { label coordinates } } } } }"""
COMPARE = """query($a: ID!, $b: ID!, $first: Int) {
  compareDatasetVersions(a: $a, b: $b, first: $first) {
  items { added { count itemIds } removed { count itemIds } changed { count itemIds } }
  annotations { label added removed changed }
  labels { label added removed changed } } }"""
DELETE_ANNOTATIONS = "mutation($ids: [ID!]!) { deleteAnnotations(ids: $ids) }"


async def _forked(world, db, redis, settings, version: str, **fork_input) -> dict:
    started = await world.client.data(FORK, id=version, input=fork_input)
    command = started["forkDatasetVersion"]
    assert (command["type"], command["status"]) == ("datasetClone", "created")
    await run_command_here(db, redis, settings, command["id"])
    target = command["input"]["targetId"]
    return (await world.client.data(DATASET, id=target))["dataset"]


async def test_a_fork_is_an_editable_dataset_of_what_the_version_held(
    member, db, redis, settings, http
):
    world = await make_world(member)
    a, b, c = await _seeded(world)
    await world.client.data(UPDATE_ITEM, id=a["id"], input={"tags": ["reviewed"]})
    version = await _version(world, db, redis, settings)
    await world.client.data(DELETE_ITEMS, d=world.dataset, ids=[b["id"]])
    await world.client.data(UPDATE_ITEM, id=c["id"], input={"metadata": {"late": True}})
    whole = await _forked(world, db, redis, settings, version, name="v1 fork")
    assert (whole["readonly"], whole["itemsCount"], whole["annotationsCount"]) == (False, 3, 3)
    assert whole["description"] == "Fork of version 'v1'"
    assert whole["labels"] == [{"name": "car"}, {"name": "truck"}]
    items = {node["name"]: node for node in whole["items"]["nodes"]}
    assert items["a.png"]["tags"] == ["reviewed"]
    assert items["c.png"]["metadata"]["user"] == {"n": 2}
    assert [x["label"] for x in items["a.png"]["annotations"]] == ["car", "car"]
    assert items["b.png"]["annotations"] == [{"label": "truck", "coordinates": BOX}]
    headers = {"Authorization": f"Bearer {world.client.key}"}
    response = await http.get(items["b.png"]["downloadUrl"], headers=headers)
    assert response.content == image_bytes("PNG", 8, 8, (4, 5, 6))
    bare = await _forked(
        world,
        db,
        redis,
        settings,
        version,
        name="bare",
        withAnnotations=False,
        withTags=False,
        withMetadata=False,
        withLabels=False,
    )
    assert (bare["itemsCount"], bare["annotationsCount"], bare["labels"]) == (3, 0, [])
    assert all(node["tags"] == [] for node in bare["items"]["nodes"])
    assert all(node["metadata"]["user"] == {} for node in bare["items"]["nodes"])
    refs = {blob["_id"]: blob["refs"] for blob in await db.blobs.find().to_list()}
    assert sorted(refs.values()) == [3, 4, 4]  # b: the version and two forks; a, c: + live
    assert await world.client.code(FORK, id=version, input={"name": "bare"}) == "CONFLICT"


def _without_urls(nodes: list[dict]) -> list[dict]:
    """Version items as read, but for their download URLs (which name the version)."""
    return [{k: v for k, v in node.items() if k != "downloadUrl"} for node in nodes]


async def _forked_version(world, db, redis, settings, version: str, **fork_input) -> dict:
    started = await world.client.data(FORK, id=version, input={"into": "VERSION", **fork_input})
    command = started["forkDatasetVersion"]
    assert (command["type"], command["status"]) == ("datasetVersion", "created")
    await run_command_here(db, redis, settings, command["id"])
    forked = command["input"]["versionId"]
    return (await world.client.data(VERSION, id=forked))["datasetVersion"] | {"id": forked}


async def test_a_version_forked_into_a_version_holds_what_its_source_held_with_its_options(
    member, db, redis, settings
):
    world = await make_world(member)
    a, b, _ = await _seeded(world)
    await world.client.data(UPDATE_ITEM, id=a["id"], input={"tags": ["reviewed"]})
    version = await _version(world, db, redis, settings)
    ratios = [{"name": "train", "ratio": 0.5}, {"name": "val", "ratio": 0.5}]
    await world.client.data(SPLIT, id=version, input={"ratios": ratios, "seed": "7"})
    await world.client.data(DELETE_ITEMS, d=world.dataset, ids=[b["id"]])
    await world.client.data(UPDATE_ITEM, id=a["id"], input={"tags": ["late"]})
    whole = await _forked_version(world, db, redis, settings, version, name="v1 again")
    source = (await world.client.data(VERSION, id=version))["datasetVersion"]
    assert (whole["status"], whole["dataset"], whole["labels"]) == (
        "READY", {"id": world.dataset}, source["labels"])  # fmt: skip
    assert (whole["itemsCount"], whole["annotationsCount"]) == (3, 3)
    assert _without_urls(whole["items"]["nodes"]) == _without_urls(source["items"]["nodes"])
    nodes = {node["name"]: node for node in whole["items"]["nodes"]}
    assert nodes["a.png"]["tags"] == ["reviewed"]
    assert [x["label"] for x in nodes["b.png"]["annotations"]] == ["truck"]
    copies = await db.version_items.find({"versionId": ObjectId(whole["id"])}).to_list()
    assert {copy["split"] for copy in copies} == {None}
    bare = await _forked_version(
        world, db, redis, settings, version, name="bare", withAnnotations=False,
        withTags=False, withMetadata=False, withLabels=False,
    )  # fmt: skip
    assert (bare["itemsCount"], bare["annotationsCount"], bare["labels"]) == (3, 0, [])
    assert all(node["tags"] == [] and node["annotations"] == [] for node in bare["items"]["nodes"])
    assert all(node["metadata"]["user"] == {} for node in bare["items"]["nodes"])
    source_after = (await world.client.data(VERSION, id=version))["datasetVersion"]
    assert source_after == source
    refs = {blob["_id"]: blob["refs"] for blob in await db.blobs.find().to_list()}
    assert sorted(refs.values()) == [3, 4, 4]  # b: three versions; a, c: + live
    taken = {"into": "VERSION", "name": "bare"}
    assert await world.client.code(FORK, id=version, input=taken) == "CONFLICT"
    rival = await make_world(member, org="rival")
    assert await rival.client.code(FORK, id=version, input={**taken, "name": "x"}) == "NOT_FOUND"
    assert await db.dataset_versions.count_documents({}) == 3


async def test_a_comparison_names_exactly_what_was_added_removed_and_changed(
    member, db, redis, settings
):
    world = await make_world(member)
    a, b, c = await _seeded(world)
    first = await _version(world, db, redis, settings)
    live = (await world.client.data(LIVE, id=world.dataset))["dataset"]["items"]["nodes"]
    by_name = {node["name"]: node for node in live}
    await world.client.data(UPDATE_ITEM, id=a["id"], input={"metadata": {"n": 10}})
    truck = by_name["b.png"]["annotations"][0]["id"]
    await world.client.data(UPDATE_ANNOTATION, id=truck, input={"label": "car"})
    await world.client.data(DELETE_ITEMS, d=world.dataset, ids=[c["id"]])
    d = await world.upload("d.png", image_bytes("PNG", 8, 8, (0, 0, 1)))
    new = {"itemId": d["id"], "type": "BOX", "label": "car", "coordinates": BOX}
    await world.client.data(CREATE_MANY, inputs=[new])
    await world.client.data(DELETE_ANNOTATIONS, ids=[by_name["a.png"]["annotations"][0]["id"]])
    second = await _version_named(world, db, redis, settings, "v2")
    found = (await world.client.data(COMPARE, a=first, b=second))["compareDatasetVersions"]
    assert found["items"] == {
        "added": {"count": 1, "itemIds": [d["id"]]},
        "removed": {"count": 1, "itemIds": [c["id"]]},
        "changed": {"count": 2, "itemIds": sorted([a["id"], b["id"]])},
    }
    assert found["annotations"] == {"label": None, "added": 1, "removed": 1, "changed": 1}
    assert found["labels"] == [{"label": "car", "added": 1, "removed": 1, "changed": 1}]
    backwards = (await world.client.data(COMPARE, a=second, b=first))["compareDatasetVersions"]
    assert backwards["items"]["added"]["itemIds"] == [c["id"]]
    assert backwards["labels"] == [
        {"label": "car", "added": 1, "removed": 1, "changed": 0},
        {"label": "truck", "added": 0, "removed": 0, "changed": 1},
    ]
    same = (await world.client.data(COMPARE, a=first, b=first, first=1))["compareDatasetVersions"]
    assert same["items"]["changed"] == {"count": 0, "itemIds": []}
    assert same["labels"] == []
    other = await make_world(member, org="rival")
    elsewhere = await _version(other, db, redis, settings)
    assert await world.client.code(COMPARE, a=first, b=elsewhere) == "NOT_FOUND"
    await world.client.data(
        'mutation($p: ID!) { createDataset(projectId: $p, input: {name: "two"}) { id } }',
        p=world.project,
    )
    two = (await db.datasets.find_one({"name": "two"}))["_id"]
    world.dataset = str(two)
    sibling = await _version_named(world, db, redis, settings, "of two")
    assert await world.client.code(COMPARE, a=first, b=sibling) == "BAD_USER_INPUT"
    assert await db.version_items.count_documents({"versionId": ObjectId(sibling)}) == 0
