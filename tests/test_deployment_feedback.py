"""The feedback loop through a real worker: reviewed predictions become ground truth in the
feedback datasets (accepted: the champion's predictions above the threshold; corrected: the
reviewer's; rejected: none), a review is final, bad reviews write nothing; continuous
training fires the train function exactly once per threshold crossing under concurrent
reviews, through a trigger; other tenants and roles shut out."""

import asyncio

import pytest
from bson import ObjectId

from gateway import demo_images
from resolvers.access import Action
from tests.datasets_world import CREATE_DATASET, World, make_world
from tests.snapshots import snapshot
from tests.test_clone import ADD_LABELS, _finished
from tests.test_deployment_batches import PREDICT_BATCH, _all_settled
from tests.test_deployment_predict import ECHOED, _deployment, _service, _version
from tests.test_deployment_promotion import PROPOSE, SET_POLICY
from tests.test_model_run_commit import _pycocotools
from tests.test_roles import ALL_CASES, _attempt, project_caller, project_outcome
from tests.test_trigger_firing import _relaying
from tests.workers import worker_processes

REVIEW = """mutation($a: ID!, $s: ReviewStatus!, $ann: [ReviewAnnotationInput!]) {
  reviewPrediction(predictedAssetId: $a, status: $s, annotations: $ann) {
    id review { status annotations trainingDue by { id } feedback { datasetId itemId } } } }"""
ATTACH = """mutation($d: ID!, $ds: ID!) { attachFeedbackDataset(deploymentId: $d, datasetId: $ds) {
  feedbackDatasetIds feedbackDatasets { id } } }"""
DETACH = """mutation($d: ID!, $ds: ID!) { detachFeedbackDataset(deploymentId: $d, datasetId: $ds) {
  feedbackDatasetIds } }"""
SET_TRAINING = """mutation($d: ID!, $input: ContinuousTrainingInput!) {
  setContinuousTraining(deploymentId: $d, input: $input) { continuousTraining {
    active threshold trainFunction parameters triggerId pending crossings } } }"""
DEPLOYMENT = """query($id: ID!, $f: JSON) { deployment(id: $id) {
  reviewCounts { accepted corrected rejected }
  continuousTraining { pending crossings lastCrossingAt }
  reviewed: predictedAssets(filter: $f) { totalCount } } }"""
CORRECTION = [
    {"type": "box", "label": "truck", "coordinates": {"left": 0, "top": 0, "right": 9, "bottom": 9}}
]


async def _predicted(world: World, db, settings, deployment: str, count: int) -> list[str]:
    """`count` predicted assets of the deployment, through predictBatch and a real worker."""
    picture = demo_images.render(demo_images.layout(1))
    for n in range(count):
        await world.upload(f"p{n}.png", picture, dir="/predict")
    with worker_processes(settings) as start:
        start()
        command = await world.client.data(PREDICT_BATCH, d=deployment, f={"dir": "/predict"})
        batch = ObjectId(command["predictBatch"]["id"])
        assert (await _finished(db, batch))["status"] == "success"
        assets = await _all_settled(db, batch, count)
    return [str(asset["_id"]) for asset in assets]


async def _feedback_dataset(world: World, name: str, labels: list[str]) -> str:
    made = await world.client.data(CREATE_DATASET, project=world.project, input={"name": name})
    dataset = made["createDataset"]["id"]
    await world.client.data(ADD_LABELS, id=dataset, l=[{"name": label} for label in labels])
    return dataset


async def test_reviews_become_ground_truth_in_the_feedback_datasets(member, db, settings):
    world = await make_world(member)
    service = await _service(world)
    champion = await _version(world, service, "echo", {"predictions": ECHOED})
    deployment = await _deployment(world, champion, minThreshold=0.4)
    accepted, corrected, rejected = await _predicted(world, db, settings, deployment, 3)
    truth = await _feedback_dataset(world, "truth", ["car", "truck"])
    attached = await world.client.data(ATTACH, d=deployment, ds=truth)
    assert attached["attachFeedbackDataset"]["feedbackDatasets"] == [{"id": truth}]
    client = world.client

    review = (await client.data(REVIEW, a=accepted, s="ACCEPTED"))["reviewPrediction"]["review"]
    assert review["status"] == "ACCEPTED"
    assert review["by"] is not None
    assert review["trainingDue"] is False
    assert [(a["type"], a["label"]) for a in review["annotations"]] == [("box", "car")] * 2
    [copy] = review["feedback"]
    assert copy["datasetId"] == truth
    item = await db.items.find_one({"_id": ObjectId(copy["itemId"])})
    original = await db.items.find_one({"referenceId": None, "datasetId": ObjectId(world.dataset)})
    assert item["sha256"] == original["sha256"]
    assert item["referenceId"] == f"predicted-asset:{accepted}"
    assert item["dir"] == f"/deployments/{deployment}"
    stored = await db.annotations.find({"itemId": item["_id"]}).sort("_id", 1).to_list()
    assert [a["coordinates"]["left"] for a in stored] == [1.0, 2.0]  # 0.9 and 0.5; not 0.2

    review = (await client.data(REVIEW, a=corrected, s="CORRECTED", ann=CORRECTION))[
        "reviewPrediction"
    ]["review"]
    assert [a["label"] for a in review["annotations"]] == ["truck"]
    review = (await client.data(REVIEW, a=rejected, s="REJECTED"))["reviewPrediction"]["review"]
    assert (review["annotations"], review["feedback"]) == ([], [])

    dataset = await db.datasets.find_one({"_id": ObjectId(truth)})
    assert (dataset["itemsCount"], dataset["annotationsCount"]) == (2, 3)
    accepted_only = {"review.status": "accepted"}
    shown = (await client.data(DEPLOYMENT, id=deployment, f=accepted_only))["deployment"]
    assert shown["reviewCounts"] == {"accepted": 1, "corrected": 1, "rejected": 1}
    assert shown["reviewed"] == {"totalCount": 1}
    assert await client.code(REVIEW, a=accepted, s="REJECTED") == "CONFLICT"  # final
    detached = await client.data(DETACH, d=deployment, ds=truth)
    assert detached["detachFeedbackDataset"]["feedbackDatasetIds"] == []


async def test_bad_reviews_are_refused_and_write_nothing(member, db, settings):
    world = await make_world(member)
    service = await _service(world)
    champion = await _version(world, service, "echo", {"predictions": ECHOED})
    deployment = await _deployment(world, champion)
    [asset] = await _predicted(world, db, settings, deployment, 1)
    await world.client.data(ATTACH, d=deployment, ds=await _feedback_dataset(world, "t", ["car"]))
    rival = await make_world(member, org="rival")
    before = await snapshot(db)
    client = world.client
    cases = [
        ({"a": asset, "s": "CORRECTED"}, "BAD_USER_INPUT"),  # no annotations
        ({"a": asset, "s": "ACCEPTED", "ann": CORRECTION}, "BAD_USER_INPUT"),
        ({"a": asset, "s": "CORRECTED", "ann": CORRECTION}, "BAD_USER_INPUT"),  # no truck label
        ({"a": asset, "s": "CORRECTED", "ann": [{**CORRECTION[0], "label": "car",
          "coordinates": {"left": 5, "top": 5, "right": 1, "bottom": 1}}]}, "BAD_USER_INPUT"),
        ({"a": "nope", "s": "ACCEPTED"}, "BAD_USER_INPUT"),
        ({"a": str(ObjectId()), "s": "ACCEPTED"}, "NOT_FOUND"),
    ]  # fmt: skip
    for variables, code in cases:
        assert await client.code(REVIEW, **variables) == code, variables
    assert await rival.client.code(REVIEW, a=asset, s="ACCEPTED") == "NOT_FOUND"
    assert await rival.client.code(ATTACH, d=deployment, ds=rival.dataset) == "NOT_FOUND"
    assert await client.code(ATTACH, d=deployment, ds=rival.dataset) == "BAD_USER_INPUT"
    assert await rival.client.code(DEPLOYMENT, id=deployment) == "NOT_FOUND"
    threshold = {"threshold": 2, "trainFunction": "echo"}
    assert await rival.client.code(SET_TRAINING, d=deployment, input=threshold) == "NOT_FOUND"
    assert await client.code(SET_TRAINING, d=deployment, input={"threshold": 0}) == (
        "BAD_USER_INPUT"
    )
    assert await snapshot(db) == before


async def test_continuous_training_fires_once_per_threshold_crossing_of_concurrent_reviews(
    member, db, settings
):
    world = await make_world(member)
    service = await _service(world)
    champion = await _version(world, service, "echo", {"predictions": ECHOED})
    deployment = await _deployment(world, champion)
    assets = await _predicted(world, db, settings, deployment, 7)
    set_up = await world.client.data(
        SET_TRAINING, d=deployment, input={"threshold": 3, "trainFunction": "echo",
                                           "parameters": {"epochs": 2}}
    )  # fmt: skip
    training = set_up["setContinuousTraining"]["continuousTraining"]
    assert (training["threshold"], training["pending"], training["parameters"]) == (
        3, 0, {"epochs": 2},
    )  # fmt: skip
    trigger = ObjectId(training["triggerId"])
    with worker_processes(settings) as start:
        start()
        reviews = await asyncio.gather(
            *(world.client.data(REVIEW, a=asset, s="ACCEPTED") for asset in assets)
        )
        answers = [r["reviewPrediction"] for r in reviews]
        due = sorted(a["id"] for a in answers if a["review"]["trainingDue"])
        assert len(due) == 2
        async with await db.executions.watch() as changes:
            while await db.executions.count_documents({"triggerId": trigger}) < 2:
                await changes.next()
    runs = await db.executions.find({"triggerId": trigger}).to_list()
    assert sorted(str(run["resource"]["id"]) for run in runs) == due
    assert {run["function"] for run in runs} == {"echo"}
    assert all(run["input"]["epochs"] == 2 for run in runs)
    shown = (await world.client.data(DEPLOYMENT, id=deployment))["deployment"]
    assert (shown["continuousTraining"]["pending"], shown["continuousTraining"]["crossings"]) == (
        1, 2,
    )  # fmt: skip
    await world.client.data("mutation($id: ID!) { deleteDeployment(id: $id) }", id=deployment)
    assert await db.triggers.count_documents({"_id": trigger}) == 0


async def test_reviewing_and_managing_the_loop_follow_the_role_tables(member, db, settings):
    world = await make_world(member)
    service = await _service(world)
    champion = await _version(world, service, "echo", {"predictions": []})
    candidate = await _version(world, service, "echo", {"predictions": []})
    deployment = await _deployment(world, champion)
    assets = await _predicted(world, db, settings, deployment, len(ALL_CASES))
    await world.client.data(SET_POLICY, d=deployment, input={"policy": "MANUAL"})
    training = {"threshold": 5, "trainFunction": "echo"}
    for case, asset in zip(ALL_CASES, assets, strict=True):
        client = await project_caller(member, world, case)
        expected = project_outcome(case, Action.WRITE_ANNOTATIONS)
        assert await _attempt(client, REVIEW, a=asset, s="REJECTED") == expected, case.id
        stored = await db.predicted_assets.find_one({"_id": ObjectId(asset)})
        assert (stored["review"] is None) == (expected is not None), case.id
        managing = project_outcome(case, Action.MANAGE_MODELS)
        assert await _attempt(client, ATTACH, d=deployment, ds=world.dataset) == managing, case.id
        assert await _attempt(client, DETACH, d=deployment, ds=world.dataset) == managing, case.id
        policy = {"policy": "MANUAL"}
        assert await _attempt(client, SET_POLICY, d=deployment, input=policy) == managing, case.id
        assert await _attempt(client, PROPOSE, d=deployment, v=candidate) == managing, case.id
        triggers = managing or project_outcome(case, Action.MANAGE_TRIGGERS)
        outcome = await _attempt(client, SET_TRAINING, d=deployment, input=training)
        assert outcome == triggers, case.id


CREATE_TRIGGER = """mutation($p: ID!, $input: TriggerInput!) {
  createTrigger(projectId: $p, input: $input) { id } }"""
UPDATE_DEPLOYMENT = """mutation($id: ID!, $input: DeploymentChangesInput!) {
  updateDeployment(id: $id, input: $input) { id } }"""


async def _trigger(world: World, service: str, name: str, **fields) -> ObjectId:
    operation = {"type": "function", "serviceId": service, "functionName": "echo"}
    created = await world.client.data(
        CREATE_TRIGGER,
        p=world.project,
        input={"name": name, "resource": "Deployment", "operation": operation, **fields},
    )
    return ObjectId(created["createTrigger"]["id"])


async def test_deployment_changes_fire_their_projects_triggers_only(member, db, settings):
    world = await make_world(member)
    service = await _service(world)
    deployment = await _deployment(world, await _version(world, service, "echo", {}))
    paused = await _trigger(world, service, "paused", actions=["Updated"], filter={"active": False})
    rival = await make_world(member, org="rival")
    spy = await _trigger(rival, await _service(rival), "spy", actions=["Created", "Updated"])
    with worker_processes(settings) as start:
        start()
        await _relaying(db)
        await world.client.data(UPDATE_DEPLOYMENT, id=deployment, input={"description": "x"})
        await world.client.data(UPDATE_DEPLOYMENT, id=deployment, input={"active": False})
        async with await db.executions.watch() as changes:
            while not await db.executions.count_documents({"triggerId": paused}):
                await changes.next()
    [run] = await db.executions.find({"triggerId": paused}).to_list()
    assert run["resource"] == {"type": "deployment", "id": ObjectId(deployment)}
    event = await db.events.find_one({"_id": run["eventId"]})
    assert (event["resource"], event["action"]) == ("Deployment", "Updated")
    assert event["before"]["active"] is True
    assert event["after"]["active"] is False
    assert await db.executions.count_documents({"triggerId": spy}) == 0


METRICS = """query($id: ID!) { deployment(id: $id) { reviewMetrics {
  role versionId assets ap ap50 precision recall stats
  perLabel { label ap precision recall tp fp fn } } } }"""
TRUCK = {"type": "box", "label": "truck", "confidence": 0.7,
         "coordinates": {"left": 0, "top": 0, "right": 9, "bottom": 9}}  # fmt: skip


def _coco_boxes(shapes: list[dict], scored: bool) -> list[dict]:
    return [
        {"box": s["coordinates"], "label": s["label"], "crowd": False,
         **({"score": s["confidence"]} if scored else {})}
        for s in shapes
        if s["type"] == "box"
    ]  # fmt: skip


async def test_review_metrics_set_champion_and_shadow_side_by_side_as_pycocotools_does(
    member, db, settings
):
    world = await make_world(member)
    service = await _service(world)
    champion = await _version(world, service, "echo", {"predictions": ECHOED})
    shadow = await _version(world, service, "echo", {"predictions": [TRUCK]})
    deployment = await _deployment(world, champion, shadowVersionId=shadow, minThreshold=0.4)
    accepted, corrected, rejected = await _predicted(world, db, settings, deployment, 3)
    await world.client.data(REVIEW, a=accepted, s="ACCEPTED")
    await world.client.data(REVIEW, a=corrected, s="CORRECTED", ann=CORRECTION)
    await world.client.data(REVIEW, a=rejected, s="REJECTED")
    found = (await world.client.data(METRICS, id=deployment))["deployment"]["reviewMetrics"]
    assert [(m["role"], m["versionId"], m["assets"]) for m in found] == [
        ("CHAMPION", champion, 2), ("SHADOW", shadow, 2),
    ]  # fmt: skip
    reviewed = (
        await db.predicted_assets.find({"_id": {"$in": [ObjectId(accepted), ObjectId(corrected)]}})
        .sort("_id", 1)
        .to_list()
    )
    truths = [_coco_boxes(asset["review"]["annotations"], False) for asset in reviewed]
    for metrics, role in zip(found, ("champion", "shadow"), strict=True):
        guesses = [_coco_boxes(asset[role]["predictions"], True) for asset in reviewed]
        expected = _pycocotools(truths, guesses, [0, 1], use_cats=True)
        assert metrics["ap"] == pytest.approx(expected.stats[0], abs=1e-9), role
        assert metrics["ap50"] == pytest.approx(expected.stats[1], abs=1e-9), role
    by_label = {(m["role"], e["label"]): e for m in found for e in m["perLabel"]}
    # the champion found both cars and no truck; the shadow the truck and no car
    assert by_label[("CHAMPION", "car")] | {"ap": None} == {
        "label": "car", "ap": None, "precision": 0.5, "recall": 1.0, "tp": 2, "fp": 2, "fn": 0,
    }  # fmt: skip
    assert (by_label[("SHADOW", "truck")]["tp"], by_label[("SHADOW", "truck")]["fn"]) == (1, 0)
    rival = await make_world(member, org="rival")
    assert await rival.client.code(METRICS, id=deployment) == "NOT_FOUND"
