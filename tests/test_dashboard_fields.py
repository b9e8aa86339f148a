"""The fields a dashboard reads (the console is one): a project's permissions for the caller,
as the role tables grant them; each service's execution counts; executions filtered by their
trigger. Each stays inside its tenant."""

from resolvers.access import PROJECT_GRANTS
from tests.datasets_world import make_world
from tests.test_roles import ALL_CASES, _attempt, project_caller, project_outcome, project_visible
from tests.test_trigger_api import INVOKE_TRIGGER, _create, _scene, _service
from tests.test_webhook_api import PING, _webhook
from tests.waiting import eventually
from tests.workers import run_command_here
from tests.ws_client import subscribe

PERMISSIONS = "query($p: ID!) { project(id: $p) { permissions } }"
SERVICE_COUNTS = """query($s: ID!) { service(id: $s) { executionCounts { status count } } }"""
PROJECT_COUNTS = "query($p: ID!) { project(id: $p) { executionCounts { status count } } }"
BY_TRIGGER = """query($p: ID!, $filter: JSON) { project(id: $p) {
  executions(filter: $filter) { nodes { id triggerId } } } }"""
EXECUTE = """mutation($s: ID!, $input: ExecuteInput!) { execute(serviceId: $s, input: $input) {
  id } }"""
TERMINATE = "mutation($id: ID!) { terminateExecution(id: $id) { id status } }"


async def test_a_projects_permissions_are_what_the_role_tables_grant_its_caller(member):
    scene = await _scene(member)
    world = scene.world
    for case in ALL_CASES:
        client = await project_caller(member, world, case)
        body = await client.execute(PERMISSIONS, p=world.project)
        if not project_visible(case):
            assert body["errors"][0]["extensions"]["code"] == "NOT_FOUND", case.id
            continue
        granted = {
            action.name for action in PROJECT_GRANTS if project_outcome(case, action) is None
        }
        assert set(body["data"]["project"]["permissions"]) == granted, case.id
    rival = await make_world(member, org="rival")
    assert await _attempt(rival.client, PERMISSIONS, p=world.project) == "NOT_FOUND"


async def test_each_service_counts_its_own_executions_by_status_and_no_other_tenants(member):
    scene = await _scene(member)
    client = scene.world.client
    other = await _service(client, scene.world.project, "second hooks")
    run = {"function": "echo", "input": {}}
    first = [(await client.data(EXECUTE, s=scene.service, input=run))["execute"]["id"]
             for _ in range(3)]  # fmt: skip
    await client.data(EXECUTE, s=other, input=run)
    await client.data(TERMINATE, id=first[0])
    counts = (await client.data(SERVICE_COUNTS, s=scene.service))["service"]["executionCounts"]
    assert counts == [{"status": "created", "count": 2}, {"status": "terminated", "count": 1}]
    theirs = (await client.data(SERVICE_COUNTS, s=other))["service"]["executionCounts"]
    assert theirs == [{"status": "created", "count": 1}]
    project = (await client.data(PROJECT_COUNTS, p=scene.world.project))["project"]
    assert project["executionCounts"] == [
        {"status": "created", "count": 3}, {"status": "terminated", "count": 1}]  # fmt: skip
    rival = await make_world(member, org="rival")
    assert await _attempt(rival.client, SERVICE_COUNTS, s=scene.service) == "NOT_FOUND"
    own = await _service(rival.client, rival.project)
    mine = (await rival.client.data(SERVICE_COUNTS, s=own))["service"]
    assert mine["executionCounts"] == []


async def test_a_projects_executions_filter_by_the_trigger_that_made_them(member):
    scene = await _scene(member)
    client = scene.world.client
    trigger = await _create(client, scene.world.project, scene.service)
    invoked = await client.data(INVOKE_TRIGGER, t=trigger["id"], r=scene.item["id"])
    await client.data(EXECUTE, s=scene.service, input={"function": "echo", "input": {}})
    found = await client.data(
        BY_TRIGGER, p=scene.world.project, filter={"triggerId": trigger["id"]}
    )
    assert found["project"]["executions"]["nodes"] == [
        {"id": invoked["invokeTrigger"]["id"], "triggerId": trigger["id"]}]  # fmt: skip
    rival = await make_world(member, org="rival")
    theirs = await rival.client.data(
        BY_TRIGGER, p=rival.project, filter={"triggerId": trigger["id"]}
    )
    assert theirs["project"]["executions"]["nodes"] == []


COMMANDS = """query($p: ID!, $types: [String!]) { project(id: $p) {
  commands(types: $types) { nodes { id type status } } } }"""
COMMAND_UPDATES = """subscription($c: ID, $p: ID) { commandUpdated(commandId: $c, projectId: $p) {
  id status progress } }"""
DELIVERY_UPDATES = """subscription($p: ID!, $w: ID) {
  webhookDeliveryUpdated(projectId: $p, webhookId: $w) { id webhookId state attemptCount } }"""
CREATE_VERSION = """mutation($d: ID!, $name: String!) {
  createDatasetVersion(datasetId: $d, input: {name: $name}) { command { id } } }"""
CLONE = """mutation($d: ID!) { cloneDataset(datasetId: $d, input: {name: "copy"}) { id } }"""


async def _subscribed(app, n: int) -> None:
    async def subscribers() -> int:
        return len(app.state.feed.subscribers)

    await eventually(subscribers, lambda count: count >= n)


async def _error_code(server: str, key: str, query: str, **variables) -> str:
    async with subscribe(server, key, query, **variables) as subscription:
        message = await subscription.next()
    errors = message["payload"] if message["type"] == "error" else message["payload"]["errors"]
    return errors[0]["extensions"]["code"]


async def test_a_projects_commands_are_listed_newest_first_and_stream_live_to_it_alone(
    member, db, redis, settings, app, server
):
    world = await make_world(member)
    version = await world.client.data(CREATE_VERSION, d=world.dataset, name="v1")
    clone = (await world.client.data(CLONE, d=world.dataset))["cloneDataset"]
    listed = (await world.client.data(COMMANDS, p=world.project))["project"]["commands"]
    assert [(c["id"], c["type"]) for c in listed["nodes"]] == [
        (clone["id"], "datasetClone"),
        (version["createDatasetVersion"]["command"]["id"], "datasetVersion"),
    ]
    only = await world.client.data(COMMANDS, p=world.project, types=["datasetVersion"])
    assert [c["type"] for c in only["project"]["commands"]["nodes"]] == ["datasetVersion"]
    rival = await make_world(member, org="rival")
    assert await _attempt(rival.client, COMMANDS, p=world.project) == "NOT_FOUND"
    theirs = await rival.client.data(COMMANDS, p=rival.project)
    assert theirs["project"]["commands"]["nodes"] == []
    assert await _error_code(server, rival.client.key, COMMAND_UPDATES, p=world.project) == (
        "NOT_FOUND"
    )
    assert await _error_code(server, world.client.key, COMMAND_UPDATES) == "BAD_USER_INPUT"
    await app.state.feed.ready()
    async with (
        subscribe(server, world.client.key, COMMAND_UPDATES, p=world.project) as mine,
        subscribe(server, rival.client.key, COMMAND_UPDATES, "2", p=rival.project) as other,
    ):
        await _subscribed(app, 2)
        await run_command_here(db, redis, settings, clone["id"])
        seen = []
        while not seen or seen[-1]["status"] != "success":
            message = await mine.next()
            seen.append(message["payload"]["data"]["commandUpdated"])
        assert {update["id"] for update in seen} == {clone["id"]}
        assert seen[-1]["progress"] == 100
        # The rival's first update is of its own command: none of ours came before it.
        own = (await rival.client.data(CLONE, d=rival.dataset))["cloneDataset"]
        first = await other.next()
        assert first["payload"]["data"]["commandUpdated"]["id"] == own["id"]


async def test_a_projects_webhook_deliveries_stream_live_to_it_alone(member, app, server):
    world = await make_world(member)
    webhook, _ = await _webhook(world.client, world.project)
    rival = await make_world(member, org="rival")
    assert await _error_code(server, rival.client.key, DELIVERY_UPDATES, p=world.project) == (
        "NOT_FOUND"
    )
    mine = {"p": world.project, "w": webhook["id"]}
    assert await _error_code(server, rival.client.key, DELIVERY_UPDATES, p=rival.project,
                             w=webhook["id"]) == "NOT_FOUND"  # fmt: skip
    await app.state.feed.ready()
    async with (
        subscribe(server, world.client.key, DELIVERY_UPDATES, **mine) as updates,
        subscribe(server, rival.client.key, DELIVERY_UPDATES, "2", p=rival.project) as other,
    ):
        await _subscribed(app, 2)
        pinged = (await world.client.data(PING, id=webhook["id"]))["pingWebhook"]
        message = await updates.next()
        assert message["payload"]["data"]["webhookDeliveryUpdated"] == {
            "id": pinged["id"], "webhookId": webhook["id"], "state": "pending",
            "attemptCount": 0,
        }  # fmt: skip
        own, _ = await _webhook(rival.client, rival.project)
        theirs = (await rival.client.data(PING, id=own["id"]))["pingWebhook"]
        first = await other.next()
        assert first["payload"]["data"]["webhookDeliveryUpdated"]["id"] == theirs["id"]
