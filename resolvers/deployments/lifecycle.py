"""Deployments of a project: a champion model version that serves, an optional shadow that runs
beside it, a score threshold, a target dataset for predicted assets, and a switch history.

A deployment names model versions and a dataset of its own project only; any other id (made
up, of another project, of another organization) is BAD_USER_INPUT, worded alike. The shadow
must differ from the champion. `minThreshold` (0..1) is stored for predict (a later step): the
predictions below it are dropped from what predict returns.

Every change of the champion or the shadow, the initial ones at creation included, is one
document of `deployment_switches` — `{role, from, to, by, at, rollback, rolledBack}` — written
in the same transaction as the change. The change itself is a conditional update on the value
read in that transaction, so two concurrent switches never both start from the same value:
one transaction conflicts and is retried on the new value, and no record is lost.

Rollback is kept simple: it concerns the champion only. It undoes the latest champion switch
that is neither a rollback nor already rolled back, restoring that switch's `from`, marking it
`rolledBack`, and recording the restoring switch with `rollback: true`. Repeated rollbacks walk
back through the champions; CONFLICT when there is no earlier champion (the initial one) or when
it no longer exists.
"""

from enum import StrEnum
from typing import Any

from bson import ObjectId
from pydantic import Field, model_validator
from pymongo import DESCENDING, ReturnDocument
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.errors import DuplicateKeyError

from resolvers.access import Access, Action
from resolvers.datasets import get_dataset
from resolvers.errors import BadUserInput, Conflict, NotFound
from resolvers.inputs import Changes, Description, Input, Name, object_id, parse
from resolvers.models import get_model_version
from resolvers.pagination import Page, PageRequest, paginate
from resolvers.projects import get_project
from resolvers.timestamps import new_document, now
from resolvers.transactions import in_transaction


class SwitchRole(StrEnum):
    """Which slot of a deployment a switch changed."""

    CHAMPION = "champion"
    SHADOW = "shadow"


class DeploymentInput(Input):
    name: Name
    description: Description = ""
    champion_version_id: str
    shadow_version_id: str | None = None
    min_threshold: float = Field(default=0.0, ge=0.0, le=1.0, allow_inf_nan=False)
    target_dataset_id: str | None = None
    active: bool = True


class DeploymentChanges(Changes):
    name: Name | None = None
    description: Description | None = None
    min_threshold: float | None = Field(default=None, ge=0.0, le=1.0, allow_inf_nan=False)
    target_dataset_id: str | None = None
    active: bool | None = None

    @model_validator(mode="after")
    def _something_to_change(self) -> "DeploymentChanges":
        # An explicit null of targetDatasetId (clearing it) is a change too.
        if not self.model_dump(exclude_none=True) and "target_dataset_id" not in (
            self.model_fields_set
        ):
            fields = ", ".join(f.alias or n for n, f in type(self).model_fields.items())
            raise ValueError(f"give at least one of {fields}")
        return self


class VersionChoice(Input):
    model_version_id: str | None


# --- Checks of what a deployment refers to --------------------------------------------------


async def project_version(access: Access, project_id: ObjectId, value: str, field: str) -> ObjectId:
    """A model version of the project; any other id (missing, elsewhere) reads the same."""
    version_id = object_id(value, field)
    try:
        version = await get_model_version(access, version_id)
    except NotFound:
        version = None
    if version is None or version["projectId"] != project_id:
        raise BadUserInput(f"{field} names no model version of this project", field=field)
    return version_id


async def project_dataset(
    access: Access, project_id: ObjectId, value: str, field: str = "targetDatasetId"
) -> dict[str, Any]:
    """A dataset of the project; any other id (missing, elsewhere) reads the same."""
    dataset_id = object_id(value, field)
    try:
        dataset = await get_dataset(access, dataset_id)
    except NotFound:
        dataset = None
    if dataset is None or dataset["projectId"] != project_id:
        raise BadUserInput(f"{field} names no dataset of this project", field=field)
    return dataset


def _same_versions(field: str) -> BadUserInput:
    return BadUserInput(f"{field}: the shadow must differ from the champion", field=field)


def _name_taken(name: str) -> Conflict:
    return Conflict(f"A deployment named {name!r} already exists in this project", field="name")


def _switch(
    access: Access,
    deployment: dict[str, Any],
    role: SwitchRole,
    before: ObjectId | None,
    after: ObjectId | None,
    *,
    rollback: bool = False,
) -> dict[str, Any]:
    return {
        "_id": ObjectId(),
        "deploymentId": deployment["_id"],
        "orgId": deployment["orgId"],
        "projectId": deployment["projectId"],
        "role": str(role),
        "from": before,
        "to": after,
        "by": access.user_id,
        "at": now(),
        "rollback": rollback,
        "rolledBack": False,
    }


FIELD_OF = {SwitchRole.CHAMPION: "championVersionId", SwitchRole.SHADOW: "shadowVersionId"}


# --- Deployments ----------------------------------------------------------------------------


async def _hold(
    access: Access, versions: list[ObjectId | None], session: AsyncClientSession
) -> bool:
    """Write to the versions a change makes the deployment serve, in its transaction: a
    concurrent deletion of one of them (which checks deployments in its own) then conflicts
    with this change instead of leaving the deployment serving a version that is gone.
    False when one of them is gone already."""
    for version in versions:
        if version is None:
            continue
        held = await access.db.model_versions.update_one(
            {"_id": version}, {"$set": {"servedAt": now()}}, session=session
        )
        if held.matched_count == 0:
            return False
    return True


async def create_deployment(
    access: Access, project_id: ObjectId, data: dict[str, Any]
) -> dict[str, Any]:
    """A deployment with its champion (and shadow), both recorded as the first switches."""
    project = await get_project(access, project_id)
    await access.require_project(project, Action.MANAGE_MODELS)
    given = parse(DeploymentInput, data)
    champion = await project_version(
        access, project_id, given.champion_version_id, "championVersionId"
    )
    shadow = (
        await project_version(access, project_id, given.shadow_version_id, "shadowVersionId")
        if given.shadow_version_id is not None
        else None
    )
    if shadow == champion:
        raise _same_versions("shadowVersionId")
    dataset = (
        (await project_dataset(access, project_id, given.target_dataset_id))["_id"]
        if given.target_dataset_id is not None
        else None
    )
    doc = new_document(
        access.user_id,
        orgId=project["orgId"],
        projectId=project["_id"],
        name=given.name,
        description=given.description,
        championVersionId=champion,
        shadowVersionId=shadow,
        minThreshold=given.min_threshold,
        targetDatasetId=dataset,
        active=given.active,
        feedbackDatasetIds=[],
        reviews={status: 0 for status in ("accepted", "corrected", "rejected")},
        continuousTraining=None,
    )
    switches = [_switch(access, doc, SwitchRole.CHAMPION, None, champion)]
    if shadow is not None:
        switches.append(_switch(access, doc, SwitchRole.SHADOW, None, shadow))

    async def work(session: AsyncClientSession) -> dict[str, Any]:
        if not await _hold(access, [champion, shadow], session):
            raise BadUserInput("the model version was deleted", field="championVersionId")
        try:
            await access.db.deployments.insert_one(doc, session=session)
        except DuplicateKeyError as exc:
            raise _name_taken(given.name) from exc
        await access.db.deployment_switches.insert_many(switches, session=session)
        return doc

    return await in_transaction(access.db, work)


async def get_deployment(access: Access, deployment_id: ObjectId) -> dict[str, Any]:
    return await access.visible(
        "deployments", deployment_id, project_field="projectId", entity="Deployment"
    )


async def writable(access: Access, deployment_id: ObjectId) -> dict[str, Any]:
    deployment = await get_deployment(access, deployment_id)
    await access.require_project(deployment, Action.MANAGE_MODELS)
    return deployment


async def list_deployments(access: Access, project_id: ObjectId, page: PageRequest) -> Page:
    """A project's deployments, by name."""
    await get_project(access, project_id)
    return await paginate(access.db.deployments, {"projectId": project_id}, page, [("name", 1)])


async def update_deployment(
    access: Access, deployment_id: ObjectId, data: dict[str, Any]
) -> dict[str, Any]:
    """Change the fields given; an explicit null of targetDatasetId clears it. The champion and
    the shadow change only through setChampion / setShadow, which record the switch."""
    deployment = await writable(access, deployment_id)
    changes = parse(DeploymentChanges, data)
    fields: dict[str, Any] = {}
    for name, alias in (
        ("name", "name"),
        ("description", "description"),
        ("min_threshold", "minThreshold"),
        ("active", "active"),
    ):
        if getattr(changes, name) is not None:
            fields[alias] = getattr(changes, name)
    if "target_dataset_id" in changes.model_fields_set:
        fields["targetDatasetId"] = (
            (await project_dataset(access, deployment["projectId"], changes.target_dataset_id))[
                "_id"
            ]
            if changes.target_dataset_id is not None
            else None
        )
    try:
        changed = await access.db.deployments.find_one_and_update(
            {"_id": deployment_id},
            {"$set": {**fields, "updatedAt": now()}},
            return_document=ReturnDocument.AFTER,
        )
    except DuplicateKeyError as exc:
        raise _name_taken(fields["name"]) from exc
    if changed is None:
        raise NotFound("Deployment not found", id=str(deployment_id))
    return changed


async def delete_deployment(access: Access, deployment_id: ObjectId) -> None:
    """Delete a deployment, its switch history and its continuous-training trigger, in one
    transaction, then its predicted assets and monitoring rollups (any number of them: not in
    the transaction; a run still predicting for one of them then fails, its asset gone)."""
    deployment = await writable(access, deployment_id)
    training = deployment.get("continuousTraining") or {}

    async def work(session: AsyncClientSession) -> None:
        deleted = await access.db.deployments.delete_one({"_id": deployment_id}, session=session)
        if training.get("triggerId") is not None:
            await access.db.triggers.delete_one({"_id": training["triggerId"]}, session=session)
        if deleted.deleted_count == 0:
            raise NotFound("Deployment not found", id=str(deployment_id))
        await access.db.deployment_switches.delete_many(
            {"deploymentId": deployment_id}, session=session
        )

    await in_transaction(access.db, work)
    await access.db.predicted_assets.delete_many({"deploymentId": deployment_id})
    await access.db.deployment_rollups.delete_many({"deploymentId": deployment_id})


async def _switched(
    access: Access,
    deployment_id: ObjectId,
    role: SwitchRole,
    target: ObjectId | None,
) -> dict[str, Any]:
    """Put `target` in the slot of `role`, recording the switch, in one transaction.

    The current value is read inside the transaction and the update is conditional on it, so
    a concurrent switch makes this one conflict and retry from the new value. Setting the value
    the slot already holds changes and records nothing."""
    field = FIELD_OF[role]
    other = FIELD_OF[SwitchRole.SHADOW if role is SwitchRole.CHAMPION else SwitchRole.CHAMPION]

    async def work(session: AsyncClientSession) -> dict[str, Any]:
        current = await access.db.deployments.find_one({"_id": deployment_id}, session=session)
        if current is None:
            raise NotFound("Deployment not found", id=str(deployment_id))
        if current[field] == target:
            return current
        if target is not None and current[other] == target:
            raise _same_versions("modelVersionId")
        if not await _hold(access, [target], session):
            raise BadUserInput("the model version was deleted", field="modelVersionId")
        changed = await access.db.deployments.find_one_and_update(
            {"_id": deployment_id, field: current[field], other: current[other]},
            {"$set": {field: target, "updatedAt": now()}},
            return_document=ReturnDocument.AFTER,
            session=session,
        )
        if changed is None:
            raise Conflict("The deployment changed meanwhile; try again")
        switch = _switch(access, current, role, current[field], target)
        await access.db.deployment_switches.insert_one(switch, session=session)
        return changed

    return await in_transaction(access.db, work)


async def set_champion(access: Access, deployment_id: ObjectId, version_id: str) -> dict[str, Any]:
    deployment = await writable(access, deployment_id)
    choice = parse(VersionChoice, {"modelVersionId": version_id})
    if choice.model_version_id is None:
        raise BadUserInput("A deployment always has a champion", field="modelVersionId")
    target = await project_version(
        access, deployment["projectId"], choice.model_version_id, "modelVersionId"
    )
    return await _switched(access, deployment_id, SwitchRole.CHAMPION, target)


async def set_shadow(
    access: Access, deployment_id: ObjectId, version_id: str | None
) -> dict[str, Any]:
    """Shadow the champion with a version, or (null) stop shadowing."""
    deployment = await writable(access, deployment_id)
    choice = parse(VersionChoice, {"modelVersionId": version_id})
    target = (
        await project_version(
            access, deployment["projectId"], choice.model_version_id, "modelVersionId"
        )
        if choice.model_version_id is not None
        else None
    )
    return await _switched(access, deployment_id, SwitchRole.SHADOW, target)


async def rollback_deployment(access: Access, deployment_id: ObjectId) -> dict[str, Any]:
    """Restore the champion before the latest champion switch not yet undone (see the module
    notes); CONFLICT when there is none, or when that version is gone or now the shadow."""
    await writable(access, deployment_id)

    async def work(session: AsyncClientSession) -> dict[str, Any]:
        current = await access.db.deployments.find_one({"_id": deployment_id}, session=session)
        if current is None:
            raise NotFound("Deployment not found", id=str(deployment_id))
        latest = await access.db.deployment_switches.find_one(
            {
                "deploymentId": deployment_id,
                "role": str(SwitchRole.CHAMPION),
                "rollback": False,
                "rolledBack": False,
            },
            sort=[("at", DESCENDING), ("_id", DESCENDING)],
            session=session,
        )
        if latest is None or latest["from"] is None:
            raise Conflict("There is no previous champion to roll back to")
        previous = latest["from"]
        if not await _hold(access, [previous], session):
            raise Conflict("The previous champion no longer exists")
        if current["shadowVersionId"] == previous:
            raise Conflict("The previous champion is now the shadow; change the shadow first")
        changed = await access.db.deployments.find_one_and_update(
            {"_id": deployment_id, "championVersionId": current["championVersionId"]},
            {"$set": {"championVersionId": previous, "updatedAt": now()}},
            return_document=ReturnDocument.AFTER,
            session=session,
        )
        if changed is None:
            raise Conflict("The deployment changed meanwhile; try again")
        await access.db.deployment_switches.update_one(
            {"_id": latest["_id"]}, {"$set": {"rolledBack": True}}, session=session
        )
        switch = _switch(
            access,
            current,
            SwitchRole.CHAMPION,
            current["championVersionId"],
            previous,
            rollback=True,
        )
        await access.db.deployment_switches.insert_one(switch, session=session)
        return changed

    return await in_transaction(access.db, work)


async def list_switches(access: Access, deployment_id: ObjectId, page: PageRequest) -> Page:
    """A deployment's switches, newest first."""
    scope = await access.scope()
    query = {"$and": [{"deploymentId": deployment_id}, scope]}
    return await paginate(
        access.db.deployment_switches, query, page, [("at", DESCENDING), ("_id", DESCENDING)]
    )
