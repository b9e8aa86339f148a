"""predict through a real worker: the champion's predictions within the call, filtered by the
deployment's threshold (all of them kept); a shadow that fails or is slow never fails or delays
the champion's answer; an uploaded file stored into the target dataset and predicted by the
built-in colour-region detector; bad requests refused with nothing written; other tenants
shut out."""

import asyncio
import io
from typing import Any

from bson import ObjectId
from PIL import Image

from gateway import demo_images
from tests.datasets_world import World, make_world
from tests.test_deployments import CREATE_MODEL
from tests.test_executions import CREATE_SERVICE
from tests.test_trigger_api import wait_for_subscribers
from tests.workers import worker_processes
from tests.ws_client import subscribe
from triggers.colour_detector import DetectorInput, detect

CREATE_VERSION = "mutation($m: ID!) { createModelVersion(modelId: $m) { id } }"
CREATE_DEPLOYMENT = """mutation($p: ID!, $input: DeploymentInput!) {
  createDeployment(projectId: $p, input: $input) { id } }"""
SLOT = """versionId executionId status error latencyMs durationMs finishedAt
  predictions { type label coordinates confidence }
  allPredictions { label confidence } version { id }"""
ASSET = f"""id deploymentId itemId minThreshold tags metadata item {{ id dataset {{ id }} }}
  champion {{ {SLOT} }} shadow {{ {SLOT} }}"""
PREDICT = f"""mutation($d: ID!, $item: ID, $tags: [String!], $metadata: JSON, $t: Float) {{
  predict(deploymentId: $d, itemId: $item, tags: $tags, metadata: $metadata, timeout: $t) {{
    {ASSET} }} }}"""
PREDICT_FILE = f"""mutation($d: ID!, $file: Upload) {{
  predict(deploymentId: $d, file: $file) {{ {ASSET} }} }}"""
ASSETS = """query($d: ID!) { deployment(id: $d) { predictedAssets(first: 10) {
  totalCount nodes { id } } } }"""
ASSET_QUERY = f"query($id: ID!) {{ predictedAsset(id: $id) {{ {ASSET} }} }}"
NODE = "query($id: ID!) { node(id: $id) { __typename id } }"
UPDATE_DEPLOYMENT = """mutation($id: ID!, $input: DeploymentChangesInput!) {
  updateDeployment(id: $id, input: $input) { id } }"""

ECHOED = [
    {"type": "box", "label": "car", "confidence": 0.9,
     "coordinates": {"left": 1, "top": 1, "right": 5, "bottom": 5}},
    {"type": "box", "label": "car", "confidence": 0.5,
     "coordinates": {"left": 2, "top": 2, "right": 6, "bottom": 6}},
    {"type": "classification", "label": "night", "confidence": 0.2},
]  # fmt: skip
DETECTOR = {"red": "sign.stop", "yellow": "sign.yield", "green": "tree"}


async def _version(world: World, service: str, function: str, configuration: dict) -> str:
    model = await world.client.data(
        CREATE_MODEL,
        p=world.project,
        input={
            "name": f"{function}-{ObjectId()}",
            "configuration": configuration,
            "functions": {"serviceId": service, "predict": function},
        },
    )
    version = await world.client.data(CREATE_VERSION, m=model["createModel"]["id"])
    return version["createModelVersion"]["id"]


async def _service(world: World) -> str:
    functions = ["echo", "fail", "sleeper", "detect-colour-regions"]
    created = await world.client.data(
        CREATE_SERVICE, p=world.project, input={"name": "serving", "functions": functions}
    )
    return created["createService"]["id"]


async def _deployment(world: World, champion: str, **fields: Any) -> str:
    created = await world.client.data(
        CREATE_DEPLOYMENT,
        p=world.project,
        input={"name": f"d-{ObjectId()}", "championVersionId": champion, **fields},
    )
    return created["createDeployment"]["id"]


async def _settled(db, asset_id: str, role: str) -> dict:
    """Await a slot's outcome through a change stream (opened before checking: no race)."""
    async with await db.predicted_assets.watch(full_document="updateLookup") as changes:
        current = await db.predicted_assets.find_one({"_id": ObjectId(asset_id)})
        while current[role]["status"] == "pending":
            current = (await changes.next())["fullDocument"]
        return current


async def test_predict_answers_with_the_champions_predictions_above_the_threshold(
    member, db, settings
):
    world = await make_world(member)
    item = await world.upload("a.png", demo_images.render(demo_images.layout(1)))
    service = await _service(world)
    champion = await _version(world, service, "echo", {"predictions": ECHOED})
    deployment = await _deployment(world, champion, minThreshold=0.4)
    with worker_processes(settings) as start:
        start()
        answer = await world.client.data(
            PREDICT, d=deployment, item=item["id"], tags=["gate-3"], metadata={"cam": 3}
        )
    asset = answer["predict"]
    slot = asset["champion"]
    assert slot["status"] == "SUCCESS", slot
    assert [p["confidence"] for p in slot["predictions"]] == [0.9, 0.5]
    assert [(p["label"], p["confidence"]) for p in slot["allPredictions"]] == [
        ("car", 0.9), ("car", 0.5), ("night", 0.2),
    ]  # fmt: skip
    assert slot["predictions"][0]["coordinates"] == {
        "left": 1.0, "top": 1.0, "right": 5.0, "bottom": 5.0,
    }  # fmt: skip
    assert slot["versionId"] == champion
    assert slot["version"] == {"id": champion}
    assert 0 < slot["durationMs"] <= slot["latencyMs"]
    assert asset["shadow"] is None
    assert (asset["minThreshold"], asset["tags"], asset["metadata"]) == (
        0.4,
        ["gate-3"],
        {"cam": 3},
    )
    assert asset["item"] == {"id": item["id"], "dataset": {"id": world.dataset}}
    execution = await db.executions.find_one({"_id": ObjectId(slot["executionId"])})
    assert execution["predictedAssetId"] == ObjectId(asset["id"])
    listed = (await world.client.data(ASSETS, d=deployment))["deployment"]["predictedAssets"]
    assert listed == {"totalCount": 1, "nodes": [{"id": asset["id"]}]}
    assert (await world.client.data(ASSET_QUERY, id=asset["id"]))["predictedAsset"] == asset
    node = (await world.client.data(NODE, id=asset["id"]))["node"]
    assert node == {"__typename": "PredictedAsset", "id": asset["id"]}
    await world.client.data("mutation($id: ID!) { deleteDeployment(id: $id) }", id=deployment)
    assert await db.predicted_assets.count_documents({}) == 0


async def test_a_failing_or_slow_shadow_never_fails_or_delays_the_champion(member, db, settings):
    world = await make_world(member)
    item = await world.upload("a.png", demo_images.render(demo_images.layout(1)))
    service = await _service(world)
    champion = await _version(world, service, "echo", {"predictions": ECHOED[:1]})
    failing = await _version(world, service, "fail", {"message": "shadow broke"})
    slow = await _version(world, service, "sleeper", {"seconds": 600, "steps": 1})
    with worker_processes(settings) as start:
        start()
        deployment = await _deployment(world, champion, shadowVersionId=failing)
        answer = (await world.client.data(PREDICT, d=deployment, item=item["id"]))["predict"]
        assert answer["champion"]["status"] == "SUCCESS"
        assert len(answer["champion"]["predictions"]) == 1
        stored = await _settled(db, answer["id"], "shadow")
        assert stored["shadow"]["status"] == "failed"
        assert "shadow broke" in stored["shadow"]["error"]
        assert stored["champion"]["status"] == "success"

        # a shadow that takes ten minutes: the answer comes with the shadow still pending
        deployment = await _deployment(world, champion, shadowVersionId=slow)
        answer = (await world.client.data(PREDICT, d=deployment, item=item["id"], t=120))["predict"]
        assert answer["champion"]["status"] == "SUCCESS"
        assert answer["shadow"]["status"] == "PENDING"
        assert answer["shadow"]["versionId"] == slow
        shadow_run = await db.executions.find_one(
            {"_id": ObjectId(answer["shadow"]["executionId"])}
        )
        assert shadow_run["predictionRole"] == "shadow"
        assert shadow_run["status"] in ("created", "inProgress")


async def test_a_shadow_without_a_predict_function_gets_a_failed_slot_not_a_failed_predict(
    member, db, settings
):
    world = await make_world(member)
    item = await world.upload("a.png", demo_images.render(demo_images.layout(1)))
    service = await _service(world)
    champion = await _version(world, service, "echo", {"predictions": []})
    model = await world.client.data(CREATE_MODEL, p=world.project, input={"name": "bare"})
    bare = (await world.client.data(CREATE_VERSION, m=model["createModel"]["id"]))[
        "createModelVersion"
    ]["id"]
    deployment = await _deployment(world, champion, shadowVersionId=bare)
    with worker_processes(settings) as start:
        start()
        answer = (await world.client.data(PREDICT, d=deployment, item=item["id"]))["predict"]
    assert answer["champion"]["status"] == "SUCCESS"
    assert answer["champion"]["predictions"] == []
    assert answer["shadow"]["status"] == "FAILED"
    assert answer["shadow"]["executionId"] is None
    assert "no predict function" in answer["shadow"]["error"]
    assert await db.executions.count_documents({"predictionRole": "shadow"}) == 0


async def test_a_file_is_stored_in_the_target_dataset_and_predicted_from_its_pixels(
    member, db, settings
):
    world = await make_world(member)
    service = await _service(world)
    champion = await _version(world, service, "detect-colour-regions", {"labels": DETECTOR})
    deployment = await _deployment(world, champion, targetDatasetId=world.dataset)
    picture = demo_images.render(demo_images.layout(6))  # two regions
    with worker_processes(settings) as start:
        start()
        body = await world.client.upload(
            PREDICT_FILE, {"file": ("gate.png", picture, "image/png")}, d=deployment
        )
    assert not body.get("errors"), body
    asset = body["data"]["predict"]
    regions = detect(Image.open(io.BytesIO(picture)), DetectorInput(labels=DETECTOR))
    assert regions
    assert asset["champion"]["predictions"] == [
        {
            "type": "box",
            "label": DETECTOR[r.hue],
            "coordinates": {
                "left": float(r.left), "top": float(r.top),
                "right": float(r.right), "bottom": float(r.bottom),
            },
            "confidence": r.confidence,
        }
        for r in regions
    ]  # fmt: skip
    stored = await db.items.find_one({"_id": ObjectId(asset["itemId"])})
    assert stored["datasetId"] == ObjectId(world.dataset)
    assert stored["name"] == "gate.png"


async def test_a_champion_slower_than_the_timeout_answers_with_its_slot_pending(
    member, db, settings
):
    world = await make_world(member)
    item = await world.upload("a.png", demo_images.render(demo_images.layout(1)))
    service = await _service(world)
    champion = await _version(world, service, "sleeper", {"seconds": 600, "steps": 1})
    deployment = await _deployment(world, champion)
    with worker_processes(settings) as start:
        start()
        answer = (await world.client.data(PREDICT, d=deployment, item=item["id"], t=0.5))["predict"]
    assert answer["champion"]["status"] == "PENDING"
    assert await db.predicted_assets.count_documents({"_id": ObjectId(answer["id"])}) == 1


async def _nothing_written(db) -> tuple[int, int]:
    return (
        await db.predicted_assets.count_documents({}),
        await db.executions.count_documents({"predictedAssetId": {"$exists": True}}),
    )


async def test_bad_predict_requests_are_refused_and_write_nothing(member, db):
    world = await make_world(member)
    item = await world.upload("a.png", demo_images.render(demo_images.layout(1)))
    service = await _service(world)
    champion = await _version(world, service, "echo", {"predictions": []})
    deployment = await _deployment(world, champion)
    model = await world.client.data(CREATE_MODEL, p=world.project, input={"name": "bare"})
    bare = (await world.client.data(CREATE_VERSION, m=model["createModel"]["id"]))[
        "createModelVersion"
    ]["id"]
    unservable = await _deployment(world, bare)
    client = world.client
    cases = [
        ({"d": deployment}, "BAD_USER_INPUT"),  # neither an item nor a file
        ({"d": deployment, "item": str(ObjectId())}, "BAD_USER_INPUT"),
        ({"d": deployment, "item": "not-an-id"}, "BAD_USER_INPUT"),
        ({"d": deployment, "item": item["id"], "t": 0}, "BAD_USER_INPUT"),
        ({"d": deployment, "item": item["id"], "t": 301}, "BAD_USER_INPUT"),
        ({"d": deployment, "item": item["id"], "tags": [""]}, "BAD_USER_INPUT"),
        ({"d": deployment, "item": item["id"], "metadata": {"$where": 1}}, "BAD_USER_INPUT"),
        ({"d": unservable, "item": item["id"]}, "BAD_USER_INPUT"),
        ({"d": str(ObjectId()), "item": item["id"]}, "NOT_FOUND"),
    ]
    for variables, code in cases:
        assert await client.code(PREDICT, **variables) == code, variables
    body = await client.upload(
        PREDICT_FILE, {"file": ("a.png", b"\x89PNG", "image/png")}, d=deployment
    )
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"  # no target dataset
    assert "target dataset" in body["errors"][0]["message"]
    await client.data(UPDATE_DEPLOYMENT, id=deployment, input={"active": False})
    assert await client.code(PREDICT, d=deployment, item=item["id"]) == "CONFLICT"
    assert await _nothing_written(db) == (0, 0)


async def test_another_organization_can_neither_predict_nor_read_predicted_assets(
    member, db, settings
):
    world = await make_world(member)
    item = await world.upload("a.png", demo_images.render(demo_images.layout(1)))
    service = await _service(world)
    champion = await _version(world, service, "echo", {"predictions": ECHOED})
    deployment = await _deployment(world, champion)
    rival = await make_world(member, org="rival")
    rival_service = await _service(rival)
    rival_champion = await _version(rival, rival_service, "echo", {"predictions": []})
    rival_deployment = await _deployment(rival, rival_champion)
    with worker_processes(settings) as start:
        start()
        asset = (await world.client.data(PREDICT, d=deployment, item=item["id"]))["predict"]
    assert await rival.client.code(PREDICT, d=deployment, item=item["id"]) == "NOT_FOUND"
    # its own deployment cannot be pointed at another organization's item
    assert await rival.client.code(PREDICT, d=rival_deployment, item=item["id"]) == (
        "BAD_USER_INPUT"
    )
    assert await rival.client.code(ASSET_QUERY, id=asset["id"]) == "NOT_FOUND"
    assert (await rival.client.data(NODE, id=asset["id"]))["node"] is None
    assert await rival.client.code(ASSETS, d=deployment) == "NOT_FOUND"
    assert await db.predicted_assets.count_documents({}) == 1


LIVE = """subscription($d: ID!) { predictions(deploymentId: $d) {
  id deploymentId champion { status predictions { confidence } } } }"""


async def test_the_predictions_subscription_streams_its_deployments_assets_only(
    member, db, settings, server, app
):
    world = await make_world(member)
    item = await world.upload("a.png", demo_images.render(demo_images.layout(1)))
    service = await _service(world)
    champion = await _version(world, service, "echo", {"predictions": ECHOED[:1]})
    watched = await _deployment(world, champion)
    other = await _deployment(world, champion)
    rival = await make_world(member, org="rival")
    with worker_processes(settings) as start:
        start()
        async with subscribe(server, rival.client.key, LIVE, d=watched) as updates:
            message = await asyncio.wait_for(updates.next(), 10)
        assert message["payload"]["errors"][0]["extensions"]["code"] == "NOT_FOUND"
        async with subscribe(server, world.client.key, LIVE, d=watched) as updates:
            await wait_for_subscribers(app, 1)
            await world.client.data(PREDICT, d=other, item=item["id"])
            asset = (await world.client.data(PREDICT, d=watched, item=item["id"]))["predict"]
            seen = []
            while not seen or seen[-1]["champion"]["status"] != "SUCCESS":
                message = await asyncio.wait_for(updates.next(), 20)
                assert not message["payload"].get("errors"), message
                seen.append(message["payload"]["data"]["predictions"])
    assert {s["id"] for s in seen} == {asset["id"]}
    assert {s["deploymentId"] for s in seen} == {watched}
    assert seen[0]["champion"]["status"] == "PENDING"
    assert seen[-1]["champion"]["predictions"] == [{"confidence": 0.9}]
