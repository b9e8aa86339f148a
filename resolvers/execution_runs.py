"""The worker's side of an execution's life in MongoDB: claim, lease, report, end, hand back,
reap — each a conditional write, batched over the executions one worker holds.

Concurrency slots. A running execution holds a slot number of its service, 0 ≤ slot <
concurrency, and a unique index on (serviceId, slot) over running executions only
(`status: inProgress`, an integer slot) refuses a second claim of a taken slot. The slot is
part of the execution's own state: the write that claims an execution takes its slot, and the
write that ends it (or hands it back, or reaps it) frees the slot — no slot document to keep
in step, no slot a dead worker can leak, and no hot document every worker rewrites: two
workers collide only when they pick the same free number at the same moment, and a worker
prefers the numbers it has just freed itself.

A run is named by its claim (an ObjectId written with it), not by its worker: every write of a
run is conditional on `{_id, claim, status: inProgress}`, so a run that was reaped, or
terminated and claimed again, can never end the new one.
"""

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from bson import ObjectId
from pymongo import ReturnDocument, UpdateOne
from pymongo.asynchronous.cursor import AsyncCursor
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError

from resolvers import execution_results
from resolvers.executions import MAX_LOG_LINES, Status, status_entry
from resolvers.services import OnReset
from resolvers.timestamps import now

DUPLICATE_KEY = 11000
RUN_FIELDS = {
    "serviceId": 1,
    "function": 1,
    "input": 1,
    "resource": 1,
    "timeout": 1,
    "attempts": 1,
    "maxAttempts": 1,
    "onReset": 1,
    "eventId": 1,
    "orderKey": 1,
    "orderSeq": 1,
    "projectId": 1,
    "creator": 1,
    **dict.fromkeys(execution_results.RUN_FIELDS, 1),
}
"""What a worker reads of an execution to run it (and where its outcome goes besides:
resolvers/execution_results.py)."""
UNFINISHED = [str(Status.CREATED), str(Status.IN_PROGRESS)]
HANDED_BACK = "handed back"
RUNNING_IN_A_SLOT = {"status": str(Status.IN_PROGRESS), "slot": {"$type": "int"}}
"""The executions the slot index holds (gateway/indexes.py): a query naming this uses it."""


def _ours(execution: dict[str, Any]) -> dict[str, Any]:
    return {"_id": execution["_id"], "claim": execution["claim"], "status": str(Status.IN_PROGRESS)}


def _all_ours(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The runs among `runs` that are still theirs: claims are unique, so an execution whose
    claim is one of theirs is one of them."""
    return {
        "_id": {"$in": [run["_id"] for run in runs]},
        "claim": {"$in": [run["claim"] for run in runs]},
        "status": str(Status.IN_PROGRESS),
    }


async def service_state(db: AsyncDatabase, service_id: ObjectId) -> dict[str, Any] | None:
    """The service's `active` and `concurrency`, and under `running` the slots its running
    executions hold, in one read; None if there is no such service."""
    pipeline = [
        {"$match": {"_id": service_id}},
        {"$project": {"active": 1, "concurrency": 1}},
        {
            "$lookup": {
                "from": "executions",
                "pipeline": [
                    {"$match": {"serviceId": service_id, **RUNNING_IN_A_SLOT}},
                    {"$project": {"_id": 0, "slot": 1}},
                ],
                "as": "running",
            }
        },
    ]
    found = await (await db.services.aggregate(pipeline)).to_list()
    if not found:
        return None
    state = found[0]
    state["running"] = {row.get("slot") for row in state["running"]}
    return state


async def waiting_among(db: AsyncDatabase, ids: list[ObjectId]) -> list[dict[str, Any]]:
    """Those of `ids` still `created`, with what a run needs, oldest first."""
    query = {"_id": {"$in": ids}, "status": str(Status.CREATED)}
    return await db.executions.find(query, RUN_FIELDS).sort("_id", 1).to_list()


async def resources_of(
    db: AsyncDatabase, executions: list[dict[str, Any]]
) -> dict[tuple[str, ObjectId], dict[str, Any]]:
    """The items, datasets and annotations the executions are about, one read per kind."""
    wanted: dict[str, list[ObjectId]] = {}
    for execution in executions:
        if (reference := execution["resource"]) is not None:
            wanted.setdefault(reference["type"], []).append(reference["id"])
    found: dict[tuple[str, ObjectId], dict[str, Any]] = {}
    for kind, ids in wanted.items():
        async for doc in db[f"{kind}s"].find({"_id": {"$in": ids}}):
            found[(kind, doc["_id"])] = doc
    return found


async def events_of(
    db: AsyncDatabase, executions: list[dict[str, Any]]
) -> dict[ObjectId, dict[str, Any]]:
    """The events that made the executions a trigger created, one read."""
    ids = [execution["eventId"] for execution in executions if execution.get("eventId")]
    if not ids:
        return {}
    fields = {"resource": 1, "resourceId": 1, "action": 1, "before": 1, "after": 1, "time": 1}
    return {doc["_id"]: doc async for doc in db.events.find({"_id": {"$in": ids}}, fields)}


def _first_in_each_order(keys: list[str]) -> list[dict[str, Any]]:
    """The unfinished execution first in line of each order (an ordered trigger's executions
    of one resource, `orderKey`, in event order, `orderSeq`)."""
    return [
        {"$match": {"orderKey": {"$in": keys}, "status": {"$in": UNFINISHED}}},
        {"$sort": {"orderKey": 1, "orderSeq": 1}},
        {
            "$group": {
                "_id": "$orderKey",
                "head": {"$first": "$_id"},
                "status": {"$first": "$status"},
                "serviceId": {"$first": "$serviceId"},
            }
        },
    ]


async def first_in_line(db: AsyncDatabase, executions: list[dict[str, Any]]) -> set[ObjectId]:
    """Of executions in an order, those that may run now: nothing before them in their order
    is unfinished. The others wait until the one before them ends (`next_in_line`)."""
    keys = list({execution["orderKey"] for execution in executions})
    pipeline = _first_in_each_order(keys)
    return {row["head"] async for row in await db.executions.aggregate(pipeline)}


async def next_in_line(db: AsyncDatabase, keys: list[str]) -> list[dict[str, Any]]:
    """The executions now first in line of these orders that wait to be queued."""
    pipeline = _first_in_each_order(list(set(keys)))
    return [
        {"_id": row["head"], "serviceId": row["serviceId"]}
        async for row in await db.executions.aggregate(pipeline)
        if row["status"] == str(Status.CREATED)
    ]


def _abort_update(reason: str) -> dict[str, Any]:
    return {
        "$set": {"status": str(Status.ABORTED), "error": reason, "updatedAt": now()},
        "$push": {"statusLog": status_entry(Status.ABORTED, reason)},
    }


async def abort(db: AsyncDatabase, reasons: dict[ObjectId, str], before: datetime) -> None:
    """Abort waiting executions, each with its reason, unless queued again since `before`
    (a rerun after its service came back must not be aborted on an older look at it)."""
    if reasons:
        await db.executions.bulk_write(
            [
                UpdateOne(
                    {"_id": i, "status": str(Status.CREATED), "updatedAt": {"$lt": before}},
                    _abort_update(reason),
                )
                for i, reason in reasons.items()
            ],
            ordered=False,
        )


async def abort_orphans(db: AsyncDatabase, service_id: ObjectId) -> int:
    """Abort the waiting executions of a service that no longer exists; how many there were."""
    aborted = await db.executions.update_many(
        {"serviceId": service_id, "status": str(Status.CREATED)},
        _abort_update("its service was deleted before it started"),
    )
    return aborted.modified_count


def claiming(
    waiting: list[dict[str, Any]], slots: list[int], worker: str, lease: timedelta
) -> tuple[list[UpdateOne], list[dict[str, Any]]]:
    """The writes that move waiting executions of one service to `inProgress` for this
    worker, the n-th in slot `slots[n]` (as many as there are slots), and the runs they make
    (the documents as claimed)."""
    moment = now()
    ops, runs = [], []
    for execution, slot in zip(waiting, slots, strict=False):
        fields = {
            "status": str(Status.IN_PROGRESS),
            "worker": worker,
            "claim": ObjectId(),
            "slot": slot,
            "leaseUntil": moment + lease,
            "startedAt": moment,
            "updatedAt": moment,
        }
        ops.append(
            UpdateOne(
                {"_id": execution["_id"], "status": str(Status.CREATED)},
                {
                    "$set": fields,
                    "$inc": {"attempts": 1},
                    "$push": {"statusLog": status_entry(Status.IN_PROGRESS, f"on {worker}")},
                },
            )
        )
        runs.append({**execution, **fields, "attempts": execution["attempts"] + 1})
    return ops, runs


async def end_and_claim(
    db: AsyncDatabase, ends: list[UpdateOne], claims: list[UpdateOne], runs: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], int]:
    """Write the ends of runs, then claims (`claiming`), in one ordered command: an end frees
    its slot before a claim in the same command takes it, so a worker hands its slots from
    one page to the next with one majority write per page instead of two. Returns (the runs
    now held, how many claims were tried): a claim refused by the slot index stops the
    command there, and it and the claims after it were not tried (their executions still
    wait). An execution that was no longer `created` is among neither the held nor the
    untried."""
    if not ends and not claims:
        return [], 0
    tried = len(claims)
    try:
        result = await db.executions.bulk_write([*ends, *claims], ordered=True)
        modified = result.modified_count
    except BulkWriteError as exc:
        errors = exc.details["writeErrors"]
        if exc.details.get("writeConcernErrors") or len(errors) != 1:
            raise
        if errors[0]["code"] != DUPLICATE_KEY or errors[0]["index"] < len(ends):
            raise
        tried = errors[0]["index"] - len(ends)
        modified = exc.details["nModified"]
    held = runs[:tried]
    if modified < len(ends) + len(held) and held:
        claimed = set(await db.executions.distinct("_id", _all_ours(held)))
        held = [run for run in held if run["_id"] in claimed]
    return held, tried


async def claim(
    db: AsyncDatabase,
    waiting: list[dict[str, Any]],
    slots: list[int],
    worker: str,
    lease: timedelta,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Claim waiting executions of one service, the n-th in slot `slots[n]`, with one write.
    Returns (runs, refused): the runs this worker now holds, and the executions not claimed
    because a slot was taken first (still waiting)."""
    ops, runs = claiming(waiting, slots, worker, lease)
    held, tried = await end_and_claim(db, [], ops, runs)
    return held, waiting[tried : len(ops)]


def end(
    execution: dict[str, Any],
    status: Status,
    *,
    output: Any = None,
    error: str | None = None,
    progress: dict[str, Any] | None = None,
    lines: Iterable[str] = (),
) -> UpdateOne:
    """The write that records the end of a run, with the progress and log lines it reported
    last (not yet written), if it is still this run's."""
    moment = now()
    fields: dict[str, Any] = {
        "status": str(status),
        "output": output,
        "error": error,
        "leaseUntil": None,
        "duration": (moment - execution["startedAt"]).total_seconds(),
        "updatedAt": moment,
    }
    if status == Status.SUCCESS:
        fields["progress"] = {"percent": 100, "message": "done"}
    elif progress is not None:
        fields["progress"] = progress
    pushed: dict[str, Any] = {"statusLog": status_entry(status, error or "")}
    if lines := list(lines):
        pushed["logs"] = {"$each": lines, "$slice": -MAX_LOG_LINES}
    return UpdateOne(_ours(execution), {"$set": fields, "$push": pushed})


async def write(db: AsyncDatabase, ops: list[UpdateOne]) -> None:
    """Many runs' writes in one command; each applies only if its run is still the holder."""
    if ops:
        await db.executions.bulk_write(ops, ordered=False)


async def report(
    db: AsyncDatabase,
    execution: dict[str, Any],
    progress: dict[str, Any] | None,
    lines: list[str],
) -> None:
    """Store a run's latest progress and its new log lines in one write."""
    update: dict[str, Any] = {}
    if progress is not None:
        update["$set"] = {"progress": progress, "updatedAt": now()}
    if lines:
        update["$push"] = {"logs": {"$each": lines, "$slice": -MAX_LOG_LINES}}
    if update:
        await db.executions.update_one(_ours(execution), update)


async def renew(
    db: AsyncDatabase, runs: list[dict[str, Any]], lease: timedelta
) -> tuple[set[ObjectId], set[ObjectId]]:
    """Renew the leases of a worker's runs in one write; (claims whose termination was
    requested, claims no longer this worker's — reaped, or ended by someone else)."""
    mine = _all_ours(runs)
    await db.executions.update_many(mine, {"$set": {"leaseUntil": now() + lease}})
    held = {
        doc["claim"]: doc.get("terminateRequested", False)
        async for doc in db.executions.find(mine, {"claim": 1, "terminateRequested": 1})
    }
    claims = {run["claim"] for run in runs}
    return {claim for claim, asked in held.items() if asked}, claims - set(held)


async def hand_back(db: AsyncDatabase, runs: list[dict[str, Any]], reason: str) -> set[ObjectId]:
    """A stopping worker returns the runs it will not finish: back to `created` at once — the
    attempt not counted, the slot freed — to be queued again, instead of waiting for their
    leases to lapse and the reaper to count them as lost. A run whose termination was
    requested ends `terminated` instead. Returns the ids handed back."""
    if not runs:
        return set()
    mine = _all_ours(runs)
    await db.executions.update_many(
        {**mine, "terminateRequested": {"$ne": True}},
        {
            "$set": {
                "status": str(Status.CREATED),
                "worker": None,
                "claim": None,
                "slot": None,
                "leaseUntil": None,
                "startedAt": None,
                "updatedAt": now(),
            },
            "$inc": {"attempts": -1},
            "$push": {"statusLog": status_entry(Status.CREATED, f"{HANDED_BACK}: {reason}")},
        },
    )
    stopping = {doc["_id"] async for doc in db.executions.find(mine, {"_id": 1})}
    await write(
        db,
        [end(run, Status.TERMINATED, error="terminated") for run in runs if run["_id"] in stopping],
    )
    return {run["_id"] for run in runs} - stopping


async def reap(db: AsyncDatabase) -> list[dict[str, Any]]:
    """Executions whose worker died: back to `created` (to be queued again) when their service
    says rerun and attempts remain, else failed. Safe to run in every worker at once."""
    requeue = []
    lapsed = {"status": str(Status.IN_PROGRESS), "leaseUntil": {"$lt": now()}}
    async for execution in db.executions.find(lapsed):
        updated = await _reap_one(db, execution)
        if updated is not None and updated["status"] == Status.CREATED:
            requeue.append(updated)
    return requeue


async def _reap_one(db: AsyncDatabase, execution: dict[str, Any]) -> dict[str, Any] | None:
    """Release a lost execution (its slot with it) unless another reaper already did."""
    retry = (
        execution["onReset"] == OnReset.RERUN and execution["attempts"] < execution["maxAttempts"]
    )
    status = Status.CREATED if retry else Status.FAILED
    fields: dict[str, Any] = {"status": str(status), "leaseUntil": None, "updatedAt": now()}
    if not retry:
        fields["error"] = (
            f"The worker was lost on all {execution['attempts']} attempts"
            if execution["onReset"] == OnReset.RERUN
            else "The worker running this execution stopped (onReset: failed)"
        )
    entry = status_entry(status, "worker lost; rerunning" if retry else "worker lost; not rerun")
    return await db.executions.find_one_and_update(
        {
            "_id": execution["_id"],
            "status": str(Status.IN_PROGRESS),
            "leaseUntil": execution["leaseUntil"],
        },
        {"$set": fields, "$push": {"statusLog": entry}},
        projection={"serviceId": 1, "status": 1},
        return_document=ReturnDocument.AFTER,
    )


def waiting(db: AsyncDatabase, unchanged_since: datetime | None = None) -> AsyncCursor:
    """Executions still `created` (unchanged since `unchanged_since`, if given), with their
    service: each must be in its service's queue."""
    query: dict[str, Any] = {"status": str(Status.CREATED)}
    if unchanged_since is not None:
        query["updatedAt"] = {"$lt": unchanged_since}
    return db.executions.find(query, {"serviceId": 1})
