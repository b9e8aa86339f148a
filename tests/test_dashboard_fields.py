"""The fields a dashboard reads (the console is one): a project's permissions for the caller,
as the role tables grant them; each service's execution counts; executions filtered by their
trigger. Each stays inside its tenant."""

from resolvers.access import PROJECT_GRANTS
from tests.datasets_world import make_world
from tests.test_roles import ALL_CASES, _attempt, project_caller, project_outcome, project_visible
from tests.test_trigger_api import INVOKE_TRIGGER, _create, _scene, _service

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
