"""Events, as the relay stored them (triggers/relay/): what changed, and what it ran."""

from typing import Any

from bson import ObjectId

from resolvers.access import Access
from resolvers.pagination import Page, PageRequest, paginate

NEWEST_FIRST = [("token", -1), ("_id", -1)]
"""Change-stream tokens sort as the oplog does: exactly the order of the changes."""


async def get_event(access: Access, event_id: ObjectId) -> dict[str, Any]:
    return await access.visible("events", event_id, project_field="projectId", entity="Event")


async def list_events(access: Access, query: dict[str, Any], page: PageRequest) -> Page:
    """A page of the events the caller sees that match `query`, newest first."""
    scoped = {"$and": [await access.scope(), query]}
    return await paginate(access.db.events, scoped, page, NEWEST_FIRST)


async def executions_of(access: Access, event_id: ObjectId) -> list[dict[str, Any]]:
    """The executions an event made (the caller sees the event, so its project)."""
    query = {"$and": [{"eventId": event_id}, await access.scope()]}
    return await access.db.executions.find(query).sort("_id", 1).to_list()


async def fired(access: Access, trigger_id: ObjectId) -> tuple[int, Any]:
    """How many executions a trigger created, and when it last did: counted from the
    executions themselves, so exact whatever crashed or was replayed."""
    executions = access.db.executions
    query = {"$and": [{"triggerId": trigger_id}, await access.scope()]}
    count = await executions.count_documents(query)
    last = await executions.find_one(query, {"createdAt": 1}, sort=[("createdAt", -1), ("_id", -1)])
    return count, last["createdAt"] if last else None
