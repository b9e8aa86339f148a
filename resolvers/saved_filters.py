"""Saved filters: named DQL queries of a project, saved once and loaded by name.

Anyone who can read the project can save views of it. The query is validated when saved and
stored as JSON text (its `$`-keys would be awkward as MongoDB field names).
"""

import json
from typing import Any

from bson import ObjectId
from pymongo import ReturnDocument

from resolvers import dql
from resolvers.access import Access, Action
from resolvers.errors import NotFound
from resolvers.inputs import Input, Name, parse
from resolvers.pagination import Page, PageRequest, paginate
from resolvers.projects import get_project
from resolvers.timestamps import now


class SavedFilterInput(Input):
    name: Name
    query: dict[str, Any]


async def save_filter(access: Access, project_id: ObjectId, data: dict[str, Any]) -> dict[str, Any]:
    """Save (or replace) the project's filter of that name."""
    project = await get_project(access, project_id)
    await access.require_project(project, Action.READ_PROJECT)
    saved = parse(SavedFilterInput, data)
    query = saved.query if "resource" in saved.query else dql.envelope("items", saved.query)
    parsed = dql.parse(query)
    moment = now()
    return await access.db.saved_filters.find_one_and_update(
        {"projectId": project_id, "name": saved.name},
        {
            "$set": {
                "query": json.dumps(query, sort_keys=True),
                "resource": parsed.resource,
                "updatedAt": moment,
            },
            "$setOnInsert": {
                "orgId": project["orgId"],
                "createdAt": moment,
                "creator": access.user_id,
            },
        },
        upsert=True,
        return_document=ReturnDocument.AFTER,
    )


async def load_filter(access: Access, project_id: ObjectId, name: str) -> dict[str, Any]:
    await get_project(access, project_id)
    found = await access.db.saved_filters.find_one({"projectId": project_id, "name": name})
    if found is None:
        raise NotFound(f"No saved filter named {name!r} in this project", name=name)
    return found


async def list_filters(access: Access, project_id: ObjectId, page: PageRequest) -> Page:
    await get_project(access, project_id)
    return await paginate(
        access.db.saved_filters, {"projectId": project_id}, page, sort=[("name", 1)]
    )


async def delete_filter(access: Access, project_id: ObjectId, name: str) -> None:
    await load_filter(access, project_id, name)
    await access.db.saved_filters.delete_one({"projectId": project_id, "name": name})
