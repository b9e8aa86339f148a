"""Relay plumbing: the Node interface, connections with opaque keyset cursors, `node(id)`.

IDs on the wire are ObjectId strings. ObjectIds are unique across collections, so `node(id)`
finds the one document with that id among all node collections in a single `$unionWith`
aggregation, then asks the access rules whether the caller may see it.
"""

from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

import strawberry

from resolvers.pagination import Page, PageRequest

NodeT = TypeVar("NodeT")

DEFAULT_PAGE_SIZE = 20


def optional_id(value: Any) -> strawberry.ID | None:
    """A stored id that may be missing, as a GraphQL ID (or null)."""
    return None if value is None else strawberry.ID(str(value))


@strawberry.interface(description="An object with a globally unique ID.")
class Node:
    id: strawberry.ID


@strawberry.type
class PageInfo:
    has_next_page: bool
    has_previous_page: bool
    start_cursor: str | None
    end_cursor: str | None


@strawberry.type
class Edge(Generic[NodeT]):
    node: NodeT
    cursor: str


@strawberry.type
class Connection(Generic[NodeT]):
    edges: list[Edge[NodeT]]
    page_info: PageInfo
    count: strawberry.Private[Callable[[], Awaitable[int]]]

    @strawberry.field(description="All matching nodes; counted only when selected.")
    async def total_count(self) -> int:
        return await self.count()

    @strawberry.field(description="The nodes of this page, without their cursors.")
    def nodes(self) -> list[NodeT]:
        return [edge.node for edge in self.edges]

    @classmethod
    def of(cls, page: Page, to_node: Callable[[dict[str, Any]], NodeT]) -> "Connection[NodeT]":
        edges = [
            Edge(node=to_node(doc), cursor=cursor)
            for doc, cursor in zip(page.docs, page.cursors, strict=True)
        ]
        return cls(
            edges=edges,
            page_info=PageInfo(
                has_next_page=page.has_next_page,
                has_previous_page=page.has_previous_page,
                start_cursor=page.cursors[0] if page.cursors else None,
                end_cursor=page.cursors[-1] if page.cursors else None,
            ),
            count=page.count,
        )


def page_request(info: strawberry.Info, first: int, after: str | None) -> PageRequest:
    request = PageRequest(first=first, after=after)
    request.check(info.context.settings.limits.max_page_size)
    return request
