"""Datasets: create, change, readonly, ontology, directories, deletion with confirmation."""

import asyncio

import pytest
from bson import ObjectId

from tests.datasets_world import CREATE_DATASET, image_bytes, make_world
from tests.snapshots import snapshot

DATASET = """query($id: ID!) { dataset(id: $id) {
  id name description readonly itemsCount annotationsCount directories
  labels { name color displayLabel attributes children { name color } } } }"""
UPDATE = """mutation($id: ID!, $input: DatasetChangesInput!) {
  updateDataset(id: $id, input: $input) { name description readonly } }"""
DELETE = "mutation($id: ID!, $name: String!) { deleteDataset(id: $id, confirmName: $name) }"
ADD_LABELS = """mutation($id: ID!, $labels: JSON!) {
  addLabels(datasetId: $id, labels: $labels) { labels { name color displayLabel
    children { name color } } } }"""
UPDATE_LABEL = """mutation($id: ID!, $path: String!, $input: LabelChangesInput!) {
  updateLabel(datasetId: $id, path: $path, input: $input) { labels { name color
    children { name color displayLabel } } } }"""
DELETE_LABELS = """mutation($id: ID!, $paths: [String!]!) {
  deleteLabels(datasetId: $id, paths: $paths) { labels { name children { name } } } }"""
CREATE_DIRECTORY = """mutation($id: ID!, $path: String!) {
  createDirectory(datasetId: $id, path: $path) { directories } }"""
PROJECT_DATASETS = """query($id: ID!) { project(id: $id) {
  datasets { totalCount nodes { name itemsCount } } } }"""


async def test_created_dataset_is_listed_in_its_project_with_zero_counts(member):
    world = await make_world(member)
    data = await world.client.data(PROJECT_DATASETS, id=world.project)
    assert data["project"]["datasets"] == {
        "totalCount": 1,
        "nodes": [{"name": "cars", "itemsCount": 0}],
    }
    dataset = (await world.client.data(DATASET, id=world.dataset))["dataset"]
    assert dataset["directories"] == ["/"]
    assert dataset["labels"] == []
    assert dataset["readonly"] is False


async def test_dataset_name_is_unique_per_project(member, db):
    world = await make_world(member)
    before = await snapshot(db)
    code = await world.client.code(CREATE_DATASET, project=world.project, input={"name": "cars"})
    assert code == "CONFLICT"
    assert await snapshot(db) == before


@pytest.mark.parametrize(
    "bad",
    [
        {"name": ""},
        {"name": "x", "labels": [{"name": "a.b"}]},
        {"name": "x", "labels": [{"name": "car", "color": "red"}]},
        {"name": "x", "labels": [{"name": "car"}, {"name": "car"}]},
        {"name": "x", "labels": [{"name": "car", "attributes": [{"key": "k", "type": "radio"}]}]},
        {"name": "x", "labels": "car"},
    ],
    ids=["empty-name", "dot-in-label", "bad-color", "duplicate-label", "radio-no-values", "str"],
)
async def test_bad_dataset_input_is_refused_and_nothing_is_written(member, db, bad):
    world = await make_world(member)
    before = await snapshot(db)
    error = await world.client.error(CREATE_DATASET, project=world.project, input=bad)
    assert error["extensions"]["code"] in ("BAD_USER_INPUT", "CONFLICT")
    assert error["extensions"]["code"] == (
        "CONFLICT" if bad.get("labels") == [{"name": "car"}, {"name": "car"}] else "BAD_USER_INPUT"
    )
    assert await snapshot(db) == before


async def test_ontology_labels_get_colors_children_and_can_be_changed_and_deleted(member):
    world = await make_world(member)
    labels = [
        {"name": "vehicle", "color": "#FF0000", "children": [{"name": "car"}, {"name": "bus"}]},
        {"name": "person", "displayLabel": "Pedestrian"},
    ]
    added = (await world.client.data(ADD_LABELS, id=world.dataset, labels=labels))["addLabels"]
    vehicle, person = added["labels"]
    assert vehicle["color"] == "#ff0000"
    assert [c["name"] for c in vehicle["children"]] == ["car", "bus"]
    assert all(c["color"].startswith("#") and len(c["color"]) == 7 for c in vehicle["children"])
    assert person["displayLabel"] == "Pedestrian"

    changed = await world.client.data(
        UPDATE_LABEL, id=world.dataset, path="vehicle.car", input={"color": "#00FF00"}
    )
    car = changed["updateLabel"]["labels"][0]["children"][0]
    assert car == {"name": "car", "color": "#00ff00", "displayLabel": "car"}

    left = await world.client.data(DELETE_LABELS, id=world.dataset, paths=["vehicle.bus", "person"])
    assert left["deleteLabels"]["labels"] == [{"name": "vehicle", "children": [{"name": "car"}]}]


async def test_adding_an_existing_label_is_a_conflict_and_changes_nothing(member, db):
    world = await make_world(member)
    await world.client.data(ADD_LABELS, id=world.dataset, labels=[{"name": "car"}])
    before = await snapshot(db)
    code = await world.client.code(ADD_LABELS, id=world.dataset, labels=[{"name": "car"}])
    assert code == "CONFLICT"
    assert await snapshot(db) == before


async def test_changing_or_deleting_an_unknown_label_is_bad_user_input(member, db):
    world = await make_world(member)
    before = await snapshot(db)
    assert (
        await world.client.code(
            UPDATE_LABEL, id=world.dataset, path="ghost", input={"color": "#000000"}
        )
        == "BAD_USER_INPUT"
    )
    assert await world.client.code(DELETE_LABELS, id=world.dataset, paths=["ghost"]) == (
        "BAD_USER_INPUT"
    )
    assert await snapshot(db) == before


async def test_directories_are_created_with_their_parents(member):
    world = await make_world(member)
    data = await world.client.data(CREATE_DIRECTORY, id=world.dataset, path="/train/city/")
    assert data["createDirectory"]["directories"] == ["/", "/train", "/train/city"]


@pytest.mark.parametrize("path", ["train", "/a/../b", "/a/./b", "/tab\there", "/" + "a/" * 11])
async def test_bad_directory_paths_are_refused(member, db, path):
    world = await make_world(member)
    before = await snapshot(db)
    assert await world.client.code(CREATE_DIRECTORY, id=world.dataset, path=path) == (
        "BAD_USER_INPUT"
    )
    assert await snapshot(db) == before


async def test_readonly_dataset_refuses_writes_with_conflict_until_made_writable(member, db):
    world = await make_world(member)
    await world.client.data(UPDATE, id=world.dataset, input={"readonly": True})
    before = await snapshot(db)
    for query, variables in [
        (CREATE_DIRECTORY, {"id": world.dataset, "path": "/x"}),
        (ADD_LABELS, {"id": world.dataset, "labels": [{"name": "car"}]}),
        (UPDATE, {"id": world.dataset, "input": {"name": "renamed"}}),
        (DELETE, {"id": world.dataset, "name": "cars"}),
    ]:
        assert await world.client.code(query, **variables) == "CONFLICT", query
    upload = await world.client.upload(
        """mutation($d: ID!, $file: Upload!) { uploadItem(datasetId: $d, file: $file) { id } }""",
        {"file": ("a.png", image_bytes("PNG", 4, 4), "image/png")},
        d=world.dataset,
    )
    assert upload["errors"][0]["extensions"]["code"] == "CONFLICT"
    assert await snapshot(db) == before
    await world.client.data(UPDATE, id=world.dataset, input={"readonly": False})
    assert (await world.client.data(CREATE_DIRECTORY, id=world.dataset, path="/x"))[
        "createDirectory"
    ]["directories"] == ["/", "/x"]


async def test_delete_needs_the_exact_name_and_then_removes_items_annotations_and_files(member, db):
    world = await make_world(member)
    shared = image_bytes("PNG", 8, 8)
    await world.upload("a.png", shared)
    other = await make_world_dataset(world, "trucks")
    await world.upload_to(other, "b.png", shared)
    await world.upload("own.png", image_bytes("PNG", 9, 9))
    before = await snapshot(db)
    assert await world.client.code(DELETE, id=world.dataset, name="CARS") == "BAD_USER_INPUT"
    assert await snapshot(db) == before

    assert (await world.client.data(DELETE, id=world.dataset, name="cars"))["deleteDataset"]
    assert await world.client.code(DATASET, id=world.dataset) == "NOT_FOUND"
    assert await db.items.count_documents({"datasetId": ObjectId(world.dataset)}) == 0
    blobs = await db.blobs.find().to_list()
    assert [(b["refs"]) for b in blobs] == [1]
    assert await db["files.files"].count_documents({}) == 1
    assert await db["files.chunks"].count_documents({}) == 1


async def test_two_concurrent_deletes_of_a_dataset_drop_its_references_once(member, db, http):
    world = await make_world(member)
    shared = image_bytes("PNG", 8, 8, (9, 9, 9))
    for n in range(30):
        await world.upload(f"{n}.png", shared)
    other = await make_world_dataset(world, "trucks")
    kept = await world.upload_to(other, "kept.png", shared)

    answers = await asyncio.gather(
        *(world.client.execute(DELETE, id=world.dataset, name="cars") for _ in range(2))
    )

    assert any(answer.get("data") and answer["data"]["deleteDataset"] for answer in answers)
    assert (await db.blobs.find_one({"_id": kept["sha256"]}))["refs"] == 1
    download = await http.get(
        f"/items/{kept['id']}/file", headers={"Authorization": f"Bearer {world.client.key}"}
    )
    assert download.content == shared


async def make_world_dataset(world, name: str) -> str:
    created = await world.client.data(CREATE_DATASET, project=world.project, input={"name": name})
    return created["createDataset"]["id"]
