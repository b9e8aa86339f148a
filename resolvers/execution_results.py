"""Where a finished function's outcome goes besides its execution: the predictions of a model
run's prediction batch (resolvers/model_predictions.py) and the slots of a deployment's
predicted assets (resolvers/deployments/predictions.py).

The worker calls these before it writes the execution's end, so whoever waits for the outcome
(a synchronous `predict`, a commit) finds it as soon as the function is done. A result that
cannot be stored fails the execution with the reason; a failure is still recorded in the
predicted asset, so its slot never stays pending.
"""

from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from resolvers import model_predictions
from resolvers.deployments import predictions as deployment_predictions

RUN_FIELDS = ("modelRunId", "predictedAssetId", "predictedAt", "predictionRole")
"""What a worker must read of an execution for these (resolvers/execution_runs.py)."""


async def succeeded(
    db: AsyncDatabase,
    execution: dict[str, Any],
    resource: dict[str, Any] | None,
    result: Any,
    duration_s: float,
) -> None:
    """`resource` is the document the execution is about, as the worker read it."""
    if execution.get("modelRunId") is not None:
        await model_predictions.record(db, execution, result)
    if execution.get("predictedAssetId") is not None:
        await deployment_predictions.record(db, execution, resource, result, None, duration_s)


async def failed(
    db: AsyncDatabase, execution: dict[str, Any], error: str, duration_s: float
) -> None:
    if execution.get("predictedAssetId") is not None:
        await deployment_predictions.record(db, execution, None, None, error, duration_s)
