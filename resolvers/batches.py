"""Batch executions: one function over every item a DQL filter matches, as a Command.

The DQL may be a whole query: its `join` is honoured (an item runs only if it has an
annotation matching the join's filter), while its `sort`, `page` and `pageSize` are not — a
batch runs on every matching item, as dtlpy's bulk operations do, in id order.

A worker pages through the matching items by id; each page's executions are inserted in one
`insert_many` together with the command's cursor (one transaction), then queued in their
service's queue in one pipelined Redis round trip. A batch rerun pages through the matching
executions the same way, moving each page back to `created` with the cursor. A worker that
dies mid-way leaves the cursor at the last committed page; executions it created (or moved
back) but did not queue are queued again by any worker's start-up or queue check.
"""

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any

from bson import ObjectId
from pydantic import Field
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

from resolvers import commands, dql, idempotency
from resolvers.access import Access, Action
from resolvers.errors import BadUserInput
from resolvers.executions import FINAL, Status, new_execution, rerun_update, runnable
from resolvers.inputs import Input, parse
from resolvers.projects import get_project
from resolvers.transactions import in_transaction

EXECUTE = "executeBatch"
RERUN = "rerunBatch"


class BatchInput(Input):
    function: str
    filter: dict[str, Any] = Field(default_factory=dict)
    input: dict[str, Any] = Field(default_factory=dict)


async def start_batch(
    access: Access,
    service_id: ObjectId,
    data: dict[str, Any],
    enqueue: Callable[[dict[str, Any]], Awaitable[None]],
    *,
    idempotency_key: str | None = None,
    execution_fields: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Validate everything now (service, function, input, filter), then hand over to a worker.
    With an idempotency key used before, the command that key started. `execution_fields`
    go into every execution the batch creates (a prediction run's `modelRunId`)."""
    key = idempotency.key(access, EXECUTE, idempotency_key, [str(service_id), data])
    if (first := await idempotency.first_result(access.db, key)) is not None:
        return await commands.get_command(access, first)
    batch = parse(BatchInput, data)
    service, execution_input = await runnable(access, service_id, batch.function, batch.input)
    dql.parse(dql.envelope("items", batch.filter))
    command = commands.new_command(
        access,
        service,
        EXECUTE,
        {
            "serviceId": service_id,
            "function": batch.function,
            "input": execution_input,
            "filter": json.dumps(batch.filter, sort_keys=True),
            "creator": access.user_id,
            "executionFields": execution_fields or {},
        },
    )

    async def create(session: Any) -> None:
        await access.db.commands.insert_one(command, session=session)

    if (first := await idempotency.once(access.db, key, command["_id"], create)) is not None:
        return await commands.get_command(access, first)
    await enqueue(command)
    return command


async def start_rerun(
    access: Access,
    project_id: ObjectId,
    statuses: list[str] | None,
    dql_filter: dict[str, Any] | None,
    enqueue: Callable[[dict[str, Any]], Awaitable[None]],
) -> dict[str, Any]:
    """Rerun a project's finished executions in `statuses` (any final one if not given) that
    match the DQL filter over executions, as a Command. Executions created after it, and those
    of services that are inactive (or deleted) when it runs, are not part of it."""
    project = await get_project(access, project_id)
    await access.require_project(project, Action.RUN_EXECUTIONS)
    unfinished = sorted(set(statuses or []) - set(FINAL))
    if unfinished:
        raise BadUserInput(
            f"Only finished executions can be rerun, not {', '.join(unfinished)}; "
            f"statuses are among {', '.join(FINAL)}",
            field="statuses",
        )
    dql.to_mongo("executions", dql_filter)
    command_input = {
        "statuses": statuses or FINAL,
        "filter": json.dumps(dql_filter or {}, sort_keys=True),
    }
    command = commands.new_command(access, project, RERUN, command_input)
    await access.db.commands.insert_one(command)
    await enqueue(command)
    return command


Enqueue = Callable[[list[dict[str, Any]]], Awaitable[None]]


async def run_batch(
    db: AsyncDatabase, command: dict[str, Any], page_size: int, lease: timedelta, enqueue: Enqueue
) -> None:
    spec = command["input"]
    service = await db.services.find_one({"_id": spec["serviceId"]})
    parsed = dql.parse(dql.envelope("items", json.loads(spec["filter"])))
    query = {"$and": [{"projectId": command["projectId"]}, parsed.filter]}
    total = max(await db.items.count_documents(query), 1)
    done = await db.executions.count_documents({"batchId": command["_id"]})
    async for ids in pages(db.items, query, command["cursor"], page_size):
        page = await joined(db, parsed.join, ids)
        created = [
            new_execution(
                spec["creator"],
                service,
                spec["function"],
                spec["input"],
                {"type": "item", "id": item},
                batchId=command["_id"],
                **spec.get("executionFields", {}),
            )
            for item in page
        ]
        cursor, done = ids[-1], done + len(ids)

        async def work(
            session: AsyncClientSession,
            created: list[dict[str, Any]] = created,
            cursor: ObjectId = cursor,
            done: int = done,
        ) -> None:
            if created:
                await db.executions.insert_many(created, session=session)
            progress = min(99, done * 100 // total)
            await commands.advance(db, command, cursor, progress, lease, session)

        await in_transaction(db, work)
        await enqueue(created)


async def joined(
    db: AsyncDatabase, join: dql.DqlJoin | None, ids: list[ObjectId]
) -> list[ObjectId]:
    """The page's items that a DQL join keeps: those with an annotation matching the join's
    filter, found with one query bounded by the page (never the whole project's)."""
    if join is None:
        return ids
    wanted = {"$and": [{join.local: {"$in": ids}}, join.filter]}
    kept = set(await db[join.resource].distinct(join.local, wanted))
    return [item for item in ids if item in kept]


def _after(cursor: ObjectId | None) -> dict[str, Any]:
    return {"_id": {"$gt": cursor}} if cursor else {}


async def pages(
    collection: AsyncCollection, query: dict[str, Any], cursor: ObjectId | None, size: int
) -> AsyncIterator[list[ObjectId]]:
    """The ids of the documents matching `query` after `cursor`, page by page in id order: a
    command resumed from its last committed cursor goes on where that page ended."""
    while page := (
        await collection.find({"$and": [query, _after(cursor)]}, {"_id": 1})
        .sort("_id", 1)
        .limit(size)
        .to_list()
    ):
        ids = [doc["_id"] for doc in page]
        yield ids
        cursor = ids[-1]


async def run_rerun(
    db: AsyncDatabase, command: dict[str, Any], page_size: int, lease: timedelta, enqueue: Enqueue
) -> None:
    spec = command["input"]
    active = await db.services.distinct("_id", {"projectId": command["projectId"], "active": True})
    query = {
        "$and": [
            {
                "projectId": command["projectId"],
                "serviceId": {"$in": active},
                "status": {"$in": spec["statuses"]},
                "createdAt": {"$lt": command["createdAt"]},
            },
            dql.to_mongo("executions", json.loads(spec["filter"])),
        ]
    }
    left = {"$and": [query, _after(command["cursor"])]}
    total = max(await db.executions.count_documents(left), 1)
    done = 0
    async for ids in pages(db.executions, query, command["cursor"], page_size):
        cursor, done = ids[-1], done + len(ids)

        async def work(
            session: AsyncClientSession,
            ids: list[ObjectId] = ids,
            cursor: ObjectId = cursor,
            done: int = done,
        ) -> None:
            await db.executions.update_many(
                {"_id": {"$in": ids}, "status": {"$in": spec["statuses"]}},
                rerun_update("batch rerun"),
                session=session,
            )
            progress = min(99, done * 100 // total)
            await commands.advance(db, command, cursor, progress, lease, session)

        await in_transaction(db, work)
        again = await db.executions.find(
            {"_id": {"$in": ids}, "status": str(Status.CREATED)}, {"serviceId": 1}
        ).to_list()
        await enqueue(again)
