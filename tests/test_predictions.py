"""uploadPredictions: update vs skip, bad predictions by index with nothing written, partial
acceptance, reference ids, large uploads as a Command run by a real worker, other tenants."""

from dataclasses import dataclass

from bson import ObjectId

from tests.datasets_world import World, image_bytes, make_world
from tests.test_clone import _finished
from tests.workers import worker_processes

CREATE_MODEL = """mutation($project: ID!, $input: ModelInput!) {
  createModel(projectId: $project, input: $input) { id } }"""
CREATE_VERSION = "mutation($id: ID!) { createModelVersion(modelId: $id) { id } }"
CREATE_RUN = """mutation($input: ModelRunInput!) { createModelRun(input: $input) {
  id status predictionsCount changed labels } }"""
UPLOAD = """mutation($run: ID!, $p: [PredictionInput!]!, $update: Boolean!, $partial: Boolean!) {
  uploadPredictions(modelRunId: $run, predictions: $p, update: $update, partial: $partial) {
    processed ignored invalid errors { index field message } command { id status } } }"""
RUN = """query($id: ID!, $item: ID, $ref: String, $index: Int, $ann: String) { modelRun(id: $id) {
  predictionsCount changed
  predictions(itemId: $item, referenceId: $ref, index: $index, annotationId: $ann) {
    label confidence annotationId coordinates item { name referenceId } } } }"""
COMMAND = "query($id: ID!) { command(id: $id) { status error result } }"


@dataclass
class Run:
    world: World
    id: str
    items: list[dict]


async def open_run(member, org: str = "acme", labels=("car", "truck")) -> Run:
    world = await make_world(member, org)
    items = [
        await world.upload(
            f"{i}.png", image_bytes("PNG", 64, 48, (i, 0, 0)), referenceId=f"ref-{i}"
        )
        for i in range(3)
    ]
    model = await world.client.data(
        CREATE_MODEL, project=world.project, input={"name": "detector", "labels": list(labels)}
    )
    version = await world.client.data(CREATE_VERSION, id=model["createModel"]["id"])
    run = await world.client.data(
        CREATE_RUN,
        input={
            "modelVersionId": version["createModelVersion"]["id"],
            "datasetId": world.dataset,
            "name": "first",
        },
    )
    return Run(world, run["createModelRun"]["id"], items)


def box(item: dict, annotation_id: str | None = None, label: str = "car", **extra) -> dict:
    prediction = {
        "itemId": item["id"],
        "type": "BOX",
        "label": label,
        "coordinates": {"left": 1, "top": 2, "right": 30, "bottom": 40},
        "confidence": 0.9,
        **extra,
    }
    if annotation_id is not None:
        prediction["annotationId"] = annotation_id
    return prediction


async def upload(run: Run, predictions: list[dict], update=False, partial=False) -> dict:
    body = await run.world.client.execute(
        UPLOAD, run=run.id, p=predictions, update=update, partial=partial
    )
    return body


async def test_update_replaces_and_skip_ignores_predictions_with_the_same_annotation_id(member):
    run = await open_run(member)
    a, b = run.items[0], run.items[1]
    first = await upload(run, [box(a, "p1"), box(b, "p1"), box(a)])
    assert first["data"]["uploadPredictions"]["processed"] == 3
    assert first["data"]["uploadPredictions"]["ignored"] == 0

    skipped = await upload(run, [box(a, "p1", confidence=0.1), box(a, "p2")], update=False)
    assert skipped["data"]["uploadPredictions"] | {"errors": None} == {
        "processed": 1,
        "ignored": 1,
        "invalid": 0,
        "errors": None,
        "command": None,
    }
    stored = (await run.world.client.data(RUN, id=run.id, item=a["id"], ann="p1"))["modelRun"]
    assert [p["confidence"] for p in stored["predictions"]] == [0.9]

    updated = await upload(run, [box(a, "p1", confidence=0.2, label="truck")], update=True)
    assert updated["data"]["uploadPredictions"]["processed"] == 1
    assert updated["data"]["uploadPredictions"]["ignored"] == 0
    after = (await run.world.client.data(RUN, id=run.id, item=a["id"]))["modelRun"]
    assert after["predictionsCount"] == 4
    assert after["changed"] is True
    by_key = {p["annotationId"]: (p["label"], p["confidence"]) for p in after["predictions"]}
    assert by_key == {"p1": ("truck", 0.2), "p2": ("car", 0.9), None: ("car", 0.9)}


async def test_within_one_upload_the_last_of_a_key_wins_when_updating(member):
    run = await open_run(member)
    a = run.items[0]
    body = await upload(run, [box(a, "k", confidence=0.1), box(a, "k", confidence=0.3)], True)
    assert body["data"]["uploadPredictions"]["processed"] == 1
    assert body["data"]["uploadPredictions"]["ignored"] == 1
    stored = (await run.world.client.data(RUN, id=run.id, item=a["id"]))["modelRun"]
    assert [p["confidence"] for p in stored["predictions"]] == [0.3]


async def test_bad_predictions_are_reported_by_index_and_nothing_is_written(member, db):
    run = await open_run(member)
    a = run.items[0]
    bad = [
        box(a, "ok"),
        box(a, coordinates={"left": 50, "top": 2, "right": 10, "bottom": 40}),
        box(a, label="bicycle"),
        {**box(a), "itemId": str(ObjectId())},
        box(a, confidence=1.5),
        {**box(a), "referenceId": "ref-0"},
    ]
    body = await upload(run, bad)
    error = body["errors"][0]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert error["extensions"]["invalid"] == 5
    assert [e["index"] for e in error["extensions"]["errors"]] == [1, 2, 3, 4, 5]
    assert "left (50) must be less than right" in error["extensions"]["errors"][0]["message"]
    assert "not one of the model's labels" in error["extensions"]["errors"][1]["message"]
    assert await db.predictions.count_documents({}) == 0
    assert await db.model_run_changes.count_documents({}) == 0
    doc = await db.model_runs.find_one({"_id": ObjectId(run.id)})
    assert (doc["predictionsCount"], doc["changed"]) == (0, False)


async def test_partial_acceptance_writes_the_good_predictions_and_reports_the_rest(member, db):
    run = await open_run(member)
    a = run.items[0]
    body = await upload(run, [box(a), box(a, label="bicycle"), box(a, "x")], partial=True)
    answer = body["data"]["uploadPredictions"]
    assert (answer["processed"], answer["ignored"], answer["invalid"]) == (2, 0, 1)
    assert answer["errors"] == [
        {
            "index": 1,
            "field": "label",
            "message": "label 'bicycle' is not one of the model's labels",
        }
    ]
    assert await db.predictions.count_documents({"runId": ObjectId(run.id)}) == 2


async def test_predictions_name_items_by_reference_id_and_are_read_by_loc_refloc_iloc(member):
    run = await open_run(member)
    by_ref = {
        "referenceId": "ref-2",
        "type": "BOX",
        "label": "truck",
        "coordinates": {"left": 0, "top": 0, "right": 64, "bottom": 48},
        "confidence": 0.5,
    }
    assert (await upload(run, [by_ref]))["data"]["uploadPredictions"]["processed"] == 1
    client = run.world.client
    for arguments in ({"item": run.items[2]["id"]}, {"ref": "ref-2"}, {"index": 2}):
        found = (await client.data(RUN, id=run.id, **arguments))["modelRun"]["predictions"]
        assert found == [
            {
                "label": "truck",
                "confidence": 0.5,
                "annotationId": None,
                "coordinates": {"left": 0.0, "top": 0.0, "right": 64.0, "bottom": 48.0},
                "item": {"name": "2.png", "referenceId": "ref-2"},
            }
        ]
    empty = (await client.data(RUN, id=run.id, index=0))["modelRun"]["predictions"]
    assert empty == []
    missing = await client.execute(RUN, id=run.id, ref="nope")
    assert missing["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    both = await client.execute(RUN, id=run.id, ref="ref-2", index=1)
    assert both["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_a_reference_id_is_unique_in_its_dataset(member):
    run = await open_run(member)
    body = await run.world.client.upload(
        "mutation($d: ID!, $f: Upload!, $i: ItemInput) { uploadItem(datasetId: $d, file: $f, "
        "input: $i) { id } }",
        {"f": ("again.png", image_bytes("PNG", 8, 8), "image/png")},
        d=run.world.dataset,
        i={"referenceId": "ref-1"},
    )
    assert body["errors"][0]["extensions"]["code"] == "CONFLICT"
    assert body["errors"][0]["extensions"]["field"] == "referenceId"


async def test_uploads_over_five_thousand_run_as_a_command_with_the_same_counts(
    member, db, settings
):
    run = await open_run(member)
    predictions = [box(run.items[i % 3], f"p{i}") for i in range(5_200)]
    predictions[10] = box(run.items[0], "p10", label="bicycle")
    body = await upload(run, predictions, partial=True)
    command = body["data"]["uploadPredictions"]["command"]
    assert body["data"]["uploadPredictions"]["processed"] is None
    with worker_processes(settings) as start:
        start()
        done = await _finished(db, ObjectId(command["id"]))
    assert done["status"] == "success", done
    assert done["result"]["processed"] == 5_199
    assert done["result"]["invalid"] == 1
    assert done["result"]["errors"][0]["index"] == 10
    assert await db.predictions.count_documents({"runId": ObjectId(run.id)}) == 5_199
    assert not await db.prediction_uploads.files.find_one({})


async def test_a_large_upload_with_a_bad_prediction_writes_nothing_and_fails(member, db, settings):
    run = await open_run(member)
    predictions = [box(run.items[i % 3]) for i in range(5_001)]
    predictions[5_000] = box(run.items[0], confidence=-1)
    command = (await upload(run, predictions))["data"]["uploadPredictions"]["command"]
    with worker_processes(settings) as start:
        start()
        done = await _finished(db, ObjectId(command["id"]))
    assert done["status"] == "failed"
    assert "1 predictions are invalid" in done["error"]
    assert done["result"]["errors"][0]["index"] == 5_000
    assert await db.predictions.count_documents({}) == 0


async def test_another_organizations_run_is_not_found_for_uploads_and_reads(member, db):
    run = await open_run(member)
    other = await make_world(member, "globex")
    prediction = {**box(run.items[0]), "itemId": run.items[0]["id"]}
    body = await other.client.execute(
        UPLOAD, run=run.id, p=[prediction], update=False, partial=False
    )
    assert body["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    read = await other.client.execute(RUN, id=run.id, item=run.items[0]["id"])
    assert read["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    assert await db.predictions.count_documents({}) == 0


async def test_a_prediction_cannot_name_an_item_of_another_dataset(member, db):
    run = await open_run(member)
    other = await make_world(member, "globex")
    foreign = await other.upload("x.png", image_bytes("PNG", 64, 48))
    body = await upload(run, [box(foreign)])
    assert body["errors"][0]["extensions"]["errors"][0]["message"].startswith("itemId")
    assert await db.predictions.count_documents({}) == 0
