"""DQL: translation to MongoDB, refusals with their codes, bounds, the query envelope, and the
in-memory matcher on the cases where MongoDB's answers are least obvious (recorded from the
server, and re-checked against it)."""

from datetime import UTC, datetime
from typing import Any

import pytest
from bson import ObjectId, Regex
from pymongo.asynchronous.database import AsyncDatabase

from resolvers import dql
from resolvers.dql import DqlJoin, DqlQuery, envelope, matches, parse, to_mongo
from resolvers.errors import BadUserInput, LimitExceeded

OID = "5f0c6b8e9d1b2c3a4e5f6a7b"
JOIN_ON = {"resource": "annotations", "local": "itemId", "forigen": "id"}


def refusal(resource: str, filter_: Any) -> BadUserInput:
    with pytest.raises(BadUserInput) as caught:
        to_mongo(resource, filter_)
    return caught.value


# -- translation ----------------------------------------------------------------------------


def test_a_dataloop_filter_keeps_its_shape():
    filter_ = {"$and": [{"dir": "/train"}, {"metadata.user.split": {"$in": ["a", "b"]}}]}
    assert to_mongo("items", filter_) == filter_


def test_wire_names_become_stored_names_and_ids_and_dates_are_converted():
    query = to_mongo(
        "items",
        {
            "id": OID,
            "hash": "ab12",
            "creator": {"$in": [OID, None]},
            "createdAt": {"$gte": "2024-05-01T12:00:00.123456+02:00", "$lt": "2024-06-01"},
            "updatedAt": {"$exists": True},
        },
    )
    assert query == {
        "_id": ObjectId(OID),
        "sha256": "ab12",
        "creator": {"$in": [ObjectId(OID), None]},
        "createdAt": {
            "$gte": datetime(2024, 5, 1, 10, 0, 0, 123000, tzinfo=UTC),
            "$lt": datetime(2024, 6, 1, tzinfo=UTC),
        },
        "updatedAt": {"$exists": True},
    }


def test_annotation_fields_paths_and_model_ids():
    query = to_mongo(
        "annotations",
        {
            "label": "car",
            "modelInfo.modelId": OID,
            "modelInfo.confidence": {"$gte": 0.5},
            "attributes.color-1.shade_2": "red",
            "metadata.system.frame": 3,
        },
    )
    assert query == {
        "label": "car",
        "modelInfo.modelId": ObjectId(OID),
        "modelInfo.confidence": {"$gte": 0.5},
        "attributes.color-1.shade_2": "red",
        "metadata.system.frame": 3,
    }


def test_execution_fields_ids_dates_and_input_output_paths():
    query = to_mongo(
        "executions",
        {
            "serviceId": OID,
            "resource.id": {"$in": [OID]},
            "status": {"$in": ["failed", "aborted"]},
            "startedAt": {"$gte": "2024-05-01T00:00:00Z"},
            "input.threshold": {"$gt": 0.5},
            "output.labels.0": "car",
        },
    )
    assert query == {
        "serviceId": ObjectId(OID),
        "resource.id": {"$in": [ObjectId(OID)]},
        "status": {"$in": ["failed", "aborted"]},
        "startedAt": {"$gte": datetime(2024, 5, 1, tzinfo=UTC)},
        "input.threshold": {"$gt": 0.5},
        "output.labels.0": "car",
    }
    with pytest.raises(BadUserInput, match=r"Unknown field 'metadata\.x' for executions"):
        to_mongo("executions", {"metadata.x": 1})


def test_not_becomes_nor_and_operators_pass_through():
    query = to_mongo(
        "items",
        {
            "$or": [{"size": {"$gt": 1, "$lte": 5}}, {"tags": {"$nin": ["x"]}}],
            "$not": {"hidden": {"$ne": False}},
            "name": {"$eq": None},
        },
    )
    assert query == {
        "$or": [{"size": {"$gt": 1, "$lte": 5}}, {"tags": {"$nin": ["x"]}}],
        "$nor": [{"hidden": {"$ne": False}}],
        "name": None,
    }


def test_no_filter_is_everything():
    assert to_mongo("items", None) == {}
    assert to_mongo("items", {}) == {}
    assert matches("items", None, {"_id": 1})


@pytest.mark.parametrize(
    ("pattern", "regex"),
    [
        ("a.b*", "^a\\.b.*\\z"),
        ("?x??", "^.x..\\z"),
        ("a**b***", "^a(?>.*?b).*\\z"),
        ("*x*y?*z", "^(?>.*?x)(?>.*?y.).*z\\z"),
        ("(a|b)[c]+$^\\", "^\\(a\\|b\\)\\[c\\]\\+\\$\\^\\\\\\z"),
        ("nul\x00", "^nul\\x00\\z"),
        ("", "^\\z"),
    ],
)
def test_a_glob_becomes_an_anchored_escaped_regex(pattern, regex):
    assert to_mongo("items", {"name": {"$glob": pattern}}) == {
        "name": {"$regex": regex, "$options": "s"}
    }


@pytest.mark.parametrize(
    ("pattern", "text", "expected"),
    [
        ("a.b*", "a.bX", True),
        ("a.b*", "aXbY", False),
        ("a?c", "abc", True),
        ("a?c", "ac", False),
        ("?", "é", True),
        ("*", "", True),
        ("a", "a\n", False),
        ("a*", "a\nb", True),
        ("A*", "abc", False),
        ("[ab]", "a", False),
        ("[ab]", "[ab]", True),
        ("*a*b", "xaxbxb", True),
        ("*b*b*b*b*b*b*b*b*b*c", "b" * 1000, False),
    ],
)
def test_globs_match_whole_values_case_sensitively(pattern, text, expected):
    assert matches("items", {"name": {"$glob": pattern}}, {"name": text}) is expected


BACKTRACKER = "aaaaab" + "a" * 3000 + "c"
"""A text on which a greedy `.*` per `*` backtracks until MongoDB's regex engine gives up."""
GLOBBED = [
    *["a.bX", "aXbY", "a.b", "a\n", "a\nb", "é", "ée", "[ab]", "a", "A.b", "(x)", "a+b"],
    BACKTRACKER,
    "abcab",
]
GLOBS = {
    "*a*a*a*a*a*b*c": [BACKTRACKER],
    "a*ab": ["abcab"],
    "*b*b": ["abcab"],
    "a.b*": ["a.bX", "a.b"],
    "a?b?": ["a.bX", "aXbY"],
    "?": ["é", "a"],
    "??": ["a\n", "ée"],
    "a": ["a"],
    "*\n*": ["a\n", "a\nb"],
    "[ab]": ["[ab]"],
    "(?)": ["(x)"],
    "a+*": ["a+b"],
    "a*": ["a.bX", "aXbY", "a.b", "a\n", "a\nb", "a", "a+b", BACKTRACKER, "abcab"],
    "*": GLOBBED,
}


async def test_globs_mean_the_same_to_mongodb_and_in_memory(db: AsyncDatabase):
    await db.dql_globs.insert_many([{"_id": i, "name": name} for i, name in enumerate(GLOBBED)])
    for pattern, expected in GLOBS.items():
        filter_ = {"name": {"$glob": pattern}}
        found = db.dql_globs.find(to_mongo("items", filter_)).sort("_id")
        assert [doc["name"] async for doc in found] == expected, pattern
        assert [n for n in GLOBBED if matches("items", filter_, {"name": n})] == expected, pattern


# -- MongoDB's answers on the least obvious documents --------------------------------------

DOCS: dict[int, dict[str, Any]] = {
    1: {"a": [1, 2]},
    2: {"a": []},
    3: {"a": [{"b": 1}, {"c": 2}]},
    4: {"a": [{"c": 2}]},
    5: {"a": [[1, 2]]},
    6: {"a": [[{"b": 1}]]},
    7: {"a": 5},
    8: {"a": [None]},
    9: {"a": float("nan")},
    10: {"a": {"b": [1, [2]]}},
    11: {"a": [{"0": 7}, 8]},
    12: {"a": [[7], 9]},
    13: {"a": [{"b": [{"c": 1}]}]},
    14: {},
    15: {"a": None},
    16: {"a": False},
    17: {"a": [3, [4, {"b": 5}]]},
    18: {"a": [{"b": None}]},
    19: {"a": 2**53 + 1},
    20: {"a": float(2**53)},
    21: {"a": 0},
    22: {"a": "5"},
    23: {"a": datetime(2024, 1, 1, tzinfo=UTC)},
}
"""Answers recorded from MongoDB 6.0; `test_recorded_answers_are_mongodb_answers` re-asks."""

ANSWERS: list[tuple[dict[str, Any], list[int]]] = [
    ({"metadata.a.b": None}, [3, 4, 7, 9, 11, 14, 15, 16, 18, 19, 20, 21, 22, 23]),
    ({"metadata.a.b": {"$exists": True}}, [3, 10, 13, 18]),
    ({"metadata.a": None}, [8, 14, 15]),
    ({"metadata.a": {"$ne": None}}, [*range(1, 8), *range(9, 14), *range(16, 24)]),
    ({"metadata.a": {"$exists": False}}, [14]),
    ({"metadata.a.0": 7}, [11]),
    ({"metadata.a.0": 1}, [1]),
    ({"metadata.a.0.b": 1}, [3, 6]),
    ({"metadata.a.0": {"$exists": True}}, [1, 3, 4, 5, 6, 8, 11, 12, 13, 17, 18]),
    ({"metadata.a.1.b": 5}, [17]),
    ({"metadata.a.1": 4}, []),
    ({"metadata.a.b.1": 2}, []),
    ({"metadata.a.b.c": 1}, [13]),
    ({"metadata.a": {"$lt": 100}}, [1, 7, 11, 12, 17, 21]),
    ({"metadata.a": {"$ne": 5}}, [*range(1, 7), *range(8, 24)]),
    ({"metadata.a": {"$nin": [1, 9]}}, [2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, *range(15, 24)]),
    ({"metadata.a": {"$in": [None, 8]}}, [8, 11, 14, 15]),
    ({"metadata.a": float(2**53)}, [20]),
    ({"metadata.a": {"$gt": float(2**53)}}, [19]),
    ({"metadata.a": 0}, [21]),
    ({"metadata.a": False}, [16]),
    ({"metadata.a": {"$gte": "0"}}, [22]),
    ({"metadata.a": {"$glob": "*"}}, [22]),
]


def _metadata(doc: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": doc}


@pytest.mark.parametrize(("filter_", "expected"), ANSWERS, ids=[str(f) for f, _ in ANSWERS])
def test_matching_walks_paths_and_compares_like_mongodb(filter_, expected):
    assert [i for i, doc in DOCS.items() if matches("items", filter_, _metadata(doc))] == expected


async def test_recorded_answers_are_mongodb_answers(db: AsyncDatabase):
    await db.dql_answers.insert_many([{"_id": i, **_metadata(doc)} for i, doc in DOCS.items()])
    for filter_, expected in ANSWERS:
        found = db.dql_answers.find(to_mongo("items", filter_), ["_id"]).sort("_id")
        assert [doc["_id"] async for doc in found] == expected, filter_


def test_dates_compare_with_dates_at_millisecond_precision():
    doc = {"createdAt": datetime(2024, 1, 1, 12, tzinfo=UTC)}
    assert matches("items", {"createdAt": "2024-01-01T14:00:00.0009+02:00"}, doc)
    assert matches("items", {"createdAt": {"$lt": "2024-01-01T12:00:00.001Z"}}, doc)
    assert not matches("items", {"createdAt": {"$gt": "2024-01-01T12:00:00"}}, doc)


# -- refusals -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("filter_", "field"),
    [
        ({"$where": "sleep(1000)"}, "filter.$where"),
        ({"$expr": {"$eq": ["$a", 1]}}, "filter.$expr"),
        ({"$nor": [{"dir": "/"}]}, "filter.$nor"),
        ({"$and": [{"$function": {}}]}, "filter.$and.0.$function"),
        ({"name": {"$regex": "^a"}}, "filter.name.$regex"),
        ({"tags": {"$elemMatch": {"$eq": "a"}}}, "filter.tags.$elemMatch"),
        ({"tags": {"$size": 2}}, "filter.tags.$size"),
        ({"size": {"$foo": 1}}, "filter.size.$foo"),
        ({"size": {"$not": {"$gt": 1}}}, "filter.size.$not"),
        ({"size": {"$gt": 1, "lt": 5}}, "filter.size.lt"),
        ({"metadata.user.a": {"b": 1}}, "filter.metadata.user.a.b"),
        ({"size": {}}, "filter.size"),
        ({"size": [1, 2]}, "filter.size"),
        ({"size": {"$eq": [1]}}, "filter.size.$eq"),
        ({"size": {"$eq": {"$gt": 1}}}, "filter.size.$eq"),
        ({"size": {"$in": [1, [2]]}}, "filter.size.$in.1"),
        ({"size": {"$in": 1}}, "filter.size.$in"),
        ({"size": {"$gt": None}}, "filter.size.$gt"),
        ({"size": {"$lte": None}}, "filter.size.$lte"),
        ({"size": {"$exists": 1}}, "filter.size.$exists"),
        ({"name": {"$glob": 1}}, "filter.name.$glob"),
        ({"id": {"$glob": "5f*"}}, "filter.id.$glob"),
        ({"createdAt": {"$glob": "2024*"}}, "filter.createdAt.$glob"),
        ({"size": float("nan")}, "filter.size"),
        ({"size": {"$lt": float("inf")}}, "filter.size.$lt"),
        ({"size": 2**63}, "filter.size"),
        ({"name": "\ud800"}, "filter.name"),
        ({"id": "not-an-id"}, "filter.id"),
        ({"creator": {"$in": [OID, 12]}}, "filter.creator.$in.1"),
        ({"createdAt": "yesterday"}, "filter.createdAt"),
        ({"createdAt": 1700000000}, "filter.createdAt"),
        ({"label": "car"}, "filter.label"),
        ({"sha256": "ab"}, "filter.sha256"),
        ({"_id": OID}, "filter._id"),
        ({"metadata": {"$exists": True}}, "filter.metadata"),
        ({"metadata.": 1}, "filter.metadata."),
        ({"metadata.user..a": 1}, "filter.metadata.user..a"),
        ({"metadata.user.$a": 1}, "filter.metadata.user.$a"),
        ({"metadata.user.a b": 1}, "filter.metadata.user.a b"),
        ({"$and": []}, "filter.$and"),
        ({"$or": {"dir": "/"}}, "filter.$or"),
        ({"$or": ["dir"]}, "filter.$or.0"),
        ({"$not": [{"dir": "/"}]}, "filter.$not"),
        ([{"dir": "/"}], "filter"),
    ],
)
def test_what_dql_does_not_allow_is_bad_user_input_naming_where(filter_, field):
    error = refusal("items", filter_)
    assert error.code == "BAD_USER_INPUT"
    assert error.extensions["field"] == field
    with pytest.raises(BadUserInput):
        matches("items", filter_, {})


def test_an_unknown_field_is_named_with_the_fields_allowed():
    error = refusal("items", {"$or": [{"dir": "/"}, {"colour": "red"}]})
    assert "'colour'" in error.message
    assert "datasetId" in error.message
    assert "metadata.<path>" in error.message
    assert "attributes.<path>" in refusal("annotations", {"colour": "red"}).message


def test_items_do_not_have_annotation_fields_nor_annotations_item_fields():
    refusal("items", {"modelInfo.name": "yolo"})
    refusal("annotations", {"hash": "ab"})
    assert to_mongo("annotations", {"attributes.occluded": True}) == {"attributes.occluded": True}


def test_an_unknown_resource_is_refused():
    assert refusal("models", {}).extensions["field"] == "resource"


# -- bounds ---------------------------------------------------------------------------------


def nested_nots(depth: int) -> dict[str, Any]:
    filter_: dict[str, Any] = {"dir": "/"}
    for _ in range(depth - 1):
        filter_ = {"$not": filter_}
    return filter_


def limit_of(resource: str, filter_: Any) -> str:
    with pytest.raises(LimitExceeded) as caught:
        to_mongo(resource, filter_)
    assert caught.value.code == "BAD_USER_INPUT"
    return caught.value.extensions["limit"]


def test_nesting_is_bounded():
    assert to_mongo("items", nested_nots(dql.MAX_DEPTH))
    assert limit_of("items", nested_nots(dql.MAX_DEPTH + 1)) == "maxDqlDepth"
    deep_and = {"$and": [nested_nots(dql.MAX_DEPTH)]}
    assert limit_of("items", deep_and) == "maxDqlDepth"


def test_conditions_are_bounded():
    many = [{"size": i} for i in range(dql.MAX_CONDITIONS - 1)]
    assert to_mongo("items", {"$or": many, "width": {"$gt": 1}})
    assert limit_of("items", {"$or": many, "width": {"$gt": 1, "$lt": 9}}) == "maxDqlConditions"


def test_in_lists_are_bounded():
    assert to_mongo("items", {"size": {"$in": list(range(dql.MAX_IN_VALUES))}})
    too_many = list(range(dql.MAX_IN_VALUES + 1))
    assert limit_of("items", {"size": {"$nin": too_many}}) == "maxDqlInValues"


def test_strings_are_bounded():
    longest = "x" * dql.MAX_STRING_LENGTH
    assert to_mongo("items", {"name": longest, "dir": {"$glob": longest}})
    assert limit_of("items", {"name": longest + "x"}) == "maxDqlStringLength"
    assert limit_of("items", {"name": {"$glob": longest + "*"}}) == "maxDqlStringLength"
    assert limit_of("items", {"tags": {"$in": ["a", longest + "x"]}}) == "maxDqlStringLength"


def test_the_json_size_is_bounded():
    big = {"$or": [{"name": "x" * 900} for _ in range(80)]}
    assert limit_of("items", big) == "maxDqlBytes"
    assert _parse_limit({"resource": "items", "filter": big}) == "maxDqlBytes"


def test_metadata_paths_are_bounded():
    deepest = "metadata." + ".".join("abcdefgh")
    assert to_mongo("items", {deepest: 1}) == {deepest: 1}
    assert limit_of("items", {deepest + ".i": 1}) == "maxDqlPathDepth"


# -- the envelope ---------------------------------------------------------------------------


def test_a_dataloop_query_parses_into_its_parts():
    query = parse(
        {
            "resource": "items",
            "filter": {"$and": [{"dir": "/train"}, {"metadata.user.split": {"$in": ["a", "b"]}}]},
            "join": {"on": JOIN_ON, "filter": {"label": "car"}},
            "sort": {"createdAt": "descending", "filename": "ascending", "size": 1, "id": -1},
            "page": 0,
            "pageSize": 100,
        }
    )
    assert query == DqlQuery(
        resource="items",
        filter={"$and": [{"dir": "/train"}, {"metadata.user.split": {"$in": ["a", "b"]}}]},
        join=DqlJoin(
            resource="annotations", filter={"label": "car"}, local="itemId", foreign="_id"
        ),
        sort=[("createdAt", -1), ("filename", 1), ("size", 1), ("_id", -1)],
        page=0,
        page_size=100,
    )


def test_a_query_needs_only_its_resource():
    assert parse({"resource": "annotations"}) == DqlQuery("annotations", {}, None, [], 0, None)
    assert parse({"resource": "items", "filter": None, "pageSize": None}).filter == {}


def test_foreign_may_be_spelt_correctly_and_a_join_filter_is_optional():
    on = {"resource": "annotations", "local": "itemId", "foreign": "id"}
    join = parse({"resource": "items", "join": {"on": on}}).join
    assert join == DqlJoin("annotations", {}, "itemId", "_id")


def test_a_join_filter_is_an_annotations_filter():
    join = parse({"resource": "items", "join": {"on": JOIN_ON, "filter": {"parentId": OID}}}).join
    assert join is not None
    assert join.filter == {"parentId": ObjectId(OID)}
    with pytest.raises(BadUserInput) as caught:
        parse({"resource": "items", "join": {"on": JOIN_ON, "filter": {"dir": "/"}}})
    assert caught.value.extensions["field"] == "join.filter.dir"


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"filter": {}}, "resource"),
        ({"resource": "datasets"}, "resource"),
        ({"resource": ["items"]}, "resource"),
        ({"resource": "items", "context": {}}, "context"),
        ({"resource": "items", "filter": {"nope": 1}}, "filter.nope"),
        ({"resource": "annotations", "join": {"on": JOIN_ON}}, "join"),
        ({"resource": "items", "join": {"filter": {}}}, "join"),
        ({"resource": "items", "join": {"on": JOIN_ON, "sort": {}}}, "join"),
        ({"resource": "items", "join": {"on": {**JOIN_ON, "resource": "items"}}}, "join.on"),
        ({"resource": "items", "join": {"on": {**JOIN_ON, "local": "parentId"}}}, "join.on"),
        ({"resource": "items", "join": {"on": {**JOIN_ON, "forigen": "name"}}}, "join.on"),
        ({"resource": "items", "join": {"on": {**JOIN_ON, "foreign": "id"}}}, "join.on"),
        ({"resource": "items", "join": {"on": {**JOIN_ON, "extra": 1}}}, "join.on"),
        ({"resource": "items", "sort": [["createdAt", 1]]}, "sort"),
        ({"resource": "items", "sort": {"createdAt": "up"}}, "sort.createdAt"),
        ({"resource": "items", "sort": {"createdAt": True}}, "sort.createdAt"),
        ({"resource": "items", "sort": {"createdAt": 2}}, "sort.createdAt"),
        ({"resource": "items", "sort": {"createdAt": [1]}}, "sort.createdAt"),
        ({"resource": "items", "sort": {"colour": 1}}, "sort.colour"),
        ({"resource": "items", "page": -1}, "page"),
        ({"resource": "items", "page": 1.5}, "page"),
        ({"resource": "items", "page": True}, "page"),
        ({"resource": "items", "pageSize": 0}, "pageSize"),
        ({"resource": "items", "pageSize": "10"}, "pageSize"),
    ],
)
def test_a_malformed_query_is_bad_user_input_naming_where(query, field):
    with pytest.raises(BadUserInput) as caught:
        parse(query)
    assert caught.value.extensions["field"] == field


def _parse_limit(query: dict[str, Any]) -> str:
    with pytest.raises(LimitExceeded) as caught:
        parse(query)
    return caught.value.extensions["limit"]


def test_page_size_and_sort_keys_are_bounded():
    assert parse({"resource": "items", "pageSize": dql.MAX_PAGE_SIZE}).page_size == 1000
    assert _parse_limit({"resource": "items", "pageSize": 1001}) == "maxDqlPageSize"
    sort = {f"metadata.user.k{i}": 1 for i in range(dql.MAX_SORT_KEYS + 1)}
    assert _parse_limit({"resource": "items", "sort": sort}) == "maxDqlSortKeys"


def test_envelope_wraps_a_bare_filter_and_keeps_a_whole_query():
    assert envelope("items", {"dir": "/"}) == {"resource": "items", "filter": {"dir": "/"}}
    assert envelope("items", None) == {"resource": "items", "filter": None}
    whole = {"filter": {"dir": "/"}, "pageSize": 5}
    assert envelope("items", whole) == {**whole, "resource": "items"}
    with pytest.raises(BadUserInput):
        envelope("items", {"resource": "annotations", "filter": {}})


# -- dtlpy's ways -----------------------------------------------------------------------------


def glob(pattern: str) -> Regex:
    return Regex(dql._glob_regex(pattern), "s")


def test_plain_values_with_a_star_are_patterns_in_every_equality_operator():
    query = to_mongo(
        "items",
        {
            "filename": "/test/**",
            "name": {"$ne": "dog*"},
            "tags": {"$in": ["a*", "b", None]},
            "dir": {"$nin": ["/x*"]},
            "metadata.user.note": "what?",
        },
    )
    assert query == {
        "filename": glob("/test/*"),
        "name": {"$not": glob("dog*")},
        "tags": {"$in": [glob("a*"), "b", None]},
        "dir": {"$nin": [glob("/x*")]},
        "metadata.user.note": "what?",
    }


def test_two_patterns_on_one_field_become_an_and():
    query = to_mongo("items", {"name": {"$glob": "a*", "$eq": "*b"}, "dir": "/d"})
    assert query == {
        "$and": [
            {"name": {"$regex": "^a.*\\z", "$options": "s"}},
            {"name": {"$regex": "^.*b\\z", "$options": "s"}},
            {"dir": "/d"},
        ]
    }


def test_dtlpy_system_names_are_loom_fields_and_numbers_may_be_strings():
    query = to_mongo(
        "items",
        {
            "metadata.system.mimetype": "image/*",
            "metadata.system.size": {"$gt": "0", "$lt": "5242880"},
            "metadata.system.width": {"$gte": "1.5"},
            "metadata.system.height": 10,
            "metadata.system.originalname": "a.png",
        },
    )
    assert query == {
        "mimetype": glob("image/*"),
        "size": {"$gt": 0, "$lt": 5242880},
        "width": {"$gte": 1.5},
        "height": 10,
        "metadata.system.originalName": "a.png",
    }


def test_dtlpy_annotation_types_compare_as_loom_types():
    query = to_mongo("annotations", {"type": {"$in": ["class", "segment", "binary", "cube_3d"]}})
    assert query == {"type": {"$in": ["classification", "polygon", "segmentation", "cube_3d"]}}
    assert to_mongo("annotations", {"type": {"$ne": "cube"}}) == {"type": {"$ne": "cuboid"}}
    assert to_mongo("annotations", {"type": "class"}) == {"type": "classification"}
    assert matches("annotations", {"type": "class"}, {"type": "classification"})


@pytest.mark.parametrize(
    ("query", "window"),
    [
        ({}, None),
        ({"page": 0, "pageSize": 1000}, (0, 1000)),
        ({"page": 2, "pageSize": 50}, (100, 50)),
        ({"page": 3}, (3000, 1000)),
    ],
)
def test_a_dtlpy_page_is_a_window_of_the_result(query: dict[str, Any], window: Any):
    assert parse({"resource": "items", **query}).window == window
