"""The loop in every worker that fires cron triggers and one-off scheduled runs, each tick
exactly once however many workers run it.

A round finds the active cron triggers whose `nextRunAt` has come (index `active, nextRunAt`)
and claims each with ONE atomic `find_one_and_update` keyed by (trigger id, `nextRunAt` as
read): the write that wins moves `nextRunAt` past now and, in the same document, lists what
the claim decided for every tick it covers as `pendingFires` — run it, or record it missed.
Every other worker's claim of that tick matches nothing. The claimant then carries the list
out: it fires each run through `triggers/firing.py fire`, keyed `<trigger>:cron:<tick>`,
upserts one record per tick into `cron_fires` (unique on trigger and tick) and removes the
entries it carried out. A worker that dies anywhere in between leaves its entries behind; any
worker's round completes entries older than `PENDING_GRACE`, and since the key makes `fire`
find what an earlier call made and the records are upserts, completing twice changes nothing.

Usually a claim covers one tick. After a downtime it covers every tick since `nextRunAt`:
ticks within `toleranceS` of now all run; older ones are missed — all of them (`skip`), or
all but the latest, which runs once (`runOnce`, when no tick is on time). At most
`MAX_MISSED_RECORDED` missed ticks are recorded one by one; the record after them stands for
the rest of the gap (a per-second trigger down for a day would otherwise write 86,400).

Scheduled runs are claimed the same way, one document each: `claimedAt` is set by the write
that wins, the run fires with key `<run>:scheduled`, and its outcome is written on the run.
"""

import logging
from datetime import datetime, timedelta
from typing import Any

from bson import ObjectId
from pymongo import ReturnDocument, UpdateOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError
from redis.asyncio import Redis

from resolvers.cron_triggers import FireStatus, MissedPolicy, with_payload
from resolvers.scheduled_runs import RunStatus
from resolvers.timestamps import now
from triggers.cron.schedule import Schedule
from triggers.firing import OperationUnavailable, fire

log = logging.getLogger("loom.cron")

DUE_PER_ROUND = 100
MAX_MISSED_RECORDED = 100
MAX_ON_TIME = 1000
"""Ticks run by one claim at most (a per-second trigger with an hour's tolerance, after a
pause): the rest of the window is skipped, not queued up."""
PENDING_GRACE = timedelta(seconds=5)
"""A claimed tick not carried out this long after its claim is completed by any worker."""
DUPLICATE_KEY = 11000


def schedule_of(trigger: dict[str, Any]) -> Schedule:
    return Schedule(trigger["cron"], trigger["timezone"], trigger["startAt"], trigger["endAt"])


def _ms(delta: timedelta) -> int:
    return int(delta.total_seconds() * 1000)


def decide(
    trigger: dict[str, Any], moment: datetime
) -> tuple[list[dict[str, Any]], datetime | None]:
    """What a claim at `moment` does: the pending entries of the ticks from `nextRunAt` to
    `moment` (what to run, what to record missed) and the `nextRunAt` after them."""
    schedule = schedule_of(trigger)
    first: datetime = trigger["nextRunAt"]
    cutoff = moment - timedelta(seconds=trigger["toleranceS"])
    late = schedule.ticks_between(first, cutoff, MAX_MISSED_RECORDED + 1)
    late = [tick for tick in late if tick < cutoff]  # lateness == tolerance is still on time
    on_time = schedule.ticks_between(max(first, cutoff), moment, MAX_ON_TIME)
    gap_after = late[MAX_MISSED_RECORDED] if len(late) > MAX_MISSED_RECORDED else None
    late = late[:MAX_MISSED_RECORDED]
    catch_up = None
    if not on_time and late and trigger["missedPolicy"] == MissedPolicy.runOnce:
        catch_up = schedule.last_before(cutoff, first)
    run = list(on_time) if catch_up is None else [catch_up]
    entries = [_entry(tick, moment, "missed") for tick in late if tick != catch_up]
    if gap_after is not None and gap_after != catch_up:
        reason = f"missed, with every later tick until {cutoff.isoformat()} (not listed)"
        entries.append(_entry(gap_after, moment, "missed", reason))
    entries += [_entry(tick, moment, "run") for tick in run]
    return entries, schedule.next_after(moment)


def _entry(
    tick: datetime, moment: datetime, action: str, reason: str | None = None
) -> dict[str, Any]:
    if action == "missed" and reason is None:
        reason = "later than its tolerance"
    return {
        "_id": ObjectId(),
        "scheduledAt": tick,
        "action": action,
        "claimedAt": moment,
        "latenessMs": _ms(moment - tick),
        "reason": reason,
    }


async def claim(
    db: AsyncDatabase, trigger: dict[str, Any], moment: datetime, worker_id: str
) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
    """Claim the due ticks of a trigger as read: the trigger as claimed and the entries of
    this claim, or None if another worker (or a change of the trigger) got there first."""
    entries, next_run_at = decide(trigger, moment)
    claimed = await db.cron_triggers.find_one_and_update(
        {"_id": trigger["_id"], "active": True, "nextRunAt": trigger["nextRunAt"]},
        {
            "$set": {"nextRunAt": next_run_at, "claimedBy": worker_id},
            "$push": {"pendingFires": {"$each": entries}},
        },
        return_document=ReturnDocument.AFTER,
    )
    return None if claimed is None else (claimed, entries)


async def complete(
    db: AsyncDatabase,
    redis: Redis,
    trigger: dict[str, Any],
    entries: list[dict[str, Any]],
    worker_id: str,
) -> None:
    """Carry out claimed entries: fire the runs, record every tick, drop the entries."""
    records = [await _record(db, redis, trigger, entry, worker_id) for entry in entries]
    upserts = [
        UpdateOne(
            {"cronTriggerId": trigger["_id"], "scheduledAt": record["scheduledAt"]},
            {"$setOnInsert": record},
            upsert=True,
        )
        for record in records
    ]
    try:
        await db.cron_fires.bulk_write(upserts, ordered=False)
    except BulkWriteError as exc:  # two workers completing the same entry: one record stays
        if any(error["code"] != DUPLICATE_KEY for error in exc.details["writeErrors"]):
            raise
    await db.cron_triggers.update_one(
        {"_id": trigger["_id"]},
        {"$pull": {"pendingFires": {"_id": {"$in": [entry["_id"] for entry in entries]}}}},
    )


async def _record(
    db: AsyncDatabase,
    redis: Redis,
    trigger: dict[str, Any],
    entry: dict[str, Any],
    worker_id: str,
) -> dict[str, Any]:
    record = {
        "_id": entry["_id"],
        "orgId": trigger["orgId"],
        "projectId": trigger["projectId"],
        "cronTriggerId": trigger["_id"],
        "scheduledAt": entry["scheduledAt"],
        "firedAt": None,
        "latenessMs": entry["latenessMs"],
        "status": str(FireStatus.missed),
        "reason": entry["reason"],
        "executionId": None,
        "deliveryId": None,
        "worker": worker_id,
    }
    if entry["action"] != "run":
        return record
    owner = {**trigger, "operation": with_payload(trigger["operation"], trigger["input"])}
    key = f"{trigger['_id']}:cron:{entry['scheduledAt'].isoformat()}"
    fired_at = now()
    record.update(firedAt=fired_at, latenessMs=_ms(fired_at - entry["scheduledAt"]))
    try:
        outcome = await fire(db, redis, owner, key=key, resource=None, cronFireId=entry["_id"])
    except OperationUnavailable as exc:
        log.warning("cron trigger %s could not fire: %s", trigger["_id"], exc)
        return {**record, "status": str(FireStatus.failed), "reason": str(exc)}
    return {**record, **outcome, "status": str(FireStatus.fired), "reason": None}


async def fire_due_triggers(db: AsyncDatabase, redis: Redis, worker_id: str) -> int:
    """One round over cron triggers: complete abandoned claims, then claim and carry out the
    due ticks. How many ticks it carried out."""
    moment = now()
    done = 0
    abandoned = db.cron_triggers.find(
        {"pendingFires.claimedAt": {"$lt": moment - PENDING_GRACE}}
    ).limit(DUE_PER_ROUND)
    async for trigger in abandoned:
        stale = [e for e in trigger["pendingFires"] if e["claimedAt"] < moment - PENDING_GRACE]
        log.warning("completing %d abandoned fires of cron trigger %s", len(stale), trigger["_id"])
        await complete(db, redis, trigger, stale, worker_id)
        done += len(stale)
    due = db.cron_triggers.find({"active": True, "nextRunAt": {"$lte": moment}})
    async for trigger in due.sort("nextRunAt", 1).limit(DUE_PER_ROUND):
        claimed = await claim(db, trigger, moment, worker_id)
        if claimed is not None:
            await complete(db, redis, *claimed, worker_id)
            done += len(claimed[1])
    return done


async def fire_due_runs(db: AsyncDatabase, redis: Redis, worker_id: str) -> int:
    """One round over scheduled runs: each due one (or one whose claimant vanished) is claimed
    by one write, then missed or fired. How many it settled."""
    moment = now()
    query = {
        "status": str(RunStatus.scheduled),
        "at": {"$lte": moment},
        "$or": [{"claimedAt": None}, {"claimedAt": {"$lt": moment - PENDING_GRACE}}],
    }
    settled = 0
    async for run in db.scheduled_runs.find(query).sort("at", 1).limit(DUE_PER_ROUND):
        lateness = moment - run["at"]
        late = lateness > timedelta(seconds=run["toleranceS"]) and run["claimedAt"] is None
        changes: dict[str, Any] = (
            {"status": str(RunStatus.missed), "latenessMs": _ms(lateness)}
            if late
            else {"claimedAt": moment, "claimedBy": worker_id}
        )
        claimed = await db.scheduled_runs.find_one_and_update(
            {"_id": run["_id"], "status": str(RunStatus.scheduled), "claimedAt": run["claimedAt"]},
            {"$set": {**changes, "updatedAt": moment}},
            return_document=ReturnDocument.AFTER,
        )
        if claimed is None:
            continue
        settled += 1
        if not late:
            await _fire_run(db, redis, claimed)
    return settled


async def _fire_run(db: AsyncDatabase, redis: Redis, run: dict[str, Any]) -> None:
    owner = {**run, "operation": with_payload(run["operation"], run["input"])}
    fired_at = now()
    outcome: dict[str, Any] = {"firedAt": fired_at, "latenessMs": _ms(fired_at - run["at"])}
    try:
        key = f"{run['_id']}:scheduled"
        made = await fire(db, redis, owner, key=key, resource=None, scheduledRunId=run["_id"])
        outcome.update(made, status=str(RunStatus.fired))
    except OperationUnavailable as exc:
        outcome.update(status=str(RunStatus.failed), reason=str(exc))
    await db.scheduled_runs.update_one(
        {"_id": run["_id"], "status": str(RunStatus.scheduled)},
        {"$set": {**outcome, "updatedAt": now()}},
    )


async def fire_due(ctx: dict[str, Any]) -> None:
    """The worker's round (triggers/worker.py): cron triggers, then scheduled runs."""
    await fire_due_triggers(ctx["db"], ctx["redis"], ctx["worker_id"])
    await fire_due_runs(ctx["db"], ctx["redis"], ctx["worker_id"])
