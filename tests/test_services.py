"""Services: create, change, delete, with their validation and tenancy."""

import pytest

from tests.datasets_world import make_world
from tests.snapshots import snapshot
from tests.test_executions import CREATE_SERVICE, EXECUTE

UPDATE = """mutation($id: ID!, $input: ServiceChangesInput!) {
  updateService(id: $id, input: $input) { name functions concurrency executionTimeout
    maxAttempts onReset active } }"""
DELETE = "mutation($id: ID!) { deleteService(id: $id) }"
SERVICES = """query($p: ID!) { project(id: $p) { services { totalCount nodes { name } } } }"""
SERVICE = "query($id: ID!) { service(id: $id) { name functions onReset } }"


async def _service(world, **fields) -> str:
    service = {"name": "tools", "functions": ["echo"], **fields}
    return (await world.client.data(CREATE_SERVICE, p=world.project, input=service))[
        "createService"
    ]["id"]


async def test_service_is_created_listed_changed_and_deleted(member):
    world = await make_world(member)
    service = await _service(world, onReset="failed")
    listed = await world.client.data(SERVICES, p=world.project)
    assert listed["project"]["services"] == {"totalCount": 1, "nodes": [{"name": "tools"}]}
    changed = await world.client.data(
        UPDATE,
        id=service,
        input={"functions": ["sleeper", "echo"], "maxAttempts": 5, "active": False},
    )
    assert changed["updateService"] == {
        "name": "tools",
        "functions": ["echo", "sleeper"],
        "concurrency": 10,
        "executionTimeout": 3600,
        "maxAttempts": 5,
        "onReset": "failed",
        "active": False,
    }
    assert (await world.client.data(DELETE, id=service))["deleteService"] is True
    assert await world.client.code(SERVICE, id=service) == "NOT_FOUND"


@pytest.mark.parametrize(
    "bad",
    [
        {"functions": []},
        {"functions": ["echo"], "onReset": "explode"},
        {"functions": ["echo"], "maxAttempts": 0},
        {"functions": ["echo"], "executionTimeout": 0},
        {"functions": ["echo"], "concurrency": 100_000},
    ],
    ids=["no-functions", "bad-on-reset", "zero-attempts", "zero-timeout", "huge-concurrency"],
)
async def test_bad_service_input_is_refused_and_nothing_is_written(member, db, bad):
    world = await make_world(member)
    before = await snapshot(db)
    error = await world.client.error(CREATE_SERVICE, p=world.project, input={"name": "s", **bad})
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert await snapshot(db) == before


async def test_duplicate_service_name_is_a_conflict(member, db):
    world = await make_world(member)
    await _service(world)
    before = await snapshot(db)
    code = await world.client.code(
        CREATE_SERVICE, p=world.project, input={"name": "tools", "functions": ["echo"]}
    )
    assert code == "CONFLICT"
    assert await snapshot(db) == before


async def test_an_inactive_service_refuses_executions(member, db):
    world = await make_world(member)
    service = await _service(world)
    await world.client.data(UPDATE, id=service, input={"active": False})
    before = await snapshot(db)
    assert await world.client.code(EXECUTE, s=service, input={"function": "echo"}) == "CONFLICT"
    assert await snapshot(db) == before


async def test_a_service_with_queued_executions_cannot_be_deleted(member, db):
    world = await make_world(member)
    service = await _service(world)
    await world.client.data(EXECUTE, s=service, input={"function": "echo"})
    before = await snapshot(db)
    assert await world.client.code(DELETE, id=service) == "CONFLICT"
    assert await snapshot(db) == before


async def test_another_orgs_services_are_not_found_and_unchanged(member, db):
    world = await make_world(member)
    service = await _service(world)
    stranger = await make_world(member, org="beta")
    before = await snapshot(db)
    assert await stranger.client.code(SERVICE, id=service) == "NOT_FOUND"
    assert await stranger.client.code(UPDATE, id=service, input={"active": False}) == "NOT_FOUND"
    assert await stranger.client.code(DELETE, id=service) == "NOT_FOUND"
    code = await stranger.client.code(
        CREATE_SERVICE, p=world.project, input={"name": "x", "functions": ["echo"]}
    )
    assert code == "NOT_FOUND"
    assert await stranger.client.code(SERVICES, p=world.project) == "NOT_FOUND"
    assert await snapshot(db) == before


@pytest.mark.parametrize(
    ("project_role", "allowed"),
    [("OWNER", True), ("DEVELOPER", True), ("ANNOTATION_MANAGER", False), ("ANNOTATOR", False)],
)
async def test_only_project_owners_and_developers_manage_services_and_execute(
    member, db, project_role, allowed
):
    world = await make_world(member)
    service = await _service(world)
    caller, doc = await member("acme", "member")
    await world.client.data(
        """mutation($p: ID!, $u: ID!, $r: ProjectRole!) {
          addProjectMember(projectId: $p, userId: $u, role: $r) { role } }""",
        p=world.project,
        u=str(doc["userId"]),
        r=project_role,
    )
    assert (await caller.data(SERVICE, id=service))["service"]["name"] == "tools"
    before = await snapshot(db)
    create = await caller.execute(
        CREATE_SERVICE, p=world.project, input={"name": "mine", "functions": ["echo"]}
    )
    execute = await caller.execute(EXECUTE, s=service, input={"function": "echo"})
    if allowed:
        assert not create.get("errors")
        assert not execute.get("errors")
    else:
        assert create["errors"][0]["extensions"]["code"] == "FORBIDDEN"
        assert execute["errors"][0]["extensions"]["code"] == "FORBIDDEN"
        assert await snapshot(db) == before
