"""Model runs across organizations: another organization's run, its predictions and its
version's runs are not found, and a run cannot be opened on another organization's version or
dataset — nothing is written for them."""

from bson import ObjectId

from tests.datasets_world import make_world
from tests.test_predictions import CREATE_RUN, box, open_run, upload

NODE = """query($id: ID!) { node(id: $id) { id
  ... on ModelRun { name } ... on Prediction { label } } }"""
VERSION_RUNS = """query($id: ID!) { modelVersion(id: $id) { runs { nodes { id name } } } }"""
DELETE_RUN = "mutation($id: ID!) { deleteModelRun(id: $id) }"


async def test_another_organizations_run_and_predictions_are_not_nodes_for_you(member, db):
    run = await open_run(member)
    await upload(run, [box(run.items[0], "p")])
    prediction = await db.predictions.find_one({"runId": ObjectId(run.id)})
    other = await make_world(member, "globex")
    for node in (run.id, str(prediction["_id"])):
        assert (await other.client.data(NODE, id=node))["node"] is None
        assert (await run.world.client.data(NODE, id=node))["node"]["id"] == node


async def test_another_organizations_version_runs_are_not_found(member, db):
    run = await open_run(member)
    version = await db.model_runs.find_one({"_id": ObjectId(run.id)})
    other = await make_world(member, "globex")
    body = await other.client.execute(VERSION_RUNS, id=str(version["modelVersionId"]))
    assert body["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    mine = await run.world.client.data(VERSION_RUNS, id=str(version["modelVersionId"]))
    assert [node["id"] for node in mine["modelVersion"]["runs"]["nodes"]] == [run.id]


async def test_a_run_is_opened_only_on_your_own_version_and_dataset(member, db):
    run = await open_run(member)
    version = (await db.model_runs.find_one({"_id": ObjectId(run.id)}))["modelVersionId"]
    other = await make_world(member, "globex")
    on_foreign_version = await other.client.execute(
        CREATE_RUN,
        input={"modelVersionId": str(version), "datasetId": other.dataset, "name": "x"},
    )
    assert on_foreign_version["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    on_foreign_dataset = await run.world.client.execute(
        CREATE_RUN,
        input={"modelVersionId": str(version), "datasetId": other.dataset, "name": "y"},
    )
    assert on_foreign_dataset["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    assert await db.model_runs.count_documents({}) == 1


async def test_another_organization_cannot_delete_your_run(member, db):
    run = await open_run(member)
    await upload(run, [box(run.items[0])])
    other = await make_world(member, "globex")
    body = await other.client.execute(DELETE_RUN, id=run.id)
    assert body["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    assert await db.predictions.count_documents({"runId": ObjectId(run.id)}) == 1
    assert (await run.world.client.data(DELETE_RUN, id=run.id))["deleteModelRun"] is True
    assert await db.predictions.count_documents({}) == 0
    assert await db.model_runs.count_documents({}) == 0
