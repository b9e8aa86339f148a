"""Keyset pagination: opaque cursors over a sort that always ends with `_id`.

A cursor holds the sort-key values of the last node returned; the next page is a range query
from there, so a page costs one indexed read however deep it is, and ties on the sort keys are
broken by `_id`, which keeps pages disjoint and complete.
"""

import base64
import binascii
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from bson import json_util
from pymongo import ASCENDING
from pymongo.asynchronous.collection import AsyncCollection

from resolvers.errors import BadUserInput, LimitExceeded

Sort = list[tuple[str, int]]


@dataclass(frozen=True)
class PageRequest:
    first: int
    after: str | None = None

    def check(self, max_page_size: int) -> None:
        if self.first < 0:
            raise BadUserInput("first must not be negative", field="first")
        if self.first > max_page_size:
            raise LimitExceeded("maxPageSize", max_page_size, f"first={self.first} is too large")


@dataclass
class Page:
    docs: list[dict[str, Any]]
    cursors: list[str]
    has_next_page: bool
    has_previous_page: bool
    count: Callable[[], Awaitable[int]]


def _value(doc: dict[str, Any], path: str) -> Any:
    for part in path.split("."):
        doc = doc.get(part) if isinstance(doc, dict) else None
    return doc


def encode_cursor(doc: dict[str, Any], sort: Sort) -> str:
    values = [_value(doc, key) for key, _ in sort]
    return base64.urlsafe_b64encode(json_util.dumps(values).encode()).decode()


def decode_cursor(cursor: str, sort: Sort) -> list[Any]:
    try:
        values = json_util.loads(base64.urlsafe_b64decode(cursor.encode()))
    except (ValueError, binascii.Error, TypeError) as exc:
        raise BadUserInput("Invalid cursor", field="after") from exc
    if not isinstance(values, list) or len(values) != len(sort):
        raise BadUserInput("Invalid cursor", field="after")
    return values


def after_filter(values: list[Any], sort: Sort) -> dict[str, Any]:
    """Documents strictly after `values` in `sort` order: (a > x) or (a = x and b > y) or …"""
    branches = []
    for i, (key, direction) in enumerate(sort):
        branch = {k: v for (k, _), v in zip(sort[:i], values[:i], strict=True)}
        branch[key] = {"$gt" if direction == ASCENDING else "$lt": values[i]}
        branches.append(branch)
    return {"$or": branches}


def with_tiebreak(sort: Sort) -> Sort:
    return sort if sort and sort[-1][0] == "_id" else [*sort, ("_id", ASCENDING)]


async def paginate(
    collection: AsyncCollection,
    query: dict[str, Any],
    request: PageRequest,
    sort: Sort | None = None,
    projection: dict[str, Any] | None = None,
) -> Page:
    """One page of `query` in `sort` order, after `request.after`; one MongoDB round trip."""
    order = with_tiebreak(sort or [])
    scoped = query
    if request.after is not None:
        scoped = {"$and": [query, after_filter(decode_cursor(request.after, order), order)]}
    docs = await collection.find(scoped, projection).sort(order).limit(request.first + 1).to_list()
    has_next = len(docs) > request.first
    docs = docs[: request.first]

    async def count() -> int:
        return await collection.count_documents(query)

    return Page(
        docs=docs,
        cursors=[encode_cursor(d, order) for d in docs],
        has_next_page=has_next,
        has_previous_page=request.after is not None,
        count=count,
    )


async def paginate_many(
    collection: AsyncCollection,
    parent_field: str,
    parent_ids: list[Any],
    query: dict[str, Any],
    request: PageRequest,
    sort: Sort | None = None,
) -> dict[Any, Page]:
    """The same page of `query` under each of many parents, in ONE round trip.

    Each parent gets its own `$match → $sort → $limit` branch (each served by the parent's
    index), joined with `$unionWith`: a nested connection costs one query per nesting level,
    not one per parent.
    """
    order = with_tiebreak(sort or [])
    position = [after_filter(decode_cursor(request.after, order), order)] if request.after else []

    def branch(parent_id: Any) -> list[dict[str, Any]]:
        scoped = {"$and": [{parent_field: parent_id}, query, *position]}
        return [{"$match": scoped}, {"$sort": dict(order)}, {"$limit": request.first + 1}]

    first, *others = parent_ids
    pipeline = [
        *branch(first),
        *({"$unionWith": {"coll": collection.name, "pipeline": branch(p)}} for p in others),
    ]
    grouped: dict[Any, list[dict[str, Any]]] = {parent: [] for parent in parent_ids}
    # One batch holds every branch's page: no getMore round trip for the last few documents.
    batch = len(parent_ids) * (request.first + 1) + 1
    async for doc in await collection.aggregate(pipeline, batchSize=batch):
        grouped[doc[parent_field]].append(doc)

    def page(parent_id: Any, docs: list[dict[str, Any]]) -> Page:
        async def count() -> int:
            return await collection.count_documents({"$and": [{parent_field: parent_id}, query]})

        shown = docs[: request.first]
        return Page(
            docs=shown,
            cursors=[encode_cursor(d, order) for d in shown],
            has_next_page=len(docs) > request.first,
            has_previous_page=request.after is not None,
            count=count,
        )

    return {parent: page(parent, docs) for parent, docs in grouped.items()}
