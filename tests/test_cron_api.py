"""The cron API: create, read, list, change and delete cron triggers; schedule, read, list and
cancel one-off runs; read fire records.

Every field goes in and comes back out; bad input of every kind is BAD_USER_INPUT naming its
field and leaves the database as it was; roles follow MANAGE_TRIGGERS; another organization's
users see NOT_FOUND for every one of these, and nothing of them leaks. Nothing here runs a
worker: firing is tests/test_cron_firing.py's (fire records here are written as the scheduler
writes them).
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from bson import ObjectId

from resolvers.timestamps import now
from tests.datasets_world import CREATE_PROJECT, World, make_world
from tests.graphql_client import GraphQLClient
from tests.snapshots import snapshot
from tests.test_executions import CREATE_SERVICE
from tests.test_roles import ALL_CASES, _attempt
from tests.test_trigger_api import ADD_PROJECT_MEMBER, MANAGES

OPERATION = "operation { type serviceId functionName input service { id } }"
CRON_FIELDS = f"""id projectId name active cron timezone startAt endAt nextRunAt toleranceS
  missedPolicy input {OPERATION} createdAt updatedAt"""
CREATE = f"""mutation($p: ID!, $input: CronTriggerInput!) {{
  createCronTrigger(projectId: $p, input: $input) {{ {CRON_FIELDS} }} }}"""
UPDATE = f"""mutation($id: ID!, $input: CronTriggerChangesInput!) {{
  updateCronTrigger(id: $id, input: $input) {{ {CRON_FIELDS} }} }}"""
DELETE = "mutation($id: ID!) { deleteCronTrigger(id: $id) }"
CRON_TRIGGER = f"query($id: ID!) {{ cronTrigger(id: $id) {{ {CRON_FIELDS} }} }}"
PROJECT_CRON_TRIGGERS = """query($p: ID!, $first: Int, $after: String) { project(id: $p) {
  cronTriggers(first: $first, after: $after) { totalCount pageInfo { hasNextPage endCursor }
    nodes { id name } } } }"""
FIRES = """query($id: ID!, $first: Int, $after: String) { cronTrigger(id: $id) {
  fires(first: $first, after: $after) { totalCount pageInfo { hasNextPage endCursor }
    nodes { id cronTriggerId scheduledAt firedAt latenessMs status reason deliveryId
      execution { id function } } } } }"""
RUN_FIELDS = f"""id projectId at {OPERATION} input toleranceS status firedAt latenessMs reason
  deliveryId execution {{ id }} createdAt updatedAt"""
SCHEDULE = f"""mutation($p: ID!, $at: DateTime!, $operation: TriggerOperationInput!,
    $input: JSON, $toleranceS: Int) {{
  scheduleRun(projectId: $p, at: $at, operation: $operation, input: $input,
    toleranceS: $toleranceS) {{ {RUN_FIELDS} }} }}"""
CANCEL = "mutation($id: ID!) { cancelScheduledRun(id: $id) { id status } }"
SCHEDULED_RUN = f"query($id: ID!) {{ scheduledRun(id: $id) {{ {RUN_FIELDS} }} }}"
PROJECT_RUNS = """query($p: ID!, $first: Int, $after: String) { project(id: $p) {
  scheduledRuns(first: $first, after: $after) { totalCount pageInfo { hasNextPage endCursor }
    nodes { id at status } } } }"""
NODE = """query($id: ID!) { node(id: $id) { id __typename
  ... on CronTrigger { name } ... on CronFire { fireStatus: status execution { id } }
  ... on ScheduledRun { runStatus: status } } }"""


@dataclass
class Scene:
    """Org "acme" (`world`, its owner calling) with a service "hooks" (echo, sleeper); a second
    project of the org with a service of its own; org "beta" with a project and a service."""

    world: World
    service: str
    other_project_service: str
    beta: World
    beta_service: str


async def _service(client: GraphQLClient, project: str, name: str = "hooks") -> str:
    created = await client.data(
        CREATE_SERVICE, p=project, input={"name": name, "functions": ["echo", "sleeper"]}
    )
    return created["createService"]["id"]


async def _scene(member) -> Scene:
    world = await make_world(member)
    service = await _service(world.client, world.project)
    other = (await world.client.data(CREATE_PROJECT, org=world.org, name="Lidar"))["createProject"][
        "id"
    ]
    other_service = await _service(world.client, other, "lidar hooks")
    beta = await make_world(member, org="beta")
    return Scene(world, service, other_service, beta, await _service(beta.client, beta.project))


def _definition(service: str, **fields: Any) -> dict[str, Any]:
    return {
        "name": "nightly",
        "cron": "0 3 * * *",
        "operation": {"serviceId": service, "functionName": "echo", "input": {"job": "n"}},
        **fields,
    }


async def _create(scene: Scene, **fields: Any) -> dict[str, Any]:
    created = await scene.world.client.data(
        CREATE, p=scene.world.project, input=_definition(scene.service, **fields)
    )
    return created["createCronTrigger"]


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text)


# --- Cron triggers ---------------------------------------------------------------------------


async def test_a_cron_trigger_keeps_every_field_and_schedules_its_next_tick(member, db):
    scene = await _scene(member)
    start, end = "2026-03-01T00:00:00+00:00", "2030-01-01T00:00:00+00:00"

    created = await _create(
        scene,
        timezone="Asia/Kolkata",
        startAt=start,
        endAt=end,
        input={"extra": True},
        toleranceS=30,
        missedPolicy="runOnce",
    )

    assert {
        key: created[key] for key in created if key not in ("id", "createdAt", "updatedAt")
    } == {
        "projectId": scene.world.project,
        "name": "nightly",
        "active": True,
        "cron": "0 3 * * *",
        "timezone": "Asia/Kolkata",
        "startAt": start,
        "endAt": end,
        "nextRunAt": created["nextRunAt"],
        "toleranceS": 30,
        "missedPolicy": "runOnce",
        "input": {"extra": True},
        "operation": {
            "type": "function",
            "serviceId": scene.service,
            "functionName": "echo",
            "input": {"job": "n"},
            "service": {"id": scene.service},
        },
    }
    next_run_at = _at(created["nextRunAt"])
    assert datetime.now(UTC) < next_run_at <= datetime.now(UTC) + timedelta(days=1)
    assert (next_run_at.hour, next_run_at.minute) == (21, 30)  # 03:00 in Kolkata, UTC+05:30
    assert (await scene.world.client.data(CRON_TRIGGER, id=created["id"]))["cronTrigger"] == created
    stored = await db.cron_triggers.find_one({"_id": ObjectId(created["id"])})
    assert stored["operation"]["serviceId"] == ObjectId(scene.service)
    assert stored["nextRunAt"] == next_run_at


async def test_defaults_and_a_six_field_cron(member):
    scene = await _scene(member)

    created = await _create(scene, cron="*/5   * * * * *")

    assert (created["cron"], created["timezone"], created["toleranceS"]) == (
        "*/5 * * * * *",
        "UTC",
        60,
    )
    assert (created["missedPolicy"], created["input"], created["startAt"], created["endAt"]) == (
        "skip",
        {},
        None,
        None,
    )
    assert _at(created["nextRunAt"]).second % 5 == 0


async def test_changes_reschedule_only_when_the_schedule_changes(member, db):
    scene = await _scene(member)
    created = await _create(scene)
    client = scene.world.client

    renamed = await client.data(UPDATE, id=created["id"], input={"name": "renamed"})
    assert renamed["updateCronTrigger"]["nextRunAt"] == created["nextRunAt"]

    hourly = (await client.data(UPDATE, id=created["id"], input={"cron": "0 * * * *"}))[
        "updateCronTrigger"
    ]
    assert _at(hourly["nextRunAt"]) - datetime.now(UTC) <= timedelta(hours=1)
    assert _at(hourly["nextRunAt"]).minute == 0

    paused = (await client.data(UPDATE, id=created["id"], input={"active": False}))[
        "updateCronTrigger"
    ]
    assert (paused["active"], paused["nextRunAt"]) == (False, None)
    resumed = (await client.data(UPDATE, id=created["id"], input={"active": True}))[
        "updateCronTrigger"
    ]
    assert resumed["nextRunAt"] == hourly["nextRunAt"]

    windowed = (
        await client.data(
            UPDATE,
            id=created["id"],
            input={"endAt": "2020-01-01T00:00:00Z", "startAt": "2019-01-01T00:00:00Z"},
        )
    )["updateCronTrigger"]
    assert windowed["nextRunAt"] is None  # its window is over
    cleared = (await client.data(UPDATE, id=created["id"], input={"endAt": None}))[
        "updateCronTrigger"
    ]
    assert (cleared["endAt"], cleared["nextRunAt"]) == (None, hourly["nextRunAt"])

    changed = (
        await client.data(
            UPDATE,
            id=created["id"],
            input={
                "operation": {"serviceId": scene.service, "functionName": "sleeper"},
                "input": {"seconds": 0},
                "toleranceS": 5,
                "missedPolicy": "runOnce",
                "timezone": "Europe/Berlin",
            },
        )
    )["updateCronTrigger"]
    assert changed["operation"]["functionName"] == "sleeper"
    assert (changed["input"], changed["toleranceS"], changed["missedPolicy"]) == (
        {"seconds": 0},
        5,
        "runOnce",
    )
    assert changed["timezone"] == "Europe/Berlin"
    assert _at(changed["updatedAt"]) > _at(created["updatedAt"])


async def test_names_are_unique_per_project_and_deleting_keeps_fire_records(member, db):
    scene = await _scene(member)
    created = await _create(scene)
    client = scene.world.client
    await _create_fire(db, created["id"], scene.world, now() - timedelta(minutes=1))
    before = await snapshot(db)

    taken = await client.error(CREATE, p=scene.world.project, input=_definition(scene.service))
    other = await _create(scene, name="other")
    renamed = await client.error(UPDATE, id=other["id"], input={"name": "nightly"})

    assert [taken["extensions"]["code"], renamed["extensions"]["code"]] == ["CONFLICT"] * 2
    assert taken["extensions"]["field"] == "name"
    await client.data(DELETE, id=other["id"])
    assert await snapshot(db) == before

    assert (await client.data(DELETE, id=created["id"]))["deleteCronTrigger"] is True
    gone = await client.error(CRON_TRIGGER, id=created["id"])
    assert gone["extensions"]["code"] == "NOT_FOUND"
    assert await db.cron_fires.count_documents({"cronTriggerId": ObjectId(created["id"])}) == 1


async def test_project_cron_triggers_page_by_name(member):
    scene = await _scene(member)
    for name in ("c", "a", "b"):
        await _create(scene, name=name)

    first = (await scene.world.client.data(PROJECT_CRON_TRIGGERS, p=scene.world.project, first=2))[
        "project"
    ]["cronTriggers"]
    rest = (
        await scene.world.client.data(
            PROJECT_CRON_TRIGGERS,
            p=scene.world.project,
            first=2,
            after=first["pageInfo"]["endCursor"],
        )
    )["project"]["cronTriggers"]

    assert [node["name"] for node in first["nodes"] + rest["nodes"]] == ["a", "b", "c"]
    assert (first["totalCount"], first["pageInfo"]["hasNextPage"]) == (3, True)
    assert rest["pageInfo"]["hasNextPage"] is False


BadInput = Callable[[Scene], dict[str, Any]]

BAD_CREATES: dict[str, tuple[BadInput, str]] = {
    "four-fields": (lambda s: {"cron": "* * * *"}, "cron"),
    "minute-61": (lambda s: {"cron": "61 * * * *"}, "cron"),
    "never": (lambda s: {"cron": "0 0 30 2 *"}, "cron"),
    "unknown-zone": (lambda s: {"timezone": "Europe/Atlantis"}, "timezone"),
    "end-before-start": (
        lambda s: {"startAt": "2027-01-02T00:00:00Z", "endAt": "2027-01-01T00:00:00Z"},
        "endAt",
    ),
    "other-project-service": (
        lambda s: {"operation": {"serviceId": s.other_project_service, "functionName": "echo"}},
        "operation.serviceId",
    ),
    "unknown-function": (
        lambda s: {"operation": {"serviceId": s.service, "functionName": "fail"}},
        "operation.functionName",
    ),
    "input-the-function-refuses": (
        lambda s: {
            "operation": {"serviceId": s.service, "functionName": "sleeper"},
            "input": {"seconds": "never"},
        },
        "input",
    ),
    "negative-tolerance": (lambda s: {"toleranceS": -1}, "toleranceS"),
    "blank-name": (lambda s: {"name": "  "}, "name"),
}


def _field(error: dict[str, Any]) -> str:
    extensions = error["extensions"]
    return extensions.get("field") or extensions["fields"][0]["field"]


@pytest.mark.parametrize("case", list(BAD_CREATES))
async def test_bad_cron_triggers_are_refused_and_write_nothing(member, db, case):
    scene = await _scene(member)
    bad, field = BAD_CREATES[case]
    before = await snapshot(db)

    error = await scene.world.client.error(
        CREATE, p=scene.world.project, input=_definition(scene.service, **bad(scene))
    )

    assert error["extensions"]["code"] == "BAD_USER_INPUT", error
    assert _field(error) == field
    assert await snapshot(db) == before


@pytest.mark.parametrize("case", list(BAD_CREATES))
async def test_bad_changes_are_refused_and_write_nothing(member, db, case):
    scene = await _scene(member)
    created = await _create(scene)
    bad, field = BAD_CREATES[case]
    before = await snapshot(db)

    error = await scene.world.client.error(UPDATE, id=created["id"], input=bad(scene))

    assert error["extensions"]["code"] == "BAD_USER_INPUT", error
    assert _field(error) == field
    assert await snapshot(db) == before


async def test_another_orgs_service_is_not_found_as_a_made_up_one_is(member, db):
    scene = await _scene(member)
    before = await snapshot(db)
    for service in (scene.beta_service, str(ObjectId())):
        error = await scene.world.client.error(
            CREATE, p=scene.world.project, input=_definition(service)
        )
        assert (error["extensions"]["code"], error["message"]) == ("NOT_FOUND", "Service not found")
    assert await snapshot(db) == before


# --- Fire records ----------------------------------------------------------------------------


async def _create_fire(
    db, trigger: str, world: World, scheduled_at: datetime, **fields: Any
) -> ObjectId:
    """A fire record as the scheduler writes it (tests/test_cron_firing.py makes real ones)."""
    project = await db.projects.find_one({"_id": ObjectId(world.project)})
    record = {
        "_id": ObjectId(),
        "orgId": project["orgId"],
        "projectId": project["_id"],
        "cronTriggerId": ObjectId(trigger),
        "scheduledAt": scheduled_at,
        "firedAt": None,
        "latenessMs": 70_000,
        "status": "missed",
        "reason": "later than its tolerance",
        "executionId": None,
        "deliveryId": None,
        "worker": "test",
        **fields,
    }
    await db.cron_fires.insert_one(record)
    return record["_id"]


async def test_fires_page_newest_first_with_their_executions(member, db):
    scene = await _scene(member)
    trigger = await _create(scene)
    execution = (
        await scene.world.client.data(
            """mutation($s: ID!, $input: ExecuteInput!) { execute(serviceId: $s, input: $input) {
              id } }""",
            s=scene.service,
            input={"function": "echo"},
        )
    )["execute"]["id"]
    base = now().replace(microsecond=0) - timedelta(hours=3)
    await _create_fire(db, trigger["id"], scene.world, base)
    fired = await _create_fire(
        db,
        trigger["id"],
        scene.world,
        base + timedelta(hours=1),
        status="fired",
        reason=None,
        latenessMs=12,
        firedAt=base + timedelta(hours=1, milliseconds=12),
        executionId=ObjectId(execution),
    )
    await _create_fire(
        db, trigger["id"], scene.world, base + timedelta(hours=2), status="failed", reason="gone"
    )

    first = (await scene.world.client.data(FIRES, id=trigger["id"], first=2))["cronTrigger"][
        "fires"
    ]
    rest = (
        await scene.world.client.data(
            FIRES, id=trigger["id"], first=2, after=first["pageInfo"]["endCursor"]
        )
    )["cronTrigger"]["fires"]

    nodes = first["nodes"] + rest["nodes"]
    assert [node["status"] for node in nodes] == ["failed", "fired", "missed"]
    assert nodes[1] == {
        "id": str(fired),
        "cronTriggerId": trigger["id"],
        "scheduledAt": (base + timedelta(hours=1)).isoformat(),
        "firedAt": (base + timedelta(hours=1, milliseconds=12)).isoformat(),
        "latenessMs": 12,
        "status": "fired",
        "reason": None,
        "deliveryId": None,
        "execution": {"id": execution, "function": "echo"},
    }
    assert (nodes[0]["reason"], nodes[0]["execution"]) == ("gone", None)
    assert (first["totalCount"], rest["pageInfo"]["hasNextPage"]) == (3, False)
    node = (await scene.world.client.data(NODE, id=str(fired)))["node"]
    assert node == {
        "id": str(fired),
        "__typename": "CronFire",
        "fireStatus": "fired",
        "execution": {"id": execution},
    }


# --- Scheduled runs --------------------------------------------------------------------------


async def _schedule(scene: Scene, at: datetime, **fields: Any) -> dict[str, Any]:
    operation = {"serviceId": scene.service, "functionName": "echo", "input": {"once": 1}}
    scheduled = await scene.world.client.data(
        SCHEDULE, p=scene.world.project, at=at.isoformat(), operation=operation, **fields
    )
    return scheduled["scheduleRun"]


async def test_a_scheduled_run_keeps_its_fields_and_can_be_cancelled_once(member, db):
    scene = await _scene(member)
    at = now().replace(microsecond=0) + timedelta(hours=1)

    run = await _schedule(scene, at, input={"more": 2}, toleranceS=10)

    assert {key: run[key] for key in run if key not in ("id", "createdAt", "updatedAt")} == {
        "projectId": scene.world.project,
        "at": at.isoformat(),
        "operation": {
            "type": "function",
            "serviceId": scene.service,
            "functionName": "echo",
            "input": {"once": 1},
            "service": {"id": scene.service},
        },
        "input": {"more": 2},
        "toleranceS": 10,
        "status": "scheduled",
        "firedAt": None,
        "latenessMs": None,
        "reason": None,
        "deliveryId": None,
        "execution": None,
    }
    assert (await scene.world.client.data(SCHEDULED_RUN, id=run["id"]))["scheduledRun"] == run
    assert (await scene.world.client.data(NODE, id=run["id"]))["node"]["runStatus"] == "scheduled"

    cancelled = await scene.world.client.data(CANCEL, id=run["id"])
    assert cancelled["cancelScheduledRun"] == {"id": run["id"], "status": "cancelled"}
    again = await scene.world.client.error(CANCEL, id=run["id"])
    assert again["extensions"]["code"] == "CONFLICT"
    stored = await db.scheduled_runs.find_one({"_id": ObjectId(run["id"])})
    assert stored["status"] == "cancelled"


async def test_a_claimed_run_can_no_longer_be_cancelled(member, db):
    scene = await _scene(member)
    run = await _schedule(scene, now())
    await db.scheduled_runs.update_one({"_id": ObjectId(run["id"])}, {"$set": {"claimedAt": now()}})

    error = await scene.world.client.error(CANCEL, id=run["id"])

    assert error["extensions"]["code"] == "CONFLICT"
    assert (await db.scheduled_runs.find_one({"_id": ObjectId(run["id"])}))["status"] == (
        "scheduled"
    )


async def test_project_scheduled_runs_page_latest_first(member):
    scene = await _scene(member)
    base = now().replace(microsecond=0)
    for hours in (1, 3, 2):
        await _schedule(scene, base + timedelta(hours=hours))

    page = (await scene.world.client.data(PROJECT_RUNS, p=scene.world.project, first=2))["project"][
        "scheduledRuns"
    ]
    rest = (
        await scene.world.client.data(
            PROJECT_RUNS, p=scene.world.project, first=2, after=page["pageInfo"]["endCursor"]
        )
    )["project"]["scheduledRuns"]

    ats = [_at(node["at"]) for node in page["nodes"] + rest["nodes"]]
    assert ats == [base + timedelta(hours=hours) for hours in (3, 2, 1)]
    assert page["totalCount"] == 3


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"operation": {"serviceId": "x", "functionName": "echo"}}, "operation.serviceId"),
        ({"operation": {"serviceId": "OTHER", "functionName": "echo"}}, "operation.serviceId"),
        ({"operation": {"serviceId": "SERVICE", "functionName": "nope"}}, "operation.functionName"),
        (
            {
                "operation": {"serviceId": "SERVICE", "functionName": "sleeper"},
                "input": {"steps": 0},
            },
            "input",
        ),
        ({"toleranceS": -5}, "toleranceS"),
    ],
)
async def test_bad_scheduled_runs_are_refused_and_write_nothing(member, db, fields, field):
    scene = await _scene(member)
    variables = {
        "p": scene.world.project,
        "at": now().isoformat(),
        "operation": {"serviceId": scene.service, "functionName": "echo"},
        **fields,
    }
    named = {"SERVICE": scene.service, "OTHER": scene.other_project_service}
    variables["operation"] = {
        **variables["operation"],
        "serviceId": named.get(variables["operation"]["serviceId"], "x"),
    }
    before = await snapshot(db)

    error = await scene.world.client.error(SCHEDULE, **variables)

    assert error["extensions"]["code"] == "BAD_USER_INPUT", error
    assert _field(error) == field
    assert await snapshot(db) == before


# --- Roles -----------------------------------------------------------------------------------


async def test_managing_cron_triggers_and_runs_follows_the_role_table(member, db):
    founder, founder_doc = await member("acme", "owner")
    org = str(founder_doc["orgId"])
    project = (await founder.data(CREATE_PROJECT, org=org, name="Main"))["createProject"]["id"]
    service = await _service(founder, project)
    world = World(founder, org, project, "")
    scene = Scene(world, service, "", world, "")
    outcomes: dict[str, dict[str, str | None]] = {}
    for case in ALL_CASES:
        client, doc = await member("acme", case.org_role.value)
        if case.project_role is not None:
            await founder.data(
                ADD_PROJECT_MEMBER,
                project=project,
                user=str(doc["userId"]),
                role=case.project_role.name,
            )
        trigger = (await _create(scene, name=f"for {case.id}"))["id"]
        run = (await _schedule(scene, now() + timedelta(hours=1)))["id"]
        operation = {"serviceId": service, "functionName": "echo"}
        before = await snapshot(db)
        attempts = {
            "read": await _attempt(client, CRON_TRIGGER, id=trigger),
            "list": await _attempt(client, PROJECT_CRON_TRIGGERS, p=project),
            "read run": await _attempt(client, SCHEDULED_RUN, id=run),
            "list runs": await _attempt(client, PROJECT_RUNS, p=project),
            "fires": await _attempt(client, FIRES, id=trigger),
            "create": await _attempt(
                client, CREATE, p=project, input=_definition(service, name=case.id)
            ),
            "update": await _attempt(client, UPDATE, id=trigger, input={"toleranceS": 7}),
            "schedule": await _attempt(
                client, SCHEDULE, p=project, at=now().isoformat(), operation=operation
            ),
            "cancel": await _attempt(client, CANCEL, id=run),
        }
        if MANAGES[case.id] is not None:
            assert await snapshot(db) == before, case.id
        attempts["delete"] = await _attempt(client, DELETE, id=trigger)
        still_there = await db.cron_triggers.count_documents({"_id": ObjectId(trigger)})
        assert still_there == (MANAGES[case.id] is not None), case.id
        outcomes[case.id] = attempts

    invisible = {"org-member", "org-worker"}
    reads = ("read", "list", "read run", "list runs", "fires")
    writes = ("create", "update", "schedule", "cancel", "delete")
    assert outcomes == {
        case: {
            **dict.fromkeys(reads, "NOT_FOUND" if case in invisible else None),
            **dict.fromkeys(writes, expected),
        }
        for case, expected in MANAGES.items()
    }


# --- Tenancy ---------------------------------------------------------------------------------


async def test_another_organization_sees_nothing_of_them(member, db):
    scene = await _scene(member)
    trigger = await _create(scene)
    fire = await _create_fire(db, trigger["id"], scene.world, now())
    run = await _schedule(scene, now() + timedelta(hours=1))
    outsider = scene.beta.client
    operation = {"serviceId": scene.beta_service, "functionName": "echo"}
    before = await snapshot(db)

    refused = {
        "cronTrigger": await _attempt(outsider, CRON_TRIGGER, id=trigger["id"]),
        "fires": await _attempt(outsider, FIRES, id=trigger["id"]),
        "scheduledRun": await _attempt(outsider, SCHEDULED_RUN, id=run["id"]),
        "project.cronTriggers": await _attempt(
            outsider, PROJECT_CRON_TRIGGERS, p=scene.world.project
        ),
        "project.scheduledRuns": await _attempt(outsider, PROJECT_RUNS, p=scene.world.project),
        "createCronTrigger": await _attempt(
            outsider, CREATE, p=scene.world.project, input=_definition(scene.beta_service)
        ),
        "updateCronTrigger": await _attempt(
            outsider, UPDATE, id=trigger["id"], input={"name": "x"}
        ),
        "deleteCronTrigger": await _attempt(outsider, DELETE, id=trigger["id"]),
        "scheduleRun": await _attempt(
            outsider, SCHEDULE, p=scene.world.project, at=now().isoformat(), operation=operation
        ),
        "cancelScheduledRun": await _attempt(outsider, CANCEL, id=run["id"]),
    }

    assert refused == dict.fromkeys(refused, "NOT_FOUND")
    for node_id in (trigger["id"], str(fire), run["id"]):
        assert (await outsider.data(NODE, id=node_id))["node"] is None
    # Its own project lists none of them; acme's service cannot be named from beta's project.
    own = (await outsider.data(PROJECT_CRON_TRIGGERS, p=scene.beta.project))["project"]
    assert own["cronTriggers"]["totalCount"] == 0
    runs = (await outsider.data(PROJECT_RUNS, p=scene.beta.project))["project"]
    assert runs["scheduledRuns"]["totalCount"] == 0
    borrowed = await outsider.error(CREATE, p=scene.beta.project, input=_definition(scene.service))
    assert borrowed["extensions"]["code"] == "NOT_FOUND"
    assert await snapshot(db) == before
