"""Data-graph roles: what each org role and each project role may do with datasets, items and
annotations.

Expectations are derived from ORG_GRANTS / PROJECT_GRANTS (MANAGE_DATASETS, WRITE_ITEMS,
WRITE_ANNOTATIONS, READ_PROJECT) through `project_outcome`, so the tests follow the tables;
`test_data_grant_table_cells_*` and the hand-written tests at the end pin cells without
consulting them, so a wrong table fails too. Allowed writes land; visible-but-not-allowed ones
are FORBIDDEN and write nothing; org members and workers outside the project get NOT_FOUND.
"""

from dataclasses import dataclass

import pytest
from bson import ObjectId

from resolvers.access import ORG_GRANTS, PROJECT_GRANTS, Action, OrgRole, ProjectRole
from tests.datasets_world import CREATE_DATASET, UPLOAD, image_bytes
from tests.graphql_client import GraphQLClient
from tests.snapshots import snapshot
from tests.test_roles import ALL_CASES, Case, Org, _attempt, _ids, _org, project_outcome

DATASET = "query($id: ID!) { dataset(id: $id) { id name itemsCount annotationsCount } }"
DATASET_ITEMS = "query($id: ID!) { dataset(id: $id) { items { nodes { id name } } } }"
PROJECT_DATASETS = "query($id: ID!) { project(id: $id) { datasets { nodes { id } } } }"
ITEM_ANNOTATIONS = """query($id: ID!) { item(id: $id) { id name
  annotations { id label } } }"""
ANNOTATION = "query($id: ID!) { annotation(id: $id) { id label item { id } } }"
NODE = "query($id: ID!) { node(id: $id) { __typename id } }"

UPDATE_DATASET = """mutation($id: ID!, $name: String!) {
  updateDataset(id: $id, input: {name: $name}) { id name } }"""
DELETE_DATASET = "mutation($id: ID!, $name: String!) { deleteDataset(id: $id, confirmName: $name) }"
ADD_LABELS = """mutation($id: ID!, $labels: JSON!) {
  addLabels(datasetId: $id, labels: $labels) { id } }"""
UPDATE_ITEM = """mutation($id: ID!, $input: ItemChangesInput!) {
  updateItem(id: $id, input: $input) { id name } }"""
DELETE_ITEMS = "mutation($d: ID!, $ids: [ID!]!) { deleteItems(datasetId: $d, itemIds: $ids) }"
CREATE_ANNOTATION = """mutation($input: AnnotationInput!) {
  createAnnotation(input: $input) { id } }"""
UPDATE_ANNOTATION = """mutation($id: ID!, $input: AnnotationChangesInput!) {
  updateAnnotation(id: $id, input: $input) { id status } }"""
DELETE_ANNOTATIONS = "mutation($ids: [ID!]!) { deleteAnnotations(ids: $ids) }"

BOX = {"left": 1, "top": 1, "right": 5, "bottom": 5}


@dataclass
class Data:
    """Organization "acme" from test_roles' `_org`, and in its project (created by the founder)
    a dataset "cars" holding one item with one annotation, all made by the founder."""

    world: Org
    dataset: str
    item: str
    annotation: str

    @property
    def caller(self) -> GraphQLClient:
        return self.world.caller


async def _data(member, case: Case) -> Data:
    world = await _org(member, case)
    founder = world.founder
    created = await founder.data(CREATE_DATASET, project=world.project, input={"name": "cars"})
    dataset = created["createDataset"]["id"]
    item = await _upload(founder, dataset, "first.png")
    assert item["errors"] is None
    item_id = item["id"]
    box = {"itemId": item_id, "type": "BOX", "label": "car", "coordinates": BOX}
    annotation = await founder.data(CREATE_ANNOTATION, input=box)
    return Data(world, dataset, item_id, annotation["createAnnotation"]["id"])


async def _upload(client: GraphQLClient, dataset: str, name: str) -> dict:
    """The uploaded item (with `errors: None`), or `{"errors": [codes]}`."""
    content = image_bytes("PNG", 8, 8, (len(name) * 20 % 256, 40, 90))
    body = await client.upload(UPLOAD, {"file": (name, content, "image/png")}, dataset=dataset)
    if body.get("errors"):
        return {"errors": [e["extensions"]["code"] for e in body["errors"]]}
    return {**body["data"]["uploadItem"], "errors": None}


async def _upload_attempt(client: GraphQLClient, dataset: str, name: str) -> str | None:
    """None on success, else the code of the single error (like test_roles' `_attempt`)."""
    result = await _upload(client, dataset, name)
    if result["errors"] is None:
        return None
    [code] = result["errors"]
    return code


def _read_outcome(case: Case) -> str | None:
    return project_outcome(case, Action.READ_PROJECT)


# --- The tables themselves -----------------------------------------------------------------


def test_data_grant_table_cells_match_the_intended_policy():
    assert ORG_GRANTS[Action.MANAGE_DATASETS] == {OrgRole.OWNER, OrgRole.ADMIN}
    assert ORG_GRANTS[Action.WRITE_ITEMS] == {OrgRole.OWNER, OrgRole.ADMIN}
    assert ORG_GRANTS[Action.WRITE_ANNOTATIONS] == {OrgRole.OWNER, OrgRole.ADMIN}
    assert PROJECT_GRANTS[Action.MANAGE_DATASETS] == {ProjectRole.OWNER, ProjectRole.DEVELOPER}
    assert PROJECT_GRANTS[Action.WRITE_ITEMS] == {
        ProjectRole.OWNER,
        ProjectRole.DEVELOPER,
        ProjectRole.ANNOTATION_MANAGER,
    }
    assert PROJECT_GRANTS[Action.WRITE_ANNOTATIONS] == set(ProjectRole)


# --- Reading, per role ---------------------------------------------------------------------


@pytest.mark.parametrize("case", ALL_CASES, ids=_ids(ALL_CASES))
async def test_reading_datasets_items_and_annotations_follows_project_visibility(member, case):
    data = await _data(member, case)
    expected = _read_outcome(case)
    reads = [
        (DATASET, data.dataset),
        (DATASET_ITEMS, data.dataset),
        (PROJECT_DATASETS, data.world.project),
        (ITEM_ANNOTATIONS, data.item),
        (ANNOTATION, data.annotation),
    ]
    for query, target in reads:
        assert await _attempt(data.caller, query, id=target) == expected, query

    nodes = [await data.caller.data(NODE, id=i) for i in (data.dataset, data.item, data.annotation)]
    if expected is not None:
        assert [n["node"] for n in nodes] == [None, None, None]
        return

    assert [n["node"]["__typename"] for n in nodes] == ["Dataset", "Item", "Annotation"]
    dataset = (await data.caller.data(DATASET, id=data.dataset))["dataset"]
    assert (dataset["name"], dataset["itemsCount"], dataset["annotationsCount"]) == ("cars", 1, 1)
    listed = await data.caller.data(PROJECT_DATASETS, id=data.world.project)
    assert listed["project"]["datasets"]["nodes"] == [{"id": data.dataset}]
    items = (await data.caller.data(DATASET_ITEMS, id=data.dataset))["dataset"]["items"]
    assert items["nodes"] == [{"id": data.item, "name": "first.png"}]
    item = (await data.caller.data(ITEM_ANNOTATIONS, id=data.item))["item"]
    assert item["annotations"] == [{"id": data.annotation, "label": "car"}]
    annotation = (await data.caller.data(ANNOTATION, id=data.annotation))["annotation"]
    assert annotation == {"id": data.annotation, "label": "car", "item": {"id": data.item}}


# --- Writing, per role ---------------------------------------------------------------------


@pytest.mark.parametrize("case", ALL_CASES, ids=_ids(ALL_CASES))
async def test_creating_changing_and_deleting_datasets_follows_manage_datasets_grants(
    member, db, case
):
    data = await _data(member, case)
    expected = project_outcome(case, Action.MANAGE_DATASETS)
    before = await snapshot(db)
    caller = data.caller

    created = await caller.execute(
        CREATE_DATASET, project=data.world.project, input={"name": "fresh"}
    )
    assert [e["extensions"]["code"] for e in created.get("errors") or []] == (
        [expected] if expected else []
    )
    fresh = await db.datasets.find_one({"projectId": ObjectId(data.world.project), "name": "fresh"})
    assert (fresh is not None) == (expected is None)
    if fresh is not None:
        assert fresh["creator"] == ObjectId(data.world.caller_id)
        assert created["data"]["createDataset"]["id"] == str(fresh["_id"])

    assert await _attempt(caller, UPDATE_DATASET, id=data.dataset, name="renamed") == expected
    assert await _attempt(caller, ADD_LABELS, id=data.dataset, labels=[{"name": "car"}]) == expected
    stored = await db.datasets.find_one({"_id": ObjectId(data.dataset)})
    if expected is None:
        assert stored["name"] == "renamed"
        assert [label["name"] for label in stored["labels"]] == ["car"]
    else:
        assert (stored["name"], stored["labels"]) == ("cars", [])
        assert await snapshot(db) == before

    name = stored["name"]
    assert await _attempt(caller, DELETE_DATASET, id=data.dataset, name=name) == expected
    remaining = await db.datasets.count_documents({"_id": ObjectId(data.dataset)})
    assert remaining == (0 if expected is None else 1)
    if expected is None:
        assert await db.items.count_documents({"datasetId": ObjectId(data.dataset)}) == 0
    else:
        assert await snapshot(db) == before


@pytest.mark.parametrize("case", ALL_CASES, ids=_ids(ALL_CASES))
async def test_uploading_changing_and_deleting_items_follows_write_items_grants(member, db, case):
    data = await _data(member, case)
    expected = project_outcome(case, Action.WRITE_ITEMS)
    before = await snapshot(db)
    caller = data.caller

    assert await _upload_attempt(caller, data.dataset, "second.png") == expected
    uploaded = await db.items.find_one({"datasetId": ObjectId(data.dataset), "name": "second.png"})
    assert (uploaded is not None) == (expected is None)
    if uploaded is not None:
        assert uploaded["creator"] == ObjectId(data.world.caller_id)

    code = await _attempt(caller, UPDATE_ITEM, id=data.item, input={"name": "renamed.png"})
    assert code == expected
    stored = await db.items.find_one({"_id": ObjectId(data.item)})
    assert stored["name"] == ("renamed.png" if expected is None else "first.png")

    assert await _attempt(caller, DELETE_ITEMS, d=data.dataset, ids=[data.item]) == expected
    dataset = await db.datasets.find_one({"_id": ObjectId(data.dataset)})
    if expected is None:
        assert await db.items.find_one({"_id": ObjectId(data.item)}) is None
        assert await db.annotations.count_documents({"itemId": ObjectId(data.item)}) == 0
        assert (dataset["itemsCount"], dataset["annotationsCount"]) == (1, 0)
    else:
        assert (dataset["itemsCount"], dataset["annotationsCount"]) == (1, 1)
        assert await snapshot(db) == before


@pytest.mark.parametrize("case", ALL_CASES, ids=_ids(ALL_CASES))
async def test_creating_changing_and_deleting_annotations_follows_write_annotations_grants(
    member, db, case
):
    data = await _data(member, case)
    expected = project_outcome(case, Action.WRITE_ANNOTATIONS)
    before = await snapshot(db)
    caller = data.caller

    new = {"itemId": data.item, "type": "CLASSIFICATION", "label": "bus"}
    assert await _attempt(caller, CREATE_ANNOTATION, input=new) == expected
    created = await db.annotations.find_one({"itemId": ObjectId(data.item), "label": "bus"})
    assert (created is not None) == (expected is None)
    if created is not None:
        assert created["creator"] == ObjectId(data.world.caller_id)

    code = await _attempt(
        caller, UPDATE_ANNOTATION, id=data.annotation, input={"status": "APPROVED"}
    )
    assert code == expected
    stored = await db.annotations.find_one({"_id": ObjectId(data.annotation)})
    assert stored["status"] == ("approved" if expected is None else "clear")

    assert await _attempt(caller, DELETE_ANNOTATIONS, ids=[data.annotation]) == expected
    remaining = await db.annotations.count_documents({"_id": ObjectId(data.annotation)})
    item = await db.items.find_one({"_id": ObjectId(data.item)})
    dataset = await db.datasets.find_one({"_id": ObjectId(data.dataset)})
    if expected is None:
        assert remaining == 0
        assert (item["annotationsCount"], dataset["annotationsCount"]) == (1, 1)
    else:
        assert remaining == 1
        assert await snapshot(db) == before


# --- Hand-written cells: these do not consult the tables -----------------------------------


async def test_annotator_may_annotate_but_not_upload_or_manage_datasets(member, db):
    data = await _data(member, Case(OrgRole.MEMBER, ProjectRole.ANNOTATOR))
    new = {"itemId": data.item, "type": "CLASSIFICATION", "label": "bus"}
    assert await _attempt(data.caller, CREATE_ANNOTATION, input=new) is None
    before = await snapshot(db)
    assert await _upload_attempt(data.caller, data.dataset, "nope.png") == "FORBIDDEN"
    assert await _attempt(data.caller, UPDATE_DATASET, id=data.dataset, name="x") == "FORBIDDEN"
    code = await _attempt(data.caller, UPDATE_ITEM, id=data.item, input={"name": "x.png"})
    assert code == "FORBIDDEN"
    assert await snapshot(db) == before


async def test_developer_may_manage_datasets_and_upload(member, db):
    data = await _data(member, Case(OrgRole.MEMBER, ProjectRole.DEVELOPER))
    created = await data.caller.data(
        CREATE_DATASET, project=data.world.project, input={"name": "dev"}
    )
    assert created["createDataset"]["name"] == "dev"
    assert await _attempt(data.caller, UPDATE_DATASET, id=data.dataset, name="trucks") is None
    assert await _upload_attempt(data.caller, data.dataset, "dev.png") is None
    assert await db.datasets.count_documents({"projectId": ObjectId(data.world.project)}) == 2


async def test_annotation_manager_may_upload_but_not_create_or_change_datasets(member, db):
    data = await _data(member, Case(OrgRole.MEMBER, ProjectRole.ANNOTATION_MANAGER))
    assert await _upload_attempt(data.caller, data.dataset, "managed.png") is None
    before = await snapshot(db)
    code = await _attempt(
        data.caller, CREATE_DATASET, project=data.world.project, input={"name": "mine"}
    )
    assert code == "FORBIDDEN"
    assert await _attempt(data.caller, ADD_LABELS, id=data.dataset, labels=[{"name": "x"}]) == (
        "FORBIDDEN"
    )
    assert await snapshot(db) == before


@pytest.mark.parametrize("org_role", [OrgRole.MEMBER, OrgRole.WORKER])
async def test_org_member_or_worker_outside_the_project_finds_none_of_its_data(
    member, db, org_role
):
    data = await _data(member, Case(org_role))
    before = await snapshot(db)
    assert await _attempt(data.caller, DATASET, id=data.dataset) == "NOT_FOUND"
    new = {"itemId": data.item, "type": "CLASSIFICATION", "label": "bus"}
    assert await _attempt(data.caller, CREATE_ANNOTATION, input=new) == "NOT_FOUND"
    assert await _upload_attempt(data.caller, data.dataset, "x.png") == "NOT_FOUND"
    assert await snapshot(db) == before


async def test_org_admin_outside_the_project_may_write_all_of_its_data(member, db):
    data = await _data(member, Case(OrgRole.ADMIN))
    assert await _attempt(data.caller, UPDATE_DATASET, id=data.dataset, name="admin") is None
    assert await _upload_attempt(data.caller, data.dataset, "admin.png") is None
    code = await _attempt(data.caller, UPDATE_ANNOTATION, id=data.annotation, input={"label": "x"})
    assert code is None
    assert (await db.annotations.find_one({"_id": ObjectId(data.annotation)}))["label"] == "x"
