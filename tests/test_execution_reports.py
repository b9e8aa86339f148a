"""Progress and log lines are coalesced into few writes, and the last state is always stored."""

import asyncio
import time
from datetime import timedelta

from bson import ObjectId

from resolvers import execution_runs
from resolvers.executions import Status
from tests.datasets_world import make_world
from tests.test_executions import FAST, _ended, _execute, _service, _until
from tests.workers import worker_processes
from triggers import execution_reports
from triggers.execution_reports import Reports

LINES = 1000
REPORTS = 10_000


async def _claimed(db, world) -> dict:
    service = await _service(world)
    execution = ObjectId(await _execute(world, service, "echo"))
    waiting = await execution_runs.waiting_among(db, [execution])
    runs, _ = await execution_runs.claim(db, waiting, [0], "test", timedelta(seconds=30))
    return runs[0]


async def test_a_chatty_functions_reports_are_coalesced_and_the_last_state_is_stored(member, db):
    world = await make_world(member)
    run = await _claimed(db, world)
    writes = 0
    match = [{"$match": {"documentKey._id": run["_id"], "operationType": "update"}}]
    async with await db.executions.watch(match) as changes:
        reports = Reports(db, run)
        began = time.monotonic()
        for n in range(REPORTS):
            await reports.progress(n * 100 // REPORTS, f"step {n}")
            if n % (REPORTS // LINES) == 0:
                reports.log.info("line %d", n // (REPORTS // LINES))
            if n % 100 == 0:
                await asyncio.sleep(0)  # the function lets others run now and then
        progress, lines = await reports.settle()
        elapsed = time.monotonic() - began
        await execution_runs.write(
            db, [execution_runs.end(run, Status.FAILED, progress=progress, lines=lines)]
        )
        while True:
            change = await asyncio.wait_for(changes.next(), 10)
            writes += 1
            if change["updateDescription"]["updatedFields"].get("status") == "failed":
                break
    allowed = execution_reports.WRITES_PER_WINDOW * (1 + elapsed / execution_reports.WINDOW_S)
    assert writes - 1 <= allowed  # the reports' writes, besides the one that ended the run
    done = await db.executions.find_one({"_id": run["_id"]})
    assert done["logs"] == [f"INFO line {n}" for n in range(LINES)]
    assert done["progress"] == {"percent": 99, "message": f"step {REPORTS - 1}"}


async def test_a_tight_progress_loop_on_a_worker_costs_a_handful_of_writes(member, db, settings):
    world = await make_world(member)
    service = await _service(world)
    with worker_processes(settings, **FAST) as start:
        start()
        match = [{"$match": {"operationType": "update"}}]
        async with await db.executions.watch(match, full_document="required") as changes:
            execution = await _execute(world, service, "sleeper", seconds=0, steps=1000)
            writes = 0
            async for change in changes:
                writes += 1
                if _ended(change["fullDocument"]):
                    break
        done = await _until(db, execution, _ended)
    assert done["status"] == "success"
    assert done["progress"] == {"percent": 100, "message": "done"}
    # claim, a few coalesced reports (and maybe a lease renewal), end — not 1,000 writes
    assert writes <= 2 + 2 * execution_reports.WRITES_PER_WINDOW
