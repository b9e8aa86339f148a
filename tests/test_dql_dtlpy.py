"""Filters as dtlpy's `Filters.prepare()` emits them (dtlpy/entities/filters.py) find what they
find on Dataloop: wildcards in plain values, the recursive directory filter, joins, OR methods,
dtlpy's `metadata.system.*` names and annotation type names, sorts by metadata and dtlpy pages.

Each case runs through GraphQL (`dataset.items(filter:)`, `item.annotations(filter:)`) on real
MongoDB and through the in-memory matcher (`dql.matches`, what triggers use) on the stored
documents, and both must give the expected item names.
"""

from typing import Any

import pytest
from bson import ObjectId
from pymongo.asynchronous.database import AsyncDatabase

from resolvers import dql
from tests.datasets_world import World, image_bytes, make_world

ON = {"resource": "annotations", "local": "itemId", "forigen": "id"}
ITEM_DEFAULTS = [{"hidden": False}, {"type": "file"}]
DTLPY_TYPES_BUT_NOTE = [
    "box", "cube", "cube_3d", "class", "comparison", "ellipse", "point", "segment", "polyline",
    "pose", "binary", "subtitle", "text_mark", "gis", "ref_semantic_3d", "polyline_3d", "text",
    "ref_image",
]  # fmt: skip
"""dtlpy's default annotations filter: every `dl.AnnotationType` value but `note`."""

CREATE_ANNOTATIONS = """mutation($inputs: [AnnotationInput!]!) {
  createAnnotations(inputs: $inputs) { id type } }"""
ITEMS = """query($dataset: ID!, $filter: JSON, $first: Int!, $after: String) {
  dataset(id: $dataset) { items(filter: $filter, first: $first, after: $after) {
    nodes { name } pageInfo { hasNextPage endCursor } } } }"""
ANNOTATIONS = """query($dataset: ID!, $filter: JSON) {
  dataset(id: $dataset) { items(first: 100) { nodes { name
    annotations(filter: $filter) { label } } } } }"""


def items(
    *ands: dict[str, Any],
    ors: list[dict[str, Any]] | None = None,
    join: dict[str, Any] | None = None,
    sort: dict[str, str] | None = None,
    page: int = 0,
    page_size: int = 1000,
    defaults: bool = True,
) -> dict[str, Any]:
    """What `Filters.prepare()` returns for items: `$or` (method=OR) before `$and` (the
    defaults `hidden: false`, `type: 'file'`, then every `add`), sort, page, pageSize,
    resource, then join."""
    filter_: dict[str, Any] = {}
    if ors:
        filter_["$or"] = ors
    and_list = [*(ITEM_DEFAULTS if defaults else []), *ands]
    if and_list:
        filter_["$and"] = and_list
    query: dict[str, Any] = {"filter": filter_}
    if sort:
        query["sort"] = sort
    query.update(page=page, pageSize=page_size, resource="items")
    if join:
        query["join"] = {"on": ON, "filter": join}
    return query


def annotations(
    *ands: dict[str, Any],
    defaults: bool = True,
    sort: dict[str, str] | None = None,
    page: int = 0,
    page_size: int = 1000,
) -> dict[str, Any]:
    """What `Filters(resource=ANNOTATION).prepare()` returns; an `add` on `type` replaces the
    default type filter, as dtlpy's `_unique_fields` does."""
    default = [{"type": {"$in": DTLPY_TYPES_BUT_NOTE}}] if defaults else []
    if any("type" in condition for condition in ands):
        default = []
    and_list = [*default, *ands]
    query: dict[str, Any] = {"filter": {"$and": and_list} if and_list else {}}
    if sort:
        query["sort"] = sort
    query.update(page=page, pageSize=page_size, resource="annotations")
    return query


VISIBLE = {"dog1.png", "dog2.jpg", "cat1.png", "cat2.png", "dog3.png", "bird.jpg", "notes.txt"}

# (what the dtlpy user wrote, the query dtlpy sends, the item names Loom must return)
ITEM_CASES: list[tuple[str, dict[str, Any], set[str]]] = [
    ("Filters()", items(), VISIBLE),
    (
        "add('filename', '/train/*.png')",
        items({"filename": "/train/*.png"}),
        {"dog1.png", "cat1.png"},
    ),
    (
        "add('filename', '/test') → '/test/**'",
        items({"filename": "/test/**"}),
        {"cat2.png", "dog3.png"},
    ),
    ("add('filename', '/notes.txt')", items({"filename": "/notes.txt"}), {"notes.txt"}),
    (
        "add('filename', ['/train', '/testing'], IN) → '/…/**'",
        items({"filename": {"$in": ["/train/**", "/testing/**"]}}),
        {"dog1.png", "dog2.jpg", "cat1.png", "bird.jpg"},
    ),
    (
        "add('filename', '*dog*')",
        items({"filename": "*dog*"}),
        {"dog1.png", "dog2.jpg", "dog3.png"},
    ),
    ("add('name', 'dog*')", items({"name": "dog*"}), {"dog1.png", "dog2.jpg", "dog3.png"}),
    ("add('name', '*.jpg')", items({"name": "*.jpg"}), {"dog2.jpg", "bird.jpg"}),
    ("add('name', 'dog*.p?g')", items({"name": "dog*.p?g"}), {"dog1.png", "dog3.png"}),
    ("add('name', 'dog?.png'): no * → exact", items({"name": "dog?.png"}), set()),
    ("add('dir', '/test')", items({"dir": "/test"}), {"cat2.png"}),
    ("add('dir', '/train*')", items({"dir": "/train*"}), {"dog1.png", "dog2.jpg", "cat1.png"}),
    (
        "add('name', 'dog*', NOT_EQUAL)",
        items({"name": {"$ne": "dog*"}}),
        {"cat1.png", "cat2.png", "bird.jpg", "notes.txt"},
    ),
    (
        "add('name', ['dog*', 'bird*'], NIN)",
        items({"name": {"$nin": ["dog*", "bird*"]}}),
        {"cat1.png", "cat2.png", "notes.txt"},
    ),
    (
        "add('metadata.system.mimetype', 'image/*')",
        items({"metadata.system.mimetype": "image/*"}),
        VISIBLE - {"notes.txt"},
    ),
    (
        "add('metadata.system.mimetype', ['image/jpeg', 'text/plain'], IN)",
        items({"metadata.system.mimetype": {"$in": ["image/jpeg", "text/plain"]}}),
        {"dog2.jpg", "bird.jpg", "notes.txt"},
    ),
    (
        "add('metadata.system.size', '0', 'gt'); add(… '5242880', 'lt')",
        items({"metadata.system.size": {"$gt": "0"}}, {"metadata.system.size": {"$lt": "5242880"}}),
        VISIBLE,
    ),
    (
        "add('metadata.system.width', 15, GREATER_THAN)",
        items({"metadata.system.width": {"$gt": 15}}),
        {"dog2.jpg", "cat1.png", "dog3.png"},
    ),
    (
        "add('metadata.system.height', 10, LESS_THAN_OR_EQUAL)",
        items({"metadata.system.height": {"$lte": 10}}),
        {"dog1.png", "dog2.jpg", "cat2.png", "bird.jpg"},
    ),
    (
        "add('metadata.system.originalname', 'cat*')",
        items({"metadata.system.originalname": "cat*"}),
        {"cat1.png", "cat2.png"},
    ),
    (
        "add('metadata.user.split', 'train')",
        items({"metadata.user.split": "train"}),
        {"dog1.png", "dog2.jpg", "cat1.png"},
    ),
    (
        "add('metadata.user.split', ['test', 'val'], IN)",
        items({"metadata.user.split": {"$in": ["test", "val"]}}),
        {"cat2.png", "dog3.png", "bird.jpg"},
    ),
    (
        "add('metadata.user.score', 2, GREATER_THAN)",
        items({"metadata.user.score": {"$gt": 2}}),
        {"dog1.png", "cat1.png"},
    ),
    (
        "add('metadata.user.tier', True, EXISTS)",
        items({"metadata.user.tier": {"$exists": True}}),
        {"dog1.png", "cat1.png"},
    ),
    (
        "add('dir', '/test', method=OR); add('dir', '/testing', method=OR)",
        items(ors=[{"dir": "/test"}, {"dir": "/testing"}]),
        {"cat2.png", "bird.jpg"},
    ),
    (
        "add('name', 'cat*', method=OR); add('name', '*.txt', method=OR)",
        items(ors=[{"name": "cat*"}, {"name": "*.txt"}]),
        {"cat1.png", "cat2.png", "notes.txt"},
    ),
    (
        "add_join('label', 'vehicle.*')",
        items(join={"$and": [{"label": "vehicle.*"}]}),
        {"dog2.jpg", "cat2.png"},
    ),
    ("add_join('type', 'class')", items(join={"$and": [{"type": "class"}]}), {"dog2.jpg"}),
    ("add_join('type', 'segment')", items(join={"$and": [{"type": "segment"}]}), {"cat1.png"}),
    (
        "add_join('label', 'dog', method=OR); add_join('label', 'cat', method=OR)",
        items(join={"$or": [{"label": "dog"}, {"label": "cat"}]}),
        {"dog1.png", "cat1.png"},
    ),
    (
        "add('dir', '/train'); add_join('label', ['dog', 'cat'], IN)",
        items({"dir": "/train"}, join={"$and": [{"label": {"$in": ["dog", "cat"]}}]}),
        {"dog1.png"},
    ),
    (
        "Filters(use_defaults=False); add('hidden', True)",
        items({"hidden": True}, defaults=False),
        {"hidden.png"},
    ),
    ("Filters(use_defaults=False)", items(defaults=False), VISIBLE | {"hidden.png"}),
    (
        "add('type', 'dir'): Loom has no directory items",
        items({"hidden": False}, {"type": "dir"}, defaults=False),
        set(),
    ),
    (
        "add('annotated', True)",
        items({"annotated": True}),
        {"dog1.png", "dog2.jpg", "cat1.png", "cat2.png", "bird.jpg"},
    ),
    (
        "add('createdAt', '2020-01-01T00:00:00.000Z', GREATER_THAN)",
        items({"createdAt": {"$gt": "2020-01-01T00:00:00.000Z"}}),
        VISIBLE,
    ),
]

ANNOTATION_CASES: list[tuple[str, dict[str, Any], set[tuple[str, str]]]] = [
    (
        "Filters(resource=ANNOTATION): every type but note",
        annotations(),
        {
            ("dog1.png", "dog"),
            ("dog2.jpg", "vehicle.car"),
            ("cat1.png", "cat"),
            ("cat2.png", "vehicle.truck"),
        },
    ),
    ("add('type', 'class')", annotations({"type": "class"}), {("dog2.jpg", "vehicle.car")}),
    (
        "add('label', 'vehicle.*')",
        annotations({"label": "vehicle.*"}),
        {("dog2.jpg", "vehicle.car"), ("cat2.png", "vehicle.truck")},
    ),
    (
        "add('type', ['box', 'segment'], IN)",
        annotations({"type": {"$in": ["box", "segment"]}}),
        {("dog1.png", "dog"), ("cat1.png", "cat")},
    ),
    (
        "add('type', 'note')",
        annotations({"type": "note"}),
        {("cat1.png", "cat-note"), ("bird.jpg", "bird")},
    ),
    ("add('type', 'cube_3d'): Loom has none", annotations({"type": "cube_3d"}), set()),
    (
        "add('type', 'segment', NOT_EQUAL)",
        annotations({"type": {"$ne": "segment"}}),
        {
            ("dog1.png", "dog"),
            ("dog2.jpg", "vehicle.car"),
            ("cat1.png", "cat-note"),
            ("cat2.png", "vehicle.truck"),
            ("bird.jpg", "bird"),
        },
    ),
]

SEED: list[tuple[str, str, dict[str, Any]]] = [
    # (dir/name, format or mimetype, item input)
    ("/train/dog1.png", "PNG:10x10", {"metadata": {"split": "train", "score": 3, "tier": "a"}}),
    ("/train/dog2.jpg", "JPEG:20x10", {"metadata": {"split": "train", "score": 1}}),
    (
        "/train/cats/cat1.png",
        "PNG:30x30",
        {"metadata": {"split": "train", "score": 2.5, "tier": "b"}},
    ),
    ("/test/cat2.png", "PNG:5x5", {"metadata": {"split": "test"}}),
    ("/test/deep/dog3.png", "PNG:40x20", {"metadata": {"split": "test", "score": "high"}}),
    ("/testing/bird.jpg", "JPEG:8x8", {"metadata": {"split": "val", "score": True}}),
    ("/notes.txt", "text/plain", {}),
    ("/hidden.png", "PNG:4x4", {"hidden": True}),
]
BOX = {"left": 1, "top": 1, "right": 5, "bottom": 5}
SEED_ANNOTATIONS = [
    ("dog1.png", "box", "dog", BOX),
    ("dog2.jpg", "CLASS", "vehicle.car", None),
    ("cat1.png", "SEGMENT", "cat", [[1, 1], [20, 1], [10, 20]]),
    ("cat1.png", "NOTE", "cat-note", {"text": "fluffy"}),
    ("cat2.png", "POINT", "vehicle.truck", {"x": 2, "y": 2}),
    ("bird.jpg", "NOTE", "bird", {"text": "tweet"}),
]


async def seed(world: World) -> dict[str, str]:
    """The items and annotations above; returns each item's id by name."""
    ids = {}
    for path, kind, item_input in SEED:
        directory, _, name = path.rpartition("/")
        if ":" in kind:
            fmt, size = kind.split(":")
            width, height = map(int, size.split("x"))
            content, mimetype = image_bytes(fmt, width, height), f"image/{fmt.lower()}"
        else:
            content, mimetype = b"some text", kind
        item = await world.upload(name, content, mimetype, dir=directory or "/", **item_input)
        ids[name] = item["id"]
    inputs = [
        {"itemId": ids[name], "type": kind.upper(), "label": label, "coordinates": coordinates}
        for name, kind, label, coordinates in SEED_ANNOTATIONS
    ]
    await world.client.data(CREATE_ANNOTATIONS, inputs=inputs)
    return ids


@pytest.fixture
async def seeded(member) -> tuple[World, dict[str, str]]:
    world = await make_world(member)
    return world, await seed(world)


async def _names(world: World, query: dict[str, Any], first: int = 100) -> list[str]:
    data = await world.client.data(ITEMS, dataset=world.dataset, filter=query, first=first)
    return [node["name"] for node in data["dataset"]["items"]["nodes"]]


async def _matched_in_memory(db: AsyncDatabase, world: World, query: dict[str, Any]) -> set[str]:
    dataset = ObjectId(world.dataset)
    stored = await db.items.find({"datasetId": dataset}).to_list()
    keep = [doc for doc in stored if dql.matches("items", query["filter"], doc)]
    if "join" in query:
        notes = await db.annotations.find({"datasetId": dataset}).to_list()
        joined = {
            a["itemId"] for a in notes if dql.matches("annotations", query["join"]["filter"], a)
        }
        keep = [doc for doc in keep if doc["_id"] in joined]
    return {doc["name"] for doc in keep}


async def test_dtlpy_item_filters_find_the_same_items_in_mongodb_and_in_memory(
    seeded: tuple[World, dict[str, str]], db: AsyncDatabase
):
    world, _ = seeded
    assert len(ITEM_CASES) >= 30
    wrong = []
    for written, query, expected in ITEM_CASES:
        found = await _names(world, query)
        in_memory = await _matched_in_memory(db, world, query)
        if sorted(found) != sorted(expected) or in_memory != expected:
            wrong.append((written, sorted(expected), sorted(found), sorted(in_memory)))
    assert not wrong, "\n".join(map(str, wrong))


async def test_dtlpy_annotation_filters_find_the_same_annotations_in_mongodb_and_in_memory(
    seeded: tuple[World, dict[str, str]], db: AsyncDatabase
):
    world, ids = seeded
    names = {ObjectId(i): name for name, i in ids.items()}
    stored = await db.annotations.find({"datasetId": ObjectId(world.dataset)}).to_list()
    wrong = []
    for written, query, expected in ANNOTATION_CASES:
        data = await world.client.data(ANNOTATIONS, dataset=world.dataset, filter=query)
        found = {
            (node["name"], a["label"])
            for node in data["dataset"]["items"]["nodes"]
            for a in node["annotations"]
        }
        in_memory = {
            (names[a["itemId"]], a["label"])
            for a in stored
            if dql.matches("annotations", query["filter"], a)
        }
        if found != expected or in_memory != expected:
            wrong.append((written, sorted(expected), sorted(found), sorted(in_memory)))
    assert not wrong, "\n".join(map(str, wrong))


async def test_dtlpy_type_names_are_stored_as_loom_types(seeded: tuple[World, dict[str, str]], db):
    stored = {a["label"]: a["type"] for a in await db.annotations.find().to_list()}
    assert stored == {
        "dog": "box",
        "vehicle.car": "classification",
        "cat": "polygon",
        "cat-note": "note",
        "vehicle.truck": "point",
        "bird": "note",
    }


async def test_a_sort_by_user_metadata_puts_missing_first_then_numbers_strings_booleans(
    seeded: tuple[World, dict[str, str]],
):
    world, _ = seeded
    ascending = ["cat2.png", "notes.txt", "dog2.jpg", "cat1.png", "dog1.png", "dog3.png"]
    ascending.append("bird.jpg")  # missing (by id), 1, 2.5, 3, "high", true
    assert await _names(world, items(sort={"metadata.user.score": "ascending"})) == ascending
    descending = ["bird.jpg", "dog3.png", "dog1.png", "cat1.png", "dog2.jpg"]
    descending += ["cat2.png", "notes.txt"]  # ties still by id
    assert await _names(world, items(sort={"metadata.user.score": "descending"})) == descending


async def test_dtlpy_keyset_sort_by_filename_then_id(seeded: tuple[World, dict[str, str]]):
    world, ids = seeded
    query = items(sort={"filename": "ascending", "id": "ascending"})
    assert await _names(world, query) == [
        "notes.txt",
        "cat2.png",
        "dog3.png",
        "bird.jpg",
        "cat1.png",
        "dog1.png",
        "dog2.jpg",
    ]
    after_cat2 = items({"id": {"$gt": ids["cat2.png"]}}, sort={"id": "ascending"})
    assert await _names(world, after_cat2) == ["dog3.png", "bird.jpg", "notes.txt"]


async def test_page_and_page_size_pick_dtlpy_pages_counting_from_zero(
    seeded: tuple[World, dict[str, str]],
):
    world, _ = seeded
    by_name = sorted(VISIBLE)
    pages = [
        await _names(world, items(sort={"name": "ascending"}, page=page, page_size=3))
        for page in range(4)
    ]
    assert pages == [by_name[0:3], by_name[3:6], by_name[6:7], []]


async def test_cursors_walk_within_a_dtlpy_page_and_stop_at_its_end(
    seeded: tuple[World, dict[str, str]],
):
    world, _ = seeded
    query = items(sort={"name": "ascending"}, page=1, page_size=3)
    walked, after, has_next = [], None, True
    while has_next:
        data = await world.client.data(
            ITEMS, dataset=world.dataset, filter=query, first=2, after=after
        )
        connection = data["dataset"]["items"]
        walked.append([node["name"] for node in connection["nodes"]])
        after, has_next = connection["pageInfo"]["endCursor"], connection["pageInfo"]["hasNextPage"]
    assert walked == [["dog1.png", "dog2.jpg"], ["dog3.png"]]


async def test_a_cursor_of_a_whole_result_is_refused_within_a_dtlpy_page(
    seeded: tuple[World, dict[str, str]],
):
    world, _ = seeded
    data = await world.client.data(ITEMS, dataset=world.dataset, filter=None, first=1)
    cursor = data["dataset"]["items"]["pageInfo"]["endCursor"]
    query = items(page=0, page_size=3)
    error = await world.client.error(
        ITEMS, dataset=world.dataset, filter=query, first=1, after=cursor
    )
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert error["extensions"]["field"] == "after"


async def test_item_annotations_honour_sort_and_dtlpy_pages(seeded: tuple[World, dict[str, str]]):
    world, _ = seeded
    query = annotations(defaults=False, sort={"label": "descending"}, page=0, page_size=1)
    data = await world.client.data(ANNOTATIONS, dataset=world.dataset, filter=query)
    cat1 = next(n for n in data["dataset"]["items"]["nodes"] if n["name"] == "cat1.png")
    assert cat1["annotations"] == [{"label": "cat-note"}]
    query = annotations(defaults=False, sort={"label": "ascending"}, page=1, page_size=1)
    data = await world.client.data(ANNOTATIONS, dataset=world.dataset, filter=query)
    cat1 = next(n for n in data["dataset"]["items"]["nodes"] if n["name"] == "cat1.png")
    assert cat1["annotations"] == [{"label": "cat-note"}]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        (annotations(sort={"metadata.user.x": "ascending"}), "sort"),
        (items({"metadata.system.size": {"$gt": "big"}}), "filter.$and.2.metadata.system.size.$gt"),
        (items({"filename": {"$match": "*.jpg"}}), "filter.$and.2.filename.$match"),
        (items({"size": "1*"}), "filter.$and.2.size"),
    ],
)
async def test_what_loom_cannot_do_as_dtlpy_asks_is_refused_naming_where(
    seeded: tuple[World, dict[str, str]], query: dict[str, Any], field: str
):
    world, _ = seeded
    document = ANNOTATIONS if query["resource"] == "annotations" else ITEMS
    variables = {"first": 10} if document == ITEMS else {}
    error = await world.client.error(document, dataset=world.dataset, filter=query, **variables)
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert error["extensions"]["field"] == field
