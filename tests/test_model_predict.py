"""predictModel: the version's predict function over a dataset as a batch of executions on a
real worker, each item's returned predictions written into a new model run — with Loom's
built-in colour-region detector computing them from the pixels."""

import io

from bson import ObjectId
from PIL import Image

from gateway import demo_images
from tests.datasets_world import CREATE_DATASET, make_world
from tests.test_batches import _all_ended
from tests.test_clone import _finished
from tests.test_executions import CREATE_SERVICE
from tests.test_model_run_commit import COMMIT, METRICS
from tests.workers import worker_processes
from triggers.colour_detector import DetectorInput, detect

CREATE_MODEL = """mutation($project: ID!, $input: ModelInput!) {
  createModel(projectId: $project, input: $input) { id } }"""
CREATE_VERSION = "mutation($id: ID!) { createModelVersion(modelId: $id) { id } }"
PREDICT = """mutation($id: ID!, $input: PredictModelInput!) {
  predictModel(modelVersionId: $id, input: $input) {
    modelRun { id name predictionsCount } command { id type input } } }"""
RUN = """query($id: ID!, $item: ID!) { modelRun(id: $id) { predictionsCount
  predictions(itemId: $item) { type label coordinates confidence } } }"""
DETECTOR = {"red": "sign.stop", "yellow": "sign.yield", "green": "tree"}


async def _detector_version(world, function: str, configuration: dict) -> str:
    service = await world.client.data(
        CREATE_SERVICE, p=world.project, input={"name": "models", "functions": [function]}
    )
    model = await world.client.data(
        CREATE_MODEL,
        project=world.project,
        input={
            "name": "colours",
            "configuration": configuration,
            "functions": {"serviceId": service["createService"]["id"], "predict": function},
        },
    )
    version = await world.client.data(CREATE_VERSION, id=model["createModel"]["id"])
    return version["createModelVersion"]["id"]


async def test_predict_model_writes_the_detectors_predictions_into_a_run_and_commits(
    member, db, settings
):
    world = await make_world(member)
    scenes = [demo_images.layout(n) for n in range(1, 5)]
    pictures = [demo_images.render(scene) for scene in scenes]
    items = [await world.upload(f"{i}.png", picture) for i, picture in enumerate(pictures)]
    other = await world.client.data(CREATE_DATASET, project=world.project, input={"name": "o"})
    await world.upload_to(other["createDataset"]["id"], "elsewhere.png", pictures[0])
    version = await _detector_version(world, "detect-colour-regions", {"labels": DETECTOR})
    predicted = await world.client.data(PREDICT, id=version, input={"datasetId": world.dataset})
    run = predicted["predictModel"]["modelRun"]
    command = predicted["predictModel"]["command"]
    assert command["input"]["executionFields"] == {"modelRunId": run["id"]}
    with worker_processes(settings) as start:
        start()
        assert (await _finished(db, ObjectId(command["id"])))["status"] == "success"
        await _all_ended(db, len(items))
        statuses = await db.executions.distinct("status", {"modelRunId": ObjectId(run["id"])})
        assert statuses == ["success"]
        # only the run's dataset: the other dataset's item is not predicted
        runs = await db.executions.find({"modelRunId": ObjectId(run["id"])}).to_list()
        assert sorted(str(r["resource"]["id"]) for r in runs) == sorted(i["id"] for i in items)
        expected_total = 0
        for item, picture in zip(items, pictures, strict=True):
            regions = detect(Image.open(io.BytesIO(picture)), DetectorInput(labels=DETECTOR))
            expected_total += len(regions)
            stored = (await world.client.data(RUN, id=run["id"], item=item["id"]))["modelRun"]
            assert stored["predictions"] == [
                {
                    "type": "box",
                    "label": DETECTOR[r.hue],
                    "coordinates": {
                        "left": float(r.left),
                        "top": float(r.top),
                        "right": float(r.right),
                        "bottom": float(r.bottom),
                    },
                    "confidence": r.confidence,
                }
                for r in regions
            ]
        assert expected_total > 0
        assert stored["predictionsCount"] == expected_total
        done = await _finished(
            db, ObjectId((await world.client.data(COMMIT, run=run["id"]))["commitModelRun"]["id"])
        )
        assert done["status"] == "success"
    metrics = (await world.client.data(METRICS, id=run["id"]))["modelRun"]["metrics"]
    assert metrics["mode"] == "agnostic"


async def test_a_predict_function_returning_bad_predictions_fails_and_writes_nothing(
    member, db, settings
):
    world = await make_world(member)
    await world.upload("0.png", demo_images.render(demo_images.layout(1)))
    bad = {"type": "box", "label": "x", "coordinates": {"left": 9, "top": 0, "right": 1}}
    version = await _detector_version(world, "echo", {"predictions": [bad]})
    predicted = await world.client.data(PREDICT, id=version, input={"datasetId": world.dataset})
    run = predicted["predictModel"]["modelRun"]
    with worker_processes(settings) as start:
        start()
        await _finished(db, ObjectId(predicted["predictModel"]["command"]["id"]))
        await _all_ended(db, 1)
    execution = await db.executions.find_one({"modelRunId": ObjectId(run["id"])})
    assert execution["status"] == "failed"
    assert "1 predictions are invalid" in execution["error"]
    assert await db.predictions.count_documents({}) == 0


async def test_predict_model_needs_a_predict_function_and_refuses_other_tenants(member, db):
    world = await make_world(member)
    model = await world.client.data(CREATE_MODEL, project=world.project, input={"name": "bare"})
    version = await world.client.data(CREATE_VERSION, id=model["createModel"]["id"])
    body = await world.client.execute(
        PREDICT, id=version["createModelVersion"]["id"], input={"datasetId": world.dataset}
    )
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert await db.model_runs.count_documents({}) == 0

    detector = await _detector_version(world, "detect-colour-regions", {"labels": DETECTOR})
    other = await make_world(member, "globex")
    body = await other.client.execute(PREDICT, id=detector, input={"datasetId": other.dataset})
    assert body["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    foreign = await world.client.execute(PREDICT, id=detector, input={"datasetId": other.dataset})
    assert foreign["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    assert await db.model_runs.count_documents({}) == 0
    assert await db.commands.count_documents({}) == 0
