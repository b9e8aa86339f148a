"""`predictBatch`: a deployment's champion (and shadow) over every item of its project that a
DQL filter matches, as a Command — one predicted asset per item, as `predict` makes for one.

Everything is checked when the batch is asked for (the caller's right to run executions, the
deployment active, the champion runnable, the filter), and the champion's and shadow's runs
are fixed then (the plan, kept in the command's input): a switch of the champion while the
batch runs does not mix two champions in one batch. A worker then pages through the matching
items in id order, as batch executions do (resolvers/batches.py): each page's assets and
executions are inserted with the command's cursor in one transaction, then the champion runs
are queued, the shadow runs `SHADOW_BEHIND_MS` behind. Every asset and execution of the batch
carries `batchId`, the command's id. A deployment deactivated or deleted meanwhile, or a
champion service gone, fails the command at its next page; pages done stay done.
"""

import json
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from bson import ObjectId
from pydantic import Field
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase

from resolvers import batches, commands, dql, idempotency, json_documents
from resolvers.access import Access
from resolvers.deployments.predictions import (
    SHADOW_BEHIND_MS,
    Plan,
    Role,
    Run,
    Tag,
    new_asset,
    plan_of,
    predicting_deployment,
)
from resolvers.inputs import Input, parse
from resolvers.transactions import in_transaction

KIND = "predictBatch"

Enqueue = Callable[[list[dict[str, Any]], int], Awaitable[None]]
"""Queues a committed page's executions, `behind_ms` behind the others."""


class PredictBatchInput(Input):
    filter: dict[str, Any] = Field(default_factory=dict)
    tags: list[Tag] = Field(default_factory=list, max_length=50)
    metadata: dict[str, Any] = Field(default_factory=dict)


def _run_spec(run: Run | None) -> dict[str, Any] | None:
    if run is None:
        return None
    return {"serviceId": run.service["_id"], "function": run.function, "input": run.input}


async def start_predict_batch(
    access: Access,
    deployment_id: ObjectId,
    data: dict[str, Any],
    enqueue: Callable[[dict[str, Any]], Awaitable[None]],
    idempotency_key: str | None = None,
) -> dict[str, Any]:
    """Validate the batch now and hand it to a worker; with an idempotency key used before,
    the command that key started."""
    key = idempotency.key(access, KIND, idempotency_key, [str(deployment_id), data])
    if (first := await idempotency.first_result(access.db, key)) is not None:
        return await commands.get_command(access, first)
    request = parse(PredictBatchInput, data)
    deployment = await predicting_deployment(access, deployment_id)
    metadata = json_documents.check(request.metadata, "metadata")
    dql.parse(dql.envelope("items", request.filter))
    plan = await plan_of(access, deployment)
    command = commands.new_command(
        access,
        deployment,
        KIND,
        {
            "deploymentId": deployment["_id"],
            "filter": json.dumps(request.filter, sort_keys=True),
            "tags": request.tags,
            "metadata": metadata,
            "creator": access.user_id,
            "plan": {
                "championVersionId": plan.champion_version,
                "champion": _run_spec(plan.champion),
                "shadowVersionId": plan.shadow_version,
                "shadow": _run_spec(plan.shadow),
                "shadowError": plan.shadow_error,
            },
        },
    )

    async def create(session: AsyncClientSession) -> None:
        await access.db.commands.insert_one(command, session=session)

    if (first := await idempotency.once(access.db, key, command["_id"], create)) is not None:
        return await commands.get_command(access, first)
    await enqueue(command)
    return command


async def _run(db: AsyncDatabase, spec: dict[str, Any] | None) -> Run | None:
    if spec is None:
        return None
    service = await db.services.find_one({"_id": spec["serviceId"]})
    if service is None or not service["active"]:
        return None
    return Run(service, spec["function"], spec["input"])


async def _plan(db: AsyncDatabase, spec: dict[str, Any]) -> Plan:
    """The plan fixed when the batch was asked for, with its services as they are now: a
    champion service gone or deactivated fails the batch, a shadow's only fails its slots."""
    champion = await _run(db, spec["champion"])
    if champion is None:
        raise RuntimeError("the champion's service is gone or no longer active")
    shadow = await _run(db, spec["shadow"])
    shadow_error = spec["shadowError"]
    if spec["shadow"] is not None and shadow is None:
        shadow_error = "the shadow's service is gone or no longer active"
    return Plan(spec["championVersionId"], champion, spec["shadowVersionId"], shadow, shadow_error)


async def run_predict_batch(
    db: AsyncDatabase, command: dict[str, Any], page_size: int, lease: timedelta, enqueue: Enqueue
) -> None:
    spec = command["input"]
    plan = await _plan(db, spec["plan"])
    parsed = dql.parse(dql.envelope("items", json.loads(spec["filter"])))
    query = {"$and": [{"projectId": command["projectId"]}, parsed.filter]}
    total = max(await db.items.count_documents(query), 1)
    done = await db.predicted_assets.count_documents({"batchId": command["_id"]})
    async for ids in batches.pages(db.items, query, command["cursor"], page_size):
        deployment = await db.deployments.find_one({"_id": spec["deploymentId"]})
        if deployment is None or not deployment["active"]:
            raise RuntimeError("the deployment was deleted or deactivated")
        kept = await batches.joined(db, parsed.join, ids)
        page = await db.items.find({"_id": {"$in": kept}}, {"datasetId": 1}).to_list()
        made = [
            new_asset(
                plan,
                deployment,
                item,
                spec["creator"],
                spec["tags"],
                spec["metadata"],
                batchId=command["_id"],
            )
            for item in sorted(page, key=lambda item: item["_id"])
        ]
        assets = [asset for asset, _ in made]
        runs = [execution for _, page_runs in made for execution in page_runs.values()]
        cursor, done = ids[-1], done + len(ids)

        async def work(
            session: AsyncClientSession,
            assets: list[dict[str, Any]] = assets,
            runs: list[dict[str, Any]] = runs,
            cursor: ObjectId = cursor,
            done: int = done,
        ) -> None:
            if assets:
                await db.predicted_assets.insert_many(assets, session=session)
                await db.executions.insert_many(runs, session=session)
            progress = min(99, done * 100 // total)
            await commands.advance(db, command, cursor, progress, lease, session)

        await in_transaction(db, work)
        await enqueue([page_runs[Role.CHAMPION] for _, page_runs in made], 0)
        shadows = [page_runs[Role.SHADOW] for _, page_runs in made if Role.SHADOW in page_runs]
        await enqueue(shadows, SHADOW_BEHIND_MS)
