"""Keyset pagination: opaque cursors over a sort that always ends with `_id`.

A cursor holds the sort-key values of the last node returned; the next page is a range query
from there, so a page costs one indexed read however deep it is, and ties on the sort keys are
broken by `_id`, which keeps pages disjoint and complete.

Loose keys (fields that may be missing, null, or hold numbers, strings and booleans alike, such
as `metadata.user.*`) continue in MongoDB's own sort order: missing and null first (MongoDB
sorts them as one), then numbers, strings, booleans. "Strictly after" a value is then "greater
within its kind, or of a later kind", so a page continues across the missing → present boundary
and across kinds. Arrays and objects have no single place in that order (MongoDB sorts an array
by its least or greatest element, which a range query cannot follow): the range admits them
always, so a walk meets every one of them, and a page holding one is refused with
BAD_USER_INPUT naming the document, rather than repeating or losing items silently.

A window (a dtlpy page: `page`, `pageSize`) restricts the walk to the `size` documents after the
first `offset`: the first page skips `offset` (the only offset read), and each cursor carries how
many of the window are left after it.
"""

import base64
import binascii
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bson import Code, ObjectId, json_util
from pymongo import ASCENDING
from pymongo.asynchronous.collection import AsyncCollection

from resolvers.errors import BadUserInput, LimitExceeded

Sort = list[tuple[str, int]]


@dataclass(frozen=True)
class Window:
    """The `size` documents after the first `offset` of the ordered result."""

    offset: int
    size: int


@dataclass(frozen=True)
class PageRequest:
    first: int
    after: str | None = None
    window: Window | None = None

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


_KINDS = (("null",), ("double", "int", "long", "decimal"), ("string", "symbol"), ("bool",))
"""MongoDB's sort order of the kinds of value a loose key may hold (null standing for missing)."""
_LOOSE_SCALARS = (type(None), bool, int, float, str)
_CURSOR_SCALARS = (*_LOOSE_SCALARS, datetime, ObjectId)
"""What a cursor may hold: the values `encode_cursor` writes. Anything else a client sends —
an operator document, a regex, code (a `str` to Python) — is refused, never put into a range
query."""


def _value(doc: dict[str, Any], path: str, loose: bool = False) -> Any:
    value: Any = doc
    for part in path.split("."):
        if loose and isinstance(value, list):
            break
        value = value.get(part) if isinstance(value, dict) else None
    if loose and not isinstance(value, _LOOSE_SCALARS):
        raise BadUserInput(
            f"Cannot order by {path}: document {doc.get('_id')} holds "
            f"{'an array or object' if isinstance(value, list | dict) else 'a date or id'} "
            "there; order by a field holding numbers, strings, booleans or nothing",
            field="sort",
        )
    return value


def _kind(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, bool):
        return 3
    if isinstance(value, int | float):
        return 1
    if isinstance(value, str):
        return 2
    raise BadUserInput("Invalid cursor", field="after")


def encode_cursor(
    doc: dict[str, Any], sort: Sort, loose: Collection[str] = (), left: int | None = None
) -> str:
    values = [_value(doc, key, key in loose) for key, _ in sort]
    state: Any = values if left is None else {"values": values, "left": left}
    return base64.urlsafe_b64encode(json_util.dumps(state).encode()).decode()


def decode_cursor(cursor: str, sort: Sort, windowed: bool = False) -> tuple[list[Any], int]:
    """The sort values a cursor holds, and how many of its window are left after it (0 when
    there is no window)."""
    try:
        state = json_util.loads(base64.urlsafe_b64decode(cursor.encode()))
    except (ValueError, binascii.Error, TypeError) as exc:
        raise BadUserInput("Invalid cursor", field="after") from exc
    if windowed:
        if not isinstance(state, dict) or set(state) != {"values", "left"}:
            raise BadUserInput("Invalid cursor (not one of this DQL page)", field="after")
        values, left = state["values"], state["left"]
    else:
        values, left = state, 0
    if not isinstance(values, list) or len(values) != len(sort):
        raise BadUserInput("Invalid cursor", field="after")
    if not all(isinstance(v, _CURSOR_SCALARS) and not isinstance(v, Code) for v in values):
        raise BadUserInput("Invalid cursor", field="after")
    if not isinstance(left, int) or isinstance(left, bool) or left < 0:
        raise BadUserInput("Invalid cursor", field="after")
    return values, left


def _strictly_after(key: str, value: Any, direction: int, loose: bool) -> dict[str, Any]:
    ascending = direction == ASCENDING
    if not loose:
        return {key: {"$gt" if ascending else "$lt": value}}
    kind = _kind(value)
    branches: list[dict[str, Any]] = []
    if value is not None:
        branches.append({key: {"$gt" if ascending else "$lt": value}})
    later = range(kind + 1, len(_KINDS)) if ascending else range(1, kind)
    types = [name for k in later for name in _KINDS[k]]
    if types:
        branches.append({key: {"$type": types}})
    if not ascending and kind > 0:
        branches.append({key: None})  # missing and null: last when descending
    branches.append({key: {"$type": ["array", "object"]}})  # admitted, to be met and refused
    return {"$or": branches}


def after_filter(values: list[Any], sort: Sort, loose: Collection[str] = ()) -> dict[str, Any]:
    """Documents strictly after `values` in `sort` order: (a > x) or (a = x and b > y) or …"""
    branches = []
    for i, (key, direction) in enumerate(sort):
        branch = {k: v for (k, _), v in zip(sort[:i], values[:i], strict=True)}
        branch.update(_strictly_after(key, values[i], direction, key in loose))
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
        values, _ = decode_cursor(request.after, order)
        scoped = {"$and": [query, after_filter(values, order)]}
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
    loose: Collection[str] = (),
) -> dict[Any, Page]:
    """The same page of `query` under each of many parents, in ONE round trip.

    Each parent gets its own `$match → $sort → $limit` branch (each served by the parent's
    index), joined with `$unionWith`: a nested connection costs one query per nesting level,
    not one per parent. `loose` names the sort keys that may be missing or of mixed kinds.
    """
    order = with_tiebreak(sort or [])
    window = request.window
    position, left, skip = [], window.size if window else 0, window.offset if window else 0
    if request.after:
        values, left = decode_cursor(request.after, order, windowed=window is not None)
        position, skip = [after_filter(values, order, loose)], 0
    take = min(request.first, left) if window else request.first

    def branch(parent_id: Any) -> list[dict[str, Any]]:
        scoped = {"$and": [{parent_field: parent_id}, query, *position]}
        skipped = [{"$skip": skip}] if skip else []
        return [{"$match": scoped}, {"$sort": dict(order)}, *skipped, {"$limit": take + 1}]

    first, *others = parent_ids
    pipeline = [
        *branch(first),
        *({"$unionWith": {"coll": collection.name, "pipeline": branch(p)}} for p in others),
    ]
    grouped: dict[Any, list[dict[str, Any]]] = {parent: [] for parent in parent_ids}
    # One batch holds every branch's page: no getMore round trip for the last few documents.
    batch = len(parent_ids) * (take + 1) + 1
    async for doc in await collection.aggregate(pipeline, batchSize=batch):
        grouped[doc[parent_field]].append(doc)

    def page(parent_id: Any, docs: list[dict[str, Any]]) -> Page:
        async def count() -> int:
            return await collection.count_documents({"$and": [{parent_field: parent_id}, query]})

        shown = docs[:take]
        return Page(
            docs=shown,
            cursors=[
                encode_cursor(d, order, loose, left - i - 1 if window else None)
                for i, d in enumerate(shown)
            ],
            has_next_page=len(docs) > take and (window is None or take < left),
            has_previous_page=request.after is not None,
            count=count,
        )

    return {parent: page(parent, docs) for parent, docs in grouped.items()}
