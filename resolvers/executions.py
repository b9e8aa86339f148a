"""Executions: one run of a service's function, from `created` to a final status.

MongoDB holds the truth. Every status change is a conditional update, so two workers can never
both run one execution, and a late worker cannot overwrite a termination. A running execution
holds a lease its worker renews; a lapsed lease means a lost worker, and the reaper reruns or
fails the execution according to the service's `onReset` (the worker's side of the life of an
execution is in `resolvers.execution_runs`).

    created → inProgress → success | failed | terminated
       └───────────────────────────→ terminated   (terminated before it started)
"""

from enum import StrEnum
from typing import Any

from bson import ObjectId
from pydantic import Field
from pymongo import ReturnDocument

from resolvers import dql, functions, idempotency
from resolvers.access import Access, Action
from resolvers.errors import BadUserInput, Conflict
from resolvers.inputs import Input, object_id, parse
from resolvers.pagination import Page, PageRequest, paginate
from resolvers.services import get_service
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


def status_entry(status: Status, message: str = "") -> dict[str, Any]:
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
        statusLog=[status_entry(Status.CREATED)],
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
        claim=None,
        slot=None,
        terminateRequested=False,
        **extra,
    )


async def create_execution(
    access: Access,
    service_id: ObjectId,
    data: dict[str, Any],
    *,
    idempotency_key: str | None = None,
) -> dict[str, Any]:
    """Validate and record an execution; the caller queues it (its job id is its id). With
    an idempotency key used before, the execution that key created (resolvers/idempotency)."""
    key = idempotency.key(access, "execute", idempotency_key, [str(service_id), data])
    if (first := await idempotency.first_result(access.db, key)) is not None:
        return await get_execution(access, first)
    request = parse(ExecuteInput, data)
    service, execution_input = await runnable(access, service_id, request.function, request.input)
    resource = await _resource(access, request, service["projectId"])
    doc = new_execution(access.user_id, service, request.function, execution_input, resource)

    async def create(session: Any) -> None:
        await access.db.executions.insert_one(doc, session=session)

    if (first := await idempotency.once(access.db, key, doc["_id"], create)) is not None:
        return await get_execution(access, first)
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


async def status_counts(access: Access, chosen: dict[str, Any]) -> dict[str, int]:
    """How many of the chosen executions (a project's, a service's) the caller may see are in
    each status, for dashboards."""
    pipeline = [
        {"$match": {"$and": [chosen, await access.scope()]}},
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
            "$push": {"statusLog": status_entry(Status.TERMINATED, "terminated before it started")},
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
        "$push": {"statusLog": status_entry(Status.CREATED, message)},
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
