"""Data-graph tenancy: a key of organization B can neither see nor touch A's datasets, items,
annotations or files.

Every field and mutation that names one of A's objects answers NOT_FOUND to B's keys — the
same answer as for an id that does not exist — and leaves the whole database as it was. The
attackers are B's owner and a user who owns both A and B but calls with its key limited to B.
After each refusal, the very same request from A's owner goes through, so the refusal is
tenancy, not a malformed request.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from bson import ObjectId

from tests.datasets_world import UPLOAD, World, image_bytes, make_world
from tests.graphql_client import GraphQLClient
from tests.snapshots import snapshot

DATASET = "query($id: ID!) { dataset(id: $id) { id name } }"
ITEM = "query($id: ID!) { item(id: $id) { id name } }"
ANNOTATION = "query($id: ID!) { annotation(id: $id) { id label } }"
NODE = "query($id: ID!) { node(id: $id) { __typename id } }"
PROJECT_DATASETS = "query($id: ID!) { project(id: $id) { datasets { nodes { id } } } }"
DATASET_ITEMS = "query($id: ID!) { dataset(id: $id) { items { nodes { id } } } }"
DATASET_ITEMS_FILTERED = """query($id: ID!, $filter: JSON) {
  dataset(id: $id) { items(filter: $filter) { totalCount nodes { id } } } }"""
DATASET_DUPLICATES = "query($id: ID!) { dataset(id: $id) { duplicates { itemIds } } }"

CREATE_DATASET = """mutation($project: ID!, $name: String!) {
  createDataset(projectId: $project, input: {name: $name}) { id } }"""
UPDATE_DATASET = """mutation($id: ID!, $input: DatasetChangesInput!) {
  updateDataset(id: $id, input: $input) { id name } }"""
DELETE_DATASET = "mutation($id: ID!, $name: String!) { deleteDataset(id: $id, confirmName: $name) }"
ADD_LABELS = """mutation($id: ID!, $labels: JSON!) {
  addLabels(datasetId: $id, labels: $labels) { id } }"""
UPDATE_LABEL = """mutation($id: ID!, $path: String!, $input: LabelChangesInput!) {
  updateLabel(datasetId: $id, path: $path, input: $input) { id } }"""
DELETE_LABELS = """mutation($id: ID!, $paths: [String!]!) {
  deleteLabels(datasetId: $id, paths: $paths) { id } }"""
CREATE_DIRECTORY = """mutation($id: ID!, $path: String!) {
  createDirectory(datasetId: $id, path: $path) { directories } }"""
UPDATE_ITEM = """mutation($id: ID!, $input: ItemChangesInput!) {
  updateItem(id: $id, input: $input) { id name } }"""
MOVE_ITEMS = """mutation($d: ID!, $ids: [ID!]!, $dir: String!) {
  moveItems(datasetId: $d, itemIds: $ids, dir: $dir) }"""
DELETE_ITEMS = "mutation($d: ID!, $ids: [ID!]!) { deleteItems(datasetId: $d, itemIds: $ids) }"
CREATE_ANNOTATION = """mutation($input: AnnotationInput!) {
  createAnnotation(input: $input) { id } }"""
CREATE_ANNOTATIONS = """mutation($inputs: [AnnotationInput!]!) {
  createAnnotations(inputs: $inputs) { id } }"""
UPDATE_ANNOTATION = """mutation($id: ID!, $input: AnnotationChangesInput!) {
  updateAnnotation(id: $id, input: $input) { id status } }"""
DELETE_ANNOTATIONS = "mutation($ids: [ID!]!) { deleteAnnotations(ids: $ids) }"


def _classification(item: str, label: str = "car") -> dict[str, Any]:
    return {"itemId": item, "type": "CLASSIFICATION", "label": label}


@dataclass
class Tenants:
    """Organization A ("acme") and B ("beta"), each with a project, a dataset, items and
    annotations. A's dataset has the label "car"; B's dataset has no ontology."""

    a: World  # A's owner (and its project's owner)
    a_item: str
    a_item2: str
    a_annotation: str
    a_content: bytes
    b: World  # B's owner
    b_item: str
    b_annotation: str
    dual_a: GraphQLClient  # a user owning both A and B, with its key limited to A
    dual_b: GraphQLClient  # the same user, with its key limited to B

    @property
    def attackers(self) -> list[tuple[str, GraphQLClient]]:
        return [("b-owner", self.b.client), ("same-user-b-key", self.dual_b)]


@pytest.fixture
async def tenants(member) -> Tenants:
    a = await make_world(member, org="acme")
    await a.client.data(ADD_LABELS, id=a.dataset, labels=[{"name": "car"}])
    a_content = image_bytes("PNG", 16, 12, (10, 120, 200))
    a_item = (await a.upload("a.png", a_content))["id"]
    a_item2 = (await a.upload("a2.png", image_bytes("PNG", 8, 8, (1, 2, 3))))["id"]
    a_annotation = (await a.client.data(CREATE_ANNOTATION, input=_classification(a_item)))[
        "createAnnotation"
    ]["id"]

    b = await make_world(member, org="beta")
    b_item = (await b.upload("b.png", image_bytes("PNG", 8, 8, (90, 90, 90))))["id"]
    b_annotation = (await b.client.data(CREATE_ANNOTATION, input=_classification(b_item)))[
        "createAnnotation"
    ]["id"]

    dual_a, _ = await member("acme", "owner", email="dual@both.io")
    dual_b, _ = await member("beta", "owner", email="dual@both.io")
    return Tenants(
        a, a_item, a_item2, a_annotation, a_content, b, b_item, b_annotation, dual_a, dual_b
    )


# --- Reads ------------------------------------------------------------------------------------

# Each read naming an object of A: (query, the variable holding A's id).
READS: dict[str, tuple[str, Callable[[Tenants], str]]] = {
    "dataset": (DATASET, lambda t: t.a.dataset),
    "item": (ITEM, lambda t: t.a_item),
    "annotation": (ANNOTATION, lambda t: t.a_annotation),
    "project.datasets": (PROJECT_DATASETS, lambda t: t.a.project),
    "dataset.items": (DATASET_ITEMS, lambda t: t.a.dataset),
    "dataset.duplicates": (DATASET_DUPLICATES, lambda t: t.a.dataset),
}


async def test_reading_org_a_data_with_an_org_b_key_is_not_found_like_a_missing_id(tenants):
    for read, (query, target) in READS.items():
        a_id = target(tenants)
        for name, attacker in tenants.attackers:
            body = await attacker.execute(query, id=a_id)
            assert body["data"] is None, (read, name)
            [error] = body["errors"]
            assert error["extensions"]["code"] == "NOT_FOUND", (read, name)
            # Indistinguishable from an id that names nothing at all.
            missing = (await attacker.error(query, id=str(ObjectId())))["message"]
            assert error["message"] == missing, (read, name)
            assert "acme" not in error["message"].lower()

        # The control: A's owner reads the very same thing.
        assert not (await tenants.a.client.execute(query, id=a_id)).get("errors"), read


async def test_node_of_org_a_data_is_null_for_org_b_keys(tenants):
    targets = {
        "Dataset": tenants.a.dataset,
        "Item": tenants.a_item,
        "Annotation": tenants.a_annotation,
    }
    for typename, a_id in targets.items():
        for name, attacker in tenants.attackers:
            assert (await attacker.data(NODE, id=a_id))["node"] is None, (typename, name)
        owner_view = await tenants.a.client.data(NODE, id=a_id)
        assert owner_view["node"] == {"__typename": typename, "id": a_id}


async def test_org_b_listings_never_include_org_a_data_even_when_filtered_by_its_ids(tenants):
    for name, attacker in tenants.attackers:
        listed = await attacker.data(PROJECT_DATASETS, id=tenants.b.project)
        assert listed["project"]["datasets"]["nodes"] == [{"id": tenants.b.dataset}], name

        everything = await attacker.data(DATASET_ITEMS_FILTERED, id=tenants.b.dataset)
        assert everything["dataset"]["items"]["nodes"] == [{"id": tenants.b_item}], name

        # A filter naming A's dataset and items cannot reach past B's own dataset.
        aimed = {
            "$or": [
                {"datasetId": tenants.a.dataset},
                {"id": {"$in": [tenants.a_item, tenants.a_item2]}},
            ]
        }
        found = await attacker.data(DATASET_ITEMS_FILTERED, id=tenants.b.dataset, filter=aimed)
        assert found["dataset"]["items"] == {"totalCount": 0, "nodes": []}, name

        # A join on annotations labelled like A's finds only B's own annotated item.
        joined = {
            "resource": "items",
            "filter": {},
            "join": {
                "on": {"resource": "annotations", "local": "itemId", "forigen": "id"},
                "filter": {"label": "car"},
            },
        }
        found = await attacker.data(DATASET_ITEMS_FILTERED, id=tenants.b.dataset, filter=joined)
        assert found["dataset"]["items"]["nodes"] == [{"id": tenants.b_item}], name


async def test_downloading_an_org_a_file_with_an_org_b_key_is_404(tenants, http):
    url = f"/items/{tenants.a_item}/file"
    missing_url = f"/items/{ObjectId()}/file"
    for name, attacker in tenants.attackers:
        headers = {"Authorization": f"Bearer {attacker.key}"}
        refused = await http.get(url, headers=headers)
        assert refused.status_code == 404, name
        assert refused.json()["error"]["code"] == "NOT_FOUND", name
        assert tenants.a_content not in refused.content
        missing = await http.get(missing_url, headers=headers)
        assert refused.json()["error"]["message"] == missing.json()["error"]["message"]

    served = await http.get(url, headers={"Authorization": f"Bearer {tenants.a.client.key}"})
    assert served.status_code == 200
    assert served.content == tenants.a_content


async def test_same_user_reaches_org_a_data_through_its_key_for_org_a(tenants):
    """The control for the same-user attacker: A is refused to it only because of the key."""
    client = tenants.dual_a
    assert (await client.data(DATASET, id=tenants.a.dataset))["dataset"]["name"] == "cars"
    assert (await client.data(ITEM, id=tenants.a_item))["item"]["name"] == "a.png"
    assert (await client.data(ANNOTATION, id=tenants.a_annotation))["annotation"]["label"] == "car"
    assert await client.code(DATASET, id=tenants.b.dataset) == "NOT_FOUND"


# --- Writes -----------------------------------------------------------------------------------

Variables = Callable[[Tenants], dict[str, Any]]


@dataclass
class ForeignWrite:
    """A mutation aimed at A's data, and the control that proves the request is well-formed:
    by default A's owner sending the same variables."""

    query: str
    variables: Variables
    control_variables: Variables | None = None
    control_by_b: bool = False  # the control is B's owner (mixed requests: B's half alone)

    def control(self, t: Tenants) -> tuple[GraphQLClient, dict[str, Any]]:
        client = t.b.client if self.control_by_b else t.a.client
        return client, (self.control_variables or self.variables)(t)


WRITES: dict[str, ForeignWrite] = {
    "createDataset-in-a-project": ForeignWrite(
        CREATE_DATASET, lambda t: {"project": t.a.project, "name": "planted"}
    ),
    "updateDataset": ForeignWrite(
        UPDATE_DATASET, lambda t: {"id": t.a.dataset, "input": {"name": "renamed"}}
    ),
    "updateDataset-readonly": ForeignWrite(
        UPDATE_DATASET, lambda t: {"id": t.a.dataset, "input": {"readonly": True}}
    ),
    "deleteDataset-with-its-right-name": ForeignWrite(
        DELETE_DATASET, lambda t: {"id": t.a.dataset, "name": "cars"}
    ),
    "addLabels": ForeignWrite(ADD_LABELS, lambda t: {"id": t.a.dataset, "labels": [{"name": "x"}]}),
    "updateLabel": ForeignWrite(
        UPDATE_LABEL,
        lambda t: {"id": t.a.dataset, "path": "car", "input": {"color": "#00ff00"}},
    ),
    "deleteLabels": ForeignWrite(DELETE_LABELS, lambda t: {"id": t.a.dataset, "paths": ["car"]}),
    "createDirectory": ForeignWrite(
        CREATE_DIRECTORY, lambda t: {"id": t.a.dataset, "path": "/planted"}
    ),
    "updateItem": ForeignWrite(
        UPDATE_ITEM, lambda t: {"id": t.a_item, "input": {"name": "renamed.png"}}
    ),
    "moveItems-b-dataset-a-items": ForeignWrite(
        MOVE_ITEMS,
        lambda t: {"d": t.b.dataset, "ids": [t.a_item], "dir": "/moved"},
        control_variables=lambda t: {"d": t.a.dataset, "ids": [t.a_item], "dir": "/moved"},
    ),
    "moveItems-a-dataset": ForeignWrite(
        MOVE_ITEMS, lambda t: {"d": t.a.dataset, "ids": [t.a_item], "dir": "/moved"}
    ),
    "deleteItems-b-dataset-a-items": ForeignWrite(
        DELETE_ITEMS,
        lambda t: {"d": t.b.dataset, "ids": [t.a_item]},
        control_variables=lambda t: {"d": t.a.dataset, "ids": [t.a_item]},
    ),
    "deleteItems-b-dataset-own-and-a-items": ForeignWrite(
        DELETE_ITEMS,
        lambda t: {"d": t.b.dataset, "ids": [t.b_item, t.a_item]},
        control_variables=lambda t: {"d": t.b.dataset, "ids": [t.b_item]},
        control_by_b=True,
    ),
    "deleteItems-a-dataset": ForeignWrite(
        DELETE_ITEMS, lambda t: {"d": t.a.dataset, "ids": [t.a_item, t.a_item2]}
    ),
    "createAnnotation": ForeignWrite(
        CREATE_ANNOTATION, lambda t: {"input": _classification(t.a_item)}
    ),
    "createAnnotations": ForeignWrite(
        CREATE_ANNOTATIONS,
        lambda t: {"inputs": [_classification(t.a_item), _classification(t.a_item2)]},
    ),
    "createAnnotations-own-and-a-item": ForeignWrite(
        CREATE_ANNOTATIONS,
        lambda t: {"inputs": [_classification(t.b_item), _classification(t.a_item)]},
        control_variables=lambda t: {"inputs": [_classification(t.b_item)]},
        control_by_b=True,
    ),
    "createAnnotation-own-item-a-parent": ForeignWrite(
        CREATE_ANNOTATION,
        lambda t: {"input": {**_classification(t.b_item), "parentId": t.a_annotation}},
        control_variables=lambda t: {
            "input": {**_classification(t.b_item), "parentId": t.b_annotation}
        },
        control_by_b=True,
    ),
    "updateAnnotation": ForeignWrite(
        UPDATE_ANNOTATION, lambda t: {"id": t.a_annotation, "input": {"status": "APPROVED"}}
    ),
    "deleteAnnotations": ForeignWrite(DELETE_ANNOTATIONS, lambda t: {"ids": [t.a_annotation]}),
    "deleteAnnotations-own-and-a": ForeignWrite(
        DELETE_ANNOTATIONS,
        lambda t: {"ids": [t.b_annotation, t.a_annotation]},
        control_variables=lambda t: {"ids": [t.b_annotation]},
        control_by_b=True,
    ),
}

# A parent of another item is refused as bad input whoever owns it; every other foreign write
# is simply not found.
EXPECTED_CODE = {"createAnnotation-own-item-a-parent": "BAD_USER_INPUT"}


@pytest.mark.parametrize("write", list(WRITES))
async def test_writing_org_a_data_with_an_org_b_key_is_not_found_and_changes_nothing(
    tenants, db, write
):
    mutation = WRITES[write]
    before = await snapshot(db)

    for name, attacker in tenants.attackers:
        error = await attacker.error(mutation.query, **mutation.variables(tenants))
        assert error["extensions"]["code"] == EXPECTED_CODE.get(write, "NOT_FOUND"), name
        assert "acme" not in error["message"].lower()
        assert await snapshot(db) == before, name

    client, variables = mutation.control(tenants)
    await client.data(mutation.query, **variables)
    assert await snapshot(db) != before


async def test_parent_annotation_of_org_a_is_refused_like_a_missing_one(tenants):
    """Naming A's annotation as a parent reveals nothing a random id would not."""
    for name, attacker in tenants.attackers:
        messages = []
        for parent in (tenants.a_annotation, str(ObjectId())):
            variables = {"input": {**_classification(tenants.b_item), "parentId": parent}}
            error = await attacker.error(CREATE_ANNOTATION, **variables)
            messages.append(error["message"].replace(parent, "<id>"))
        assert messages[0] == messages[1], name


async def test_uploading_to_an_org_a_dataset_with_an_org_b_key_is_not_found_and_stores_nothing(
    tenants, db
):
    content = image_bytes("PNG", 6, 6, (250, 0, 250))
    before = await snapshot(db)

    for name, attacker in tenants.attackers:
        body = await attacker.upload(
            UPLOAD, {"file": ("planted.png", content, "image/png")}, dataset=tenants.a.dataset
        )
        assert [e["extensions"]["code"] for e in body["errors"]] == ["NOT_FOUND"], name
        assert body["data"] is None
        assert await snapshot(db) == before, name

    uploaded = await tenants.a.upload("planted.png", content)
    assert uploaded["name"] == "planted.png"
    assert await snapshot(db) != before


async def test_owner_of_a_still_changes_its_data_after_refused_attempts(tenants, db):
    """Refusals leave A fully usable: the owner's own writes land exactly as asked."""
    for _, attacker in tenants.attackers:
        await attacker.error(UPDATE_DATASET, id=tenants.a.dataset, input={"name": "pwned"})
        await attacker.error(UPDATE_ITEM, id=tenants.a_item, input={"name": "pwned.png"})
        await attacker.error(CREATE_ANNOTATION, input=_classification(tenants.a_item2))

    client = tenants.a.client
    renamed = await client.data(UPDATE_DATASET, id=tenants.a.dataset, input={"name": "trucks"})
    assert renamed["updateDataset"]["name"] == "trucks"
    item = await client.data(UPDATE_ITEM, id=tenants.a_item, input={"name": "kept.png"})
    assert item["updateItem"]["name"] == "kept.png"
    await client.data(CREATE_ANNOTATION, input=_classification(tenants.a_item2))

    stored = await db.datasets.find_one({"_id": ObjectId(tenants.a.dataset)})
    assert (stored["name"], stored["annotationsCount"]) == ("trucks", 2)
    assert await db.annotations.count_documents({"itemId": ObjectId(tenants.a_item2)}) == 1
