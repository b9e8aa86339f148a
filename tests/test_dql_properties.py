"""The in-memory DQL matcher agrees with MongoDB on random documents and random filters.

Each example inserts a batch of item-shaped documents — fields missing, null, numbers (ints and
floats that tie, NaN, infinities, 2**53 neighbours), booleans, strings over a tiny alphabet,
dates, arrays, sub-documents, arrays of sub-documents and of arrays — into a real collection,
then runs several random filters (every operator, nested `$and`/`$or`/`$not`, numeric path
segments, wildcard patterns in plain values, dtlpy's `metadata.system.*` names, numbers written
as strings) through `to_mongo` + `find` and through `matches` on the documents as read back, and
asserts the same documents come out. Hypothesis is synchronous, so this uses a plain
`MongoClient` on the session's test stack.
"""

import math
import uuid
from collections import defaultdict
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

EXAMPLES = 120
FILTERS_PER_EXAMPLE = 12
MAX_FILTER_DEPTH = 5

IDS = [ObjectId(f"{i:024x}") for i in range(1, 22)]
DATES = [datetime(2024, 1, day, 12, tzinfo=UTC) for day in (1, 2, 3)]
KEYS = ["a", "b", "0", "1"]
# Hypothesis favours the first entries of a list: the subtle values come first.
STRINGS = ["a\n", "a.b", "é", "aé", "\na", "a?b", "*", "", "a", "b", "A", "ab", "ba", "aab"]
TEXT = st.one_of(st.sampled_from(STRINGS), st.text(alphabet="ab.*?é\n", max_size=3))
NUMBERS = st.sampled_from([2**53 + 1, float(2**53), 2**53, 1, 1.0, 0, -0.0, 0.5, 2, -1, 2.0])
ODD_NUMBERS = st.sampled_from([float("nan"), float("inf"), float("-inf"), 2**63 - 1])
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, TEXT)

LEAVES = st.one_of(SCALARS, TEXT, ODD_NUMBERS, st.sampled_from(DATES))
FLAT = st.one_of(LEAVES, st.lists(LEAVES, max_size=3))
STORED = st.recursive(
    LEAVES,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(KEYS), inner, max_size=3)
    ),
    max_leaves=4,
)
SUBDOCUMENTS = st.one_of(st.dictionaries(st.sampled_from(KEYS), STORED, max_size=4), STORED)
DOCUMENTS = st.lists(
    st.fixed_dictionaries(
        {},
        optional={
            "dir": st.one_of(TEXT, FLAT),
            "name": st.one_of(TEXT, FLAT),
            "mimetype": st.one_of(TEXT, FLAT),
            "size": FLAT,
            "width": FLAT,
            "hidden": FLAT,
            "tags": st.lists(TEXT, max_size=3),
            "annotated": FLAT,
            "createdAt": st.one_of(st.sampled_from(DATES), FLAT),
            "metadata": st.fixed_dictionaries(
                {}, optional={"user": SUBDOCUMENTS, "system": SUBDOCUMENTS}
            ),
        },
    ),
    min_size=8,
    max_size=16,
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
    "mimetype",
    "metadata.system.mimetype",
    "metadata.system.size",
    "metadata.user",
    "metadata.user.a",
    "metadata.user.0",
    "metadata.user.a.0.b",
    "metadata.system.b",
]
ID_ARGS = st.sampled_from(IDS).map(str)


def _iso(moment: datetime, offset_hours: int, microseconds: int) -> str:
    shifted = moment.astimezone(timezone(timedelta(hours=offset_hours)))
    return (shifted + timedelta(microseconds=microseconds)).isoformat()


DATE_ARGS = st.builds(
    _iso, st.sampled_from(DATES), st.sampled_from([0, 2, -5]), st.sampled_from([0, 500, 1500])
)


class Vocabulary:
    """What a batch of documents holds — fields (numeric array positions included) and the
    values stored at each — so that random filters mostly ask about things that exist."""

    def __init__(self, documents: list[dict[str, Any]]) -> None:
        fields, values = dict.fromkeys(FIELDS), defaultdict(list)

        def walk(value: Any, path: tuple[str, ...]) -> None:
            field = ".".join(path)
            if path[0] == "metadata" and 1 < len(path) <= 9:
                fields[field] = None
            if isinstance(value, dict):
                for key, child in value.items():
                    walk(child, (*path, key))
            elif isinstance(value, list):
                for index, child in enumerate(value):
                    walk(child, path)
                    walk(child, (*path, str(index)))
            elif not isinstance(value, datetime) and (
                not isinstance(value, float) or math.isfinite(value)
            ):
                values[field].append(value)

        for document in documents:
            for key, value in document.items():
                walk(value, (key,))
        self.fields = st.sampled_from(list(fields))
        self._values = values
        self._scalars: dict[str, st.SearchStrategy[Any]] = {}

    def scalars(self, field: str) -> st.SearchStrategy[Any]:
        if field not in self._scalars:
            stored = self._values.get(field)
            self._scalars[field] = SPECIAL_SCALARS.get(
                field, st.one_of(st.sampled_from(stored), SCALARS) if stored else SCALARS
            )
        return self._scalars[field]

    def texts(self, field: str) -> st.SearchStrategy[str]:
        strings = [value for value in self._values.get(field, []) if isinstance(value, str)]
        return st.one_of(st.sampled_from(strings), TEXT) if strings else TEXT


NUMBER_ARGS = st.one_of(st.none(), NUMBERS, st.sampled_from(["1", "0.5", "-1", "2e0"]))
SPECIAL_SCALARS = {
    "id": ID_ARGS,
    "createdAt": DATE_ARGS,
    "size": NUMBER_ARGS,
    "width": NUMBER_ARGS,
    "metadata.system.size": NUMBER_ARGS,
}
# "=" is a bare `{field: value}`. Hypothesis favours a list's first entries: subtle ones first.
OPERATORS = ["$glob", "$ne", "$gt", "$nin", "$lte", "$exists", "$eq", "$in", "$gte", "$lt", "="]
SHAPES = ["field", "field", "field", "$and", "$or", "$not", "field and $not"]


@st.composite
def _globs(draw: st.DrawFn, texts: st.SearchStrategy[str]) -> str:
    """A string with some characters turned into wildcards, so globs hit."""
    text = draw(texts)
    pattern = "".join(draw(st.sampled_from([c, c, "?", "*", f"*{c}"])) for c in text)
    return pattern + draw(st.sampled_from(["", "", "*", "?"]))


def _operand(draw: st.DrawFn, vocabulary: Vocabulary, field: str, op: str) -> Any:
    if op == "$exists":
        return draw(st.booleans())
    if op == "$glob":
        return draw(_globs(vocabulary.texts(field)))
    scalars = vocabulary.scalars(field)
    if field not in SPECIAL_SCALARS and op in ("$eq", "$ne", "=", "$in", "$nin"):
        # Plain values holding `*` are patterns too.
        scalars = st.one_of(scalars, _globs(vocabulary.texts(field)).map(lambda p: p + "*"))
    if op in ("$in", "$nin"):
        return draw(st.lists(st.one_of(st.none(), scalars), max_size=3))
    if op in ("$gt", "$gte", "$lt", "$lte"):
        return draw(scalars.filter(lambda value: value is not None))
    return draw(scalars)


@st.composite
def _field_filters(draw: st.DrawFn, vocabulary: Vocabulary) -> dict[str, Any]:
    filter_ = {}
    for field in draw(st.lists(vocabulary.fields, min_size=1, max_size=2, unique=True)):
        ops = [op for op in OPERATORS if op != "$glob" or field not in SPECIAL_SCALARS]
        chosen = draw(st.lists(st.sampled_from(ops), min_size=1, max_size=2, unique=True))
        filter_[field] = (
            _operand(draw, vocabulary, field, "=")
            if "=" in chosen
            else {op: _operand(draw, vocabulary, field, op) for op in chosen}
        )
    return filter_


@st.composite
def _filters(draw: st.DrawFn, vocabulary: Vocabulary, depth: int = 1) -> dict[str, Any]:
    """A filter nested at most MAX_FILTER_DEPTH deep, mostly field conditions."""
    shape = draw(st.sampled_from(SHAPES)) if depth < MAX_FILTER_DEPTH else "field"
    if shape in ("$and", "$or"):
        return {shape: draw(st.lists(_filters(vocabulary, depth + 1), min_size=1, max_size=2))}
    if shape == "$not":
        return {"$not": draw(_filters(vocabulary, depth + 1))}
    if shape == "field and $not":
        return {**draw(_field_filters(vocabulary)), "$not": draw(_filters(vocabulary, depth + 1))}
    return draw(_field_filters(vocabulary))


@pytest.fixture(scope="module")
def collection(stack: dict[str, str]) -> Iterator[Collection]:
    client: MongoClient = MongoClient(stack["mongodb_url"], tz_aware=True)
    name = f"test_dql_{uuid.uuid4().hex[:12]}"
    yield client[name].items
    client.drop_database(name)
    client.close()


def test_in_memory_matching_agrees_with_mongodb(collection: Collection) -> None:
    checked = 0

    # Batches of documents are big by design: a loaded machine must not fail the health check.
    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(documents=DOCUMENTS, data=st.data())
    def agree(documents: list[dict[str, Any]], data: st.DataObject) -> None:
        nonlocal checked
        filters = data.draw(
            st.lists(
                _filters(Vocabulary(documents)),
                min_size=FILTERS_PER_EXAMPLE,
                max_size=FILTERS_PER_EXAMPLE,
            )
        )
        collection.delete_many({})
        collection.insert_many([{"_id": IDS[i], **doc} for i, doc in enumerate(documents)])
        stored = list(collection.find())
        for filter_ in filters:
            found = [doc["_id"] for doc in collection.find(to_mongo("items", filter_), ["_id"])]
            matched = [doc["_id"] for doc in stored if matches("items", filter_, doc)]
            assert sorted(matched) == sorted(found), filter_
        checked += len(filters)

    agree()
    assert checked >= EXAMPLES * FILTERS_PER_EXAMPLE
