"""A change of the watched collections as an event: what changed, how, and in which project.

An event holds the document after its change (inserts, updates) and before it (updates,
deletes), from the change stream's pre- and post-images (gateway/indexes.py), so it is the
state that change made, never a later one. Updates that touch only Loom's bookkeeping —
`updatedAt`, an execution's lease renewed by its heartbeat, a predicted asset's slots marked
as rolled up for monitoring — are no events: nothing a user filters on changed. Real field
changes are, counters included (a trigger may ask for items whose `annotationsCount` reached
5).

Events are ordered as their change-stream tokens are: a token is a hex string that sorts as
the oplog does, so `token` orders an ordered trigger's executions of one resource exactly as
their changes were committed, across relays and restarts.
"""

from datetime import datetime
from typing import Any

from bson import ObjectId

from gateway.change_feed import touched_fields
from resolvers.timestamps import now
from resolvers.triggers import RESOURCES, Resource, TriggerAction

DATA = ("items", "annotations", "datasets", "deployments", "predicted_assets", "dataset_versions")
"""Collections every change of which is an event; executions' changes are events only in
projects with triggers on executions, and the relay's stream also reads `triggers`."""
BOOKKEEPING: dict[str, frozenset[str]] = {
    "items": frozenset({"updatedAt"}),
    "annotations": frozenset({"updatedAt"}),
    "datasets": frozenset({"updatedAt"}),
    "deployments": frozenset({"updatedAt"}),
    "predicted_assets": frozenset({"updatedAt", "rolledUp"}),
    "dataset_versions": frozenset({"updatedAt", "snapshotTime", "splitting"}),
    "executions": frozenset({"updatedAt", "leaseUntil"}),
}
"""Per collection, the top-level fields whose updates alone make no event."""


def event_of(change: dict[str, Any]) -> dict[str, Any] | None:
    """The event a change of a watched collection makes, or None (bookkeeping, a document
    without its images, an operation on the collection itself)."""
    collection = change["ns"]["coll"]
    kind = change["operationType"]
    after = change.get("fullDocument")
    before = change.get("fullDocumentBeforeChange")
    if kind == "insert":
        action, before = TriggerAction.Created, None
    elif kind in ("update", "replace"):
        fields = touched_fields(change) if kind == "update" else {"*"}
        if kind == "update" and fields <= BOOKKEEPING[collection]:
            return None
        changed_status = collection == "executions" and "status" in fields
        action = TriggerAction.StatusChanged if changed_status else TriggerAction.Updated
    elif kind == "delete":
        action, after = TriggerAction.Deleted, None
    else:
        return None
    document = after if after is not None else before
    if document is None or "projectId" not in document:
        return None
    moment = change.get("wallTime")
    return {
        "_id": ObjectId(),
        "token": change["_id"]["_data"],
        "clusterTime": change["clusterTime"],
        "time": moment if isinstance(moment, datetime) else now(),
        "resource": str(resource_of(collection)),
        "resourceId": change["documentKey"]["_id"],
        "action": str(action),
        "orgId": document["orgId"],
        "projectId": document["projectId"],
        "before": before,
        "after": after,
        "triggers": [],
    }


def resource_of(collection: str) -> Resource:
    return RESOURCES[collection]
