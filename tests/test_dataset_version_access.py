"""Dataset versions and tenancy, roles and the models that use them: every field and mutation
(exports too: reading a project is enough to export from it) follows the role tables,
another organization sees and touches nothing, and a version a model's subset names cannot be
deleted or split again."""

from bson import ObjectId

from resolvers.access import Action
from tests.datasets_world import image_bytes, make_world
from tests.test_dataset_versions import (
    CREATE_VERSION,
    DELETE_VERSION,
    UPDATE_VERSION,
    _seeded,
    _version,
    _version_named,
)
from tests.test_predictions import CREATE_MODEL
from tests.test_roles import ALL_CASES, _attempt, project_caller, project_outcome, project_visible

SPLIT = """mutation($id: ID!, $input: SplitInput!) {
  splitDatasetVersion(id: $id, input: $input) { id } }"""
HALVES = {"ratios": [{"name": "train", "ratio": 0.5}, {"name": "val", "ratio": 0.5}], "seed": "1"}
VERSIONS = """query($id: ID!) { dataset(id: $id) { versions(first: 50) { nodes { id } }
  stats { itemsCount annotationsCount } } }"""
READ = """query($id: ID!) { datasetVersion(id: $id) { name stats { itemsCount }
  items(first: 5) { nodes { id annotations { id } } } split { subsets { name } } } }"""
NODE = "query($id: ID!) { node(id: $id) { id } }"
ADD_SUBSET = """mutation($m: ID!, $f: JSON!, $v: ID) {
  addModelSubset(modelId: $m, name: "train", filter: $f, datasetVersionId: $v) {
    subsets { name filter datasetVersionId datasetVersion { id name } } } }"""
DELETE_SUBSET = """mutation($m: ID!) { deleteModelSubset(modelId: $m, name: "train") { id } }"""
EXPORT = "mutation($id: ID!) { exportDatasetVersion(id: $id, input: {}) { id } }"
DELETE_DATASET = 'mutation($id: ID!) { deleteDataset(id: $id, confirmName: "cars") }'


async def test_version_fields_and_mutations_follow_the_role_tables(member, db, redis, settings):
    world = await make_world(member)
    await _seeded(world)
    shared = await _version(world, db, redis, settings)
    doomed = [
        await _version_named(world, db, redis, settings, f"doomed-{n}")
        for n in range(len(ALL_CASES))
    ]
    for case, victim in zip(ALL_CASES, doomed, strict=True):
        client = await project_caller(member, world, case)
        seen = None if project_visible(case) else "NOT_FOUND"
        assert await _attempt(client, READ, id=shared) == seen, case.id
        assert await _attempt(client, VERSIONS, id=world.dataset) == seen, case.id
        assert await _attempt(client, EXPORT, id=shared) == seen, case.id
        managing = project_outcome(case, Action.MANAGE_DATASETS)
        name = {"name": f"by-{case.id}"}
        assert await _attempt(client, CREATE_VERSION, d=world.dataset, input=name) == managing
        renamed = {"description": case.id}
        assert await _attempt(client, UPDATE_VERSION, id=shared, input=renamed) == managing
        assert await _attempt(client, SPLIT, id=shared, input=HALVES) == managing, case.id
        assert await _attempt(client, DELETE_VERSION, id=victim) == managing, case.id
        left = await db.dataset_versions.count_documents({"_id": ObjectId(victim)})
        assert left == (0 if managing is None else 1), case.id


async def test_another_organization_sees_and_changes_no_version(member, db, redis, settings):
    world = await make_world(member)
    await _seeded(world)
    version = await _version(world, db, redis, settings)
    held = (await world.client.data(READ, id=version))["datasetVersion"]
    rival = await make_world(member, org="rival")
    await rival.upload("own.png", image_bytes("PNG", 3, 3))
    assert await rival.client.code(READ, id=version) == "NOT_FOUND"
    assert await rival.client.code(VERSIONS, id=world.dataset) == "NOT_FOUND"
    assert (await rival.client.data(NODE, id=version))["node"] is None
    attempts = [
        (CREATE_VERSION, {"d": world.dataset, "input": {"name": "stolen"}}),
        (UPDATE_VERSION, {"id": version, "input": {"name": "mine"}}),
        (SPLIT, {"id": version, "input": HALVES}),
        (DELETE_VERSION, {"id": version}),
    ]
    for query, variables in attempts:
        assert await rival.client.code(query, **variables) == "NOT_FOUND", query
    own = (await rival.client.data(VERSIONS, id=rival.dataset))["dataset"]
    assert own == {"versions": {"nodes": []}, "stats": {"itemsCount": 1, "annotationsCount": 0}}
    model = await rival.client.data(CREATE_MODEL, project=rival.project, input={"name": "m"})
    borrowed = await rival.client.code(
        ADD_SUBSET, m=model["createModel"]["id"], f={"split": "train"}, v=version
    )
    assert borrowed == "BAD_USER_INPUT"
    assert (await world.client.data(READ, id=version))["datasetVersion"] == held


async def test_a_version_a_model_subset_names_is_kept_until_the_subset_goes(
    member, db, redis, settings
):
    world = await make_world(member)
    await _seeded(world)
    version = await _version(world, db, redis, settings)
    await world.client.data(SPLIT, id=version, input=HALVES)
    model = (await world.client.data(CREATE_MODEL, project=world.project, input={"name": "m"}))[
        "createModel"
    ]["id"]
    assert await world.client.code(ADD_SUBSET, m=model, f={"split": "train"}) == (
        "BAD_USER_INPUT"
    )  # `split` is a field of version items only
    added = await world.client.data(ADD_SUBSET, m=model, f={"split": "train"}, v=version)
    assert added["addModelSubset"]["subsets"] == [
        {
            "name": "train",
            "filter": {"split": "train"},
            "datasetVersionId": version,
            "datasetVersion": {"id": version, "name": "v1"},
        }
    ]
    assert await world.client.code(DELETE_VERSION, id=version) == "CONFLICT"
    assert await world.client.code(SPLIT, id=version, input=HALVES) == "CONFLICT"
    assert await world.client.code(DELETE_DATASET, id=world.dataset) == "CONFLICT"
    assert await db.dataset_versions.count_documents({"_id": ObjectId(version)}) == 1
    assert await db.items.count_documents({"datasetId": ObjectId(world.dataset)}) == 3
    await world.client.data(DELETE_SUBSET, m=model)
    assert (await world.client.data(DELETE_VERSION, id=version))["deleteDatasetVersion"] is True
    creating = await world.client.data(CREATE_VERSION, d=world.dataset, input={"name": "v2"})
    pending = creating["createDatasetVersion"]["id"]
    assert await world.client.code(ADD_SUBSET, m=model, f={}, v=pending) == "BAD_USER_INPUT"
    assert await world.client.code(ADD_SUBSET, m=model, f={}, v="nope") == "BAD_USER_INPUT"
    assert await world.client.code(DELETE_VERSION, id=pending) == "CONFLICT"
    assert await world.client.code(DELETE_DATASET, id=world.dataset) == "CONFLICT"
    assert await db.items.count_documents({"datasetId": ObjectId(world.dataset)}) == 3
