"""Cron triggers and scheduled runs fired by real worker processes: every tick exactly once
across workers, ticks later than their tolerance missed and not run, the missed policy after a
downtime, one-off runs fired once; and, in-process, the completion of a claim whose worker
died, a fire whose operation cannot start, and retention.

A downtime is staged by writing a trigger's `nextRunAt` (and window) as a trigger created
hours ago would hold it, before any worker runs: waiting hours for real ones would prove no
more."""

from datetime import datetime, timedelta
from typing import Any

import pytest
from bson import ObjectId

from resolvers.timestamps import now
from tests.datasets_world import make_world
from tests.test_cron_api import CREATE, SCHEDULE, SCHEDULED_RUN
from tests.test_executions import CREATE_SERVICE
from tests.test_trigger_api import UPDATE_SERVICE
from tests.waiting import eventually
from tests.workers import worker_processes
from triggers.cron.retention import remove_old_fires
from triggers.cron.scheduler import PENDING_GRACE, fire_due_runs, fire_due_triggers
from triggers.firing import fire

FAST = {"LOOM_EXECUTION_LEASE_S": "2", "LOOM_REAPER_INTERVAL_S": "0.5"}


class Scene:
    """A project with a service running echo (and sleeper), its owner calling."""

    def __init__(self, world: Any, db: Any, service: str) -> None:
        self.world, self.db, self.service = world, db, service

    @classmethod
    async def make(cls, member: Any, db: Any) -> "Scene":
        world = await make_world(member)
        service = {"name": "cron", "functions": ["echo", "sleeper"], "concurrency": 10}
        created = await world.client.data(CREATE_SERVICE, p=world.project, input=service)
        return cls(world, db, created["createService"]["id"])

    async def cron_trigger(self, cron: str, **fields: Any) -> ObjectId:
        definition = {
            "name": fields.pop("name", "tick"),
            "cron": cron,
            "operation": {"serviceId": self.service, "functionName": "echo", "input": {"a": 1}},
            **fields,
        }
        created = await self.world.client.data(CREATE, p=self.world.project, input=definition)
        return ObjectId(created["createCronTrigger"]["id"])

    async def as_if_down_since(self, trigger: ObjectId, next_run_at: datetime, **fields) -> None:
        """Give the trigger the state of one whose workers stopped before `next_run_at`."""
        await self.db.cron_triggers.update_one(
            {"_id": trigger}, {"$set": {"active": True, "nextRunAt": next_run_at, **fields}}
        )

    async def settled(self, trigger: ObjectId) -> dict[str, Any]:
        """Wait until the trigger has nothing left to run (past its endAt) or to complete."""
        return await eventually(
            lambda: self.db.cron_triggers.find_one({"_id": trigger}),
            lambda doc: doc["nextRunAt"] is None and not doc["pendingFires"],
            within_s=60,
        )

    async def fires(self, trigger: ObjectId) -> list[dict[str, Any]]:
        return (
            await self.db.cron_fires.find({"cronTriggerId": trigger}).sort("scheduledAt").to_list()
        )

    async def executions(self, owner: ObjectId) -> list[dict[str, Any]]:
        return await self.db.executions.find({"triggerId": owner}).to_list()


def _whole_second(moment: datetime) -> datetime:
    return moment.replace(microsecond=0)


async def test_three_workers_fire_every_second_of_thirty_exactly_once(member, db, settings):
    scene = await Scene.make(member, db)
    with worker_processes(settings, **FAST) as start:
        for _ in range(3):
            start()
        await eventually(lambda: db.workers.count_documents({}), lambda count: count == 3)
        first = _whole_second(now()) + timedelta(seconds=2)
        last = first + timedelta(seconds=29)
        trigger = await scene.cron_trigger(
            "* * * * * *", startAt=first.isoformat(), endAt=last.isoformat(), input={"b": 2}
        )

        await scene.settled(trigger)
        fires = await scene.fires(trigger)
        executions = await eventually(
            lambda: scene.executions(trigger),
            lambda found: len(found) == 30 and all(e["status"] == "success" for e in found),
        )

    assert [fire["scheduledAt"] for fire in fires] == [
        first + timedelta(seconds=n) for n in range(30)
    ]
    assert {fire["status"] for fire in fires} == {"fired"}
    assert max(fire["latenessMs"] for fire in fires) < 60_000
    # One execution per tick, each the one its fire names, each given the merged input.
    assert sorted(e["_id"] for e in executions) == sorted(fire["executionId"] for fire in fires)
    assert {e["cronFireId"] for e in executions} == {fire["_id"] for fire in fires}
    assert len({e["triggerKey"] for e in executions}) == 30
    assert {tuple(sorted(e["input"].items())) for e in executions} == {(("a", 1), ("b", 2))}
    assert {e["output"]["b"] for e in executions} == {2}


async def test_ticks_later_than_their_tolerance_are_missed_and_not_run(member, db, settings):
    scene = await Scene.make(member, db)
    trigger = await scene.cron_trigger("* * * * * *", active=False, toleranceS=2)
    down_since = _whole_second(now()) - timedelta(seconds=10)
    await scene.as_if_down_since(trigger, down_since, endAt=down_since + timedelta(seconds=9))

    with worker_processes(settings, **FAST) as start:
        start()
        await scene.settled(trigger)
        fires = await scene.fires(trigger)

    assert [fire["scheduledAt"] for fire in fires] == [
        down_since + timedelta(seconds=n) for n in range(10)
    ]
    for fire_record in fires:
        late = fire_record["latenessMs"] > 2000
        assert fire_record["status"] == ("missed" if late else "fired"), fire_record
        assert (fire_record["executionId"] is None) == late
    assert fires[0]["status"] == "missed"  # ten seconds late at least
    fired = [fire_record["executionId"] for fire_record in fires if fire_record["executionId"]]
    assert sorted(e["_id"] for e in await scene.executions(trigger)) == sorted(fired)


@pytest.mark.parametrize("policy", ["skip", "runOnce"])
async def test_after_a_downtime_the_missed_policy_decides(member, db, settings, policy):
    scene = await Scene.make(member, db)
    trigger = await scene.cron_trigger("0 * * * *", active=False, missedPolicy=policy)
    hour = now().replace(minute=0, second=0, microsecond=0)
    down_since = hour - timedelta(hours=5)
    await scene.as_if_down_since(trigger, down_since, endAt=hour - timedelta(minutes=30))

    with worker_processes(settings, **FAST) as start:
        start()
        await scene.settled(trigger)
        fires = await scene.fires(trigger)
        executions = await scene.executions(trigger)

    ticks = [down_since + timedelta(hours=n) for n in range(5)]
    assert [fire_record["scheduledAt"] for fire_record in fires] == ticks
    statuses = [fire_record["status"] for fire_record in fires]
    if policy == "skip":
        assert statuses == ["missed"] * 5
        assert executions == []
    else:
        assert statuses == ["missed"] * 4 + ["fired"]
        assert fires[-1]["latenessMs"] > 3600 * 1000
        assert [e["_id"] for e in executions] == [fires[-1]["executionId"]]
    assert all(fire_record["latenessMs"] > 60_000 for fire_record in fires)


async def test_scheduled_runs_fire_once_unless_missed_or_cancelled(member, db, settings):
    scene = await Scene.make(member, db)
    client = scene.world.client
    operation = {"serviceId": scene.service, "functionName": "echo", "input": {"once": 1}}

    async def schedule(at: datetime, **fields: Any) -> ObjectId:
        run = await client.data(
            SCHEDULE, p=scene.world.project, at=at.isoformat(), operation=operation, **fields
        )
        return ObjectId(run["scheduleRun"]["id"])

    with worker_processes(settings, **FAST) as start:
        for _ in range(2):
            start()
        await eventually(lambda: db.workers.count_documents({}), lambda count: count == 2)
        cancelled = await schedule(now() + timedelta(seconds=1))
        await client.data(
            "mutation($id: ID!) { cancelScheduledRun(id: $id) { id } }", id=str(cancelled)
        )
        missed = await schedule(now() - timedelta(hours=1))
        fired = await schedule(now() + timedelta(seconds=2), input={"more": 2})

        run = await eventually(
            lambda: db.scheduled_runs.find_one({"_id": fired}),
            lambda doc: doc["status"] != "scheduled",
        )
        execution = await eventually(
            lambda: db.executions.find_one({"_id": run["executionId"]}),
            lambda doc: doc and doc["status"] == "success",
        )
        shown = (await client.data(SCHEDULED_RUN, id=str(fired)))["scheduledRun"]
        missed_run = await eventually(
            lambda: db.scheduled_runs.find_one({"_id": missed}),
            lambda doc: doc["status"] != "scheduled",
        )

    assert run["status"] == "fired"
    assert 0 <= run["latenessMs"] < 60_000
    assert await db.executions.count_documents({"scheduledRunId": fired}) == 1
    assert execution["output"] == {"once": 1, "more": 2}
    assert (shown["status"], shown["execution"]) == ("fired", {"id": str(execution["_id"])})
    assert missed_run["status"] == "missed"
    assert missed_run["latenessMs"] >= 3600 * 1000
    assert (await db.scheduled_runs.find_one({"_id": cancelled}))["status"] == "cancelled"
    assert (
        await db.executions.count_documents({"scheduledRunId": {"$in": [missed, cancelled]}}) == 0
    )


# --- In-process: crashes, failures, retention ---------------------------------------------------


async def test_a_claim_whose_worker_died_is_completed_once(member, db, redis):
    """A worker claimed a tick, started its execution and died before recording it: a later
    round completes the claim with that same execution, however many rounds run."""
    scene = await Scene.make(member, db)
    trigger_id = await scene.cron_trigger("* * * * * *", active=False)
    tick = _whole_second(now()) - timedelta(seconds=3)
    entry = {
        "_id": ObjectId(),
        "scheduledAt": tick,
        "action": "run",
        "claimedAt": now() - PENDING_GRACE - timedelta(seconds=1),
        "latenessMs": 40,
        "reason": None,
    }
    await db.cron_triggers.update_one({"_id": trigger_id}, {"$push": {"pendingFires": entry}})
    trigger = await db.cron_triggers.find_one({"_id": trigger_id})
    key = f"{trigger_id}:cron:{tick.isoformat()}"
    started = await fire(db, redis, trigger, key=key, resource=None, cronFireId=entry["_id"])

    for _ in range(2):
        await fire_due_triggers(db, redis, "survivor")

    fires = await scene.fires(trigger_id)
    assert [(f["_id"], f["status"], f["executionId"]) for f in fires] == [
        (entry["_id"], "fired", started["executionId"])
    ]
    assert len(await scene.executions(trigger_id)) == 1
    assert (await db.cron_triggers.find_one({"_id": trigger_id}))["pendingFires"] == []


async def test_a_scheduled_run_whose_worker_died_is_fired_once(member, db, redis):
    scene = await Scene.make(member, db)
    run = await scene.world.client.data(
        SCHEDULE,
        p=scene.world.project,
        at=now().isoformat(),
        operation={"serviceId": scene.service, "functionName": "echo"},
    )
    run_id = ObjectId(run["scheduleRun"]["id"])
    await db.scheduled_runs.update_one(
        {"_id": run_id}, {"$set": {"claimedAt": now() - PENDING_GRACE - timedelta(seconds=1)}}
    )

    for _ in range(2):
        await fire_due_runs(db, redis, "survivor")

    stored = await db.scheduled_runs.find_one({"_id": run_id})
    assert stored["status"] == "fired"
    assert [e["_id"] for e in await scene.executions(run_id)] == [stored["executionId"]]


async def test_a_tick_whose_service_is_inactive_is_recorded_failed(member, db, redis):
    scene = await Scene.make(member, db)
    trigger_id = await scene.cron_trigger("* * * * * *", active=False)
    await scene.world.client.data(UPDATE_SERVICE, id=scene.service, input={"active": False})
    tick = _whole_second(now())
    await scene.as_if_down_since(trigger_id, tick, endAt=tick)

    await fire_due_triggers(db, redis, "test")

    (record,) = await scene.fires(trigger_id)
    assert record["status"] == "failed"
    assert "not active" in record["reason"]
    assert await scene.executions(trigger_id) == []


async def test_retention_removes_old_records_and_keeps_failed_ones_twice_as_long(db):
    moment = now()
    project, org = ObjectId(), ObjectId()

    def fire_record(status: str, days: float) -> dict[str, Any]:
        return {
            "_id": ObjectId(),
            "orgId": org,
            "projectId": project,
            "cronTriggerId": ObjectId(),
            "scheduledAt": moment - timedelta(days=days),
            "status": status,
        }

    def run(status: str, days: float) -> dict[str, Any]:
        return {
            "_id": ObjectId(),
            "projectId": project,
            "status": status,
            "at": moment - timedelta(days=days),
        }

    fires = {
        "recent": fire_record("fired", 1),
        "old fired": fire_record("fired", 8),
        "old missed": fire_record("missed", 8),
        "old failed": fire_record("failed", 8),
        "very old failed": fire_record("failed", 15),
    }
    runs = {
        "recent": run("fired", 1),
        "old fired": run("fired", 8),
        "old cancelled": run("cancelled", 8),
        "old failed": run("failed", 8),
        "very old failed": run("failed", 15),
        "old but still scheduled": run("scheduled", 30),
    }
    await db.cron_fires.insert_many(list(fires.values()))
    await db.scheduled_runs.insert_many(list(runs.values()))

    removed = await remove_old_fires(db, retention_days=7)

    kept_fires = {doc["_id"] async for doc in db.cron_fires.find()}
    kept_runs = {doc["_id"] async for doc in db.scheduled_runs.find()}
    assert kept_fires == {fires[name]["_id"] for name in ("recent", "old failed")}
    assert kept_runs == {
        runs[name]["_id"] for name in ("recent", "old failed", "old but still scheduled")
    }
    assert removed == 6
