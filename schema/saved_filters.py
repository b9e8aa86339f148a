"""Saved filters: a project's named DQL queries."""

import json
from datetime import datetime
from typing import Any

import strawberry
from strawberry.scalars import JSON

from resolvers import saved_filters
from resolvers.inputs import object_id
from schema.relay import Connection, page_request


@strawberry.type(description="A named DQL query, saved in a project.")
class SavedFilter:
    name: str
    resource: str
    query: JSON = strawberry.field(description="The DQL query, ready for `items(filter:)`.")
    updated_at: datetime

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> "SavedFilter":
        return cls(
            name=doc["name"],
            resource=doc["resource"],
            query=json.loads(doc["query"]),
            updated_at=doc["updatedAt"],
        )


async def project_filters(
    info: strawberry.Info, project_id: Any, first: int, after: str | None
) -> Connection[SavedFilter]:
    access = await info.context.access()
    page = await saved_filters.list_filters(access, project_id, page_request(info, first, after))
    return Connection.of(page, SavedFilter.from_doc)


async def project_filter(info: strawberry.Info, project_id: Any, name: str) -> SavedFilter:
    access = await info.context.access()
    return SavedFilter.from_doc(await saved_filters.load_filter(access, project_id, name))


@strawberry.type
class SavedFilterMutations:
    @strawberry.mutation(description="Save a DQL query under a name (replacing one so named).")
    async def save_filter(
        self, info: strawberry.Info, project_id: strawberry.ID, name: str, query: JSON
    ) -> SavedFilter:
        access = await info.context.access()
        doc = await saved_filters.save_filter(
            access, object_id(project_id, "projectId"), {"name": name, "query": query}
        )
        return SavedFilter.from_doc(doc)

    @strawberry.mutation
    async def delete_saved_filter(
        self, info: strawberry.Info, project_id: strawberry.ID, name: str
    ) -> bool:
        access = await info.context.access()
        await saved_filters.delete_filter(access, object_id(project_id, "projectId"), name)
        return True
