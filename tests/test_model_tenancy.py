"""Model tenancy: a key of organization B neither sees nor touches A's models or versions.

Every field and mutation naming one of A's models or versions answers NOT_FOUND to B's keys —
as an id naming nothing does — and writes nothing; `node(id)` is null. Ids of A's datasets and
services inside B's inputs are BAD_USER_INPUT, worded as for a made-up id. After each refusal
A's owner (or B's, for B's own half of a request) sends the same request and it goes through,
so the refusal is tenancy, not a malformed request. The attackers are B's owner and a user who
owns both A and B, calling with its key limited to B.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from bson import ObjectId

from tests.datasets_world import CREATE_DATASET, World, make_world
from tests.graphql_client import GraphQLClient
from tests.snapshots import snapshot
from tests.test_executions import CREATE_SERVICE

CREATE_MODEL = """mutation($p: ID!, $input: ModelInput!) {
  createModel(projectId: $p, input: $input) { id } }"""
UPDATE_MODEL = """mutation($id: ID!, $input: ModelChangesInput!) {
  updateModel(id: $id, input: $input) { id } }"""
DELETE_MODEL = "mutation($id: ID!) { deleteModel(id: $id) }"
SET_STATUS = """mutation($id: ID!, $status: ModelStatus!) {
  setModelStatus(id: $id, status: $status) { id } }"""
ADD_SUBSET = """mutation($m: ID!, $name: String!, $filter: JSON!) {
  addModelSubset(modelId: $m, name: $name, filter: $filter) { id } }"""
DELETE_SUBSET = """mutation($m: ID!, $name: String!) {
  deleteModelSubset(modelId: $m, name: $name) { id } }"""
CLONE = """mutation($m: ID!, $input: CloneModelInput!) {
  cloneModel(modelId: $m, input: $input) { id } }"""
CREATE_VERSION = """mutation($m: ID!) { createModelVersion(modelId: $m) { id } }"""
UPDATE_VERSION = """mutation($id: ID!, $input: ModelVersionChangesInput!) {
  updateModelVersion(id: $id, input: $input) { id } }"""
SET_VERSION_STATUS = """mutation($id: ID!, $status: ModelStatus!) {
  setModelVersionStatus(id: $id, status: $status) { id } }"""
DELETE_VERSION = "mutation($id: ID!) { deleteModelVersion(id: $id) }"

MODEL = "query($id: ID!) { model(id: $id) { id name } }"
MODEL_VERSIONS = "query($id: ID!) { model(id: $id) { versions { totalCount nodes { id } } } }"
MODEL_VERSION_NUMBER = "query($id: ID!) { model(id: $id) { version(number: 1) { id } } }"
VERSION = "query($id: ID!) { modelVersion(id: $id) { id version } }"
VERSION_MODEL = "query($id: ID!) { modelVersion(id: $id) { model { id } } }"
PROJECT_MODELS = "query($id: ID!) { project(id: $id) { models { totalCount nodes { id } } } }"
NODE = "query($id: ID!) { node(id: $id) { __typename id } }"


@dataclass
class Side:
    """One organization: a project with a labelled dataset, a service, a model naming both,
    with a subset and a version."""

    world: World
    dataset: str
    service: str
    model: str
    version: str

    @property
    def client(self) -> GraphQLClient:
        return self.world.client


async def _side(member, org: str) -> Side:
    world = await make_world(member, org=org)
    dataset = (
        await world.client.data(
            CREATE_DATASET,
            project=world.project,
            input={"name": "labelled", "labels": [{"name": "car"}]},
        )
    )["createDataset"]["id"]
    service = (
        await world.client.data(
            CREATE_SERVICE, p=world.project, input={"name": "tools", "functions": ["echo"]}
        )
    )["createService"]["id"]
    model = (
        await world.client.data(
            CREATE_MODEL,
            p=world.project,
            input={
                "name": f"{org} model",
                "labels": ["car"],
                "datasetId": dataset,
                "subsets": [{"name": "train", "filter": {"dir": "/train"}}],
                "functions": {"serviceId": service, "predict": "echo"},
            },
        )
    )["createModel"]["id"]
    version = (await world.client.data(CREATE_VERSION, m=model))["createModelVersion"]["id"]
    return Side(world, dataset, service, model, version)


@dataclass
class Tenants:
    a: Side
    b: Side
    dual_a: GraphQLClient  # a user owning both A and B, with its key limited to A
    dual_b: GraphQLClient  # the same user, with its key limited to B

    @property
    def attackers(self) -> list[tuple[str, GraphQLClient]]:
        return [("b-owner", self.b.client), ("same-user-b-key", self.dual_b)]


@pytest.fixture
async def tenants(member) -> Tenants:
    a = await _side(member, "acme")
    b = await _side(member, "beta")
    dual_a, _ = await member("acme", "owner", email="dual@both.io")
    dual_b, _ = await member("beta", "owner", email="dual@both.io")
    return Tenants(a, b, dual_a, dual_b)


# --- Reads ----------------------------------------------------------------------------------

READS: dict[str, tuple[str, Callable[[Tenants], str]]] = {
    "model": (MODEL, lambda t: t.a.model),
    "model.versions": (MODEL_VERSIONS, lambda t: t.a.model),
    "model.version": (MODEL_VERSION_NUMBER, lambda t: t.a.model),
    "modelVersion": (VERSION, lambda t: t.a.version),
    "modelVersion.model": (VERSION_MODEL, lambda t: t.a.version),
    "project.models": (PROJECT_MODELS, lambda t: t.a.world.project),
}


async def test_reading_org_a_models_with_an_org_b_key_is_not_found_like_a_missing_id(tenants):
    for read, (query, target) in READS.items():
        a_id = target(tenants)
        for name, attacker in tenants.attackers:
            body = await attacker.execute(query, id=a_id)
            assert body["data"] is None, (read, name)
            [error] = body["errors"]
            assert error["extensions"]["code"] == "NOT_FOUND", (read, name)
            missing = (await attacker.error(query, id=str(ObjectId())))["message"]
            assert error["message"] == missing, (read, name)
            assert "acme" not in error["message"].lower()
        assert not (await tenants.a.client.execute(query, id=a_id)).get("errors"), read


async def test_node_of_org_a_models_and_versions_is_null_for_org_b_keys(tenants):
    targets = {"Model": tenants.a.model, "ModelVersion": tenants.a.version}
    for typename, a_id in targets.items():
        for name, attacker in tenants.attackers:
            assert (await attacker.data(NODE, id=a_id))["node"] is None, (typename, name)
        owner_view = await tenants.a.client.data(NODE, id=a_id)
        assert owner_view["node"] == {"__typename": typename, "id": a_id}


async def test_org_b_listings_hold_only_org_b_models(tenants):
    for name, attacker in tenants.attackers:
        listed = await attacker.data(PROJECT_MODELS, id=tenants.b.world.project)
        assert listed["project"]["models"] == {
            "totalCount": 1,
            "nodes": [{"id": tenants.b.model}],
        }, name
        versions = await attacker.data(MODEL_VERSIONS, id=tenants.b.model)
        assert versions["model"]["versions"]["nodes"] == [{"id": tenants.b.version}], name


async def test_same_user_reaches_org_a_models_through_its_key_for_org_a(tenants):
    client = tenants.dual_a
    assert (await client.data(MODEL, id=tenants.a.model))["model"]["name"] == "acme model"
    assert (await client.data(VERSION, id=tenants.a.version))["modelVersion"]["version"] == 1
    assert await client.code(MODEL, id=tenants.b.model) == "NOT_FOUND"


async def test_a_forged_org_b_version_pointing_at_an_org_a_model_never_shows_it(tenants, db):
    """B's own version document, forged to name A's model, still reads nothing of A."""
    await db.model_versions.update_one(
        {"_id": ObjectId(tenants.b.version)},
        {"$set": {"modelId": ObjectId(tenants.a.model), "version": 99}},
    )
    for name, attacker in tenants.attackers:
        assert await attacker.code(VERSION_MODEL, id=tenants.b.version) == "NOT_FOUND", name
        versions = await attacker.error(MODEL_VERSIONS, id=tenants.a.model)
        assert versions["extensions"]["code"] == "NOT_FOUND", name
    # A's owner does not see B's forged version among A's model's versions either.
    listed = await tenants.a.client.data(MODEL_VERSIONS, id=tenants.a.model)
    assert listed["model"]["versions"]["nodes"] == [{"id": tenants.a.version}]
    by_number = await tenants.a.client.data(
        "query($id: ID!) { model(id: $id) { version(number: 99) { id } } }", id=tenants.a.model
    )
    assert by_number["model"]["version"] is None


# --- Writes ---------------------------------------------------------------------------------

Variables = Callable[[Tenants], dict[str, Any]]


@dataclass
class ForeignWrite:
    """A mutation aimed at A, and the control that proves the request is well-formed: by
    default A's owner sending the same variables."""

    query: str
    variables: Variables
    control_variables: Variables | None = None
    control_by_b: bool = False
    code: str = "NOT_FOUND"

    def control(self, t: Tenants) -> tuple[GraphQLClient, dict[str, Any]]:
        client = t.b.client if self.control_by_b else t.a.client
        return client, (self.control_variables or self.variables)(t)


def _b_model_with(field: str, value: Callable[[Tenants], Any]) -> Variables:
    return lambda t: {"p": t.b.world.project, "input": {"name": "planted", field: value(t)}}


WRITES: dict[str, ForeignWrite] = {
    "createModel-in-a-project": ForeignWrite(
        CREATE_MODEL, lambda t: {"p": t.a.world.project, "input": {"name": "planted"}}
    ),
    "createModel-b-project-a-dataset": ForeignWrite(
        CREATE_MODEL,
        _b_model_with("datasetId", lambda t: t.a.dataset),
        control_variables=_b_model_with("datasetId", lambda t: t.b.dataset),
        control_by_b=True,
        code="BAD_USER_INPUT",
    ),
    "createModel-b-project-a-service": ForeignWrite(
        CREATE_MODEL,
        _b_model_with("functions", lambda t: {"serviceId": t.a.service, "predict": "echo"}),
        control_variables=_b_model_with(
            "functions", lambda t: {"serviceId": t.b.service, "predict": "echo"}
        ),
        control_by_b=True,
        code="BAD_USER_INPUT",
    ),
    "updateModel": ForeignWrite(
        UPDATE_MODEL, lambda t: {"id": t.a.model, "input": {"description": "pwned"}}
    ),
    "updateModel-b-model-a-dataset": ForeignWrite(
        UPDATE_MODEL,
        lambda t: {"id": t.b.model, "input": {"datasetId": t.a.dataset}},
        control_variables=lambda t: {"id": t.b.model, "input": {"datasetId": t.b.dataset}},
        control_by_b=True,
        code="BAD_USER_INPUT",
    ),
    "setModelStatus": ForeignWrite(SET_STATUS, lambda t: {"id": t.a.model, "status": "FAILED"}),
    "addModelSubset": ForeignWrite(
        ADD_SUBSET, lambda t: {"m": t.a.model, "name": "planted", "filter": {}}
    ),
    "deleteModelSubset": ForeignWrite(DELETE_SUBSET, lambda t: {"m": t.a.model, "name": "train"}),
    "cloneModel-a-model-into-b": ForeignWrite(
        CLONE,
        lambda t: {"m": t.a.model, "input": {"name": "stolen", "projectId": t.b.world.project}},
        control_variables=lambda t: {"m": t.a.model, "input": {"name": "stolen"}},
    ),
    "cloneModel-b-model-into-a": ForeignWrite(
        CLONE,
        lambda t: {"m": t.b.model, "input": {"name": "planted", "projectId": t.a.world.project}},
        control_variables=lambda t: {"m": t.b.model, "input": {"name": "planted"}},
        control_by_b=True,
    ),
    "cloneModel-b-model-a-dataset": ForeignWrite(
        CLONE,
        lambda t: {"m": t.b.model, "input": {"name": "planted", "datasetId": t.a.dataset}},
        control_variables=lambda t: {
            "m": t.b.model,
            "input": {"name": "planted", "datasetId": t.b.dataset},
        },
        control_by_b=True,
        code="BAD_USER_INPUT",
    ),
    "createModelVersion": ForeignWrite(CREATE_VERSION, lambda t: {"m": t.a.model}),
    "updateModelVersion": ForeignWrite(
        UPDATE_VERSION, lambda t: {"id": t.a.version, "input": {"description": "pwned"}}
    ),
    "setModelVersionStatus": ForeignWrite(
        SET_VERSION_STATUS, lambda t: {"id": t.a.version, "status": "DEPLOYED"}
    ),
    "deleteModelVersion": ForeignWrite(DELETE_VERSION, lambda t: {"id": t.a.version}),
    "deleteModel": ForeignWrite(DELETE_MODEL, lambda t: {"id": t.a.model}),
}


@pytest.mark.parametrize("write", list(WRITES))
async def test_writing_org_a_models_with_an_org_b_key_is_refused_and_changes_nothing(
    tenants, db, write
):
    mutation = WRITES[write]
    before = await snapshot(db)
    for name, attacker in tenants.attackers:
        error = await attacker.error(mutation.query, **mutation.variables(tenants))
        assert error["extensions"]["code"] == mutation.code, (name, error)
        assert "acme" not in error["message"].lower()
        assert await snapshot(db) == before, name

    client, variables = mutation.control(tenants)
    await client.data(mutation.query, **variables)
    assert await snapshot(db) != before


async def test_an_org_a_dataset_or_service_reads_like_a_missing_one_to_org_b(tenants):
    """Naming A's dataset or service in B's model reveals nothing a random id would not."""
    for name, attacker in tenants.attackers:
        for field, a_value, missing in (
            ("datasetId", tenants.a.dataset, str(ObjectId())),
            (
                "functions",
                {"serviceId": tenants.a.service, "predict": "echo"},
                {"serviceId": str(ObjectId()), "predict": "echo"},
            ),
        ):
            messages = []
            for value in (a_value, missing):
                error = await attacker.error(
                    CREATE_MODEL,
                    p=tenants.b.world.project,
                    input={"name": "probe", field: value},
                )
                messages.append(error["message"])
            assert messages[0] == messages[1], (name, field)


async def test_org_a_models_are_intact_after_refused_attempts(tenants, db):
    for _, attacker in tenants.attackers:
        await attacker.error(UPDATE_MODEL, id=tenants.a.model, input={"name": "pwned"})
        await attacker.error(DELETE_MODEL, id=tenants.a.model)
        await attacker.error(CREATE_VERSION, m=tenants.a.model)
    stored = await db.models.find_one({"_id": ObjectId(tenants.a.model)})
    assert (stored["name"], stored["versionCount"]) == ("acme model", 1)
    made = await tenants.a.client.data(CREATE_VERSION, m=tenants.a.model)
    version = await tenants.a.client.data(VERSION, id=made["createModelVersion"]["id"])
    assert version["modelVersion"]["version"] == 2
