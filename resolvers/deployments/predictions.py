"""What a deployment predicts: `predict` runs the champion's predict function on one item and,
when a shadow is set, the shadow's on the same item, each as an execution of its version's
service (the execution path of issue 4); the outcome is a predicted asset.

A predicted asset (`predicted_assets`) holds the item (an existing one of the project, or a
file stored first into the deployment's target dataset), the deployment's `minThreshold` at
the time, tags and metadata, and one slot per role, `champion` and `shadow` (null without a
shadow): `{versionId, executionId, status: pending | success | failed, predictions, error,
latencyMs, durationMs, finishedAt}`. A worker writes a slot as soon as its function returns,
fails or times out, before the execution's own end is written. The two runs are separate
executions, so the shadow's failure or slowness never touches the champion's slot; and shadow
runs are queued `SHADOW_BEHIND_MS` behind everything else, so a champion run queued after a
shadow run still goes first. A shadow version without a predict function gets a failed slot,
never a failed prediction.

A slot keeps every prediction its function returned; what the graph shows as the slot's
`predictions` are those scoring at least the asset's `minThreshold` (the rest stay stored, for
monitoring). `latencyMs` is what a caller waits, from the asset's creation to its slot being
written; `durationMs` is the function's own time.
"""

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import IO, Annotated, Any

from bson import ObjectId
from pydantic import Field, StringConstraints, ValidationError
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase

from resolvers import dql, items, json_documents, predictions
from resolvers.access import Access, Action
from resolvers.deployments.lifecycle import get_deployment
from resolvers.errors import BadUserInput, Conflict, LoomError, NotFound
from resolvers.executions import new_execution, runnable
from resolvers.inputs import Input, object_id, parse
from resolvers.pagination import Page, PageRequest, paginate
from resolvers.predictions import PredictionInput
from resolvers.timestamps import new_document, now
from resolvers.transactions import in_transaction

SHADOW_BEHIND_MS = 60_000
"""How far behind other queued executions a shadow run is queued."""
MAX_TIMEOUT_S = 300.0
MAX_PREDICTIONS = 1_000
"""The most predictions one function may return for one item."""

Tag = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
Enqueue = Callable[[dict[str, Any], int], Awaitable[None]]
"""Queues an execution MongoDB holds, `behind_ms` behind the others."""


class Role(StrEnum):
    CHAMPION = "champion"
    SHADOW = "shadow"


class SlotStatus(StrEnum):
    PENDING = "pending"
    SUCCESS = "success"
    FAILED = "failed"


class PredictRequest(Input):
    item_id: str | None = None
    tags: list[Tag] = Field(default_factory=list, max_length=50)
    metadata: dict[str, Any] = Field(default_factory=dict)
    timeout: float = Field(
        default=30.0, gt=0, le=MAX_TIMEOUT_S, allow_inf_nan=False,
        description="seconds to wait for the champion's predictions",
    )  # fmt: skip


def _slot(version_id: ObjectId, execution_id: ObjectId | None) -> dict[str, Any]:
    return {
        "versionId": version_id,
        "executionId": execution_id,
        "status": str(SlotStatus.PENDING),
        "predictions": [],
        "error": None,
        "latencyMs": None,
        "durationMs": None,
        "finishedAt": None,
    }


async def _predict_function(
    access: Access, version_id: ObjectId
) -> tuple[str, str, dict[str, Any]] | None:
    """(serviceId, function, input) of a version's predict function, if it names one: the
    input is the version's configuration, as predictModel gives it."""
    version = await access.db.model_versions.find_one(
        {"_id": version_id}, {"functions": 1, "configuration": 1}
    )
    functions = (version or {}).get("functions") or {}
    if not functions.get("serviceId") or not functions.get("predict"):
        return None
    return functions["serviceId"], functions["predict"], version.get("configuration") or {}


async def _shadow_run(
    access: Access, version_id: ObjectId | None
) -> tuple[tuple[dict[str, Any], str, dict[str, Any]] | None, str | None]:
    """(service, function, input) of the shadow's run, or why it cannot run (None, None
    without a shadow): what stops a shadow never stops the prediction."""
    if version_id is None:
        return None, None
    found = await _predict_function(access, version_id)
    if found is None:
        return None, "the shadow version names no predict function"
    try:
        service, function_input = await runnable(access, ObjectId(found[0]), *found[1:])
    except LoomError as exc:
        return None, exc.message
    return (service, found[1], function_input), None


async def _item(
    access: Access,
    deployment: dict[str, Any],
    request: PredictRequest,
    upload: tuple[IO[bytes], str | None, str] | None,
) -> dict[str, Any]:
    """The item predicted on: the one named (of the deployment's project), or the uploaded
    file stored first as a new item of the target dataset."""
    if (request.item_id is None) == (upload is None):
        raise BadUserInput("give exactly one of itemId and file", field="itemId")
    if upload is not None:
        if deployment.get("targetDatasetId") is None:
            raise BadUserInput(
                "the deployment has no target dataset to store a file in", field="file"
            )
        content, mimetype, name = upload
        data = {"name": name or "predicted", "tags": request.tags}
        return await items.upload_item(
            access, deployment["targetDatasetId"], content, mimetype, data
        )
    item_id = object_id(request.item_id, "itemId")
    try:
        item = await items.get_item(access, item_id)
    except NotFound:
        item = None
    if item is None or item["projectId"] != deployment["projectId"]:
        raise BadUserInput("itemId names no item of the deployment's project", field="itemId")
    return item


@dataclass(frozen=True)
class Run:
    """A version's predict function as an execution runs it: its service, function, input."""

    service: dict[str, Any]
    function: str
    input: dict[str, Any]


@dataclass(frozen=True)
class Plan:
    """What a deployment runs on each asset: the champion's run and, with a shadow, the
    shadow's run or why it cannot run."""

    champion_version: ObjectId
    champion: Run
    shadow_version: ObjectId | None
    shadow: Run | None
    shadow_error: str | None


async def plan_of(access: Access, deployment: dict[str, Any]) -> Plan:
    """The deployment's runs as they would start now; BAD_USER_INPUT (or CONFLICT: an
    inactive service) when the champion cannot run."""
    shadow_version = deployment.get("shadowVersionId")
    champion, (shadow_run, shadow_error) = await asyncio.gather(
        _predict_function(access, deployment["championVersionId"]),
        _shadow_run(access, shadow_version),
    )
    if champion is None:
        raise BadUserInput(
            "the deployment's champion version names no predict function", field="deploymentId"
        )
    service, champion_input = await runnable(access, ObjectId(champion[0]), *champion[1:])
    return Plan(
        deployment["championVersionId"],
        Run(service, champion[1], champion_input),
        shadow_version,
        Run(*shadow_run) if shadow_run is not None else None,
        shadow_error,
    )


def new_asset(
    plan: Plan,
    deployment: dict[str, Any],
    item: dict[str, Any],
    creator: ObjectId,
    tags: list[str],
    metadata: dict[str, Any],
    asset_id: ObjectId | None = None,
    **fields: Any,
) -> tuple[dict[str, Any], dict[Role, dict[str, Any]]]:
    """A predicted asset of `item` and the executions of its champion (and shadow), not yet
    written; `fields` go into the asset and its executions (a batch's `batchId`)."""
    asset_id = asset_id or ObjectId()
    created = now()
    resource = {"type": "item", "id": item["_id"]}
    runs: dict[Role, dict[str, Any]] = {}
    for role, run in ((Role.CHAMPION, plan.champion), (Role.SHADOW, plan.shadow)):
        if run is not None:
            runs[role] = new_execution(
                creator,
                run.service,
                run.function,
                run.input,
                resource,
                predictedAssetId=asset_id,
                predictedAt=created,
                predictionRole=str(role),
                **fields,
            )
    shadow = None
    if plan.shadow_version is not None:
        shadow = _slot(plan.shadow_version, runs[Role.SHADOW]["_id"] if plan.shadow else None)
        if plan.shadow_error is not None:
            shadow.update(status=str(SlotStatus.FAILED), error=plan.shadow_error, finishedAt=now())
    asset = new_document(
        creator,
        _id=asset_id,
        orgId=deployment["orgId"],
        projectId=deployment["projectId"],
        deploymentId=deployment["_id"],
        itemId=item["_id"],
        datasetId=item["datasetId"],
        minThreshold=deployment["minThreshold"],
        tags=tags,
        metadata=metadata,
        champion=_slot(plan.champion_version, runs[Role.CHAMPION]["_id"]),
        shadow=shadow,
        review=None,
        **fields,
    )
    asset["createdAt"] = asset["updatedAt"] = created
    return asset, runs


async def predicting_deployment(access: Access, deployment_id: ObjectId) -> dict[str, Any]:
    """The deployment, if the caller may run its predictions and it is active (CONFLICT)."""
    deployment = await get_deployment(access, deployment_id)
    await access.require_project(deployment, Action.RUN_EXECUTIONS)
    if not deployment["active"]:
        raise Conflict(f"Deployment {deployment['name']!r} is not active")
    return deployment


async def start_predict(
    access: Access,
    deployment_id: ObjectId,
    data: dict[str, Any],
    upload: tuple[IO[bytes], str | None, str] | None,
    enqueue: Enqueue,
    asset_id: ObjectId | None = None,
) -> tuple[dict[str, Any], PredictRequest]:
    """Record a predicted asset and the executions of its champion (and shadow), in one
    transaction, then queue them; (the asset as created, the request)."""
    request = parse(PredictRequest, data)
    deployment = await predicting_deployment(access, deployment_id)
    metadata = json_documents.check(request.metadata, "metadata")
    plan = await plan_of(access, deployment)
    item = await _item(access, deployment, request, upload)
    asset, runs = new_asset(
        plan, deployment, item, access.user_id, request.tags, metadata, asset_id
    )

    async def work(session: AsyncClientSession) -> None:
        await access.db.predicted_assets.insert_one(asset, session=session)
        await access.db.executions.insert_many(list(runs.values()), session=session)

    await in_transaction(access.db, work)
    await enqueue(runs[Role.CHAMPION], 0)
    if Role.SHADOW in runs:
        await enqueue(runs[Role.SHADOW], SHADOW_BEHIND_MS)
    return asset, request


def is_settled(asset: dict[str, Any]) -> bool:
    """Whether the champion's slot holds its outcome."""
    return asset["champion"]["status"] != str(SlotStatus.PENDING)


def _checked(raw: Any, item: dict[str, Any]) -> list[dict[str, Any]]:
    """A function's result as stored predictions; ValueError naming the first bad one."""
    found = predictions.returned(raw)
    if len(found) > MAX_PREDICTIONS:
        raise ValueError(f"a predict function returns at most {MAX_PREDICTIONS} predictions")
    stored = []
    for index, data in enumerate(found):
        try:
            if not isinstance(data, dict):
                raise ValueError("a prediction is an object")
            p = PredictionInput.model_validate({**data, "itemId": str(item["_id"])})
            coordinates = predictions.coordinates_of(p, item)
            metadata = json_documents.check(p.metadata, "metadata")
        except ValidationError as exc:
            message = BadUserInput.from_validation(exc).message
            raise ValueError(f"predictions[{index}]: {message}") from exc
        except (ValueError, LoomError) as exc:
            raise ValueError(f"predictions[{index}]: {exc}") from exc
        stored.append(
            {
                "type": str(p.type),
                "label": p.label,
                "coordinates": coordinates,
                "confidence": p.confidence,
                "classPdf": p.class_pdf,
                "metadata": metadata,
            }
        )
    return stored


async def record(
    db: AsyncDatabase,
    execution: dict[str, Any],
    item: dict[str, Any] | None,
    result: Any,
    error: str | None,
    duration_s: float,
) -> None:
    """Write a finished run's outcome into its slot of the predicted asset — its predictions
    (`error` None) or its error — in one write: the execution carries the asset's id and
    creation time, the worker has read the item. Invalid predictions raise ValueError and
    write nothing (the caller then records the failure)."""
    role = execution["predictionRole"]
    stored: list[dict[str, Any]] = []
    if error is None:
        if item is None:
            raise ValueError("the item this execution predicts on is gone")
        stored = _checked(result, item)
    finished = now()
    latency_ms = (finished - execution["predictedAt"]).total_seconds() * 1000
    written = await db.predicted_assets.update_one(
        {"_id": execution["predictedAssetId"], f"{role}.executionId": execution["_id"]},
        {
            "$set": {
                f"{role}.status": str(SlotStatus.SUCCESS if error is None else SlotStatus.FAILED),
                f"{role}.predictions": stored,
                f"{role}.error": error,
                f"{role}.latencyMs": round(latency_ms, 3),
                f"{role}.durationMs": round(duration_s * 1000, 3),
                f"{role}.finishedAt": finished,
                "updatedAt": finished,
            }
        },
    )
    if written.matched_count == 0:
        raise ValueError("the predicted asset this execution predicts for is gone")


async def get_predicted_asset(access: Access, asset_id: ObjectId) -> dict[str, Any]:
    return await access.visible(
        "predicted_assets", asset_id, project_field="projectId", entity="PredictedAsset"
    )


async def list_predicted_assets(
    access: Access,
    deployment_id: ObjectId,
    page: PageRequest,
    dql_filter: dict[str, Any] | None = None,
) -> Page:
    """A deployment's predicted assets, newest first, that a DQL filter matches."""
    deployment = await get_deployment(access, deployment_id)
    query = {
        "$and": [
            {"deploymentId": deployment["_id"]},
            await access.scope(),
            dql.to_mongo("predicted_assets", dql_filter),
        ]
    }
    return await paginate(access.db.predicted_assets, query, page, [("createdAt", -1)])
