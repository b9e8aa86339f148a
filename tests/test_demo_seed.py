"""`loom dev --seed-demo`: the demo organization, its data, its executions, and one key for it
across restarts."""

import io

import httpx
from bson import ObjectId

from gateway import cli, demo, demo_images
from gateway.app import create_app
from gateway.bootstrap import create_key
from gateway.connections import Connections
from resolvers import executions, items
from resolvers.access import OrgRole
from resolvers.api_keys import authenticate
from resolvers.executions import FINAL
from resolvers.timestamps import now
from tests.servers import running_uvicorn
from tests.test_executions import FAST
from tests.waiting import eventually
from tests.workers import start_worker, stop
from triggers.executions import enqueue
from triggers.webhooks.secret_key import secret_box

ME = "{ me { email } organizations { nodes { name role } } }"
NESTED = """query ($items: JSON, $annotations: JSON) {
  organizations { nodes { name projects { nodes { name datasets { nodes { name itemsCount
    items(filter: $items, first: 100) { nodes { name width height
      annotations(filter: $annotations) { type label coordinates } } } } } } } } } }"""
README_VARIABLES = {
    "items": {"metadata.user.split": "train"},
    "annotations": {"label": {"$glob": "vehicle.*"}},
}
SEEDED = [
    "organizations",
    "users",
    "org_members",
    "api_keys",
    "projects",
    "datasets",
    "items",
    "blobs",
    "files.files",
    "annotations",
    "services",
    "executions",
    "triggers",
    "cron_triggers",
    "webhooks",
    "deliveries",
    "models",
    "model_versions",
    "model_runs",
    "predictions",
    "deployments",
    "predicted_assets",
    "commands",
    "dataset_versions",
    "version_items",
]


async def _counts(db) -> dict[str, int]:
    return {name: await db[name].count_documents({}) for name in SEEDED}


async def test_each_start_shows_the_same_demo_key_kept_in_the_dev_home(settings, db, tmp_path):
    settings = settings.model_copy(update={"home": tmp_path})
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev" / "demo-key").write_text("a stale key, readable by all\n")
    (tmp_path / "dev" / "demo-key").chmod(0o644)
    first, org_id = await cli._seed_demo(settings)
    again, _ = await cli._seed_demo(settings)
    assert again == first
    saved = tmp_path / "dev" / "demo-key"
    assert saved.read_text().strip() == first
    assert saved.stat().st_mode & 0o777 == 0o600
    access, _ = await authenticate(db, first)
    assert access.org_roles == {org_id: OrgRole.OWNER}
    assert await db.projects.count_documents({"name": demo.PROJECT}) == 1
    assert await db.api_keys.count_documents({}) == 1


async def test_a_revoked_or_foreign_saved_key_is_replaced_by_a_fresh_demo_key(db, redis):
    revoked, org_id = await demo.seed(db, redis)
    await db.api_keys.update_one({"orgId": org_id}, {"$set": {"revokedAt": now()}})
    fresh, _ = await demo.seed(db, redis, revoked)
    assert fresh != revoked
    foreign, _ = await create_key(db, "Elsewhere", OrgRole.OWNER, "someone@else.io", "cli")
    other, other_org = await demo.seed(db, redis, foreign)
    assert other not in (foreign, fresh)
    access, _ = await authenticate(db, other)
    assert set(access.org_roles) == {other_org}
    assert other_org == org_id


async def test_a_second_seed_adds_nothing(db, redis):
    first = await demo.seed(db, redis)
    seeded = await _counts(db)
    # and the reviewed one's copy in the feedback set, and the val split imported from COCO
    assert seeded["items"] == demo.IMAGES + 1 + 10
    # the trigger invoked by hand, and the demo deployment's prediction
    assert seeded["executions"] == len(demo.EXECUTIONS) + 2
    assert seeded["triggers"] == len(demo.TRIGGERS)
    assert await demo.seed(db, redis, first[0]) == first
    assert await _counts(db) == seeded


async def test_an_interrupted_seed_is_completed_by_the_next_one(db, redis):
    """The steps are each resumable: images and annotations missing are added, nothing else."""
    key, _ = await demo.seed(db, redis)
    complete = await _counts(db)
    dataset = await db.datasets.find_one({"name": demo.DATASET})
    gone = await db.items.find_one({"datasetId": dataset["_id"], "name": "street-007.png"})
    await db.items.delete_one({"_id": gone["_id"]})
    await db.annotations.delete_many({"itemId": gone["_id"]})
    await demo.seed(db, redis, key)
    assert await _counts(db) == complete
    again = await db.items.find_one({"datasetId": dataset["_id"], "name": "street-007.png"})
    expected = [drawn.label for drawn in demo_images.layout(7).objects]
    labels = await db.annotations.distinct("label", {"itemId": again["_id"]})
    assert sorted(labels) == sorted(set(expected))


async def test_the_readme_queries_return_the_demo_data(db, redis, gql):
    key, _ = await demo.seed(db, redis)
    client = gql(key)
    assert await client.data(ME) == {
        "me": {"email": demo.DEMO_EMAIL},
        "organizations": {"nodes": [{"name": demo.DEMO_ORG, "role": "OWNER"}]},
    }
    (organization,) = (await client.data(NESTED, **README_VARIABLES))["organizations"]["nodes"]
    (project,) = organization["projects"]["nodes"]
    by_name = {dataset["name"]: dataset for dataset in project["datasets"]["nodes"]}
    assert project["name"] == demo.PROJECT
    assert set(by_name) == {demo.DATASET, demo.FEEDBACK_DATASET, demo.IMPORTED}
    dataset = by_name[demo.DATASET]
    assert dataset["itemsCount"] == demo.IMAGES
    scenes = [demo_images.layout(n) for n in range(demo.IMAGES)]
    train = {s.name: s for s in scenes if s.split == "train"}
    assert {item["name"] for item in dataset["items"]["nodes"]} == set(train)
    for item in dataset["items"]["nodes"]:
        assert (item["width"], item["height"]) == (demo_images.WIDTH, demo_images.HEIGHT)
        drawn = [d for d in train[item["name"]].objects if d.label.startswith("vehicle.")]
        stored = [(a["label"], a["coordinates"]) for a in item["annotations"]]
        assert sorted(stored, key=repr) == sorted(
            ((d.label, {k: float(v) for k, v in d.coordinates.items()}) for d in drawn), key=repr
        )
    assert sum(len(item["annotations"]) for item in dataset["items"]["nodes"]) > 10


async def test_the_demo_has_an_ontology_with_colours_boxes_and_polygons(db, redis):
    await demo.seed(db, redis)
    dataset = await db.datasets.find_one({"name": demo.DATASET})
    labels = {label["name"]: label for label in dataset["labels"]}
    assert set(labels) == {"vehicle", "sign", "tree"}
    assert labels["vehicle"]["color"] == "#1f77b4"
    assert {child["name"] for child in labels["sign"]["children"]} == {"stop", "yield"}
    kinds = await db.annotations.distinct("type", {"datasetId": dataset["_id"]})
    assert sorted(kinds) == ["box", "polygon"]
    assert dataset["annotationsCount"] == sum(
        len(demo_images.layout(n).objects) for n in range(demo.IMAGES)
    )


async def test_the_demo_executions_finish_on_a_real_worker(db, redis, settings):
    await demo.seed(db, redis)

    async def statuses() -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        planned = {
            "triggerId": {"$exists": False},
            "modelRunId": {"$exists": False},
            "predictedAssetId": {"$exists": False},
        }
        async for execution in db.executions.find(planned, sort=[("createdAt", 1)]):
            found.setdefault(execution["function"], []).append(execution["status"])
        return found

    worker = start_worker(settings, **FAST)
    try:
        final = await eventually(
            statuses, lambda s: all(x in FINAL for v in s.values() for x in v), within_s=60
        )
    finally:
        stop(worker)
    assert final == {
        "echo": ["success", "success"],
        "sleeper": ["success"],
        "fail": ["failed"],
    }
    about_an_item = await db.executions.find_one(
        {"resource": {"$ne": None}, "triggerId": {"$exists": False}, "function": "echo"}
    )
    item = await db.items.find_one({"_id": ObjectId(about_an_item["resource"]["id"])})
    assert item["name"] == "street-000.png"


async def test_the_demo_triggers_fire_on_the_demo_projects_changes(db, redis, settings):
    key, _ = await demo.seed(db, redis)
    access, _ = await authenticate(db, key)
    project = await db.projects.find_one({"name": demo.PROJECT})
    dataset = await db.datasets.find_one({"projectId": project["_id"]})
    by_name = {t["name"]: t["_id"] async for t in db.triggers.find({"projectId": project["_id"]})}
    worker = start_worker(settings, **FAST)
    try:
        await eventually(
            lambda: db.relay.find_one({"_id": "relay"}), lambda doc: doc and doc.get("token")
        )
        image = io.BytesIO(demo_images.render(demo_images.layout(demo.IMAGES + 1)))
        item = await items.upload_item(
            access, dataset["_id"], image, "image/png", {"name": "late.png"}
        )
        service = await db.services.find_one({"projectId": project["_id"]})
        failing = await executions.create_execution(
            access, service["_id"], {"function": "fail", "input": {}}
        )
        await enqueue(redis, failing)

        async def fired(name: str) -> list[dict]:
            return await db.executions.find({"triggerId": by_name[name]}).to_list()

        greeted = await eventually(
            lambda: fired("greet new images"),
            lambda found: any(e["resource"] == {"type": "item", "id": item["_id"]} for e in found),
        )
        alerts = await eventually(
            lambda: fired("alert on failures"),
            lambda found: (
                {"type": "execution", "id": failing["_id"]} in [e["resource"] for e in found]
            ),
        )
    finally:
        stop(worker)
    assert len([e for e in greeted if e.get("invokedBy")]) == 1
    assert all(a["resource"]["type"] == "execution" for a in alerts)
    about = await db.executions.find(
        {"_id": {"$in": [a["resource"]["id"] for a in alerts]}}
    ).to_list()
    assert {execution["function"] for execution in about} == {"fail"}


async def test_the_demo_webhook_pings_the_dev_inbox_through_a_real_worker(
    settings, mongo, db, redis, tmp_path
):
    local = settings.model_copy(
        update={"dev_inbox": True, "webhook_allow_private": True, "home": tmp_path}
    )
    app = create_app(local, Connections(mongo=mongo, db=db, redis=redis))
    async with app.router.lifespan_context(app), running_uvicorn(app, local) as base:
        inbox = demo.DevInbox(f"{base}/dev/inbox/demo", secret_box(local))
        await demo.seed(db, redis, None, inbox)
        again = await _counts(db)
        await demo.seed(db, redis, None, inbox)
        assert (await _counts(db))["webhooks"] == again["webhooks"] == 1
        worker = start_worker(
            settings, LOOM_WEBHOOK_ALLOW_PRIVATE="true", LOOM_HOME=str(tmp_path), **FAST
        )
        try:
            async with httpx.AsyncClient() as client:

                async def received() -> list:
                    return (await client.get(f"{base}/dev/inbox")).json()

                (message,) = await eventually(received, bool, within_s=60)
        finally:
            stop(worker)
    assert message["body"]["type"] == "loom.ping"
    assert message["path"] == "/dev/inbox/demo"
    assert message["headers"]["webhook-signature"].startswith("v1,")
    trigger = await db.triggers.find_one({"name": demo.WEBHOOK_TRIGGER["name"]})
    assert trigger["operation"]["type"] == "webhook"


async def test_the_demo_model_has_a_committed_run_and_one_its_worker_fills(db, redis, settings):
    await demo.seed(db, redis)
    computed = await db.model_runs.find_one({"name": "computed at seed"})
    predicted = await db.model_runs.find_one({"name": "predicted by the worker"})
    assert computed["predictionsCount"] > 0
    worker = start_worker(settings, **FAST)
    try:
        committed = await eventually(
            lambda: db.model_runs.find_one({"_id": computed["_id"]}),
            lambda run: run["status"] == "committed",
            within_s=60,
        )
        filled = await eventually(
            lambda: db.executions.count_documents(
                {"modelRunId": predicted["_id"], "status": "success"}
            ),
            lambda n: n == demo.IMAGES,
            within_s=60,
        )
    finally:
        stop(worker)
    assert filled == demo.IMAGES
    assert 0 < committed["metrics"]["AP50"] < 1
    assert await db.predictions.count_documents(
        {"runId": predicted["_id"]}
    ) == await db.predictions.count_documents({"runId": computed["_id"]})
    assert await db.model_run_items.count_documents({"runId": computed["_id"]}) > 0


async def test_the_demo_deployment_has_a_prediction_its_worker_fills(db, redis, settings):
    await demo.seed(db, redis)
    deployment = await db.deployments.find_one({"name": demo.DEPLOYMENT})
    asset = await db.predicted_assets.find_one({"deploymentId": deployment["_id"]})
    assert asset["champion"]["status"] == "pending"
    # reviewed at once, as corrected: the scene's objects are ground truth in the feedback set
    assert asset["review"]["status"] == "corrected"
    [copy] = asset["review"]["feedback"]
    feedback = await db.datasets.find_one({"name": demo.FEEDBACK_DATASET})
    assert copy["datasetId"] == feedback["_id"]
    assert feedback["annotationsCount"] == len(asset["review"]["annotations"]) > 0
    assert deployment["continuousDeployment"]["policy"] == "ifBetter"
    batch = await db.commands.find_one({"type": "predictBatch"})
    worker = start_worker(settings, **FAST)
    try:
        filled = await eventually(
            lambda: db.predicted_assets.find_one({"_id": asset["_id"]}),
            lambda found: found["champion"]["status"] != "pending",
            within_s=60,
        )
        await eventually(
            lambda: db.commands.find_one({"_id": batch["_id"]}),
            lambda found: found["status"] == "success",
            within_s=60,
        )
    finally:
        stop(worker)
    train = await db.items.count_documents(
        {"datasetId": deployment["targetDatasetId"], "dir": "/train"}
    )
    assert await db.predicted_assets.count_documents({"batchId": batch["_id"]}) == train
    assert filled["champion"]["status"] == "success", filled["champion"]
    assert filled["champion"]["predictions"]
    assert filled["tags"] == ["demo"]


async def test_the_demo_has_a_split_version_of_the_scenes_its_model_names(db, redis):
    await demo.seed(db, redis)
    dataset = await db.datasets.find_one({"name": demo.DATASET})
    version = await db.dataset_versions.find_one({"datasetId": dataset["_id"]})
    assert (version["name"], version["status"]) == (demo.VERSION, "ready")
    assert version["itemsCount"] == demo.IMAGES
    assert version["annotationsCount"] == await db.annotations.count_documents(
        {"datasetId": dataset["_id"]}
    )
    subsets = {s["name"]: s["itemsCount"] for s in version["split"]["subsets"]}
    assert subsets == {"train": 35, "val": 10, "test": 5}
    copies = db.version_items.find({"versionId": version["_id"]}, {"split": 1})
    assert sorted({copy["split"] async for copy in copies}) == ["test", "train", "val"]
    model = await db.models.find_one({"name": demo.MODEL})
    [named] = [s for s in model["subsets"] if s["name"] == "baseline train"]
    assert named["datasetVersionId"] == version["_id"]


async def test_the_demo_imports_the_val_split_it_exported_as_coco_into_a_dataset_of_its_own(
    db, redis
):
    await demo.seed(db, redis)
    version = await db.dataset_versions.find_one({"name": demo.VERSION})
    export = await db.commands.find_one({"type": "export", "status": "success"})
    assert (export["input"]["versionId"], export["input"]["split"]) == (version["_id"], "val")
    imported = await db.commands.find_one({"type": "import", "status": "success"})
    target = await db.datasets.find_one({"name": demo.IMPORTED})
    assert imported["input"]["datasetId"] == target["_id"]
    val = await db.version_items.find({"versionId": version["_id"], "split": "val"}).to_list()
    items = await db.items.find({"datasetId": target["_id"]}).to_list()
    assert sorted(i["sha256"] for i in items) == sorted(i["sha256"] for i in val)
    assert imported["result"]["createdItems"] == len(val) == 10
    assert imported["result"]["importedAnnotations"] == export["result"]["annotations"] > 0
    assert (
        await db.annotations.count_documents({"datasetId": target["_id"]})
        == (export["result"]["annotations"])
    )
