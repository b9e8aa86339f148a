"""Batch executions: one function over every item a DQL filter matches, as a Command.

A worker pages through the matching items by id; each page's executions are inserted in one
`insert_many` together with the command's cursor (one transaction), then queued in one
pipelined Redis round trip. A worker that dies mid-way leaves the cursor at the last committed
page; executions it created but did not queue are queued again by any worker's start-up.
"""

import json
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from bson import ObjectId
from pydantic import Field
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase

from resolvers import commands, dql
from resolvers.access import Access, Action
from resolvers.executions import Status, new_execution, runnable
from resolvers.inputs import Input, parse
from resolvers.projects import get_project
from resolvers.timestamps import now
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
) -> dict[str, Any]:
    """Validate everything now (service, function, input, filter), then hand over to a worker."""
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
        },
    )
    await access.db.commands.insert_one(command)
    await enqueue(command)
    return command


async def start_rerun(
    access: Access,
    project_id: ObjectId,
    statuses: list[str],
    enqueue: Callable[[dict[str, Any]], Awaitable[None]],
) -> dict[str, Any]:
    """Rerun every finished execution of a project in `statuses`, as a Command."""
    project = await get_project(access, project_id)
    await access.require_project(project, Action.RUN_EXECUTIONS)
    final = [s for s in statuses if s in ("success", "failed", "aborted", "terminated")]
    command = commands.new_command(access, project, RERUN, {"statuses": final})
    await access.db.commands.insert_one(command)
    await enqueue(command)
    return command


Enqueue = Callable[[list[dict[str, Any]]], Awaitable[None]]


async def run_batch(
    db: AsyncDatabase, command: dict[str, Any], page_size: int, lease: timedelta, enqueue: Enqueue
) -> None:
    spec = command["input"]
    service = await db.services.find_one({"_id": spec["serviceId"]})
    query = {
        "$and": [
            {"projectId": command["projectId"]},
            dql.parse(dql.envelope("items", json.loads(spec["filter"]))).filter,
        ]
    }
    total = max(await db.items.count_documents(query), 1)
    done = await db.executions.count_documents({"batchId": command["_id"]})
    cursor = command["cursor"]
    while True:
        after = [{"_id": {"$gt": cursor}}] if cursor else []
        page = (
            await db.items.find({"$and": [query, *after]}, {"_id": 1})
            .sort("_id", 1)
            .limit(page_size)
            .to_list()
        )
        if not page:
            return
        created = [
            new_execution(
                spec["creator"],
                service,
                spec["function"],
                spec["input"],
                {"type": "item", "id": item["_id"]},
                batchId=command["_id"],
            )
            for item in page
        ]
        cursor, done = page[-1]["_id"], done + len(page)

        async def work(
            session: AsyncClientSession,
            created: list[dict[str, Any]] = created,
            cursor: ObjectId = cursor,
            done: int = done,
        ) -> None:
            await db.executions.insert_many(created, session=session)
            progress = min(99, done * 100 // total)
            await commands.advance(db, command, cursor, progress, lease, session)

        await in_transaction(db, work)
        await enqueue(created)


async def run_rerun(
    db: AsyncDatabase, command: dict[str, Any], page_size: int, lease: timedelta, enqueue: Enqueue
) -> None:
    query = {"projectId": command["projectId"], "status": {"$in": command["input"]["statuses"]}}
    while page := await db.executions.find(query, {"_id": 1}).limit(page_size).to_list():
        ids = [execution["_id"] for execution in page]
        entry = {"status": str(Status.CREATED), "time": now(), "message": "batch rerun"}
        await db.executions.update_many(
            {"_id": {"$in": ids}, "status": {"$in": command["input"]["statuses"]}},
            {
                "$set": {"status": str(Status.CREATED), "error": None, "output": None},
                "$inc": {"maxAttempts": 1},
                "$push": {"statusLog": entry},
            },
        )
        again = await db.executions.find({"_id": {"$in": ids}}, {"statusLog": 1}).to_list()

        async def work(session: AsyncClientSession, cursor: ObjectId = ids[-1]) -> None:
            await commands.advance(db, command, cursor, 50, lease, session)

        await in_transaction(db, work)
        await enqueue(again)
