"""Model runs: one model version's predictions on one dataset (Nucleus' ModelRun).

A run is opened on a dataset of the version's project, collects predictions (see
resolvers/predictions.py) and is committed: a worker matches its predictions with the
dataset's ground truth and stores metrics (resolvers/model_run_commit.py). A run whose
predictions changed after its last commit says so (`changed`), and the next commit
recomputes only the items that changed.
"""

from enum import StrEnum
from typing import Any

from bson import ObjectId
from pydantic import Field
from pymongo.errors import DuplicateKeyError

from resolvers import json_documents, models
from resolvers.access import Access, Action
from resolvers.datasets import get_dataset
from resolvers.errors import BadUserInput, Conflict, NotFound
from resolvers.inputs import Description, Input, Name, object_id, parse
from resolvers.pagination import Page, PageRequest, paginate
from resolvers.timestamps import new_document
from resolvers.transactions import in_transaction


class RunStatus(StrEnum):
    CREATED = "created"
    COMMITTING = "committing"
    COMMITTED = "committed"
    FAILED = "failed"


class ModelRunInput(Input):
    model_version_id: str
    dataset_id: str
    name: Name
    description: Description = ""
    metadata: dict[str, Any] = Field(default_factory=dict)


def _name_taken(name: str) -> Conflict:
    return Conflict(f"This model version already has a run named {name!r}", field="name")


async def create_model_run(access: Access, data: dict[str, Any]) -> dict[str, Any]:
    run = parse(ModelRunInput, data)
    version = await models.get_model_version(
        access, object_id(run.model_version_id, "modelVersionId")
    )
    await access.require_project(version, Action.MANAGE_MODELS)
    dataset = await get_dataset(access, object_id(run.dataset_id, "datasetId"))
    if dataset["projectId"] != version["projectId"]:
        raise BadUserInput("the dataset must be in the model version's project", field="datasetId")
    doc = new_document(
        access.user_id,
        orgId=version["orgId"],
        projectId=version["projectId"],
        modelId=version["modelId"],
        modelVersionId=version["_id"],
        datasetId=dataset["_id"],
        name=run.name,
        description=run.description,
        metadata=json_documents.check(run.metadata, "metadata"),
        labels=list(version.get("labels") or []),
        status=str(RunStatus.CREATED),
        predictionsCount=0,
        changed=False,
        commandId=None,
        committedAt=None,
        commitOptions=None,
        metrics=None,
    )

    async def work(session: Any) -> None:
        # Writing to the version makes a concurrent deletion of it (or of its model) conflict
        # with this insert, so no run is left naming a version that is gone.
        held = await access.db.model_versions.update_one(
            {"_id": version["_id"]}, {"$inc": {"runCount": 1}}, session=session
        )
        if held.matched_count == 0:
            raise NotFound("ModelVersion not found", id=str(version["_id"]))
        try:
            await access.db.model_runs.insert_one(doc, session=session)
        except DuplicateKeyError as exc:
            raise _name_taken(run.name) from exc

    await in_transaction(access.db, work)
    return doc


async def get_model_run(access: Access, run_id: ObjectId) -> dict[str, Any]:
    return await access.visible("model_runs", run_id, project_field="projectId", entity="ModelRun")


async def writable_model_run(access: Access, run_id: ObjectId) -> dict[str, Any]:
    run = await get_model_run(access, run_id)
    await access.require_project(run, Action.MANAGE_MODELS)
    return run


async def list_model_runs(access: Access, version_id: ObjectId, page: PageRequest) -> Page:
    await models.get_model_version(access, version_id)
    return await paginate(
        access.db.model_runs, {"modelVersionId": version_id}, page, [("createdAt", -1)]
    )


async def delete_model_run(access: Access, run_id: ObjectId) -> None:
    """Delete a run with its predictions, match records and metrics, unless a commit of it is
    under way (CONFLICT: the worker would write into a run that no longer exists)."""
    run = await writable_model_run(access, run_id)
    if run["status"] == RunStatus.COMMITTING:
        raise Conflict("The run is being committed; wait for the commit to end")

    async def work(session: Any) -> None:
        deleted = await access.db.model_runs.delete_one(
            {"_id": run_id, "status": {"$ne": str(RunStatus.COMMITTING)}}, session=session
        )
        if deleted.deleted_count == 0:
            raise NotFound("ModelRun not found", id=str(run_id))
        for collection in ("predictions", "model_run_items", "model_run_changes"):
            await access.db[collection].delete_many({"runId": run_id}, session=session)
        await access.db.model_run_metrics.delete_one({"_id": run_id}, session=session)

    await in_transaction(access.db, work)
