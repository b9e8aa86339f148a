"""commitModelRun through a real worker: COCO's numbers as pycocotools computes them on the same
boxes read back from MongoDB, match records paged for a frontend, incremental re-commits equal
to full ones, a commit that survives its worker's SIGKILL, and other tenants kept out."""

import asyncio
import contextlib
import io
import signal

import numpy as np
import pytest
from bson import ObjectId
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from tests.datasets_world import image_bytes, make_world
from tests.test_clone import _finished
from tests.test_failover import _registered
from tests.test_predictions import CREATE_MODEL, CREATE_RUN, CREATE_VERSION
from tests.workers import worker_processes
from tests.ws_client import subscribe

LABELS = ["car", "truck", "person"]
CATEGORIES = sorted(LABELS)
CREATE_MANY = "mutation($inputs: [AnnotationInput!]!) { createAnnotations(inputs: $inputs) { id } }"
UPLOAD = """mutation($run: ID!, $p: [PredictionInput!]!, $update: Boolean!) {
  uploadPredictions(modelRunId: $run, predictions: $p, update: $update) { processed ignored } }"""
DELETE_ANNOTATIONS = "mutation($ids: [ID!]!) { deleteAnnotations(ids: $ids) }"
COMMIT = """mutation($run: ID!, $input: CommitInput) {
  commitModelRun(modelRunId: $run, input: $input) { id status } }"""
METRICS = """query($id: ID!) { modelRun(id: $id) {
  status changed committedAt commitCommand { status }
  metrics { ap ap50 ap75 apSmall apMedium apLarge ar1 ar10 ar100 arSmall arMedium arLarge
    mode iouThresholds precision recall f1 confusionMatrix curves
    perLabel { label ap tp fp fn precision recall f1 bestConfidence bestF1 } } } }"""
MATCHES = """query($id: ID!, $kind: MatchKind!, $label: String, $conf: Float, $iou: Float,
  $thr: Float, $first: Int, $after: String) { modelRun(id: $id) {
  matches(kind: $kind, label: $label, minConfidence: $conf, minIou: $iou, iouThreshold: $thr,
          first: $first, after: $after) {
    edges { cursor node { kind itemId predictionId groundTruthId label groundTruthLabel
                          confidence iou item { name } } }
    pageInfo { hasNextPage endCursor } } } }"""
ITEMS = """query($id: ID!, $order: ModelRunItemOrder) { modelRun(id: $id) {
  items(order: $order, first: 100) { nodes { itemId tp fp fn item { name } } } } }"""
ITEM_PREDICTIONS = """query($id: ID!, $run: ID!) { item(id: $id) {
  predictions(modelRunId: $run) { label confidence } } }"""
STAT_FIELDS = [
    "ap",
    "ap50",
    "ap75",
    "apSmall",
    "apMedium",
    "apLarge",
    "ar1",
    "ar10",
    "ar100",
    "arSmall",
    "arMedium",
    "arLarge",
]


def _scene(rng: np.random.Generator, n_items: int) -> tuple[list[list[dict]], list[list[dict]]]:
    """Per item: ground-truth boxes (some crowd) and predictions around them, with tied
    scores, wrong labels and false positives. Boxes in whole pixels of a 200 x 160 image."""
    truths, guesses = [], []
    for i in range(n_items):
        gts, dts = [], []
        for _ in range(int(rng.integers(0, 5)) if i else 0):
            x, y = (int(v) for v in rng.integers(0, 120, 2))
            w, h = (int(v) for v in rng.integers(4, 80, 2))
            box = {"left": x, "top": y, "right": min(200, x + w), "bottom": min(160, y + h)}
            gts.append({"label": str(rng.choice(LABELS)), "box": box, "crowd": rng.random() < 0.1})
        for gt in gts + [None] * int(rng.integers(0, 3)):
            if gt is None:
                x, y = (int(v) for v in rng.integers(0, 150, 2))
                box = {"left": x, "top": y, "right": x + 30, "bottom": y + 20}
                label = str(rng.choice(LABELS))
            else:
                jitter = rng.integers(-6, 7, 4)
                b = gt["box"]
                box = {
                    "left": max(0, b["left"] + int(jitter[0])),
                    "top": max(0, b["top"] + int(jitter[1])),
                    "right": min(200, b["right"] + int(jitter[2])),
                    "bottom": min(160, b["bottom"] + int(jitter[3])),
                }
                if box["right"] <= box["left"] or box["bottom"] <= box["top"]:
                    continue
                label = gt["label"] if rng.random() < 0.8 else str(rng.choice(LABELS))
            dts.append({"label": label, "box": box, "score": round(float(rng.random()), 1)})
        truths.append(gts)
        guesses.append(dts)
    return truths, guesses


def _xywh(box: dict) -> list[float]:
    return [box["left"], box["top"], box["right"] - box["left"], box["bottom"] - box["top"]]


def _pycocotools(truths, guesses, item_order: list[int], use_cats: bool) -> COCOeval:
    """COCOeval on the same boxes; image ids follow the items' id order and category ids the
    labels' name order, as Loom's do (ties between equal scores are broken by both)."""
    image_of = {item: rank + 1 for rank, item in enumerate(item_order)}
    categories = [{"id": k + 1, "name": name} for k, name in enumerate(CATEGORIES)]
    annotations, results = [], []
    for item, gts in enumerate(truths):
        for gt in gts:
            bbox = _xywh(gt["box"])
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_of[item],
                    "bbox": bbox,
                    "area": bbox[2] * bbox[3],
                    "iscrowd": int(gt["crowd"]),
                    "category_id": CATEGORIES.index(gt["label"]) + 1,
                }
            )
    for item, dts in enumerate(guesses):
        for dt in dts:
            results.append(
                {
                    "image_id": image_of[item],
                    "bbox": _xywh(dt["box"]),
                    "score": dt["score"],
                    "category_id": CATEGORIES.index(dt["label"]) + 1,
                }
            )
    with contextlib.redirect_stdout(io.StringIO()):
        truth = COCO()
        truth.dataset = {
            "images": [{"id": i + 1} for i in range(len(truths))],
            "categories": categories,
            "annotations": annotations,
        }
        truth.createIndex()
        evaluation = COCOeval(truth, truth.loadRes(results), "bbox")
        evaluation.params.useCats = int(use_cats)
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return evaluation


async def _seeded_run(member, n_items: int = 12, seed: int = 7):
    world = await make_world(member)
    client = world.client
    rng = np.random.default_rng(seed)
    truths, guesses = _scene(rng, n_items)
    items = [
        await world.upload(f"{i:02}.png", image_bytes("PNG", 200, 160)) for i in range(n_items)
    ]
    annotations = [
        {
            "itemId": items[i]["id"],
            "type": "BOX",
            "label": gt["label"],
            "coordinates": gt["box"],
            "attributes": {"iscrowd": bool(gt["crowd"])},
        }
        for i, gts in enumerate(truths)
        for gt in gts
    ]
    await client.data(CREATE_MANY, inputs=annotations)
    model = await client.data(CREATE_MODEL, project=world.project, input={"name": "m"})
    version = await client.data(CREATE_VERSION, id=model["createModel"]["id"])
    run = await client.data(
        CREATE_RUN,
        input={
            "modelVersionId": version["createModelVersion"]["id"],
            "datasetId": world.dataset,
            "name": "r",
        },
    )
    run_id = run["createModelRun"]["id"]
    predictions = [
        {
            "itemId": items[i]["id"],
            "type": "BOX",
            "label": dt["label"],
            "coordinates": dt["box"],
            "confidence": dt["score"],
            "annotationId": f"{i}-{k}",
        }
        for i, dts in enumerate(guesses)
        for k, dt in enumerate(dts)
    ]
    await client.data(UPLOAD, run=run_id, p=predictions, update=False)
    order = sorted(range(n_items), key=lambda i: ObjectId(items[i]["id"]))
    return world, run_id, items, truths, guesses, order


async def _commit(world, db, run_id: str, commit_input: dict | None = None) -> dict:
    command = (await world.client.data(COMMIT, run=run_id, input=commit_input))["commitModelRun"]
    done = await _finished(db, ObjectId(command["id"]))
    assert done["status"] == "success", done
    return done


def _assert_stats_equal(metrics: dict, evaluation: COCOeval) -> None:
    for name, expected in zip(STAT_FIELDS, evaluation.stats, strict=True):
        got = metrics[name]
        if expected < 0:
            assert got is None, name
        else:
            assert got == pytest.approx(expected, abs=1e-12), name


async def test_commit_equals_pycocotools_on_the_boxes_read_back_from_mongodb(member, db, settings):
    world, run_id, _, truths, guesses, order = await _seeded_run(member)
    with worker_processes(settings) as start:
        start()
        aware = await _commit(world, db, run_id, {"classAgnostic": False})
        evaluated = sum(1 for gts, dts in zip(truths, guesses, strict=True) if gts or dts)
        assert aware["result"] == {"items": evaluated, "full": True}
        run = (await world.client.data(METRICS, id=run_id))["modelRun"]
        assert (run["status"], run["changed"], run["commitCommand"]) == (
            "COMMITTED",
            False,
            {"status": "success"},
        )
        expected = _pycocotools(truths, guesses, order, use_cats=True)
        _assert_stats_equal(run["metrics"], expected)
        assert run["metrics"]["mode"] == "aware"
        per_label = {entry["label"]: entry["ap"] for entry in run["metrics"]["perLabel"]}
        for k, label in enumerate(CATEGORIES):
            column = expected.eval["precision"][:, :, k, 0, 2]
            valid = column[column > -1]
            assert per_label[label] == (
                pytest.approx(valid.mean(), abs=1e-12) if valid.size else None
            )

        await _commit(world, db, run_id, {"full": True})
        agnostic = (await world.client.data(METRICS, id=run_id))["modelRun"]["metrics"]
        _assert_stats_equal(agnostic, _pycocotools(truths, guesses, order, use_cats=False))
        assert agnostic["mode"] == "agnostic"
        matrix = agnostic["confusionMatrix"]
        assert matrix["labels"][-1] == "background"
        n_gt = sum(1 for gts in truths for gt in gts if not gt["crowd"])
        assert sum(sum(row) for row in matrix["matrix"][:-1]) >= n_gt


async def test_match_records_page_through_the_errors_disjoint_and_complete(member, db, settings):
    world, run_id, _, truths, guesses, _ = await _seeded_run(member)
    with worker_processes(settings) as start:
        start()
        await _commit(world, db, run_id, {"classAgnostic": False})
    client = world.client
    everything = {}
    for kind in ("TP", "FP", "FN"):
        page = await client.data(MATCHES, id=run_id, kind=kind, first=500)
        everything[kind] = [e["node"] for e in page["modelRun"]["matches"]["edges"]]
    n_gt = sum(1 for gts in truths for gt in gts if not gt["crowd"])
    assert len(everything["TP"]) + len(everything["FN"]) == n_gt
    assert len({r["groundTruthId"] for r in everything["TP"]}) == len(everything["TP"])
    assert all(r["iou"] >= 0.5 and r["groundTruthId"] for r in everything["TP"])
    assert all(r["label"] == r["groundTruthLabel"] for r in everything["TP"])
    assert all(r["groundTruthId"] is None and r["iou"] is None for r in everything["FP"])
    assert all(r["predictionId"] is None for r in everything["FN"])
    n_predictions = sum(len(dts) for dts in guesses)
    assert len(everything["TP"]) + len(everything["FP"]) <= n_predictions

    walked, after = [], None
    while True:
        page = (await client.data(MATCHES, id=run_id, kind="FP", first=3, after=after))["modelRun"][
            "matches"
        ]
        walked += [e["node"] for e in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert walked == everything["FP"]

    cars = await client.data(MATCHES, id=run_id, kind="FP", label="car", conf=0.5, first=500)
    expected = [r for r in everything["FP"] if r["label"] == "car" and r["confidence"] >= 0.5]
    assert [e["node"] for e in cars["modelRun"]["matches"]["edges"]] == expected
    strict = await client.data(MATCHES, id=run_id, kind="TP", thr=0.75, first=500)
    strict_tps = [e["node"] for e in strict["modelRun"]["matches"]["edges"]]
    assert all(r["iou"] >= 0.75 for r in strict_tps)
    assert len(strict_tps) <= len(everything["TP"])
    wrong = await client.execute(MATCHES, id=run_id, kind="TP", thr=0.52)
    assert wrong["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"

    worst = (await client.data(ITEMS, id=run_id, order="ERRORS"))["modelRun"]["items"]["nodes"]
    errors = [node["fp"] + node["fn"] for node in worst]
    assert errors == sorted(errors, reverse=True)
    assert sum(node["tp"] for node in worst) == len(everything["TP"])
    assert sum(node["fp"] for node in worst) == len(everything["FP"])
    assert sum(node["fn"] for node in worst) == len(everything["FN"])
    by_item = (await client.data(ITEMS, id=run_id, order="ITEM"))["modelRun"]["items"]["nodes"]
    assert [n["itemId"] for n in by_item] == sorted((n["itemId"] for n in worst), key=ObjectId)
    assert by_item[0]["item"]["name"].endswith(".png")


async def test_a_recommit_recomputes_only_changed_items_and_equals_a_full_commit(
    member, db, settings
):
    world, run_id, items, truths, guesses, order = await _seeded_run(member)
    client = world.client
    with worker_processes(settings) as start:
        start()
        await _commit(world, db, run_id)
        changed = {
            "itemId": items[3]["id"],
            "type": "BOX",
            "label": "truck",
            "coordinates": {"left": 5, "top": 5, "right": 60, "bottom": 50},
            "confidence": 0.95,
            "annotationId": "3-0",
        }
        await client.data(UPLOAD, run=run_id, p=[changed], update=True)
        assert (await client.data(METRICS, id=run_id))["modelRun"]["changed"] is True
        again = await _commit(world, db, run_id)
        assert again["result"] == {"items": 1, "full": False}
        incremental = (await client.data(METRICS, id=run_id))["modelRun"]["metrics"]
        full = await _commit(world, db, run_id, {"full": True})
        assert full["result"]["full"] is True
        assert (await client.data(METRICS, id=run_id))["modelRun"]["metrics"] == incremental
        guesses[3][0] = {"label": "truck", "box": changed["coordinates"], "score": 0.95}
        _assert_stats_equal(incremental, _pycocotools(truths, guesses, order, use_cats=False))

        item = next(i for i, gts in enumerate(truths) if len(gts) >= 2)
        gone = await db.annotations.find_one({"itemId": ObjectId(items[item]["id"])})
        await client.data(DELETE_ANNOTATIONS, ids=[str(gone["_id"])])
        truths[item] = [gt for gt in truths[item] if gt["box"] != gone["coordinates"]]
        after_deletion = await _commit(world, db, run_id)
        assert after_deletion["result"] == {"items": 1, "full": False}
        metrics = (await client.data(METRICS, id=run_id))["modelRun"]["metrics"]
        _assert_stats_equal(metrics, _pycocotools(truths, guesses, order, use_cats=False))


async def test_states_stored_by_an_earlier_format_are_committed_whole_again(member, db, settings):
    world, run_id, *_ = await _seeded_run(member)
    client = world.client
    with worker_processes(settings) as start:
        start()
        await _commit(world, db, run_id)
        before = await client.data(MATCHES, id=run_id, kind="FP", first=500)
        # as an earlier Loom left them: its states are not read any more
        await db.model_runs.update_one({"_id": ObjectId(run_id)}, {"$set": {"stateVersion": 2}})
        await db.model_run_metrics.update_one(
            {"_id": ObjectId(run_id)}, {"$set": {"stateVersion": 2}}
        )
        refused = await client.error(MATCHES, id=run_id, kind="FP", first=500)
        assert refused["extensions"]["code"] == "CONFLICT"
        assert "commit it again" in refused["message"]
        again = await _commit(world, db, run_id)
        assert again["result"]["full"] is True
        assert await client.data(MATCHES, id=run_id, kind="FP", first=500) == before


async def test_a_commit_survives_a_sigkilled_worker_with_the_same_result(member, db, settings):
    world, run_id, *_ = await _seeded_run(member, n_items=6)
    run = await db.model_runs.find_one({"_id": ObjectId(run_id)})
    items = [doc["_id"] async for doc in db.items.find({"datasetId": run["datasetId"]})]
    rng = np.random.default_rng(3)
    bulk = []
    for k in range(60_000):
        x, y = (float(v) for v in rng.integers(0, 150, 2))
        bulk.append(
            {
                "orgId": run["orgId"],
                "projectId": run["projectId"],
                "runId": run["_id"],
                "datasetId": run["datasetId"],
                "itemId": items[k % len(items)],
                "annotationId": None,
                "type": "box",
                "label": LABELS[k % 3],
                "coordinates": {"left": x, "top": y, "right": x + 20, "bottom": y + 10},
                "confidence": round(float(rng.random()), 2),
                "classPdf": None,
                "metadata": {},
            }
        )
    await db.predictions.insert_many(bulk)
    with worker_processes(settings) as start:
        first = start()
        command = (await world.client.data(COMMIT, run=run_id, input=None))["commitModelRun"]
        async with await db.commands.watch(full_document="updateLookup") as changes:
            current = await db.commands.find_one({"_id": ObjectId(command["id"])})
            while current["status"] != "inProgress":
                current = (await changes.next())["fullDocument"]
        first.send_signal(signal.SIGKILL)
        first.wait()
        start()
        done = await _finished(db, ObjectId(command["id"]))
        assert done["status"] == "success"
        assert done["attempts"] == 2
        resumed = (await world.client.data(METRICS, id=run_id))["modelRun"]["metrics"]
        await _commit(world, db, run_id, {"full": True})
        fresh = (await world.client.data(METRICS, id=run_id))["modelRun"]["metrics"]
    assert resumed == fresh
    assert await db.model_run_items.count_documents({"runId": ObjectId(run_id)}) == 6


async def test_bad_commit_options_are_refused_and_start_nothing(member, db):
    world, run_id, *_ = await _seeded_run(member, n_items=2)
    for bad in (
        {"iouThresholds": [0.5, 1.5]},
        {"iouThresholds": [0.75, 0.5]},
        {"maxDetections": [0]},
        {"areaRanges": [{"name": "small", "min": 0, "max": 10}]},
        {"iouType": "keypoints"},
        {"confidenceThreshold": 2},
    ):
        body = await world.client.execute(COMMIT, run=run_id, input=bad)
        assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", bad
    assert await db.commands.count_documents({"type": "commitModelRun"}) == 0
    run = (await world.client.data(METRICS, id=run_id))["modelRun"]
    assert (run["status"], run["metrics"]) == ("CREATED", None)
    early = await world.client.execute(MATCHES, id=run_id, kind="FP")
    assert early["errors"][0]["extensions"]["code"] == "CONFLICT"


async def test_another_organization_sees_no_metrics_matches_or_predictions(member, db, settings):
    world, run_id, items, *_ = await _seeded_run(member, n_items=3)
    with worker_processes(settings) as start:
        start()
        await _commit(world, db, run_id)
    other = await make_world(member, "globex")
    for query, variables in (
        (METRICS, {"id": run_id}),
        (MATCHES, {"id": run_id, "kind": "TP"}),
        (ITEMS, {"id": run_id}),
        (COMMIT, {"run": run_id}),
    ):
        body = await other.client.execute(query, **variables)
        assert body["errors"][0]["extensions"]["code"] == "NOT_FOUND", query
    own = await other.upload("mine.png", image_bytes("PNG", 8, 8))
    body = await other.client.execute(ITEM_PREDICTIONS, id=own["id"], run=run_id)
    assert body["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    mine = await world.client.data(ITEM_PREDICTIONS, id=items[1]["id"], run=run_id)
    assert len(mine["item"]["predictions"]) == await db.predictions.count_documents(
        {"runId": ObjectId(run_id), "itemId": ObjectId(items[1]["id"])}
    )
    assert await db.commands.count_documents({"type": "commitModelRun"}) == 1


COMMAND_UPDATED = """subscription($c: ID!) {
  commandUpdated(commandId: $c) { status progress result } }"""


async def test_a_commits_progress_streams_over_command_updated(member, db, settings, app, server):
    world, run_id, _, truths, guesses, _ = await _seeded_run(member, n_items=4)
    evaluated = sum(1 for gts, dts in zip(truths, guesses, strict=True) if gts or dts)
    command = (await world.client.data(COMMIT, run=run_id, input=None))["commitModelRun"]
    async with subscribe(server, world.client.key, COMMAND_UPDATED, c=command["id"]) as feed:
        await _registered(app, 1)
        with worker_processes(settings) as start:
            start()
            seen = []
            while not seen or seen[-1]["status"] not in ("success", "failed"):
                message = await asyncio.wait_for(feed.next(), 60)
                seen.append(message["payload"]["data"]["commandUpdated"])
    progress = [update["progress"] for update in seen]
    assert progress == sorted(progress)
    result = {"items": evaluated, "full": True}
    assert seen[-1] == {"status": "success", "progress": 100, "result": result}
    assert len(seen) >= 3


def _mask_scene(rng: np.random.Generator, n_items: int, width: int = 64, height: int = 48):
    """Per item: ground truth as masks (COCO RLE strings) and polygons, some crowd, and
    mask predictions around them with tied scores."""
    from pycocotools import mask as coco_mask

    def rectangle(x: int, y: int, w: int, h: int) -> dict:
        pixels = np.zeros((height, width), dtype=np.uint8, order="F")
        pixels[y : y + h, x : x + w] = 1
        rle = coco_mask.encode(pixels)
        return {"size": [height, width], "counts": rle["counts"].decode()}

    truths, guesses = [], []
    for _ in range(n_items):
        gts, dts = [], []
        for k in range(int(rng.integers(1, 4))):
            x, y = int(rng.integers(0, 40)), int(rng.integers(0, 30))
            w, h = int(rng.integers(5, 24)), int(rng.integers(5, 18))
            label = str(rng.choice(LABELS))
            if k % 2:
                points = [{"x": x, "y": y}, {"x": x + w, "y": y}, {"x": x + w // 2, "y": y + h}]
                gts.append({"label": label, "type": "POLYGON", "coordinates": points})
            else:
                gts.append(
                    {
                        "label": label,
                        "type": "SEGMENTATION",
                        "coordinates": rectangle(x, y, w, h),
                        "crowd": rng.random() < 0.2,
                    }
                )
            dx, dy = (int(v) for v in rng.integers(-2, 3, 2))
            dts.append(
                {
                    "label": label if rng.random() < 0.8 else str(rng.choice(LABELS)),
                    "coordinates": rectangle(max(0, x + dx), max(0, y + dy), w, h),
                    "score": round(float(rng.random()), 1),
                }
            )
        truths.append(gts)
        guesses.append(dts)
    return truths, guesses


def _pycocotools_segm(truths, guesses, width: int = 64, height: int = 48) -> COCOeval:
    from pycocotools import mask as coco_mask

    def rle(gt: dict) -> dict:
        if gt["type"] == "POLYGON":
            flat = [v for p in gt["coordinates"] for v in (p["x"], p["y"])]
            return coco_mask.merge(coco_mask.frPyObjects([flat], height, width))
        return {"size": [height, width], "counts": gt["coordinates"]["counts"].encode()}

    annotations, results = [], []
    for item, gts in enumerate(truths):
        for gt in gts:
            mask = rle(gt)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": item + 1,
                    "segmentation": mask,
                    "area": float(coco_mask.area(mask)),
                    "iscrowd": int(gt.get("crowd", False)),
                    "bbox": list(coco_mask.toBbox(mask)),
                    "category_id": CATEGORIES.index(gt["label"]) + 1,
                }
            )
        for dt in guesses[item]:
            mask = {"size": [height, width], "counts": dt["coordinates"]["counts"].encode()}
            results.append(
                {
                    "image_id": item + 1,
                    "segmentation": mask,
                    "score": dt["score"],
                    "category_id": CATEGORIES.index(dt["label"]) + 1,
                }
            )
    with contextlib.redirect_stdout(io.StringIO()):
        truth = COCO()
        truth.dataset = {
            "images": [{"id": i + 1, "width": width, "height": height} for i in range(len(truths))],
            "categories": [{"id": k + 1, "name": name} for k, name in enumerate(CATEGORIES)],
            "annotations": annotations,
        }
        truth.createIndex()
        evaluation = COCOeval(truth, truth.loadRes(results), "segm")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return evaluation


async def test_a_segm_commit_of_masks_and_polygons_equals_pycocotools(member, db, settings):
    world = await make_world(member)
    client = world.client
    truths, guesses = _mask_scene(np.random.default_rng(11), 8)
    items = [await world.upload(f"{i}.png", image_bytes("PNG", 64, 48)) for i in range(8)]
    annotations = [
        {
            "itemId": items[i]["id"],
            "type": gt["type"],
            "label": gt["label"],
            "coordinates": gt["coordinates"],
            "attributes": {"iscrowd": gt.get("crowd", False)},
        }
        for i, gts in enumerate(truths)
        for gt in gts
    ]
    await client.data(CREATE_MANY, inputs=annotations)
    model = await client.data(CREATE_MODEL, project=world.project, input={"name": "masks"})
    version = await client.data(CREATE_VERSION, id=model["createModel"]["id"])
    created = await client.data(
        CREATE_RUN,
        input={
            "modelVersionId": version["createModelVersion"]["id"],
            "datasetId": world.dataset,
            "name": "segm",
        },
    )
    run_id = created["createModelRun"]["id"]
    predictions = [
        {
            "itemId": items[i]["id"],
            "type": "SEGMENTATION",
            "label": dt["label"],
            "coordinates": dt["coordinates"],
            "confidence": dt["score"],
        }
        for i, dts in enumerate(guesses)
        for dt in dts
    ]
    await client.data(UPLOAD, run=run_id, p=predictions, update=False)
    with worker_processes(settings) as start:
        start()
        await _commit(world, db, run_id, {"iouType": "segm", "classAgnostic": False})
    metrics = (await client.data(METRICS, id=run_id))["modelRun"]["metrics"]
    _assert_stats_equal(metrics, _pycocotools_segm(truths, guesses))
    assert metrics["ap50"] is not None


CLASSIFICATION = """query($id: ID!) { modelRun(id: $id) { metrics { ap classification {
  items accuracy perLabel { label tp fp fn precision recall f1 support } confusionMatrix } } } }"""


async def test_classification_predictions_are_scored_by_their_most_confident_class(
    member, db, settings
):
    world = await make_world(member)
    client = world.client
    items = [await world.upload(f"{i}.png", image_bytes("PNG", 8, 8)) for i in range(4)]
    truth = ["cat", "dog", "dog", None]
    await client.data(
        CREATE_MANY,
        inputs=[
            {"itemId": item["id"], "type": "CLASSIFICATION", "label": label}
            for item, label in zip(items, truth, strict=True)
            if label
        ],
    )
    model = await client.data(CREATE_MODEL, project=world.project, input={"name": "classes"})
    version = await client.data(CREATE_VERSION, id=model["createModel"]["id"])
    created = await client.data(
        CREATE_RUN,
        input={
            "modelVersionId": version["createModelVersion"]["id"],
            "datasetId": world.dataset,
            "name": "classes",
        },
    )
    run_id = created["createModelRun"]["id"]

    def guess(item: int, label: str, confidence: float) -> dict:
        return {
            "itemId": items[item]["id"],
            "type": "CLASSIFICATION",
            "label": label,
            "confidence": confidence,
        }

    predictions = [
        guess(0, "dog", 0.4),
        guess(0, "cat", 0.9),
        guess(1, "cat", 0.7),
        guess(3, "dog", 0.6),
    ]
    await client.data(UPLOAD, run=run_id, p=predictions, update=False)
    with worker_processes(settings) as start:
        start()
        await _commit(world, db, run_id)
    metrics = (await client.data(CLASSIFICATION, id=run_id))["modelRun"]["metrics"]
    assert metrics["ap"] is None
    scored = metrics["classification"]
    assert (scored["items"], scored["accuracy"]) == (4, 1 / 3)
    per_label = {entry["label"]: entry for entry in scored["perLabel"]}
    assert per_label["cat"] == {
        "label": "cat",
        "tp": 1,
        "fp": 1,
        "fn": 0,
        "precision": 0.5,
        "recall": 1.0,
        "f1": 2 / 3,
        "support": 1,
    }
    assert per_label["dog"] == {
        "label": "dog",
        "tp": 0,
        "fp": 1,
        "fn": 2,
        "precision": 0.0,
        "recall": 0.0,
        "f1": 0.0,
        "support": 2,
    }
    assert scored["confusionMatrix"] == {
        "labels": ["cat", "dog", "none"],
        "matrix": [[1, 0, 0], [1, 0, 1], [0, 1, 0]],
    }


DELETE_ITEMS = "mutation($d: ID!, $ids: [ID!]!) { deleteItems(datasetId: $d, itemIds: $ids) }"


async def test_a_deleted_items_predictions_leave_the_run_and_its_next_commit(member, db, settings):
    world, run_id, items, truths, guesses, order = await _seeded_run(member)
    client = world.client
    doomed = next(i for i, dts in enumerate(guesses) if dts and truths[i])
    with worker_processes(settings) as start:
        start()
        await _commit(world, db, run_id)
        before = await db.model_run_items.count_documents({"runId": ObjectId(run_id)})
        await client.data(DELETE_ITEMS, d=world.dataset, ids=[items[doomed]["id"]])
        run = (await client.data(METRICS, id=run_id))["modelRun"]
        assert run["changed"] is True
        stored = await db.model_runs.find_one({"_id": ObjectId(run_id)})
        assert stored["predictionsCount"] == sum(len(d) for d in guesses) - len(guesses[doomed])
        assert await db.predictions.count_documents({"itemId": ObjectId(items[doomed]["id"])}) == 0
        again = await _commit(world, db, run_id)
    assert again["result"] == {"items": 0, "full": False}
    assert await db.model_run_items.count_documents({"runId": ObjectId(run_id)}) == before - 1
    truths[doomed], guesses[doomed] = [], []
    metrics = (await client.data(METRICS, id=run_id))["modelRun"]["metrics"]
    _assert_stats_equal(metrics, _pycocotools(truths, guesses, order, use_cats=False))
