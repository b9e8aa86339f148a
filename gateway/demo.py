"""The demo `loom dev --seed-demo` loads: an organization with an owner key, a project, a
dataset of street scenes with an ontology and annotations true to the pixels, a service of the
built-in functions, a few executions for the dev worker to run, and triggers on the project's
changes — one invoked by hand on the first scene, so its execution is there at once; the others
fire as soon as anything in the project changes (upload an image, annotate one, or watch an
execution fail) — a cron trigger running echo every minute, a webhook to `loom dev`'s
inbox (GET /dev/inbox) that every new image is delivered to, signed, pinged once at seed, and
a model (Loom's built-in colour-region detector) with a committed run — metrics and match
records to browse — and a second run its predict function fills on the worker, a deployment
with its feedback loop, a dataset version of the scenes split train / val / test, and its val
split exported as COCO and imported into a dataset of its own.

The seed is a sequence of named steps (STEPS); a later feature adds itself to the demo as one
more step. Each step first looks for what it would create and creates only what is missing, so a
second seed adds nothing and an interrupted one finishes on the next start. After the key, every
write goes through Loom's own resolvers as the demo's owner — the checks and code paths of the
API (an item is stored as uploadItem stores it) — so the demo is data the graph could have made.
"""

import io
import logging
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from arq.connections import ArqRedis
from bson import ObjectId
from PIL import Image
from pymongo.asynchronous.database import AsyncDatabase

from gateway import demo_images
from gateway.bootstrap import create_key
from resolvers import (
    annotations,
    commands,
    cron_triggers,
    datasets,
    deliveries,
    executions,
    items,
    model_predictions,
    model_run_commit,
    model_runs,
    models,
    prediction_uploads,
    projects,
    services,
    triggers,
    webhooks,
)
from resolvers.access import Access, OrgRole
from resolvers.api_keys import authenticate, find_key
from resolvers.deployments import batches as deployment_batches
from resolvers.deployments import feedback as deployment_feedback
from resolvers.deployments import lifecycle as deployments
from resolvers.deployments import predictions as deployment_predictions
from resolvers.deployments import promotion
from resolvers.errors import Unauthenticated
from resolvers.interchange import exports, imports
from resolvers.versions import snapshots, splits
from triggers import colour_detector
from triggers.commands import enqueue as enqueue_command
from triggers.executions import enqueue
from triggers.webhooks import delivery_queue
from triggers.webhooks.address_guard import AddressGuard
from triggers.webhooks.delivery_queue import Due
from triggers.webhooks.signing import SecretBox

log = logging.getLogger("loom.demo")

DEMO_ORG = "Demo"
DEMO_EMAIL = "demo@loom.dev"
PROJECT = "Street scenes"
DATASET = "Streets"
SERVICE = "demo-functions"
MODEL_SERVICE = "demo-models"
IMAGES = 50

EXECUTIONS: list[dict[str, Any]] = [
    {"function": "echo", "input": {"message": "hello from the demo"}},
    {"function": "echo", "input": {"about": "the first street scene"}, "item": True},
    {"function": "sleeper", "input": {"seconds": 3, "steps": 6}},
    {"function": "fail", "input": {"message": "a demo failure, on purpose"}},
]
"""What the dev worker runs once the demo is seeded: successes, live progress, a failure."""

TRIGGERS: list[dict[str, Any]] = [
    {
        "name": "greet new images",
        "resource": "Item",
        "actions": ["Created"],
        "filter": {"mimetype": "image/*"},
        "function": "echo",
        "input": {"message": "a new image arrived"},
    },
    {
        "name": "first annotation",
        "resource": "Item",
        "actions": ["Updated"],
        "filter": {"annotationsCount": {"$gte": 1}},
        "executionMode": "Once",
        "function": "echo",
        "input": {"message": "this image has its first annotation"},
    },
    {
        "name": "alert on failures",
        "resource": "Execution",
        "actions": ["StatusChanged"],
        "filter": {"status": "failed", "function": {"$ne": "echo"}},
        "function": "echo",
        "input": {"message": "an execution failed"},
    },
]
"""The demo's triggers: on new images, on an image's first annotation (once per image), and
on failed executions."""


@dataclass
class Demo:
    """What the steps made so far; each step reads what earlier ones left."""

    db: AsyncDatabase
    redis: ArqRedis
    saved_key: str | None
    inbox: "DevInbox | None" = None
    key: str = field(init=False)
    org_id: ObjectId = field(init=False)
    access: Access = field(init=False)
    project: dict[str, Any] = field(init=False)
    dataset: dict[str, Any] = field(init=False)
    service: dict[str, Any] = field(init=False)


async def _owner_key(demo: Demo) -> None:
    """The saved key while it is a live owner key of the demo organization (so `loom dev` shows
    the same key on every start), a fresh one otherwise."""
    reused = await _live_demo_key(demo.db, demo.saved_key)
    if reused is None:
        key, doc = await create_key(demo.db, DEMO_ORG, OrgRole.OWNER, DEMO_EMAIL, "demo")
    else:
        key, doc = reused
    demo.key, demo.org_id = key, doc["orgId"]
    demo.access, _ = await authenticate(demo.db, key)


async def _live_demo_key(db: AsyncDatabase, key: str | None) -> tuple[str, dict] | None:
    if key is None:
        return None
    try:
        found = await find_key(db, key)
    except Unauthenticated:
        return None
    organization = await db.organizations.find_one({"_id": found["orgId"]})
    owns = any(
        m["orgId"] == found["orgId"] and m["role"] == str(OrgRole.OWNER)
        for m in found["memberships"]
    )
    return (key, found) if owns and organization and organization["name"] == DEMO_ORG else None


async def _project(demo: Demo) -> None:
    found = await demo.db.projects.find_one({"orgId": demo.org_id, "name": PROJECT})
    demo.project = found or await projects.create_project(
        demo.access, demo.org_id, {"name": PROJECT, "description": "Demo data: synthetic streets"}
    )


async def _dataset(demo: Demo) -> None:
    found = await demo.db.datasets.find_one(
        {"projectId": demo.project["_id"], "name": DATASET, "deleting": False}
    )
    demo.dataset = found or await datasets.create_dataset(
        demo.access,
        demo.project["_id"],
        {
            "name": DATASET,
            "description": f"{IMAGES} generated street scenes, split train/val",
            "labels": demo_images.ONTOLOGY,
        },
    )


def _scenes() -> dict[str, demo_images.Scene]:
    return {scene.name: scene for scene in map(demo_images.layout, range(IMAGES))}


async def _images(demo: Demo) -> None:
    stored = set(await demo.db.items.distinct("name", {"datasetId": demo.dataset["_id"]}))
    for name, scene in _scenes().items():
        if name in stored:
            continue
        await items.upload_item(
            demo.access,
            demo.dataset["_id"],
            io.BytesIO(demo_images.render(scene)),
            "image/png",
            {
                "name": name,
                "dir": f"/{scene.split}",
                "metadata": {"split": scene.split, "sky": scene.sky, "objects": len(scene.objects)},
                "tags": ["synthetic", scene.sky],
            },
        )


async def _annotations(demo: Demo) -> None:
    """The scenes' objects on every demo image that has no annotation yet, in one request
    (items users added to the dataset are theirs: left alone)."""
    scenes = _scenes()
    bare = demo.db.items.find(
        {"datasetId": demo.dataset["_id"], "name": {"$in": list(scenes)}, "annotationsCount": 0},
        {"name": 1},
    )
    wanted = []
    async for item in bare:
        wanted += [
            {
                "itemId": str(item["_id"]),
                "type": drawn.type,
                "label": drawn.label,
                "coordinates": drawn.coordinates,
            }
            for drawn in scenes[item["name"]].objects
        ]
    await annotations.create_annotations(demo.access, wanted)


async def _service(demo: Demo) -> None:
    found = await demo.db.services.find_one({"projectId": demo.project["_id"], "name": SERVICE})
    demo.service = found or await services.create_service(
        demo.access,
        demo.project["_id"],
        {"name": SERVICE, "functions": ["echo", "sleeper", "fail"], "maxAttempts": 1},
    )


async def _executions(demo: Demo) -> None:
    """The demo's executions, created and queued as the `execute` mutation does, once."""
    if await demo.db.executions.find_one({"serviceId": demo.service["_id"]}) is not None:
        return
    first_item = await demo.db.items.find_one(
        {"datasetId": demo.dataset["_id"]}, sort=[("name", 1)]
    )
    for planned in EXECUTIONS:
        request = {"function": planned["function"], "input": planned["input"]}
        if planned.get("item"):
            request["itemId"] = str(first_item["_id"])
        doc = await executions.create_execution(demo.access, demo.service["_id"], request)
        await enqueue(demo.redis, doc)


async def _triggers(demo: Demo) -> None:
    """The demo's triggers, and one invocation by hand so a trigger's execution shows at once."""
    project_id = demo.project["_id"]
    for planned in TRIGGERS:
        if await demo.db.triggers.find_one({"projectId": project_id, "name": planned["name"]}):
            continue
        definition = {
            key: value for key, value in planned.items() if key not in ("function", "input")
        }
        operation = {
            "serviceId": str(demo.service["_id"]),
            "functionName": planned["function"],
            "input": planned["input"],
        }
        trigger = await triggers.create_trigger(
            demo.access, project_id, {**definition, "operation": operation}
        )
        if planned is TRIGGERS[0]:
            first_item = await demo.db.items.find_one(
                {"datasetId": demo.dataset["_id"]}, sort=[("name", 1)]
            )
            invoked = await triggers.invoke_trigger(demo.access, trigger["_id"], first_item["_id"])
            await enqueue(demo.redis, invoked)


CRON_TRIGGER: dict[str, Any] = {
    "name": "every minute",
    "cron": "* * * * *",
    "input": {"message": "the minute turned"},
}
"""The demo's cron trigger: `echo` once a minute, so its fires and executions show within one."""


async def _cron_trigger(demo: Demo) -> None:
    project_id = demo.project["_id"]
    wanted = {"projectId": project_id, "name": CRON_TRIGGER["name"]}
    if await demo.db.cron_triggers.find_one(wanted):
        return
    operation = {"serviceId": str(demo.service["_id"]), "functionName": "echo"}
    await cron_triggers.create_cron_trigger(
        demo.access, project_id, {**CRON_TRIGGER, "operation": operation}
    )


@dataclass(frozen=True)
class DevInbox:
    """Where `loom dev` receives webhooks (gateway/dev_inbox.py), and the key that encrypts a
    webhook's secret."""

    url: str
    box: SecretBox


WEBHOOK_TRIGGER: dict[str, Any] = {
    "name": "deliver new images",
    "resource": "Item",
    "actions": ["Created"],
    "filter": {"mimetype": "image/*"},
}
"""The demo's webhook trigger: every new image is delivered, signed, to the dev inbox."""


async def _webhook(demo: Demo) -> None:
    """A webhook to the dev inbox, a trigger delivering new images to it, and a ping, so the
    inbox (GET /dev/inbox) shows a signed message at once."""
    if demo.inbox is None:
        return
    project_id = demo.project["_id"]
    webhook = await demo.db.webhooks.find_one({"projectId": project_id, "name": "dev inbox"})
    if webhook is None:
        guard = AddressGuard(allow_private=True)
        data = {"name": "dev inbox", "url": demo.inbox.url, "description": "loom dev's inbox"}
        webhook, _ = await webhooks.create_webhook(
            demo.access, guard, demo.inbox.box, project_id, data
        )
        pinged = await deliveries.ping(demo.access, webhook)
        await delivery_queue.push(demo.redis, [Due.pending(pinged, webhook["concurrency"])])
    wanted = {"projectId": project_id, "name": WEBHOOK_TRIGGER["name"]}
    if await demo.db.triggers.find_one(wanted) is None:
        operation = {"type": "webhook", "webhookId": str(webhook["_id"])}
        await triggers.create_trigger(
            demo.access, project_id, {**WEBHOOK_TRIGGER, "operation": operation}
        )


MODEL = "colour detector"
DEPLOYMENT = "colour detector live"
FEEDBACK_DATASET = "colour detector feedback"
DETECTOR_LABELS = {"red": "sign.stop", "yellow": "sign.yield", "green": "tree"}
"""The demo model: Loom's built-in colour-region detector, its hues named as the ontology's
labels (so its yellow cars come out as yield signs: errors worth browsing)."""


async def _model(demo: Demo) -> None:
    """A model of the built-in detector with one version, and two runs of it on the scenes:
    one whose predictions the seed computes and uploads, then commits (metrics and match
    records appear as soon as the worker is done), and one the worker fills by running the
    detector on every image (predictModel), ready to commit."""
    project_id = demo.project["_id"]
    if await demo.db.models.find_one({"projectId": project_id, "name": MODEL}):
        return
    service = await demo.db.services.find_one({"projectId": project_id, "name": MODEL_SERVICE})
    service = service or await services.create_service(
        demo.access,
        project_id,
        {"name": MODEL_SERVICE, "functions": ["detect-colour-regions"], "maxAttempts": 1},
    )
    model = await models.create_model(
        demo.access,
        project_id,
        {
            "name": MODEL,
            "description": "Boxes around saturated colour regions, labelled by hue",
            "datasetId": str(demo.dataset["_id"]),
            "labels": sorted(DETECTOR_LABELS.values()),
            "configuration": {"labels": DETECTOR_LABELS},
            "inputType": "image",
            "outputType": "box",
            "functions": {"serviceId": str(service["_id"]), "predict": "detect-colour-regions"},
        },
    )
    version = await models.create_version(demo.access, model["_id"], {})
    run = await model_runs.create_model_run(
        demo.access,
        {
            "modelVersionId": str(version["_id"]),
            "datasetId": str(demo.dataset["_id"]),
            "name": "computed at seed",
        },
    )
    scenes = _scenes()
    settings = colour_detector.DetectorInput(labels=DETECTOR_LABELS)
    stored = demo.db.items.find(
        {"datasetId": demo.dataset["_id"], "name": {"$in": list(scenes)}}, {"name": 1}
    )
    predictions = []
    async for item in stored:
        picture = Image.open(io.BytesIO(demo_images.render(scenes[item["name"]])))
        for region in colour_detector.detect(picture, settings):
            predictions.append(colour_detector.as_prediction(region, DETECTOR_LABELS))
            predictions[-1]["itemId"] = str(item["_id"])

    async def enqueue(command: dict[str, Any]) -> None:
        await enqueue_command(demo.redis, command)

    await prediction_uploads.upload_predictions(
        demo.access, run["_id"], predictions, False, False, enqueue
    )
    await model_run_commit.start_commit(demo.access, run["_id"], {}, enqueue)
    await model_predictions.predict_model(
        demo.access,
        version["_id"],
        {"datasetId": str(demo.dataset["_id"]), "runName": "predicted by the worker"},
        enqueue,
    )


async def _deployment(demo: Demo) -> None:
    """A deployment serving the detector's version, storing into the demo dataset, and one
    prediction on the first scene with something to detect: the worker fills its champion's
    slot."""
    project_id = demo.project["_id"]
    if await demo.db.deployments.find_one({"projectId": project_id, "name": DEPLOYMENT}):
        return
    model = await demo.db.models.find_one({"projectId": project_id, "name": MODEL})
    version = await demo.db.model_versions.find_one({"modelId": model["_id"]})
    deployment = await deployments.create_deployment(
        demo.access,
        project_id,
        {
            "name": DEPLOYMENT,
            "description": "The detector, serving: predict on any item or a new file",
            "championVersionId": str(version["_id"]),
            "minThreshold": 0.5,
            "targetDatasetId": str(demo.dataset["_id"]),
        },
    )
    settings = colour_detector.DetectorInput(labels=DETECTOR_LABELS)
    shown = next(
        name
        for name, scene in sorted(_scenes().items())
        if colour_detector.detect(Image.open(io.BytesIO(demo_images.render(scene))), settings)
    )
    item = await demo.db.items.find_one(
        {"datasetId": demo.dataset["_id"], "name": shown}, {"_id": 1}
    )

    async def queue(execution: dict[str, Any], behind_ms: int) -> None:
        await enqueue(demo.redis, execution, behind_ms)

    await deployment_predictions.start_predict(
        demo.access,
        deployment["_id"],
        {"itemId": str(item["_id"]), "tags": ["demo"]},
        None,
        queue,
    )


async def _feedback_loop(demo: Demo) -> None:
    """The deployment's feedback loop: a feedback dataset attached, its one prediction
    reviewed as corrected with the scene's true objects (ground truth in the feedback
    dataset at once), a predictBatch over the train split for the worker to fill, and an
    ifBetter(AP) policy for proposed versions."""
    project_id = demo.project["_id"]
    if await demo.db.datasets.find_one({"projectId": project_id, "name": FEEDBACK_DATASET}):
        return
    deployment = await demo.db.deployments.find_one({"projectId": project_id, "name": DEPLOYMENT})
    dataset = await datasets.create_dataset(
        demo.access,
        project_id,
        {
            "name": FEEDBACK_DATASET,
            "description": "Reviewed predictions of the live deployment, as ground truth",
            "labels": demo_images.ONTOLOGY,
        },
    )
    await deployment_feedback.attach_feedback_dataset(
        demo.access, deployment["_id"], str(dataset["_id"])
    )
    asset = await demo.db.predicted_assets.find_one({"deploymentId": deployment["_id"]})
    item = await demo.db.items.find_one({"_id": asset["itemId"]}, {"name": 1})
    truth = [
        {"type": drawn.type, "label": drawn.label, "coordinates": drawn.coordinates}
        for drawn in _scenes()[item["name"]].objects
    ]
    await deployment_feedback.review_prediction(
        demo.access, asset["_id"], {"status": "corrected", "annotations": truth}
    )

    async def queue(command: dict[str, Any]) -> None:
        await enqueue_command(demo.redis, command)

    await deployment_batches.start_predict_batch(
        demo.access,
        deployment["_id"],
        {"filter": {"datasetId": str(demo.dataset["_id"]), "dir": "/train"}, "tags": ["batch"]},
        queue,
    )
    await promotion.set_continuous_deployment(
        demo.access, deployment["_id"], {"policy": "ifBetter", "metric": "AP", "margin": 0.02}
    )


VERSION = "baseline"
IMPORTED = "Streets val, from COCO"
SPLIT = [
    {"name": "train", "ratio": 0.7},
    {"name": "val", "ratio": 0.2},
    {"name": "test", "ratio": 0.1},
]


Runner = Callable[[AsyncDatabase, dict[str, Any], timedelta], Awaitable[None]]


async def _run_here(
    demo: Demo,
    command_id: ObjectId,
    run: Runner,
) -> bool:
    """Carry out a queued command with the worker's own code, so the seed leaves its result
    ready; False when a worker holds it already (the next seed looks again)."""
    lease = timedelta(seconds=60)
    command = await commands.claim(demo.db, command_id, "demo seed", lease)
    if command is None:
        return False
    await run(demo.db, command, lease)
    await commands.finish(demo.db, command)
    return True


def _copied_in_batches_of(size: int) -> Runner:
    async def copy(db: AsyncDatabase, command: dict[str, Any], lease: timedelta) -> None:
        await snapshots.run_snapshot(db, command, size, lease)

    return copy


def _enqueue(demo: Demo) -> Callable[[dict[str, Any]], Awaitable[None]]:
    async def enqueue(command: dict[str, Any]) -> None:
        await enqueue_command(demo.redis, command)

    return enqueue


async def _dataset_version(demo: Demo) -> None:
    """A version of the scenes as seeded ("baseline"), split train / val / test stratified by
    label, and a subset of the demo model naming its train split. The seed copies the version
    with the worker's own code (its command claimed here), so it is ready at once."""
    query = {"datasetId": demo.dataset["_id"], "name": VERSION}
    version = await demo.db.dataset_versions.find_one(query)
    if version is None:
        version = await snapshots.create_version(
            demo.access,
            demo.dataset["_id"],
            {"name": VERSION, "description": "As seeded"},
            _enqueue(demo),
        )
    if version["status"] == snapshots.VersionStatus.CREATING:
        copy = _copied_in_batches_of(2000)
        if not await _run_here(demo, version["commandId"], copy):
            return
        version = await demo.db.dataset_versions.find_one({"_id": version["_id"]})
    if version["split"] is None:
        split = {"ratios": SPLIT, "seed": 2026, "stratifyBy": "label"}
        await splits.split_version(demo.access, version["_id"], split)
    model = await demo.db.models.find_one({"projectId": demo.project["_id"], "name": MODEL})
    if not any(subset["name"] == "baseline train" for subset in model["subsets"]):
        subset = {
            "name": "baseline train",
            "filter": {"split": "train"},
            "datasetVersionId": str(version["_id"]),
        }
        await models.add_subset(demo.access, model["_id"], subset)


async def _interchange(demo: Demo) -> None:
    """The version's val split exported as COCO with its images, and that archive imported
    into a dataset of its own: its images uploaded as items, their annotations with them."""
    query = {"projectId": demo.project["_id"], "name": IMPORTED, "deleting": False}
    target = await demo.db.datasets.find_one(query)
    if target is not None and target["itemsCount"] > 0:
        return
    target = target or await datasets.create_dataset(
        demo.access,
        demo.project["_id"],
        {"name": IMPORTED, "description": f"The {VERSION!r} version's val split, exported "
         "as COCO and imported", "labels": demo_images.ONTOLOGY},
    )  # fmt: skip
    version = await demo.db.dataset_versions.find_one(
        {"datasetId": demo.dataset["_id"], "name": VERSION, "status": "ready"}
    )
    if version is None:
        return
    export = await exports.start_export(
        demo.access,
        version["_id"],
        {"format": "coco", "split": "val", "includeFiles": True},
        _enqueue(demo),
        of_version=True,
    )
    if not await _run_here(demo, export["_id"], exports.run_export):
        return
    export = await demo.db.commands.find_one({"_id": export["_id"]})
    with tempfile.TemporaryFile() as archive:
        stream = await exports.open_archive(demo.db, export)
        while chunk := await stream.readchunk():
            archive.write(chunk)
        archive.seek(0)
        started = await imports.start_import(
            demo.access, target["_id"], archive, f"{VERSION}-val-coco.zip", {}, _enqueue(demo)
        )
    await _run_here(demo, started["_id"], imports.run_import)


Step = Callable[[Demo], Awaitable[None]]
STEPS: list[tuple[str, Step]] = [
    ("owner key", _owner_key),
    ("project", _project),
    ("dataset", _dataset),
    ("images", _images),
    ("annotations", _annotations),
    ("service", _service),
    ("executions", _executions),
    ("triggers", _triggers),
    ("cron trigger", _cron_trigger),
    ("webhook", _webhook),
    ("model", _model),
    ("deployment", _deployment),
    ("feedback loop", _feedback_loop),
    ("dataset version", _dataset_version),
    ("export and import", _interchange),
]


async def seed(
    db: AsyncDatabase,
    redis: ArqRedis,
    saved_key: str | None = None,
    inbox: DevInbox | None = None,
) -> tuple[str, ObjectId]:
    """Run every step; the demo owner's key and the demo organization's id. Without an
    inbox, the demo has no webhook."""
    demo = Demo(db, redis, saved_key, inbox)
    started = time.perf_counter()
    for name, step in STEPS:
        began = time.perf_counter()
        await step(demo)
        log.debug("demo step %s: %.0f ms", name, 1000 * (time.perf_counter() - began))
    log.info("demo seeded in %.2f s", time.perf_counter() - started)
    return demo.key, demo.org_id
