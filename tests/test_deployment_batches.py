"""predictBatch through a real worker: one predicted asset per item the DQL filter matches,
champion and shadow slots filled, page by page; bad requests refused with nothing written;
another organization shut out."""

from bson import ObjectId

from gateway import demo_images
from resolvers.access import Action
from tests.datasets_world import make_world
from tests.snapshots import snapshot
from tests.test_clone import _finished
from tests.test_deployment_predict import ECHOED, PREDICT, _deployment, _service, _version
from tests.test_roles import ALL_CASES, _attempt, project_caller, project_outcome
from tests.workers import worker_processes

PREDICT_BATCH = """mutation($d: ID!, $f: JSON, $tags: [String!], $m: JSON, $key: String) {
  predictBatch(deploymentId: $d, filter: $f, tags: $tags, metadata: $m, idempotencyKey: $key) {
    id type status } }"""
UPDATE_DEPLOYMENT = """mutation($id: ID!, $input: DeploymentChangesInput!) {
  updateDeployment(id: $id, input: $input) { id } }"""


async def _all_settled(db, batch_id: ObjectId, count: int) -> list[dict]:
    """Await every asset of the batch with both slots settled (change stream opened first)."""
    query = {"batchId": batch_id, "champion.status": {"$ne": "pending"}}
    query["shadow.status"] = {"$ne": "pending"}
    async with await db.predicted_assets.watch() as changes:
        while await db.predicted_assets.count_documents(query) < count:
            await changes.next()
    return await db.predicted_assets.find({"batchId": batch_id}).sort("itemId", 1).to_list()


async def test_a_batch_predicts_every_matching_item_with_champion_and_shadow(member, db, settings):
    world = await make_world(member)
    picture = demo_images.render(demo_images.layout(1))
    uploaded = [
        await world.upload(f"{n}.png", picture, dir="/gate" if n % 2 else "/yard") for n in range(7)
    ]
    wanted = sorted(ObjectId(item["id"]) for n, item in enumerate(uploaded) if n % 2)
    service = await _service(world)
    champion = await _version(world, service, "echo", {"predictions": ECHOED})
    shadow = await _version(world, service, "echo", {"predictions": ECHOED[:1]})
    deployment = await _deployment(world, champion, shadowVersionId=shadow, minThreshold=0.4)
    with worker_processes(settings, LOOM_BATCH_PAGE_SIZE="2") as start:
        start()
        started = await world.client.data(
            PREDICT_BATCH, d=deployment, f={"dir": "/gate"}, tags=["night"], m={"run": 1}, key="k1"
        )
        command = started["predictBatch"]
        assert command["type"] == "predictBatch"
        again = await world.client.data(
            PREDICT_BATCH, d=deployment, f={"dir": "/gate"}, tags=["night"], m={"run": 1}, key="k1"
        )
        assert again["predictBatch"]["id"] == command["id"]
        finished = await _finished(db, ObjectId(command["id"]))
        assert finished["status"] == "success", finished
        assets = await _all_settled(db, ObjectId(command["id"]), len(wanted))
    assert [asset["itemId"] for asset in assets] == wanted
    for asset in assets:
        assert (asset["tags"], asset["metadata"], asset["minThreshold"]) == (
            ["night"],
            {"run": 1},
            0.4,
        )
        assert asset["champion"]["status"] == asset["shadow"]["status"] == "success"
        assert [p["confidence"] for p in asset["champion"]["predictions"]] == [0.9, 0.5, 0.2]
        assert [p["confidence"] for p in asset["shadow"]["predictions"]] == [0.9]
        assert str(asset["champion"]["versionId"]) == champion
        assert str(asset["shadow"]["versionId"]) == shadow
    runs = await db.executions.find({"batchId": ObjectId(command["id"])}).to_list()
    assert sorted(run["predictionRole"] for run in runs) == ["champion"] * len(wanted) + [
        "shadow"
    ] * len(wanted)
    assert await db.predicted_assets.count_documents({}) == len(wanted)


async def test_bad_predict_batches_are_refused_and_write_nothing(member, db):
    world = await make_world(member)
    service = await _service(world)
    champion = await _version(world, service, "echo", {"predictions": []})
    deployment = await _deployment(world, champion)
    rival = await make_world(member, org="rival")
    client = world.client
    cases = [
        ({"d": deployment, "f": {"dir": {"$where": "1"}}}, "BAD_USER_INPUT"),
        ({"d": deployment, "f": {"nope": {"$eq": 1}}}, "BAD_USER_INPUT"),
        ({"d": deployment, "tags": [""]}, "BAD_USER_INPUT"),
        ({"d": deployment, "m": {"$set": 1}}, "BAD_USER_INPUT"),
        ({"d": "not-an-id"}, "BAD_USER_INPUT"),
        ({"d": str(ObjectId())}, "NOT_FOUND"),
    ]
    for variables, code in cases:
        assert await client.code(PREDICT_BATCH, **variables) == code, variables
    assert await rival.client.code(PREDICT_BATCH, d=deployment) == "NOT_FOUND"
    await client.data(UPDATE_DEPLOYMENT, id=deployment, input={"active": False})
    assert await client.code(PREDICT_BATCH, d=deployment) == "CONFLICT"
    assert await db.commands.count_documents({}) == 0
    assert await db.predicted_assets.count_documents({}) == 0


async def test_predict_and_predict_batch_follow_the_run_executions_role_table(member, db):
    world = await make_world(member)
    item = await world.upload("a.png", demo_images.render(demo_images.layout(1)))
    service = await _service(world)
    champion = await _version(world, service, "echo", {"predictions": []})
    deployment = await _deployment(world, champion)
    for case in ALL_CASES:
        client = await project_caller(member, world, case)
        expected = project_outcome(case, Action.RUN_EXECUTIONS)
        before = await snapshot(db)
        batch = await _attempt(client, PREDICT_BATCH, d=deployment)
        single = await _attempt(client, PREDICT, d=deployment, item=item["id"], t=0.01)
        assert (batch, single) == (expected, expected), case.id
        if expected is not None:
            assert await snapshot(db) == before, case.id
