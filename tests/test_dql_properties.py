"""The in-memory DQL matcher agrees with MongoDB on random documents and random filters.

Each example inserts a batch of item-shaped documents — fields missing, null, numbers (ints and
floats that tie, NaN, infinities, 2**53 neighbours), booleans, strings over a tiny alphabet,
dates, arrays, sub-documents, arrays of sub-documents and of arrays — into a real collection,
then runs several random filters (every operator, nested `$and`/`$or`/`$not`, numeric path
segments) through `to_mongo` + `find` and through `matches` on the documents as read back, and
asserts the same documents come out. Hypothesis is synchronous, so this uses a plain
`MongoClient` on the session's test stack.
"""

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from bson import ObjectId
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pymongo import MongoClient
from pymongo.collection import Collection

from resolvers.dql import matches, to_mongo

EXAMPLES = 500
FILTERS_PER_EXAMPLE = 5
MAX_FILTER_DEPTH = 5

IDS = [ObjectId(f"{i:024x}") for i in range(1, 22)]
DATES = [datetime(2024, 1, day, 12, tzinfo=UTC) for day in (1, 2, 3)]
KEYS = ["a", "b", "0", "1"]
STRINGS = ["", "a", "b", "A", "ab", "ba", "aab", "a.b", "a\n", "\na", "é", "aé", "*", "a?b"]
TEXT = st.one_of(st.sampled_from(STRINGS), st.text(alphabet="ab.*?é\n", max_size=3))
NUMBERS = st.sampled_from([0, 1, 2, -1, 2**53, 2**53 + 1, 0.5, 1.0, -0.0, 2.0, float(2**53)])
ODD_NUMBERS = st.sampled_from([float("nan"), float("inf"), float("-inf"), 2**63 - 1])
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, TEXT)

STORED = st.recursive(
    st.one_of(SCALARS, TEXT, ODD_NUMBERS, st.sampled_from(DATES)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.sampled_from(KEYS), inner, max_size=3),
    ),
    max_leaves=6,
)
SUBDOCUMENTS = st.one_of(st.dictionaries(st.sampled_from(KEYS), STORED, max_size=4), STORED)
DOCUMENTS = st.lists(
    st.fixed_dictionaries(
        {},
        optional={
            "dir": st.one_of(TEXT, STORED),
            "name": st.one_of(TEXT, STORED),
            "size": STORED,
            "width": STORED,
            "hidden": STORED,
            "tags": st.lists(TEXT, max_size=3),
            "annotated": STORED,
            "createdAt": st.one_of(st.sampled_from(DATES), STORED),
            "metadata": st.fixed_dictionaries(
                {}, optional={"user": SUBDOCUMENTS, "system": SUBDOCUMENTS}
            ),
        },
    ),
    min_size=10,
    max_size=20,
)

FIELDS = [
    "dir",
    "name",
    "size",
    "width",
    "hidden",
    "tags",
    "annotated",
    "createdAt",
    "id",
    "metadata.user",
    "metadata.user.a",
    "metadata.user.a.b",
    "metadata.user.0",
    "metadata.user.0.a",
    "metadata.user.a.0",
    "metadata.user.a.1",
    "metadata.user.a.0.b",
    "metadata.user.b.a.0",
    "metadata.system.b",
]


def _iso(moment: datetime, offset_hours: int, microseconds: int) -> str:
    shifted = moment.astimezone(timezone(timedelta(hours=offset_hours)))
    return (shifted + timedelta(microseconds=microseconds)).isoformat()


@st.composite
def _globs(draw: st.DrawFn) -> str:
    """Mostly a known string with some characters turned into wildcards, so globs hit."""
    text = draw(TEXT)
    pattern = "".join(draw(st.sampled_from([c, c, "?", "*", f"*{c}"])) for c in text)
    return pattern + draw(st.sampled_from(["", "", "*", "?"]))


GLOBS = _globs()
DATE_ARGS = st.builds(
    _iso, st.sampled_from(DATES), st.sampled_from([0, 2, -5]), st.sampled_from([0, 500, 1500])
)
ID_ARGS = st.sampled_from(IDS).map(str)


def _scalars(field: str) -> st.SearchStrategy[Any]:
    return {"id": ID_ARGS, "createdAt": DATE_ARGS}.get(field, SCALARS)


def _operand(field: str, op: str) -> st.SearchStrategy[Any]:
    scalars = _scalars(field)
    if op in ("$in", "$nin"):
        return st.lists(st.one_of(st.none(), scalars), max_size=3)
    if op == "$exists":
        return st.booleans()
    if op == "$glob":
        return GLOBS
    if op in ("$gt", "$gte", "$lt", "$lte"):
        return scalars.filter(lambda value: value is not None)
    return st.one_of(st.none(), scalars)


def _condition(field: str) -> st.SearchStrategy[Any]:
    ops = ["$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$exists"]
    if field not in ("id", "createdAt"):
        ops += ["$glob"] * 3  # strings are a minority of stored values: aim at them more
    operators = st.lists(
        st.sampled_from(ops).flatmap(lambda op: _operand(field, op).map(lambda v: (op, v))),
        min_size=1,
        max_size=2,
        unique_by=lambda pair: pair[0],
    ).map(dict)
    return st.one_of(st.none(), _scalars(field), operators, operators)


FIELD_FILTERS = st.lists(
    st.sampled_from(FIELDS).flatmap(lambda f: _condition(f).map(lambda c: (f, c))),
    min_size=1,
    max_size=2,
    unique_by=lambda pair: pair[0],
).map(dict)


SHAPES = ["field", "field", "field", "$and", "$or", "$not", "field and $not"]


@st.composite
def _filters(draw: st.DrawFn, depth: int = 1) -> dict[str, Any]:
    """A filter nested at most MAX_FILTER_DEPTH deep, mostly field conditions."""
    shape = draw(st.sampled_from(SHAPES)) if depth < MAX_FILTER_DEPTH else "field"
    if shape in ("$and", "$or"):
        return {shape: draw(st.lists(_filters(depth + 1), min_size=1, max_size=2))}
    if shape == "$not":
        return {"$not": draw(_filters(depth + 1))}
    if shape == "field and $not":
        return {**draw(FIELD_FILTERS), "$not": draw(_filters(depth + 1))}
    return draw(FIELD_FILTERS)


@pytest.fixture(scope="module")
def collection(stack: dict[str, str]) -> Iterator[Collection]:
    client: MongoClient = MongoClient(stack["mongodb_url"], tz_aware=True)
    name = f"test_dql_{uuid.uuid4().hex[:12]}"
    yield client[name].items
    client.drop_database(name)
    client.close()


def test_in_memory_matching_agrees_with_mongodb(collection: Collection) -> None:
    checked = {"filters": 0, "documents": 0}

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(
        documents=DOCUMENTS,
        filters=st.lists(_filters(), min_size=FILTERS_PER_EXAMPLE, max_size=FILTERS_PER_EXAMPLE),
    )
    def agree(documents: list[dict[str, Any]], filters: list[dict[str, Any]]) -> None:
        collection.delete_many({})
        collection.insert_many([{"_id": IDS[i], **doc} for i, doc in enumerate(documents)])
        stored = list(collection.find())
        for filter_ in filters:
            found = [doc["_id"] for doc in collection.find(to_mongo("items", filter_), ["_id"])]
            matched = [doc["_id"] for doc in stored if matches("items", filter_, doc)]
            assert sorted(matched) == sorted(found), filter_
        checked["filters"] += len(filters)
        checked["documents"] += len(filters) * len(stored)

    agree()
    assert checked["filters"] >= EXAMPLES * FILTERS_PER_EXAMPLE
