"""Dataset versions: a snapshot holds the dataset as of its request, however the dataset
changes after it and whoever finishes the copy; it is read with the same item types and DQL,
is immutable, and is listed, renamed and deleted (files released) as users expect."""

import asyncio

from bson import ObjectId

from tests.datasets_world import image_bytes, make_world
from tests.test_clone import _finished
from tests.test_deployment_predict import _service
from tests.test_trigger_firing import _relaying
from tests.workers import run_command_here, start_worker, stop, worker_processes

ADD_LABELS = "mutation($id: ID!, $l: JSON!) { addLabels(datasetId: $id, labels: $l) { id } }"
CREATE_MANY = """mutation($inputs: [AnnotationInput!]!) {
  createAnnotations(inputs: $inputs) { id } }"""
UPDATE_ITEM = """mutation($id: ID!, $input: ItemChangesInput!) {
  updateItem(id: $id, input: $input) { id } }"""
UPDATE_ANNOTATION = """mutation($id: ID!, $input: AnnotationChangesInput!) {
  updateAnnotation(id: $id, input: $input) { id } }"""
DELETE_ITEMS = "mutation($d: ID!, $ids: [ID!]!) { deleteItems(datasetId: $d, itemIds: $ids) }"
CREATE_VERSION = """mutation($d: ID!, $input: DatasetVersionInput!) {
  createDatasetVersion(datasetId: $d, input: $input) {
    id name status itemsCount command { id status type } } }"""
VERSION = """query($id: ID!, $filter: JSON) { datasetVersion(id: $id) {
  name status itemsCount annotationsCount snapshotAt labels { name } dataset { id }
  items(filter: $filter, first: 100) { totalCount nodes {
    id name metadata tags downloadUrl
    annotations { id label coordinates item { id name } } } } } }"""
VERSION_ANNOTATIONS = """query($id: ID!, $items: JSON, $a: JSON) { datasetVersion(id: $id) {
  items(filter: $items, first: 10) { nodes { name annotations(filter: $a) { label } } } } }"""
LIVE = """query($id: ID!) { dataset(id: $id) { items(first: 100) { nodes {
  id name metadata tags annotations { id label coordinates } } } } }"""
VERSIONS = """query($id: ID!) { dataset(id: $id) { versions(first: 10) {
  nodes { id name status } } } }"""
UPDATE_VERSION = """mutation($id: ID!, $input: DatasetVersionChangesInput!) {
  updateDatasetVersion(id: $id, input: $input) { id name description } }"""
DELETE_VERSION = "mutation($id: ID!) { deleteDatasetVersion(id: $id) }"
UPLOAD_INTO = """mutation($dataset: ID!, $file: Upload!) {
  uploadItem(datasetId: $dataset, file: $file) { id } }"""
BOX = {"left": 1, "top": 1, "right": 3, "bottom": 3}


async def _seeded(world) -> list[dict]:
    """Three images with labels and boxes: a has two cars, b one truck, c none."""
    await world.client.data(ADD_LABELS, id=world.dataset, l=[{"name": "car"}, {"name": "truck"}])
    items = [
        await world.upload(f"{name}.png", image_bytes("PNG", 8, 8, color), metadata={"n": n})
        for n, (name, color) in enumerate([("a", (1, 2, 3)), ("b", (4, 5, 6)), ("c", (7, 8, 9))])
    ]
    a, b, _ = items
    await world.client.data(
        CREATE_MANY,
        inputs=[
            {"itemId": a["id"], "type": "BOX", "label": "car", "coordinates": BOX},
            {"itemId": a["id"], "type": "BOX", "label": "car", "coordinates": BOX},
            {"itemId": b["id"], "type": "BOX", "label": "truck", "coordinates": BOX},
        ],
    )
    return items


async def _version(world, db, redis, settings, **version_input) -> str:
    """A version taken by the worker's job function in this process; its id once ready."""
    created = await world.client.data(
        CREATE_VERSION, d=world.dataset, input={"name": "v1", **version_input}
    )
    version = created["createDatasetVersion"]
    await run_command_here(db, redis, settings, version["command"]["id"])
    return version["id"]


def _by_name(nodes: list[dict]) -> dict[str, dict]:
    return {node["name"]: node for node in nodes}


async def test_a_version_holds_the_dataset_as_of_its_request_not_the_writes_after_it(
    member, db, settings, http
):
    world = await make_world(member)
    a, b, c = await _seeded(world)
    before = (await world.client.data(LIVE, id=world.dataset))["dataset"]["items"]["nodes"]
    created = await world.client.data(CREATE_VERSION, d=world.dataset, input={"name": "v1"})
    version = created["createDatasetVersion"]
    assert (version["status"], version["command"]["type"]) == ("CREATING", "datasetVersion")
    # Every write lands before any worker has started copying: none may reach the version.
    await world.client.data(UPDATE_ITEM, id=a["id"], input={"metadata": {"n": 99}})
    first_box = before[0]["annotations"][0]["id"]
    await world.client.data(UPDATE_ANNOTATION, id=first_box, input={"label": "truck"})
    await world.client.data(DELETE_ITEMS, d=world.dataset, ids=[b["id"]])
    await world.client.data(
        CREATE_MANY, inputs=[{"itemId": c["id"], "type": "BOX", "label": "car", "coordinates": BOX}]
    )
    await world.upload("d.png", image_bytes("PNG", 8, 8, (9, 9, 9)))
    worker = start_worker(settings)
    try:
        done = await _finished(db, ObjectId(version["command"]["id"]))
    finally:
        stop(worker)
    assert done["status"] == "success", done["error"]
    held = (await world.client.data(VERSION, id=version["id"]))["datasetVersion"]
    assert (held["status"], held["itemsCount"], held["annotationsCount"]) == ("READY", 3, 3)
    assert held["labels"] == [{"name": "car"}, {"name": "truck"}]
    assert held["dataset"] == {"id": world.dataset}
    nodes = held["items"]["nodes"]
    assert [{k: node[k] for k in ("id", "name", "metadata", "tags")} for node in nodes] == [
        {k: node[k] for k in ("id", "name", "metadata", "tags")} for node in before
    ]
    for node, was in zip(nodes, before, strict=True):
        assert [
            {k: x[k] for k in ("id", "label", "coordinates")} for x in node["annotations"]
        ] == was["annotations"]
        item = {"id": node["id"], "name": node["name"]}
        assert all(x["item"] == item for x in node["annotations"])
        assert node["downloadUrl"] == f"/versions/{version['id']}/items/{node['id']}/file"
    live = (await world.client.data(LIVE, id=world.dataset))["dataset"]["items"]["nodes"]
    assert sorted(node["name"] for node in live) == ["a.png", "c.png", "d.png"]
    gone_live = _by_name(nodes)["b.png"]["downloadUrl"]
    headers = {"Authorization": f"Bearer {world.client.key}"}
    response = await http.get(gone_live, headers=headers)
    assert response.status_code == 200
    assert response.content == image_bytes("PNG", 8, 8, (4, 5, 6))
    assert (await http.get(gone_live)).status_code == 401
    stranger, _ = await member("globex", "owner")
    other = {"Authorization": f"Bearer {stranger.key}"}
    assert (await http.get(gone_live, headers=other)).status_code == 404


async def test_a_version_read_a_thousand_writes_later_returns_what_it_held(
    member, db, redis, settings
):
    world = await make_world(member)
    a, b, c = await _seeded(world)
    version = await _version(world, db, redis, settings)
    held = (await world.client.data(VERSION, id=version))["datasetVersion"]
    live = (await world.client.data(LIVE, id=world.dataset))["dataset"]["items"]["nodes"]
    boxes = [x["id"] for node in live for x in node["annotations"]]
    gate = asyncio.Semaphore(16)

    async def write(n: int) -> None:
        async with gate:
            if n % 3 == 0:
                item = (a, b, c)[n % 9 // 3]
                await world.client.data(UPDATE_ITEM, id=item["id"], input={"metadata": {"w": n}})
            elif n % 3 == 1:
                label = ("car", "truck")[n % 2]
                await world.client.data(UPDATE_ANNOTATION, id=boxes[n % 3], input={"label": label})
            else:
                item = (a, b, c)[n % 3]
                new = {"itemId": item["id"], "type": "BOX", "label": "car", "coordinates": BOX}
                await world.client.data(CREATE_MANY, inputs=[new])

    await asyncio.gather(*(write(n) for n in range(1000)))
    assert (await world.client.data(VERSION, id=version))["datasetVersion"] == held
    now_live = (await world.client.data(LIVE, id=world.dataset))["dataset"]["items"]["nodes"]
    assert sum(len(node["annotations"]) for node in now_live) == 3 + 333


async def test_a_filtered_version_holds_only_the_matching_items_and_reads_dql_in_the_version(
    member, db, redis, settings
):
    world = await make_world(member)
    await _seeded(world)
    query = {
        "filter": {"metadata.user.n": {"$lte": 1}},
        "join": {
            "on": {"resource": "annotations", "local": "itemId", "forigen": "id"},
            "filter": {"label": "car"},
        },
    }
    version = await _version(world, db, redis, settings, filter=query)
    held = (await world.client.data(VERSION, id=version))["datasetVersion"]
    assert [node["name"] for node in held["items"]["nodes"]] == ["a.png"]
    assert held["annotationsCount"] == 2
    everything = await _version_named(world, db, redis, settings, "all")
    by_id = {"id": held["items"]["nodes"][0]["id"]}
    found = await world.client.data(VERSION, id=everything, filter=by_id)
    assert [n["name"] for n in found["datasetVersion"]["items"]["nodes"]] == ["a.png"]
    joined = {**query, "filter": {"name": {"$glob": "*.png"}}, "join": {**query["join"]}}
    joined["join"]["filter"] = {"label": "truck"}
    found = await world.client.data(VERSION, id=everything, filter=joined)
    assert [n["name"] for n in found["datasetVersion"]["items"]["nodes"]] == ["b.png"]
    joined["join"]["filter"] = {"$not": {"label": "car"}, "type": "box"}
    found = await world.client.data(VERSION, id=everything, filter=joined)
    assert [n["name"] for n in found["datasetVersion"]["items"]["nodes"]] == ["b.png"]
    either = {"$or": [{"label": "truck"}, {"type": "point"}]}
    read = await world.client.data(
        VERSION_ANNOTATIONS, id=everything, items={"name": "b.png"}, a=either
    )
    [b] = read["datasetVersion"]["items"]["nodes"]
    assert [x["label"] for x in b["annotations"]] == ["truck"]
    read = await world.client.data(
        VERSION_ANNOTATIONS, id=everything, items={"name": "a.png"}, a={"label": "truck"}
    )
    assert read["datasetVersion"]["items"]["nodes"][0]["annotations"] == []


async def _version_named(world, db, redis, settings, name: str) -> str:
    created = await world.client.data(CREATE_VERSION, d=world.dataset, input={"name": name})
    version = created["createDatasetVersion"]
    await run_command_here(db, redis, settings, version["command"]["id"])
    return version["id"]


async def test_writes_through_a_version_are_conflicts_and_change_nothing(
    member, db, redis, settings
):
    world = await make_world(member)
    await _seeded(world)
    version = await _version(world, db, redis, settings)
    held = (await world.client.data(VERSION, id=version))["datasetVersion"]
    body = await world.client.upload(
        UPLOAD_INTO, {"file": ("x.png", image_bytes("PNG", 2, 2), "image/png")}, dataset=version
    )
    assert [e["extensions"]["code"] for e in body["errors"]] == ["CONFLICT"]
    assert "immutable" in body["errors"][0]["message"]
    assert await world.client.code(ADD_LABELS, id=version, l=[{"name": "x"}]) == "CONFLICT"
    rename = 'mutation($id: ID!) { updateDataset(id: $id, input: {name: "x"}) { id } }'
    assert await world.client.code(rename, id=version) == "CONFLICT"
    delete = 'mutation($id: ID!) { deleteDataset(id: $id, confirmName: "v1") }'
    assert await world.client.code(delete, id=version) == "CONFLICT"
    assert (await world.client.data(VERSION, id=version))["datasetVersion"] == held


async def test_a_copy_cut_short_resumes_at_the_same_moment_without_duplicates(
    member, db, redis, settings
):
    world = await make_world(member)
    await _seeded(world)
    for n in range(3, 12):
        await world.upload(f"{n:02}.png", image_bytes("PNG", 4, 4, (n, n, n)))
    one_by_one = settings.model_copy(update={"version_batch_size": 1})
    created = await world.client.data(CREATE_VERSION, d=world.dataset, input={"name": "v1"})
    command_id = ObjectId(created["createDatasetVersion"]["command"]["id"])
    async with await db.version_items.watch() as copies:
        copying = asyncio.create_task(run_command_here(db, redis, one_by_one, str(command_id)))
        for _ in range(4):
            await copies.next()
        copying.cancel()
    await asyncio.gather(copying, return_exceptions=True)
    cut = await db.commands.find_one({"_id": command_id})
    assert cut["status"] == "inProgress"
    assert cut["cursor"] is not None
    await world.upload("late.png", image_bytes("PNG", 4, 4, (99, 1, 1)))
    await db.commands.update_one({"_id": command_id}, {"$set": {"leaseUntil": None}})
    await run_command_here(db, redis, one_by_one, str(command_id))
    done = await db.commands.find_one({"_id": command_id})
    assert (done["status"], done["attempts"]) == ("success", 2)
    version_id = ObjectId(created["createDatasetVersion"]["id"])
    copied = await db.version_items.distinct("name", {"versionId": version_id})
    assert len(copied) == await db.version_items.count_documents({"versionId": version_id}) == 12
    assert "late.png" not in copied


async def test_versions_are_listed_newest_first_renamed_and_deleted_with_their_files(
    member, db, redis, settings
):
    world = await make_world(member)
    await _seeded(world)
    first = await _version_named(world, db, redis, settings, "v1")
    second = await _version_named(world, db, redis, settings, "v2")
    listed = (await world.client.data(VERSIONS, id=world.dataset))["dataset"]["versions"]
    assert [v["id"] for v in listed["nodes"]] == [second, first]
    renamed = await world.client.data(
        UPDATE_VERSION, id=first, input={"name": "baseline", "description": "before review"}
    )
    assert renamed["updateDatasetVersion"]["name"] == "baseline"
    assert await world.client.code(UPDATE_VERSION, id=second, input={"name": "baseline"}) == (
        "CONFLICT"
    )
    refs = {blob["_id"]: blob["refs"] for blob in await db.blobs.find().to_list()}
    assert set(refs.values()) == {3}
    assert (await world.client.data(DELETE_VERSION, id=first))["deleteDatasetVersion"] is True
    assert await world.client.code(VERSION, id=first) == "NOT_FOUND"
    assert {blob["refs"] for blob in await db.blobs.find().to_list()} == {2}
    assert await db.version_items.count_documents({"versionId": ObjectId(first)}) == 0
    confirm = 'mutation($id: ID!) { deleteDataset(id: $id, confirmName: "cars") }'
    await world.client.data(confirm, id=world.dataset)
    assert await db.dataset_versions.count_documents({}) == 0
    assert await db.version_items.count_documents({}) == 0
    assert await db.blobs.count_documents({}) == 0


async def test_a_bad_version_filter_or_name_is_refused_and_writes_nothing(member, db):
    world = await make_world(member)
    await _seeded(world)
    bad_filters = [{"size": {"$where": "1"}}, {"unknown": 1}, {"resource": "annotations"}]
    for bad in bad_filters:
        error = await world.client.error(
            CREATE_VERSION, d=world.dataset, input={"name": "v", "filter": bad}
        )
        assert error["extensions"]["code"] == "BAD_USER_INPUT", error
    assert await world.client.code(CREATE_VERSION, d=world.dataset, input={"name": ""}) == (
        "BAD_USER_INPUT"
    )
    assert await db.dataset_versions.count_documents({}) == 0
    assert await db.commands.count_documents({}) == 0


CREATE_TRIGGER = """mutation($p: ID!, $input: TriggerInput!) {
  createTrigger(projectId: $p, input: $input) { id } }"""


async def _ready_trigger(world, name: str) -> ObjectId:
    service = await _service(world)
    operation = {"type": "function", "serviceId": service, "functionName": "echo"}
    trigger = {
        "name": name,
        "resource": "DatasetVersion",
        "actions": ["Updated"],
        "filter": {"status": "ready"},
        "operation": operation,
    }
    created = await world.client.data(CREATE_TRIGGER, p=world.project, input=trigger)
    return ObjectId(created["createTrigger"]["id"])


async def test_a_version_becoming_ready_fires_its_projects_triggers_only(member, db, settings):
    world = await make_world(member)
    await _seeded(world)
    ready = await _ready_trigger(world, "on ready")
    rival = await make_world(member, org="rival")
    spy = await _ready_trigger(rival, "spy")
    with worker_processes(settings) as start:
        start()
        await _relaying(db)
        created = await world.client.data(CREATE_VERSION, d=world.dataset, input={"name": "v1"})
        async with await db.executions.watch() as changes:
            while not await db.executions.count_documents({"triggerId": ready}):
                await changes.next()
    version = ObjectId(created["createDatasetVersion"]["id"])
    [run] = await db.executions.find({"triggerId": ready}).to_list()
    event = await db.events.find_one({"_id": run["eventId"]})
    assert (event["resource"], event["action"]) == ("DatasetVersion", "Updated")
    assert (event["before"]["status"], event["after"]["status"]) == ("creating", "ready")
    assert event["after"]["itemsCount"] == 3
    actions = [e["action"] async for e in db.events.find({"resourceId": version}).sort("token")]
    assert actions == ["Created", "Updated"]  # noting the snapshot's moment is no event
    assert await db.executions.count_documents({"triggerId": spy}) == 0
