"""Models and model versions: create, read, change, clone, delete; their validation; numbered,
immutable versions; deletion refused while model runs use them; who may manage them."""

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest
from bson import ObjectId

from resolvers.access import Action
from tests.datasets_world import CREATE_DATASET, CREATE_PROJECT, World, make_world
from tests.graphql_client import GraphQLClient
from tests.snapshots import snapshot
from tests.test_executions import CREATE_SERVICE
from tests.test_roles import ALL_CASES, Case, _attempt, project_caller, project_outcome

MODEL_FIELDS = """id name description tags labels datasetId configuration inputType outputType
  status subsets { name filter } functions { serviceId predict train evaluate service { id } }
  clonedFrom versionCount project { id } dataset { id } creator { email }"""
VERSION_FIELDS = """id orgId projectId modelId version name description status configuration
  labels subsets { name filter } functions { serviceId predict train evaluate } datasetId
  inputType outputType model { id name } creator { email }"""
CREATE_MODEL = f"""mutation($p: ID!, $input: ModelInput!) {{
  createModel(projectId: $p, input: $input) {{ {MODEL_FIELDS} }} }}"""
UPDATE_MODEL = f"""mutation($id: ID!, $input: ModelChangesInput!) {{
  updateModel(id: $id, input: $input) {{ {MODEL_FIELDS} }} }}"""
DELETE_MODEL = "mutation($id: ID!) { deleteModel(id: $id) }"
SET_STATUS = """mutation($id: ID!, $status: ModelStatus!) {
  setModelStatus(id: $id, status: $status) { status } }"""
ADD_SUBSET = """mutation($m: ID!, $name: String!, $filter: JSON!) {
  addModelSubset(modelId: $m, name: $name, filter: $filter) { subsets { name filter } } }"""
DELETE_SUBSET = """mutation($m: ID!, $name: String!) {
  deleteModelSubset(modelId: $m, name: $name) { subsets { name filter } } }"""
CLONE = f"""mutation($m: ID!, $input: CloneModelInput!) {{
  cloneModel(modelId: $m, input: $input) {{ {MODEL_FIELDS} }} }}"""
CREATE_VERSION = f"""mutation($m: ID!, $name: String, $description: String) {{
  createModelVersion(modelId: $m, name: $name, description: $description) {{
    {VERSION_FIELDS} }} }}"""
UPDATE_VERSION = """mutation($id: ID!, $input: ModelVersionChangesInput!) {
  updateModelVersion(id: $id, input: $input) { description status configuration } }"""
SET_VERSION_STATUS = """mutation($id: ID!, $status: ModelStatus!) {
  setModelVersionStatus(id: $id, status: $status) { status } }"""
DELETE_VERSION = "mutation($id: ID!) { deleteModelVersion(id: $id) }"
MODEL = f"query($id: ID!) {{ model(id: $id) {{ {MODEL_FIELDS} }} }}"
VERSION = f"query($id: ID!) {{ modelVersion(id: $id) {{ {VERSION_FIELDS} }} }}"
VERSIONS = """query($id: ID!, $first: Int, $after: String) { model(id: $id) {
  versions(first: $first, after: $after) {
    totalCount pageInfo { hasNextPage endCursor } nodes { version name } } } }"""
VERSION_NUMBER = """query($id: ID!, $n: Int!) { model(id: $id) {
  version(number: $n) { id version } } }"""
PROJECT_MODELS = """query($p: ID!, $first: Int, $after: String) { project(id: $p) {
  models(first: $first, after: $after) {
    totalCount pageInfo { hasNextPage endCursor } nodes { name } } } }"""
NODE = "query($id: ID!) { node(id: $id) { __typename id } }"
ADD_PROJECT_MEMBER = """mutation($project: ID!, $user: ID!, $role: ProjectRole!) {
  addProjectMember(projectId: $project, userId: $user, role: $role) { role } }"""

ONTOLOGY = [{"name": "car"}, {"name": "vehicle", "children": [{"name": "truck"}]}]
TRAIN = {"dir": "/train"}
VALIDATION = {"resource": "items", "filter": {"metadata.user.split": {"$in": ["val"]}}}


async def _dataset(world: World, name: str = "labelled", ontology=ONTOLOGY) -> str:
    made = await world.client.data(
        CREATE_DATASET, project=world.project, input={"name": name, "labels": ontology}
    )
    return made["createDataset"]["id"]


async def _service(client: GraphQLClient, project: str, name: str = "tools") -> str:
    made = await client.data(
        CREATE_SERVICE, p=project, input={"name": name, "functions": ["echo", "sleeper"]}
    )
    return made["createService"]["id"]


async def _model(client: GraphQLClient, project: str, **fields: Any) -> dict[str, Any]:
    made = await client.data(CREATE_MODEL, p=project, input={"name": "detector", **fields})
    return made["createModel"]


@dataclass
class Scene:
    world: World
    dataset: str
    service: str
    model: dict[str, Any]


async def _scene(member) -> Scene:
    world = await make_world(member)
    dataset = await _dataset(world)
    service = await _service(world.client, world.project)
    model = await _model(
        world.client,
        world.project,
        description="finds cars",
        tags=["cars", "v0"],
        labels=["car", "vehicle.truck"],
        datasetId=dataset,
        configuration={"lr": 0.01, "layers": [64, 32], "head": {"anchors": 9}},
        inputType="image",
        outputType="box",
        subsets=[{"name": "train", "filter": TRAIN}],
        functions={"serviceId": service, "predict": "echo", "train": "sleeper"},
    )
    return Scene(world, dataset, service, model)


# --- CRUD -----------------------------------------------------------------------------------


async def test_a_model_is_created_read_listed_changed_and_deleted(member, db):
    scene = await _scene(member)
    world, model = scene.world, scene.model
    email = (await db.users.find_one({"_id": (await db.models.find_one())["creator"]}))["email"]
    assert {k: v for k, v in model.items() if k != "id"} == {
        "name": "detector",
        "description": "finds cars",
        "tags": ["cars", "v0"],
        "labels": ["car", "vehicle.truck"],
        "datasetId": scene.dataset,
        "configuration": {"lr": 0.01, "layers": [64, 32], "head": {"anchors": 9}},
        "inputType": "image",
        "outputType": "box",
        "status": "CREATED",
        "subsets": [{"name": "train", "filter": TRAIN}],
        "functions": {
            "serviceId": scene.service,
            "predict": "echo",
            "train": "sleeper",
            "evaluate": None,
            "service": {"id": scene.service},
        },
        "clonedFrom": None,
        "versionCount": 0,
        "project": {"id": world.project},
        "dataset": {"id": scene.dataset},
        "creator": {"email": email},
    }
    assert (await world.client.data(MODEL, id=model["id"]))["model"] == model
    assert (await world.client.data(NODE, id=model["id"]))["node"] == {
        "__typename": "Model",
        "id": model["id"],
    }
    stored = await db.models.find_one({"_id": ObjectId(model["id"])})
    assert (stored["orgId"], stored["projectId"]) == (ObjectId(world.org), ObjectId(world.project))

    changed = (
        await world.client.data(
            UPDATE_MODEL, id=model["id"], input={"description": "finds trucks", "tags": ["x"]}
        )
    )["updateModel"]
    assert changed == {**model, "description": "finds trucks", "tags": ["x"]}

    cleared = (
        await world.client.data(
            UPDATE_MODEL,
            id=model["id"],
            input={"datasetId": None, "functions": None, "outputType": None},
        )
    )["updateModel"]
    assert (cleared["datasetId"], cleared["dataset"], cleared["functions"]) == (None, None, None)
    assert (cleared["outputType"], cleared["inputType"]) == (None, "image")
    assert cleared["labels"] == ["car", "vehicle.truck"]

    assert (await world.client.data(DELETE_MODEL, id=model["id"]))["deleteModel"] is True
    assert await world.client.code(MODEL, id=model["id"]) == "NOT_FOUND"
    assert await db.models.count_documents({}) == 0


async def test_a_model_made_with_only_a_name_gets_empty_defaults(member):
    world = await make_world(member)
    model = await _model(world.client, world.project)
    assert {k: model[k] for k in model if k not in ("id", "project", "creator")} == {
        "name": "detector",
        "description": "",
        "tags": [],
        "labels": [],
        "datasetId": None,
        "configuration": {},
        "inputType": None,
        "outputType": None,
        "status": "CREATED",
        "subsets": [],
        "functions": None,
        "clonedFrom": None,
        "versionCount": 0,
        "dataset": None,
    }


async def test_project_models_are_listed_by_name_a_page_at_a_time(member):
    world = await make_world(member)
    for name in ("gamma", "alpha", "delta", "beta"):
        await _model(world.client, world.project, name=name)
    seen, after = [], None
    while True:
        page = (await world.client.data(PROJECT_MODELS, p=world.project, first=3, after=after))[
            "project"
        ]["models"]
        assert page["totalCount"] == 4
        seen += [node["name"] for node in page["nodes"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert seen == ["alpha", "beta", "delta", "gamma"]


# --- Validation -----------------------------------------------------------------------------


@pytest.fixture
async def scene(member) -> Scene:
    return await _scene(member)


BAD_CREATES: dict[str, tuple[Any, str]] = {
    # (the input beyond its name — a function of the scene —, a word the message must hold)
    "labels-not-in-the-ontology": (
        lambda s: {"datasetId": s.dataset, "labels": ["car", "plane", "vehicle.bus"]},
        "'plane', 'vehicle.bus'",
    ),
    "child-label-by-its-bare-name": (
        lambda s: {"datasetId": s.dataset, "labels": ["truck"]},
        "'truck'",
    ),
    "dataset-that-does-not-exist": (lambda s: {"datasetId": str(ObjectId())}, "datasetId"),
    "dataset-id-malformed": (lambda s: {"datasetId": "nope"}, "datasetId"),
    "subset-with-a-refused-operator": (
        lambda s: {"subsets": [{"name": "train", "filter": {"$where": "sleep(1)"}}]},
        "train",
    ),
    "subset-with-an-unknown-field": (
        lambda s: {"subsets": [{"name": "train", "filter": {"nosuchfield": 1}}]},
        "train",
    ),
    "subset-over-annotations": (
        lambda s: {"subsets": [{"name": "val", "filter": {"resource": "annotations"}}]},
        "items",
    ),
    "two-subsets-of-one-name": (
        lambda s: {"subsets": [{"name": "a", "filter": TRAIN}, {"name": "a", "filter": TRAIN}]},
        "distinct",
    ),
    "unknown-service": (
        lambda s: {"functions": {"serviceId": str(ObjectId()), "predict": "echo"}},
        "no service",
    ),
    "service-without-that-function": (
        lambda s: {"functions": {"serviceId": s.service, "predict": "fail"}},
        "'fail'",
    ),
    "functions-naming-no-function": (
        lambda s: {"functions": {"serviceId": s.service}},
        "at least one",
    ),
    "configuration-with-a-dollar-key": (lambda s: {"configuration": {"$set": 1}}, "configuration"),
    "configuration-not-an-object": (lambda s: {"configuration": [1, 2]}, "configuration"),
    "input-type-with-spaces": (lambda s: {"inputType": "an image"}, "inputType"),
    "too-many-tags": (lambda s: {"tags": [f"t{i}" for i in range(101)]}, "tags"),
}


@pytest.mark.parametrize("case", list(BAD_CREATES))
async def test_bad_model_input_is_bad_user_input_and_writes_nothing(scene, db, case):
    fields, word = BAD_CREATES[case]
    before = await snapshot(db)
    error = await scene.world.client.error(
        CREATE_MODEL, p=scene.world.project, input={"name": "other", **fields(scene)}
    )
    assert error["extensions"]["code"] == "BAD_USER_INPUT", error
    assert word in error["message"], error
    assert await snapshot(db) == before


async def test_the_unknown_labels_are_named_in_the_error_extensions(scene, db):
    error = await scene.world.client.error(
        UPDATE_MODEL, id=scene.model["id"], input={"labels": ["car", "bike"]}
    )
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert error["extensions"]["labels"] == ["bike"]
    stored = await db.models.find_one({"_id": ObjectId(scene.model["id"])})
    assert stored["labels"] == ["car", "vehicle.truck"]


async def test_a_dataset_or_service_of_another_project_is_refused_like_a_missing_one(scene, db):
    world = scene.world
    other = (await world.client.data(CREATE_PROJECT, org=world.org, name="Other"))["createProject"][
        "id"
    ]
    foreign_dataset = (await world.client.data(CREATE_DATASET, project=other, input={"name": "d"}))[
        "createDataset"
    ]["id"]
    foreign_service = await _service(world.client, other)
    before = await snapshot(db)
    for field, value, missing in (
        ("datasetId", foreign_dataset, str(ObjectId())),
        ("functions", {"serviceId": foreign_service, "predict": "echo"}, None),
    ):
        missing_value = missing or {"serviceId": str(ObjectId()), "predict": "echo"}
        refused = await world.client.error(
            CREATE_MODEL, p=world.project, input={"name": "m", field: value}
        )
        unknown = await world.client.error(
            CREATE_MODEL, p=world.project, input={"name": "m", field: missing_value}
        )
        assert refused["extensions"]["code"] == "BAD_USER_INPUT", field
        assert refused["message"] == unknown["message"], field
    assert await snapshot(db) == before


async def test_changing_the_dataset_checks_the_labels_already_there(scene, db):
    world = scene.world
    plain = await _dataset(world, "plain", [{"name": "car"}])
    before = await snapshot(db)
    error = await world.client.error(UPDATE_MODEL, id=scene.model["id"], input={"datasetId": plain})
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "'vehicle.truck'" in error["message"]
    assert await snapshot(db) == before
    changed = await world.client.data(
        UPDATE_MODEL, id=scene.model["id"], input={"datasetId": plain, "labels": ["car"]}
    )
    assert changed["updateModel"]["datasetId"] == plain


async def test_an_empty_change_and_a_bad_change_are_refused(scene, db):
    before = await snapshot(db)
    for changes in ({}, {"name": ""}, {"functions": {"serviceId": scene.service}}):
        code = await scene.world.client.code(UPDATE_MODEL, id=scene.model["id"], input=changes)
        assert code == "BAD_USER_INPUT", changes
    assert await snapshot(db) == before


async def test_a_model_name_taken_in_the_project_is_a_conflict(scene, db):
    world = scene.world
    second = await _model(world.client, world.project, name="second")
    before = await snapshot(db)
    assert await world.client.code(CREATE_MODEL, p=world.project, input={"name": "detector"}) == (
        "CONFLICT"
    )
    renamed = await world.client.error(UPDATE_MODEL, id=second["id"], input={"name": "detector"})
    assert renamed["extensions"] == {**renamed["extensions"], "code": "CONFLICT", "field": "name"}
    cloned = await world.client.code(CLONE, m=second["id"], input={"name": "detector"})
    assert cloned == "CONFLICT"
    assert await snapshot(db) == before
    # The same name in another project is fine.
    other = (await world.client.data(CREATE_PROJECT, org=world.org, name="Other"))["createProject"][
        "id"
    ]
    assert (await _model(world.client, other))["name"] == "detector"


async def test_status_is_set_to_each_value_and_a_bad_one_is_refused(scene, db):
    client, model = scene.world.client, scene.model["id"]
    for status in ("TRAINING", "TRAINED", "DEPLOYED", "FAILED", "CREATED"):
        assert (await client.data(SET_STATUS, id=model, status=status))["setModelStatus"] == {
            "status": status
        }
        stored = await db.models.find_one({"_id": ObjectId(model)})
        assert stored["status"] == status.lower()
    before = await snapshot(db)
    for bad in ("EXPLODED", "created", None):
        assert await client.code(SET_STATUS, id=model, status=bad) == "BAD_USER_INPUT", bad
    assert await snapshot(db) == before


# --- Subsets --------------------------------------------------------------------------------


async def test_subsets_are_added_replaced_and_deleted_by_name(scene, db):
    client, model = scene.world.client, scene.model["id"]
    added = await client.data(ADD_SUBSET, m=model, name="validation", filter=VALIDATION)
    assert added["addModelSubset"]["subsets"] == [
        {"name": "train", "filter": TRAIN},
        {"name": "validation", "filter": VALIDATION},
    ]
    replaced = await client.data(ADD_SUBSET, m=model, name="train", filter={"dir": "/t2"})
    assert replaced["addModelSubset"]["subsets"] == [
        {"name": "validation", "filter": VALIDATION},
        {"name": "train", "filter": {"dir": "/t2"}},
    ]
    odd = await client.data(ADD_SUBSET, m=model, name="$weird name", filter={})
    assert odd["addModelSubset"]["subsets"][-1] == {"name": "$weird name", "filter": {}}
    deleted = await client.data(DELETE_SUBSET, m=model, name="validation")
    assert [s["name"] for s in deleted["deleteModelSubset"]["subsets"]] == ["train", "$weird name"]

    before = await snapshot(db)
    assert await client.code(DELETE_SUBSET, m=model, name="validation") == "NOT_FOUND"
    bad = await client.error(ADD_SUBSET, m=model, name="test", filter={"dir": {"$regex": ".*"}})
    assert (bad["extensions"]["code"], bad["extensions"]["field"]) == ("BAD_USER_INPUT", "filter")
    assert await client.code(ADD_SUBSET, m=model, name=" ", filter=TRAIN) == "BAD_USER_INPUT"
    assert await snapshot(db) == before


async def test_concurrent_subset_additions_all_land(scene):
    client, model = scene.world.client, scene.model["id"]
    names = [f"fold{i}" for i in range(6)]
    await asyncio.gather(
        *(client.data(ADD_SUBSET, m=model, name=n, filter={"dir": f"/{n}"}) for n in names)
    )
    subsets = (await client.data(MODEL, id=model))["model"]["subsets"]
    assert sorted(s["name"] for s in subsets) == sorted(["train", *names])


# --- Versions -------------------------------------------------------------------------------


async def test_a_version_snapshots_the_model_and_never_changes_with_it(scene, db):
    client, model = scene.world.client, scene.model
    first = (await client.data(CREATE_VERSION, m=model["id"]))["createModelVersion"]
    assert {k: v for k, v in first.items() if k not in ("id", "creator")} == {
        "orgId": scene.world.org,
        "projectId": scene.world.project,
        "modelId": model["id"],
        "version": 1,
        "name": "v1",
        "description": "",
        "status": "CREATED",
        "configuration": model["configuration"],
        "labels": model["labels"],
        "subsets": model["subsets"],
        "functions": {k: v for k, v in model["functions"].items() if k != "service"},
        "datasetId": scene.dataset,
        "inputType": "image",
        "outputType": "box",
        "model": {"id": model["id"], "name": "detector"},
    }
    stored_first = await db.model_versions.find_one({"_id": ObjectId(first["id"])})

    # The model changes every snapshotted field; the version keeps its own.
    await client.data(
        UPDATE_MODEL,
        id=model["id"],
        input={
            "configuration": {"lr": 1},
            "labels": ["car"],
            "inputType": "video",
            "functions": {"serviceId": scene.service, "evaluate": "echo"},
        },
    )
    await client.data(ADD_SUBSET, m=model["id"], name="validation", filter=VALIDATION)
    await client.data(SET_STATUS, id=model["id"], status="TRAINED")
    assert (await client.data(VERSION, id=first["id"]))["modelVersion"] == first

    second = (await client.data(CREATE_VERSION, m=model["id"], name="tuned", description="lr 1"))[
        "createModelVersion"
    ]
    assert (second["version"], second["name"], second["description"]) == (2, "tuned", "lr 1")
    assert (second["configuration"], second["labels"], second["inputType"]) == (
        {"lr": 1},
        ["car"],
        "video",
    )
    assert [s["name"] for s in second["subsets"]] == ["train", "validation"]
    assert second["status"] == "CREATED"

    # Only the description and the status of a version change.
    changed = await client.data(UPDATE_VERSION, id=first["id"], input={"description": "base"})
    assert changed["updateModelVersion"]["description"] == "base"
    status = await client.data(SET_VERSION_STATUS, id=first["id"], status="DEPLOYED")
    assert status["setModelVersionStatus"] == {"status": "DEPLOYED"}
    before = await snapshot(db)
    for forbidden in ({"configuration": {"lr": 9}}, {"labels": ["x"]}, {"name": "renamed"}):
        body = await client.execute(UPDATE_VERSION, id=first["id"], input=forbidden)
        assert [e["extensions"]["code"] for e in body["errors"]] == ["BAD_USER_INPUT"]
    assert await client.code(UPDATE_VERSION, id=first["id"], input={}) == "BAD_USER_INPUT"
    bad = await client.code(SET_VERSION_STATUS, id=first["id"], status="GONE")
    assert bad == "BAD_USER_INPUT"
    assert await snapshot(db) == before
    stored = await db.model_versions.find_one({"_id": ObjectId(first["id"])})
    unchanged = {"description", "status", "updatedAt"}
    assert {k: v for k, v in stored.items() if k not in unchanged} == {
        k: v for k, v in stored_first.items() if k not in unchanged
    }
    assert (stored["description"], stored["status"]) == ("base", "deployed")


async def test_versions_created_at_once_are_numbered_one_to_n(scene, db):
    client, model = scene.world.client, scene.model["id"]
    made = await asyncio.gather(*(client.data(CREATE_VERSION, m=model) for _ in range(6)))
    numbers = sorted(m["createModelVersion"]["version"] for m in made)
    assert numbers == [1, 2, 3, 4, 5, 6]
    assert sorted(m["createModelVersion"]["name"] for m in made) == sorted(f"v{n}" for n in numbers)
    stored = await db.models.find_one({"_id": ObjectId(model)})
    assert stored["versionCount"] == 6
    assert await db.model_versions.count_documents({"modelId": ObjectId(model)}) == 6


async def test_versions_are_listed_newest_first_and_found_by_number(scene, db):
    client, model = scene.world.client, scene.model["id"]
    ids = [(await client.data(CREATE_VERSION, m=model))["createModelVersion"]["id"] for _ in "abc"]
    page = (await client.data(VERSIONS, id=model, first=2))["model"]["versions"]
    assert page["totalCount"] == 3
    assert page["nodes"] == [{"version": 3, "name": "v3"}, {"version": 2, "name": "v2"}]
    rest = await client.data(VERSIONS, id=model, first=2, after=page["pageInfo"]["endCursor"])
    assert rest["model"]["versions"]["nodes"] == [{"version": 1, "name": "v1"}]
    assert rest["model"]["versions"]["pageInfo"]["hasNextPage"] is False
    found = await client.data(VERSION_NUMBER, id=model, n=2)
    assert found["model"]["version"] == {"id": ids[1], "version": 2}
    assert (await client.data(VERSION_NUMBER, id=model, n=4))["model"]["version"] is None
    assert (await client.data(NODE, id=ids[0]))["node"] == {
        "__typename": "ModelVersion",
        "id": ids[0],
    }
    # A deleted version's number is not given again.
    assert (await client.data(DELETE_VERSION, id=ids[2]))["deleteModelVersion"] is True
    assert await client.code(VERSION, id=ids[2]) == "NOT_FOUND"
    fourth = (await client.data(CREATE_VERSION, m=model))["createModelVersion"]
    assert fourth["version"] == 4


async def test_a_bad_version_input_is_refused_and_numbers_nothing(scene, db):
    client, model = scene.world.client, scene.model["id"]
    before = await snapshot(db)
    assert await client.code(CREATE_VERSION, m=model, name="") == "BAD_USER_INPUT"
    assert await client.code(CREATE_VERSION, m=model, description="x" * 2001) == "BAD_USER_INPUT"
    assert await client.code(CREATE_VERSION, m=str(ObjectId())) == "NOT_FOUND"
    assert await snapshot(db) == before
    assert (await client.data(CREATE_VERSION, m=model))["createModelVersion"]["version"] == 1


# --- Clone ----------------------------------------------------------------------------------


async def test_a_clone_copies_every_field_overrides_what_is_given_and_names_its_source(scene, db):
    client, model = scene.world.client, scene.model
    await client.data(SET_STATUS, id=model["id"], status="TRAINED")
    await client.data(CREATE_VERSION, m=model["id"])
    copy = (await client.data(CLONE, m=model["id"], input={"name": "copy"}))["cloneModel"]
    assert copy["id"] != model["id"]
    assert copy == {
        **model,
        "id": copy["id"],
        "name": "copy",
        "clonedFrom": model["id"],
        "status": "CREATED",
        "versionCount": 0,
    }
    overridden = (
        await client.data(
            CLONE,
            m=model["id"],
            input={
                "name": "tuned",
                "description": "another",
                "tags": ["t"],
                "labels": ["car"],
                "configuration": {"lr": 0.5},
            },
        )
    )["cloneModel"]
    assert overridden == {
        **model,
        "id": overridden["id"],
        "name": "tuned",
        "description": "another",
        "tags": ["t"],
        "labels": ["car"],
        "configuration": {"lr": 0.5},
        "clonedFrom": model["id"],
        "versionCount": 0,
    }
    assert await db.model_versions.count_documents({"modelId": ObjectId(copy["id"])}) == 0
    before = await snapshot(db)
    bad = await client.error(CLONE, m=model["id"], input={"name": "x", "labels": ["plane"]})
    assert (bad["extensions"]["code"], bad["extensions"]["labels"]) == ("BAD_USER_INPUT", ["plane"])
    assert await snapshot(db) == before


async def test_a_clone_into_another_project_of_the_org_leaves_the_sources_dataset_and_service(
    scene,
):
    world, model = scene.world, scene.model
    other = (await world.client.data(CREATE_PROJECT, org=world.org, name="Other"))["createProject"][
        "id"
    ]
    moved = (
        await world.client.data(CLONE, m=model["id"], input={"name": "x", "projectId": other})
    )["cloneModel"]
    assert moved["project"] == {"id": other}
    assert (moved["datasetId"], moved["functions"], moved["clonedFrom"]) == (
        None,
        None,
        model["id"],
    )
    assert (moved["labels"], moved["configuration"], moved["subsets"]) == (
        model["labels"],
        model["configuration"],
        model["subsets"],
    )
    listed = await world.client.data(PROJECT_MODELS, p=other)
    assert listed["project"]["models"]["nodes"] == [{"name": "x"}]
    # A dataset of the target project may be given; the labels are checked against it.
    there = (
        await world.client.data(
            CREATE_DATASET, project=other, input={"name": "d", "labels": [{"name": "car"}]}
        )
    )["createDataset"]["id"]
    error = await world.client.error(
        CLONE, m=model["id"], input={"name": "y", "projectId": other, "datasetId": there}
    )
    assert error["extensions"]["labels"] == ["vehicle.truck"]
    fitted = await world.client.data(
        CLONE,
        m=model["id"],
        input={"name": "y", "projectId": other, "datasetId": there, "labels": ["car"]},
    )
    assert fitted["cloneModel"]["datasetId"] == there
    # The source's dataset is not one of the target project.
    code = await world.client.code(
        CLONE, m=model["id"], input={"name": "z", "projectId": other, "datasetId": scene.dataset}
    )
    assert code == "BAD_USER_INPUT"


async def test_a_clone_into_another_organization_is_refused(scene, member, db):
    world = scene.world
    # One user owning both organizations, its key acting in both.
    dual, _ = await member("acme", "owner", email="dual@both.io", scoped=False)
    await member("beta", "owner", email="dual@both.io")
    beta_org = str((await db.organizations.find_one({"name": "beta"}))["_id"])
    beta_project = (await dual.data(CREATE_PROJECT, org=beta_org, name="B"))["createProject"]["id"]
    acme_model = await _model(dual, world.project, name="dual's")
    before = await snapshot(db)
    error = await dual.error(
        CLONE, m=acme_model["id"], input={"name": "x", "projectId": beta_project}
    )
    assert (error["extensions"]["code"], error["extensions"]["field"]) == (
        "BAD_USER_INPUT",
        "projectId",
    )
    # The acme owner, who is not in beta, does not even see the project.
    code = await world.client.code(
        CLONE, m=scene.model["id"], input={"name": "x", "projectId": beta_project}
    )
    assert code == "NOT_FOUND"
    assert await snapshot(db) == before


async def test_a_clone_needs_manage_models_in_the_target_project(member, db):
    world = await make_world(member)
    model = await _model(world.client, world.project)
    other = (await world.client.data(CREATE_PROJECT, org=world.org, name="Other"))["createProject"][
        "id"
    ]
    caller, doc = await member("acme", "member")
    user = str(doc["userId"])
    await world.client.data(ADD_PROJECT_MEMBER, project=world.project, user=user, role="DEVELOPER")
    await world.client.data(ADD_PROJECT_MEMBER, project=other, user=user, role="ANNOTATOR")
    before = await snapshot(db)
    code = await caller.code(CLONE, m=model["id"], input={"name": "x", "projectId": other})
    assert code == "FORBIDDEN"
    assert await snapshot(db) == before
    here = await caller.data(CLONE, m=model["id"], input={"name": "x"})
    assert here["cloneModel"]["clonedFrom"] == model["id"]


# --- Deletion and model runs ----------------------------------------------------------------


async def test_deletion_is_refused_while_a_model_run_uses_the_model_or_a_version(scene, db):
    client, model = scene.world.client, scene.model["id"]
    v1 = (await client.data(CREATE_VERSION, m=model))["createModelVersion"]["id"]
    v2 = (await client.data(CREATE_VERSION, m=model))["createModelVersion"]["id"]
    ids = {"orgId": ObjectId(scene.world.org), "projectId": ObjectId(scene.world.project)}
    by_model = await db.model_runs.insert_one({**ids, "modelId": ObjectId(model)})
    before = await snapshot(db)
    assert await client.code(DELETE_MODEL, id=model) == "CONFLICT"
    assert await snapshot(db) == before

    await db.model_runs.delete_one({"_id": by_model.inserted_id})
    await db.model_runs.insert_one({**ids, "modelVersionId": ObjectId(v1)})
    before = await snapshot(db)
    assert await client.code(DELETE_MODEL, id=model) == "CONFLICT"
    assert await client.code(DELETE_VERSION, id=v1) == "CONFLICT"
    assert await snapshot(db) == before

    # A version no run uses goes; the model still cannot.
    assert (await client.data(DELETE_VERSION, id=v2))["deleteModelVersion"] is True
    await db.model_runs.delete_many({})
    assert (await client.data(DELETE_MODEL, id=model))["deleteModel"] is True
    assert await db.models.count_documents({}) == 0
    assert await db.model_versions.count_documents({}) == 0
    assert await client.code(VERSION, id=v1) == "NOT_FOUND"


async def test_deleting_a_model_takes_only_its_own_versions(scene, db):
    client = scene.world.client
    other = await _model(client, scene.world.project, name="other")
    await client.data(CREATE_VERSION, m=scene.model["id"])
    kept = (await client.data(CREATE_VERSION, m=other["id"]))["createModelVersion"]["id"]
    await client.data(DELETE_MODEL, id=scene.model["id"])
    assert [d["_id"] for d in await db.model_versions.find().to_list()] == [ObjectId(kept)]
    assert await client.code(DELETE_MODEL, id=scene.model["id"]) == "NOT_FOUND"


# --- Roles ----------------------------------------------------------------------------------

MANAGES = {
    "org-owner": None,
    "org-admin": None,
    "org-member": "NOT_FOUND",
    "org-worker": "NOT_FOUND",
    "project-owner": None,
    "project-developer": None,
    "project-annotationManager": "FORBIDDEN",
    "project-annotator": "FORBIDDEN",
}
"""Who may manage models, written out by hand: the policy, not the table."""


def test_the_manage_models_policy_is_the_grant_tables():
    assert {case.id: project_outcome(case, Action.MANAGE_MODELS) for case in ALL_CASES} == MANAGES
    assert [case.id for case in ALL_CASES] == list(MANAGES)


@dataclass
class Caller:
    case: Case
    client: GraphQLClient
    model: str
    """A model of the founder's, with a version, for this caller to change and delete."""
    version: str


async def _callers(member) -> tuple[World, list[Caller]]:
    world = await make_world(member)
    callers = []
    for case in ALL_CASES:
        client = await project_caller(member, world, case)
        model = await _model(
            world.client,
            world.project,
            name=f"for {case.id}",
            subsets=[{"name": "s", "filter": {}}],
        )
        version = (await world.client.data(CREATE_VERSION, m=model["id"]))["createModelVersion"]
        callers.append(Caller(case, client, model["id"], version["id"]))
    return world, callers


async def test_managing_models_follows_the_role_table_and_members_read_them(member, db):
    world, callers = await _callers(member)
    outcomes: dict[str, dict[str, str | None]] = {}
    for caller in callers:
        client, model, version, case = caller.client, caller.model, caller.version, caller.case.id
        reads = {
            "model": await _attempt(client, MODEL, id=model),
            "modelVersion": await _attempt(client, VERSION, id=version),
            "model.versions": await _attempt(client, VERSIONS, id=model),
            "project.models": await _attempt(client, PROJECT_MODELS, p=world.project),
        }
        node = (await client.data(NODE, id=model))["node"]
        assert (node is None) == (reads["model"] is not None), case
        before = await snapshot(db)
        writes = {
            "create": await _attempt(client, CREATE_MODEL, p=world.project, input={"name": case}),
            "update": await _attempt(client, UPDATE_MODEL, id=model, input={"description": "c"}),
            "setStatus": await _attempt(client, SET_STATUS, id=model, status="TRAINING"),
            "addSubset": await _attempt(client, ADD_SUBSET, m=model, name="t", filter=TRAIN),
            "deleteSubset": await _attempt(client, DELETE_SUBSET, m=model, name="s"),
            "clone": await _attempt(client, CLONE, m=model, input={"name": f"{case} copy"}),
            "createVersion": await _attempt(client, CREATE_VERSION, m=model),
            "updateVersion": await _attempt(
                client, UPDATE_VERSION, id=version, input={"description": "c"}
            ),
            "setVersionStatus": await _attempt(
                client, SET_VERSION_STATUS, id=version, status="TRAINED"
            ),
        }
        stored = await db.models.find_one({"_id": ObjectId(model)})
        if MANAGES[case] is not None:
            assert await snapshot(db) == before, case
        else:
            assert await db.models.count_documents({"name": {"$in": [case, f"{case} copy"]}}) == 2
            assert (stored["description"], stored["status"]) == ("c", "training"), case
            assert [s["name"] for s in stored["subsets"]] == ["t"], case
            assert stored["versionCount"] == 2, case
            kept = await db.model_versions.find_one({"_id": ObjectId(version)})
            assert (kept["description"], kept["status"]) == ("c", "trained"), case
        writes["deleteVersion"] = await _attempt(client, DELETE_VERSION, id=version)
        writes["delete"] = await _attempt(client, DELETE_MODEL, id=model)
        still_there = await db.models.count_documents({"_id": ObjectId(model)})
        assert still_there == (MANAGES[case] is not None), case
        outcomes[case] = {**reads, **writes}

    invisible = {"org-member", "org-worker"}
    assert outcomes == {
        case: {
            **dict.fromkeys(
                ("model", "modelVersion", "model.versions", "project.models"),
                "NOT_FOUND" if case in invisible else None,
            ),
            **dict.fromkeys(
                (
                    "create",
                    "update",
                    "setStatus",
                    "addSubset",
                    "deleteSubset",
                    "clone",
                    "createVersion",
                    "updateVersion",
                    "setVersionStatus",
                    "deleteVersion",
                    "delete",
                ),
                expected,
            ),
        }
        for case, expected in MANAGES.items()
    }
