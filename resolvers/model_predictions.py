"""What a model's predict function returns for an item, written into the run it predicts for.

`predictModel` runs the model's predict function over a dataset as a batch of executions, each
naming its model run (`modelRunId`). When such an execution's function returns, its
predictions (`{"predictions": [...]}`, each as `uploadPredictions` takes one, the item implied)
replace the item's predictions in that run, in one transaction, before the execution is
recorded a success: a rerun of the execution replaces them again, never adds to them. Invalid
predictions fail the execution with the reason, and write nothing.
"""

from collections.abc import Awaitable, Callable
from typing import Any

from bson import ObjectId
from pydantic import Field
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase

from resolvers import batches, dql, predictions
from resolvers.access import Access, Action
from resolvers.errors import BadUserInput
from resolvers.inputs import Input, Name, parse
from resolvers.model_runs import create_model_run
from resolvers.models import get_model_version
from resolvers.timestamps import now
from resolvers.transactions import in_transaction


async def record(db: AsyncDatabase, execution: dict[str, Any], result: Any) -> None:
    run = await db.model_runs.find_one(
        {"_id": execution["modelRunId"], "projectId": execution["projectId"]}
    )
    if run is None:
        raise ValueError("the model run this execution predicts for is gone")
    resource = execution.get("resource") or {}
    if resource.get("type") != "item":
        raise ValueError("a prediction run's execution must be about an item")
    found = predictions.returned(result)
    item = resource["id"]
    raw = [{**p, "itemId": str(item)} if isinstance(p, dict) else p for p in found]
    checked = await predictions.check(db, run, execution["creator"], raw)
    if checked.bad:
        raise ValueError(checked.refusal().message)

    async def work(session: AsyncClientSession) -> None:
        gone = await db.predictions.delete_many(
            {"runId": run["_id"], "itemId": item}, session=session
        )
        if checked.docs:
            await db.predictions.insert_many(checked.docs, session=session)
        added = len(checked.docs) - gone.deleted_count
        await predictions.mark_changed(db, run, {item}, added, session)

    await in_transaction(db, work)


class PredictInput(Input):
    dataset_id: str
    filter: dict[str, Any] = Field(default_factory=dict)
    run_name: Name | None = None
    input: dict[str, Any] = Field(
        default_factory=dict, description="merged over the version's configuration"
    )


async def predict_model(
    access: Access,
    version_id: ObjectId,
    data: dict[str, Any],
    enqueue: Callable[[dict[str, Any]], Awaitable[None]],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Open a run of the version on the dataset and start its predict function over the
    items the filter matches, as a batch; (the run, the batch's Command). The function's
    input is the version's configuration with `input` over it."""
    version = await get_model_version(access, version_id)
    prediction = parse(PredictInput, data)
    functions = version.get("functions") or {}
    if not functions.get("serviceId") or not functions.get("predict"):
        raise BadUserInput("the model version names no predict function", field="modelVersionId")
    await access.require_project(version, Action.RUN_EXECUTIONS)
    name = prediction.run_name or f"predict {now().isoformat(timespec='seconds')}"
    run = await create_model_run(
        access,
        {"modelVersionId": str(version_id), "datasetId": prediction.dataset_id, "name": name},
    )
    batch = {
        "function": functions["predict"],
        # The project's items the filter matches, of the run's dataset only.
        "filter": dql.narrowed("items", prediction.filter, {"datasetId": prediction.dataset_id}),
        "input": {**(version.get("configuration") or {}), **prediction.input},
    }
    try:
        command = await batches.start_batch(
            access,
            functions["serviceId"],
            batch,
            enqueue,
            execution_fields={"modelRunId": run["_id"]},
        )
    except BaseException:
        await access.db.model_runs.delete_one({"_id": run["_id"]})
        await access.db.model_versions.update_one({"_id": version_id}, {"$inc": {"runCount": -1}})
        raise
    return run, command
