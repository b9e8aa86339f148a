"""Executions: one run of a service's function, from `created` to a final status.

MongoDB holds the truth. Every status change is a conditional update, so two workers can never
both run one execution, and a late worker cannot overwrite a termination. A running execution
holds a lease its worker renews; a lapsed lease means a lost worker, and `reap` reruns or fails
the execution according to the service's `onReset`.

    created → inProgress → success | failed | terminated
       └───────────────────────────→ terminated   (terminated before it started)
"""

import asyncio
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from bson import ObjectId
from pydantic import Field
from pymongo import ReturnDocument
from pymongo.asynchronous.cursor import AsyncCursor
from pymongo.asynchronous.database import AsyncDatabase

from resolvers import dql, functions
from resolvers.access import Access, Action
from resolvers.errors import BadUserInput, Conflict
from resolvers.inputs import Input, object_id, parse
from resolvers.pagination import Page, PageRequest, paginate
from resolvers.services import OnReset, get_service
from resolvers.timestamps import new_document, now

MAX_LOG_LINES = 1000
RESOURCES = {"itemId": "items", "datasetId": "datasets", "annotationId": "annotations"}


class Status(StrEnum):
    CREATED = "created"
    IN_PROGRESS = "inProgress"
    SUCCESS = "success"
    FAILED = "failed"
    ABORTED = "aborted"
    TERMINATED = "terminated"


FINAL = [str(s) for s in (Status.SUCCESS, Status.FAILED, Status.ABORTED, Status.TERMINATED)]


class ExecuteInput(Input):
    function: str
    input: dict[str, Any] = Field(default_factory=dict)
    item_id: str | None = None
    dataset_id: str | None = None
    annotation_id: str | None = None


def _entry(status: Status, message: str = "") -> dict[str, Any]:
    return {"status": str(status), "time": now(), "message": message}


async def _resource(access: Access, request: ExecuteInput, project_id: ObjectId) -> dict | None:
    """The one resource the execution is about, visible to the caller and in its project."""
    given = {
        key: value
        for key, value in request.model_dump(by_alias=True).items()
        if key in RESOURCES and value is not None
    }
    if len(given) > 1:
        raise BadUserInput("Name at most one of itemId, datasetId, annotationId")
    if not given:
        return None
    ((key, value),) = given.items()
    doc = await access.visible(
        RESOURCES[key], object_id(value, key), project_field="projectId", entity=key[:-2]
    )
    if doc["projectId"] != project_id:
        raise BadUserInput(f"{key} is not in the service's project", field=key)
    return {"type": RESOURCES[key][:-1], "id": doc["_id"]}


async def runnable(
    access: Access, service_id: ObjectId, function: str, data: Any
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The service (the caller may run it, it is active and has `function`) and the input
    as the function validates it."""
    service = await get_service(access, service_id)
    await access.require_project(service, Action.RUN_EXECUTIONS)
    if function not in service["functions"]:
        raise BadUserInput(
            f"Service {service['name']!r} has no function {function!r}", field="function"
        )
    if not service["active"]:
        raise Conflict(f"Service {service['name']!r} is not active")
    return service, functions.validate_input(function, data)


def new_execution(
    creator: ObjectId,
    service: dict[str, Any],
    function: str,
    execution_input: dict[str, Any],
    resource: dict[str, Any] | None,
    **extra: Any,
) -> dict[str, Any]:
    return new_document(
        creator,
        orgId=service["orgId"],
        projectId=service["projectId"],
        serviceId=service["_id"],
        function=function,
        input=execution_input,
        resource=resource,
        status=str(Status.CREATED),
        statusLog=[_entry(Status.CREATED)],
        attempts=0,
        maxAttempts=service["maxAttempts"],
        onReset=service["onReset"],
        timeout=service["executionTimeout"],
        progress={"percent": 0, "message": ""},
        output=None,
        error=None,
        logs=[],
        duration=None,
        startedAt=None,
        leaseUntil=None,
        worker=None,
        slot=None,
        terminateRequested=False,
        **extra,
    )


async def create_execution(
    access: Access, service_id: ObjectId, data: dict[str, Any]
) -> dict[str, Any]:
    """Validate and record an execution; the caller queues it (its job id is its id)."""
    request = parse(ExecuteInput, data)
    service, execution_input = await runnable(access, service_id, request.function, request.input)
    resource = await _resource(access, request, service["projectId"])
    doc = new_execution(access.user_id, service, request.function, execution_input, resource)
    await access.db.executions.insert_one(doc)
    return doc


async def get_execution(access: Access, execution_id: ObjectId) -> dict[str, Any]:
    return await access.visible(
        "executions", execution_id, project_field="projectId", entity="Execution"
    )


async def list_executions(
    access: Access, query: dict[str, Any], dql_filter: dict[str, Any] | None, page: PageRequest
) -> Page:
    """A page of the executions the caller sees that match `query` and the DQL filter."""
    scoped = {"$and": [await access.scope(), query, dql.to_mongo("executions", dql_filter)]}
    return await paginate(access.db.executions, scoped, page, [("createdAt", -1)])


async def status_counts(access: Access, project_id: ObjectId) -> dict[str, int]:
    """How many of the project's executions are in each status, for dashboards."""
    pipeline = [
        {"$match": {"$and": [{"projectId": project_id}, await access.scope()]}},
        {"$group": {"_id": "$status", "count": {"$sum": 1}}},
        {"$sort": {"_id": 1}},
    ]
    return {
        row["_id"]: row["count"] async for row in await access.db.executions.aggregate(pipeline)
    }


async def terminate(access: Access, execution_id: ObjectId) -> dict[str, Any]:
    """Stop an execution: at once if it has not started, within a heartbeat if it runs."""
    execution = await get_execution(access, execution_id)
    await access.require_project(execution, Action.RUN_EXECUTIONS)
    db = access.db
    stopped = await db.executions.find_one_and_update(
        {"_id": execution_id, "status": str(Status.CREATED)},
        {
            "$set": {"status": str(Status.TERMINATED), "updatedAt": now()},
            "$push": {"statusLog": _entry(Status.TERMINATED, "terminated before it started")},
        },
        return_document=ReturnDocument.AFTER,
    )
    if stopped is not None:
        return stopped
    requested = await db.executions.find_one_and_update(
        {"_id": execution_id, "status": str(Status.IN_PROGRESS)},
        {"$set": {"terminateRequested": True, "updatedAt": now()}},
        return_document=ReturnDocument.AFTER,
    )
    if requested is None:
        raise Conflict(f"The execution is already {execution['status']}")
    return requested


def rerun_update(message: str) -> dict[str, Any]:
    """Back to `created` as the next attempt (one more allowed), the last run's results gone."""
    return {
        "$set": {
            "status": str(Status.CREATED),
            "terminateRequested": False,
            "progress": {"percent": 0, "message": ""},
            "output": None,
            "error": None,
            "updatedAt": now(),
        },
        "$inc": {"maxAttempts": 1},
        "$push": {"statusLog": _entry(Status.CREATED, message)},
    }


async def rerun(access: Access, execution_id: ObjectId) -> dict[str, Any]:
    """Run a finished execution again, as its next attempt; the caller queues it."""
    execution = await get_execution(access, execution_id)
    await access.require_project(execution, Action.RUN_EXECUTIONS)
    service = await access.db.services.find_one({"_id": execution["serviceId"]}, {"active": 1})
    if service is None or not service["active"]:
        state = "deleted" if service is None else "inactive"
        raise Conflict(f"The execution's service is {state}; it cannot run again")
    again = await access.db.executions.find_one_and_update(
        {"_id": execution_id, "status": {"$in": FINAL}},
        rerun_update("rerun requested"),
        return_document=ReturnDocument.AFTER,
    )
    if again is None:
        raise Conflict(f"Only a finished execution can be rerun; it is {execution['status']}")
    return again


# -- the worker's side ------------------------------------------------------------------------


class ServiceBusy(Exception):
    """Every concurrency slot of the execution's service is taken: try again later."""


SLOT_GRACE = timedelta(minutes=1)
"""A slot older than this whose execution is not running was leaked by a dead worker (a claim
takes milliseconds between taking its slot and recording itself in progress)."""


async def _take_slot(
    db: AsyncDatabase, service_id: ObjectId, execution_id: ObjectId, claim_id: ObjectId
) -> dict[str, Any] | None:
    """Take one of the service's concurrency slots for one claim; the service (its `active`
    flag) if taken, None if every slot is taken (or the service is gone).

    One atomic single-document update, no transaction: a busy service's slots never turn
    into a storm of aborted, retried transactions, and the busy path — which the jobs of a
    busy service take again and again — is one round trip that writes nothing. A slot names
    its execution and its claim: a slot a dead worker never gave back is found and freed (see
    `reconcile_slots`), and two jobs racing to claim one execution each give back only their
    own."""
    return await db.services.find_one_and_update(
        {
            "_id": service_id,
            "$expr": {"$lt": [{"$size": {"$ifNull": ["$slots", []]}}, "$concurrency"]},
        },
        {"$push": {"slots": {"execution": execution_id, "claim": claim_id, "at": now()}}},
        projection={"active": 1},
    )


async def _abort(db: AsyncDatabase, execution_id: ObjectId, reason: str) -> None:
    await db.executions.update_one(
        {"_id": execution_id, "status": str(Status.CREATED)},
        {
            "$set": {"status": str(Status.ABORTED), "error": reason, "updatedAt": now()},
            "$push": {"statusLog": _entry(Status.ABORTED, reason)},
        },
    )


async def abort_if_orphaned(db: AsyncDatabase, execution_id: ObjectId) -> bool:
    """Abort a waiting execution whose service no longer exists; whether it was."""
    waiting = await db.executions.find_one(
        {"_id": execution_id, "status": str(Status.CREATED)}, {"serviceId": 1}
    )
    if waiting is None or await db.services.count_documents({"_id": waiting["serviceId"]}):
        return False
    await _abort(db, execution_id, "its service was deleted before it started")
    return True


async def _release_slot(db: AsyncDatabase, service_id: ObjectId, claim_id: ObjectId) -> None:
    await db.services.update_one({"_id": service_id}, {"$pull": {"slots": {"claim": claim_id}}})


async def claim(
    db: AsyncDatabase, execution_id: ObjectId, worker: str, lease: timedelta
) -> dict[str, Any] | None:
    """Move `created` → `inProgress` for this worker, holding one of its service's concurrency
    slots; None if someone else claimed it (or it ended), ServiceBusy when the service already
    runs as many executions as its `concurrency` allows. An execution whose service was
    deactivated while it waited is `aborted` instead, and None returned. A claim cancelled
    midway (its worker stopping) gives its slot back, and hands the execution back if the
    claim itself had landed."""
    waiting = await db.executions.find_one(
        {"_id": execution_id, "status": str(Status.CREATED)}, {"serviceId": 1}
    )
    if waiting is None:
        return None
    claim_id = ObjectId()
    service = await _take_slot(db, waiting["serviceId"], execution_id, claim_id)
    if service is None:
        raise ServiceBusy
    try:
        return await _claim_with_slot(db, waiting, claim_id, service, worker, lease)
    except asyncio.CancelledError:
        mine = {"_id": execution_id, "serviceId": waiting["serviceId"], "slot": claim_id}
        if not await hand_back(db, mine, f"{worker} stopped"):
            await _release_slot(db, waiting["serviceId"], claim_id)
        raise


async def _claim_with_slot(
    db: AsyncDatabase,
    waiting: dict[str, Any],
    claim_id: ObjectId,
    service: dict[str, Any],
    worker: str,
    lease: timedelta,
) -> dict[str, Any] | None:
    execution_id = waiting["_id"]
    if not service["active"]:
        await _abort(db, execution_id, "its service was deactivated before it started")
        await _release_slot(db, waiting["serviceId"], claim_id)
        return None
    moment = now()
    claimed = await db.executions.find_one_and_update(
        {"_id": execution_id, "status": str(Status.CREATED)},
        {
            "$set": {
                "status": str(Status.IN_PROGRESS),
                "worker": worker,
                "slot": claim_id,
                "leaseUntil": moment + lease,
                "startedAt": moment,
                "updatedAt": moment,
            },
            "$inc": {"attempts": 1},
            "$push": {"statusLog": _entry(Status.IN_PROGRESS, f"on {worker}")},
        },
        return_document=ReturnDocument.AFTER,
    )
    if claimed is None:
        await _release_slot(db, waiting["serviceId"], claim_id)
    return claimed


async def reconcile_slots(db: AsyncDatabase) -> None:
    """Free the slots of executions that are no longer running, once past the grace period."""
    old = now() - SLOT_GRACE
    async for service in db.services.find({"slots.at": {"$lt": old}}, {"slots": 1}):
        held = [slot for slot in service["slots"] if slot["at"] < old]
        running = set(
            await db.executions.distinct(
                "slot",
                {
                    "_id": {"$in": [slot["execution"] for slot in held]},
                    "status": str(Status.IN_PROGRESS),
                },
            )
        )
        leaked = [slot.get("claim") for slot in held if slot.get("claim") not in running]
        if leaked:
            await db.services.update_one(
                {"_id": service["_id"]}, {"$pull": {"slots": {"claim": {"$in": leaked}}}}
            )


def _ours(execution: dict[str, Any]) -> dict[str, Any]:
    """The execution as long as it is still this run's: the claim, not the worker, names the
    run — a worker whose run was reaped may claim the execution again while the old run is
    still winding down, and that run must not end the new one."""
    return {"_id": execution["_id"], "slot": execution["slot"], "status": "inProgress"}


async def heartbeat(
    db: AsyncDatabase, execution: dict[str, Any], lease: timedelta
) -> dict[str, Any] | None:
    """Renew the lease; returns the current document (None if the execution is not ours)."""
    return await db.executions.find_one_and_update(
        _ours(execution),
        {"$set": {"leaseUntil": now() + lease}},
        projection={"terminateRequested": 1},
        return_document=ReturnDocument.AFTER,
    )


async def report_progress(
    db: AsyncDatabase, execution: dict[str, Any], percent: int, message: str
) -> None:
    await db.executions.update_one(
        _ours(execution),
        {
            "$set": {
                "progress": {"percent": max(0, min(100, int(percent))), "message": message[:500]},
                "updatedAt": now(),
            }
        },
    )


async def append_log(db: AsyncDatabase, execution: dict[str, Any], line: str) -> None:
    await db.executions.update_one(
        {"_id": execution["_id"]},
        {"$push": {"logs": {"$each": [line[:2000]], "$slice": -MAX_LOG_LINES}}},
    )


async def finish(
    db: AsyncDatabase,
    execution: dict[str, Any],
    status: Status,
    *,
    output: Any = None,
    error: str | None = None,
) -> bool:
    """Record the end of the run; False if the execution was no longer ours to end."""
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

    ended = await db.executions.update_one(
        _ours(execution), {"$set": fields, "$push": {"statusLog": _entry(status, error or "")}}
    )
    if ended.modified_count == 1:
        await _release_slot(db, execution["serviceId"], execution["slot"])
    return ended.modified_count == 1


HANDED_BACK = "handed back"
"""How a hand-back's status-log entry starts: the run it ends and the hand-back itself do not
count as changes for the execution's job id, since arq runs the same job again."""


async def hand_back(db: AsyncDatabase, execution: dict[str, Any], reason: str) -> bool:
    """A stopping worker returns a run it will not finish: back to `created` at once — its
    attempt not counted, its slot freed — for the job arq runs again, instead of waiting for
    the lease to lapse and the reaper to count it as lost. False if it is not ours any more,
    or if its termination was requested: then it must end, not run again."""
    back = await db.executions.update_one(
        {**_ours(execution), "terminateRequested": {"$ne": True}},
        {
            "$set": {
                "status": str(Status.CREATED),
                "worker": None,
                "slot": None,
                "leaseUntil": None,
                "startedAt": None,
                "updatedAt": now(),
            },
            "$inc": {"attempts": -1},
            "$push": {"statusLog": _entry(Status.CREATED, f"{HANDED_BACK}: {reason}")},
        },
    )
    if back.modified_count == 1:
        await _release_slot(db, execution["serviceId"], execution["slot"])
    return back.modified_count == 1


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
    """Release a lost execution (and its service slot) unless another reaper already did."""
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
    entry = _entry(status, "worker lost; rerunning" if retry else "worker lost; not rerun")

    updated = await db.executions.find_one_and_update(
        {
            "_id": execution["_id"],
            "status": str(Status.IN_PROGRESS),
            "leaseUntil": execution["leaseUntil"],
        },
        {"$set": fields, "$push": {"statusLog": entry}},
        return_document=ReturnDocument.AFTER,
    )
    if updated is not None:
        await _release_slot(db, execution["serviceId"], execution["slot"])
    return updated


def waiting(db: AsyncDatabase, unchanged_since: datetime | None = None) -> AsyncCursor:
    """Executions still `created` (unchanged since `unchanged_since`, if given), with what
    their job ids are made of: a job Redis lost or let expire must be queued again."""
    query: dict[str, Any] = {"status": str(Status.CREATED)}
    if unchanged_since is not None:
        query["updatedAt"] = {"$lt": unchanged_since}
    return db.executions.find(query, {"statusLog.message": 1})
