"""Triggers: which changes of a project's data run which operation.

A trigger watches one resource (items, annotations, datasets, executions, deployments or
predicted assets) for some actions,
optionally narrowed by a DQL filter evaluated in memory against the document after the change
(before it, for deletes). What it runs is its operation (triggers/operations.py): today a
service function of its own project. `executionMode` says how often: `Always`, once per
matching event; `Once`, at most once per resource, ever. `ordered` makes one resource's
executions of the trigger run one at a time, in event order.

The relay (triggers/relay/) reads triggers from the same change stream as the data, so a
trigger applies to exactly the changes committed after it was created, changed or activated.
"""

import json
from enum import StrEnum
from typing import Any

from bson import ObjectId
from pydantic import Field, field_validator, model_validator
from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from resolvers import deliveries, dql
from resolvers import trigger_operations as operations
from resolvers.access import Access, Action
from resolvers.errors import BadUserInput, Conflict, NotFound
from resolvers.inputs import Changes, Input, Name, parse
from resolvers.pagination import Page, PageRequest, paginate
from resolvers.projects import get_project
from resolvers.services import get_service
from resolvers.timestamps import new_document, now

# Members are named as their values: GraphQL shows member names, and these are dtlpy's.


class Resource(StrEnum):
    Item = "Item"
    Annotation = "Annotation"
    Dataset = "Dataset"
    Execution = "Execution"
    Deployment = "Deployment"
    PredictedAsset = "PredictedAsset"
    DatasetVersion = "DatasetVersion"


class TriggerAction(StrEnum):
    Created = "Created"
    Updated = "Updated"
    Deleted = "Deleted"
    StatusChanged = "StatusChanged"


class ExecutionMode(StrEnum):
    Once = "Once"
    Always = "Always"


COLLECTIONS = {
    Resource.Item: "items",
    Resource.Annotation: "annotations",
    Resource.Dataset: "datasets",
    Resource.Execution: "executions",
    Resource.Deployment: "deployments",
    Resource.PredictedAsset: "predicted_assets",
    Resource.DatasetVersion: "dataset_versions",
}
"""Each resource's collection, which is also its DQL resource name."""
RESOURCES = {collection: resource for resource, collection in COLLECTIONS.items()}


class TriggerDefinition(Input):
    """What a trigger is, without its name: enough to test a filter against a document."""

    resource: Resource
    actions: list[TriggerAction] = Field(min_length=1, max_length=4)
    filter: dict[str, Any] | None = None

    @field_validator("actions")
    @classmethod
    def _distinct(cls, actions: list[TriggerAction]) -> list[TriggerAction]:
        return sorted(set(actions))

    @model_validator(mode="after")
    def _status_changes_of_executions(self) -> "TriggerDefinition":
        if TriggerAction.StatusChanged in self.actions and self.resource != Resource.Execution:
            raise ValueError("StatusChanged is an action of executions only")
        return self


class TriggerInput(TriggerDefinition):
    name: Name
    active: bool = True
    execution_mode: ExecutionMode = ExecutionMode.Always
    ordered: bool = False
    operation: dict[str, Any]


class TriggerChanges(Changes):
    name: Name | None = None
    active: bool | None = None
    actions: list[TriggerAction] | None = Field(None, min_length=1, max_length=4)
    filter: dict[str, Any] | None = None
    execution_mode: ExecutionMode | None = None
    ordered: bool | None = None
    operation: dict[str, Any] | None = None


def checked_filter(resource: Resource, value: dict[str, Any] | None) -> dict[str, Any] | None:
    """A DQL filter for the resource, validated (BAD_USER_INPUT otherwise); `{}` means none."""
    if not value:
        return None
    inner = dql.envelope(COLLECTIONS[resource], value)
    if set(inner) - {"resource", "filter"}:
        raise BadUserInput("A trigger's filter is a DQL filter, without join, sort or paging")
    dql.to_mongo(COLLECTIONS[resource], inner.get("filter"))
    return inner.get("filter") or None


def stored(doc: dict[str, Any]) -> dict[str, Any]:
    """The trigger document with its filter as data (it is stored as JSON text, since its
    `$`-keys would be awkward as MongoDB field names)."""
    raw = doc.get("filter")
    return {**doc, "filter": json.loads(raw) if raw else None}


def _check_ordered(ordered: bool, operation: dict[str, Any]) -> None:
    if ordered and operation["type"] != "function":
        raise BadUserInput("ordered applies to function operations only", field="ordered")


def _name_taken(name: str) -> Conflict:
    return Conflict(f"A trigger named {name!r} already exists in this project", field="name")


async def create_trigger(
    access: Access, project_id: ObjectId, data: dict[str, Any]
) -> dict[str, Any]:
    project = await get_project(access, project_id)
    await access.require_project(project, Action.MANAGE_TRIGGERS)
    trigger = parse(TriggerInput, data)
    filter_ = checked_filter(trigger.resource, trigger.filter)
    operation = await operations.checked(access, project, trigger.operation)
    _check_ordered(trigger.ordered, operation)
    doc = new_document(
        access.user_id,
        orgId=project["orgId"],
        projectId=project["_id"],
        name=trigger.name,
        active=trigger.active,
        resource=str(trigger.resource),
        actions=[str(action) for action in trigger.actions],
        filter=json.dumps(filter_, sort_keys=True) if filter_ else None,
        executionMode=str(trigger.execution_mode),
        ordered=trigger.ordered,
        operation=operation,
    )
    try:
        await access.db.triggers.insert_one(doc)
    except DuplicateKeyError as exc:
        raise _name_taken(trigger.name) from exc
    return stored(doc)


async def get_trigger(access: Access, trigger_id: ObjectId) -> dict[str, Any]:
    doc = await access.visible("triggers", trigger_id, project_field="projectId", entity="Trigger")
    return stored(doc)


async def list_triggers(access: Access, project_id: ObjectId, page: PageRequest) -> Page:
    await get_project(access, project_id)
    found = await paginate(access.db.triggers, {"projectId": project_id}, page, [("name", 1)])
    found.docs = [stored(doc) for doc in found.docs]
    return found


async def update_trigger(
    access: Access, trigger_id: ObjectId, data: dict[str, Any]
) -> dict[str, Any]:
    trigger = await get_trigger(access, trigger_id)
    await access.require_project(trigger, Action.MANAGE_TRIGGERS)
    # A null filter clears it, as `{}` does: it is a change, not a field left out.
    cleared = "filter" in data and data["filter"] is None
    changes = parse(TriggerChanges, {**data, "filter": {}} if cleared else data)
    update: dict[str, Any] = changes.model_dump(
        exclude_none=True, exclude={"filter", "operation", "actions"}, by_alias=True, mode="json"
    )
    resource = Resource(trigger["resource"])
    if changes.actions is not None:
        definition = parse(
            TriggerDefinition,
            {"resource": resource, "actions": changes.actions},
        )
        update["actions"] = [str(action) for action in definition.actions]
    if "filter" in data:
        filter_ = checked_filter(resource, changes.filter)
        update["filter"] = json.dumps(filter_, sort_keys=True) if filter_ else None
    if changes.operation is not None:
        project = await get_project(access, trigger["projectId"])
        update["operation"] = await operations.checked(access, project, changes.operation)
    _check_ordered(
        update.get("ordered", trigger["ordered"]), update.get("operation", trigger["operation"])
    )
    try:
        updated = await access.db.triggers.find_one_and_update(
            {"_id": trigger_id},
            {"$set": {**update, "updatedAt": now()}},
            return_document=ReturnDocument.AFTER,
        )
    except DuplicateKeyError as exc:
        raise _name_taken(update["name"]) from exc
    if updated is None:
        raise NotFound("Trigger not found", id=str(trigger_id))
    return stored(updated)


async def delete_trigger(access: Access, trigger_id: ObjectId) -> None:
    """Delete a trigger; executions it created stay, and keep naming it."""
    trigger = await get_trigger(access, trigger_id)
    await access.require_project(trigger, Action.MANAGE_TRIGGERS)
    deleted = await access.db.triggers.delete_one({"_id": trigger_id})
    if deleted.deleted_count == 0:
        raise NotFound("Trigger not found", id=str(trigger_id))


async def test_trigger(
    access: Access,
    trigger_id: ObjectId | None,
    definition: dict[str, Any] | None,
    document: dict[str, Any] | None,
    resource_id: ObjectId | None,
    project_id: ObjectId | None,
) -> tuple[bool, dict[str, Any] | None]:
    """Whether a trigger (an existing one, or a definition) would fire on a document, and the
    document as it was tested (ids and dates as MongoDB holds them). Runs nothing."""
    if (trigger_id is None) == (definition is None):
        raise BadUserInput("Give exactly one of triggerId and definition")
    if (document is None) == (resource_id is None):
        raise BadUserInput("Give exactly one of document and resourceId")
    if trigger_id is not None:
        trigger = await get_trigger(access, trigger_id)
        resource, filter_ = Resource(trigger["resource"]), trigger["filter"]
        project_id = trigger["projectId"]
    else:
        parsed = parse(TriggerDefinition, definition or {})
        resource, filter_ = parsed.resource, checked_filter(parsed.resource, parsed.filter)
    collection = COLLECTIONS[resource]
    if resource_id is not None:
        if project_id is None:
            raise BadUserInput("Give the projectId the resource is in", field="projectId")
        project = await get_project(access, project_id)
        doc = await access.visible(
            collection, resource_id, project_field="projectId", entity=str(resource)
        )
        if doc["projectId"] != project["_id"]:
            raise BadUserInput(f"The {resource} is not in the trigger's project")
    elif not isinstance(document, dict):
        raise BadUserInput("document must be a JSON object", field="document")
    else:
        doc = dql.from_json(collection, document)
    return dql.matches(collection, filter_, doc), doc


async def _invocable(
    access: Access, trigger_id: ObjectId, resource_id: ObjectId, kind: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The trigger (whose operation must be of `kind`) and its resource, for invoking it."""
    trigger = await get_trigger(access, trigger_id)
    await access.require_project(trigger, Action.MANAGE_TRIGGERS)
    if trigger["operation"]["type"] != kind:
        other = "invokeWebhookTrigger" if kind == "function" else "invokeTrigger"
        raise BadUserInput(
            f"The trigger's operation is a {trigger['operation']['type']}: use {other}",
            field="triggerId",
        )
    resource = Resource(trigger["resource"])
    doc = await access.visible(
        COLLECTIONS[resource], resource_id, project_field="projectId", entity=str(resource)
    )
    if doc["projectId"] != trigger["projectId"]:
        raise BadUserInput(f"The {resource} is not in the trigger's project", field="resourceId")
    return trigger, doc


async def invoke_trigger(
    access: Access, trigger_id: ObjectId, resource_id: ObjectId
) -> dict[str, Any]:
    """Run a trigger's function on one of its resources now, whatever its filter, mode and
    state (Hasura's "invoke manually"); the caller queues the execution."""
    trigger, doc = await _invocable(access, trigger_id, resource_id, "function")
    service = await get_service(access, trigger["operation"]["serviceId"])
    if not service["active"]:
        raise Conflict(f"Service {service['name']!r} is not active")
    collection = COLLECTIONS[Resource(trigger["resource"])]
    execution = operations.execution_for(
        trigger, service, {"type": collection[:-1], "id": doc["_id"]}, invokedBy=access.user_id
    )
    await access.db.executions.insert_one(execution)
    return execution


async def invoke_webhook_trigger(
    access: Access, trigger_id: ObjectId, resource_id: ObjectId
) -> dict[str, Any]:
    """Deliver a webhook trigger's message for one of its resources now, as an `Updated`
    event of the resource as it is (before and after both its current state); the caller
    queues the delivery."""
    trigger, doc = await _invocable(access, trigger_id, resource_id, "webhook")
    webhook = await access.db.webhooks.find_one(
        {"_id": trigger["operation"]["webhookId"], "projectId": trigger["projectId"]}
    )
    if webhook is None:
        raise Conflict("The trigger's webhook was deleted")
    if not webhook["active"]:
        raise Conflict(f"Webhook {webhook['name']!r} is turned off")
    moment = now()
    event = {
        "_id": ObjectId(),
        "resource": trigger["resource"],
        "action": str(TriggerAction.Updated),
        "before": doc,
        "after": doc,
    }
    type_, data = deliveries.event_message(trigger, event)
    delivery = deliveries.new_delivery(
        webhook, type_, data, moment, access.user_id, triggerId=trigger["_id"]
    )
    await access.db.deliveries.insert_one(delivery)
    return delivery
