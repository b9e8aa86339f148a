"""Items ordered by user metadata (dtlpy's `sort_by('metadata.user.x')`): cursors that walk
missing values, ties and mixed kinds in MongoDB's own order, every item exactly once; what such
a sort refuses; and dtlpy's annotation type names in annotation inputs."""

from typing import Any

import pytest
from bson import ObjectId
from pydantic import ValidationError
from pymongo.asynchronous.database import AsyncDatabase

from resolvers.annotations import AnnotationInput
from tests.datasets_world import World, image_bytes, make_world

ITEMS = """query($dataset: ID!, $filter: JSON, $first: Int!, $after: String) {
  dataset(id: $dataset) { items(filter: $filter, first: $first, after: $after) {
    nodes { name } pageInfo { hasNextPage endCursor } } } }"""
CREATE = """mutation($input: AnnotationInput!) { createAnnotation(input: $input) { type } }"""
MISSING = object()
RANKS: list[Any] = [
    MISSING, 1, None, "a", True, 1, MISSING, 2.5, -1, "", False, 1.0, "a", None, "b", False,
    MISSING, 1, 0.5, True,
]  # fmt: skip
"""Missing and null (MongoDB sorts them as one), ints and floats that tie, strings, booleans."""
GROUPS = ["x", "y", MISSING, "x"]


async def _seed(world: World, ranks: list[Any]) -> None:
    content = image_bytes("PNG", 2, 2)
    for i, rank in enumerate(ranks):
        metadata = {"group": GROUPS[i % len(GROUPS)], "rank": rank}
        metadata = {key: value for key, value in metadata.items() if value is not MISSING}
        await world.upload(f"item{i:02}.png", content, metadata=metadata)


@pytest.fixture
async def ranked(member) -> World:
    world = await make_world(member)
    await _seed(world, RANKS)
    return world


async def _walk(world: World, sort: dict[str, str], first: int) -> list[str]:
    """Every page of the sort, following endCursor until hasNextPage is false."""
    query = {"filter": {}, "sort": sort, "resource": "items"}
    names: list[str] = []
    after = None
    while True:
        data = await world.client.data(
            ITEMS, dataset=world.dataset, filter=query, first=first, after=after
        )
        connection = data["dataset"]["items"]
        names += [node["name"] for node in connection["nodes"]]
        if not connection["pageInfo"]["hasNextPage"]:
            return names
        after = connection["pageInfo"]["endCursor"]


async def _mongodb_order(db: AsyncDatabase, world: World, sort: dict[str, str]) -> list[str]:
    order = [(f"metadata.user.{key}", 1 if way == "ascending" else -1) for key, way in sort]
    cursor = db.items.find({"datasetId": ObjectId(world.dataset)}, {"name": 1})
    return [doc["name"] for doc in await cursor.sort([*order, ("_id", 1)]).to_list()]


@pytest.mark.parametrize(
    "sort",
    [
        (("rank", "ascending"),),
        (("rank", "descending"),),
        (("group", "ascending"), ("rank", "descending")),
        (("group", "descending"), ("rank", "ascending")),
    ],
)
@pytest.mark.parametrize("first", [1, 3])
async def test_walking_a_metadata_sort_yields_every_item_once_in_mongodb_order(
    ranked: World, db: AsyncDatabase, sort: tuple[tuple[str, str], ...], first: int
):
    dql_sort = {f"metadata.user.{key}": way for key, way in sort}
    walked = await _walk(ranked, dql_sort, first)
    assert len(walked) == len(RANKS) == len(set(walked))
    assert walked == await _mongodb_order(db, ranked, dict(sort).items())


async def test_missing_values_come_first_ascending_and_last_descending(ranked: World):
    ascending = await _walk(ranked, {"metadata.user.rank": "ascending"}, 4)
    missing_or_null = {f"item{i:02}.png" for i, r in enumerate(RANKS) if r is MISSING or r is None}
    assert set(ascending[: len(missing_or_null)]) == missing_or_null
    descending = await _walk(ranked, {"metadata.user.rank": "descending"}, 4)
    assert set(descending[-len(missing_or_null) :]) == missing_or_null


@pytest.mark.parametrize("odd", [[1, 2], {"x": 1}])
async def test_an_array_or_object_in_the_sorted_field_is_refused_not_skipped(member, odd: Any):
    world = await make_world(member)
    await _seed(world, [3, "a", MISSING, None, 1, True, False])
    item = (await world.upload("odd.png", image_bytes("PNG", 2, 2), metadata={"rank": odd}))["id"]
    for first in (1, 2, 10):
        with pytest.raises(AssertionError) as refused:
            await _walk(world, {"metadata.user.rank": "ascending"}, first)
        (error,) = refused.value.errors
        assert error["extensions"]["code"] == "BAD_USER_INPUT"
        assert error["extensions"]["field"] == "sort"
        assert item in error["message"]


async def test_a_sort_without_an_index_is_refused_over_a_dataset_too_large(
    ranked: World, db: AsyncDatabase
):
    await db.datasets.update_one(
        {"_id": ObjectId(ranked.dataset)}, {"$set": {"itemsCount": 100_001}}
    )
    query = {"filter": {}, "sort": {"metadata.user.rank": "ascending"}}
    error = await ranked.client.error(ITEMS, dataset=ranked.dataset, filter=query, first=5)
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert error["extensions"]["limit"] == "maxScannedSortItems"
    indexed = {"filter": {}, "sort": {"name": "descending"}}
    data = await ranked.client.data(ITEMS, dataset=ranked.dataset, filter=indexed, first=1)
    assert data["dataset"]["items"]["nodes"] == [{"name": "item19.png"}]


@pytest.mark.parametrize("field", ["tags", "description", "metadata.system.originalName"])
async def test_fields_that_do_not_sort_are_refused(ranked: World, field: str):
    query = {"filter": {}, "sort": {field: "ascending"}}
    error = await ranked.client.error(ITEMS, dataset=ranked.dataset, filter=query, first=5)
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert error["extensions"]["field"] == "sort"


async def test_a_dtlpy_page_past_the_offset_bound_is_refused(ranked: World):
    query = {"filter": {}, "page": 101, "pageSize": 1000}
    error = await ranked.client.error(ITEMS, dataset=ranked.dataset, filter=query, first=5)
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert error["extensions"]["limit"] == "maxDqlOffset"


async def test_a_metadata_sort_never_shows_another_organizations_items(ranked: World, member):
    other = await make_world(member, org="globex")
    await _seed(other, [5, MISSING])
    sort = {"metadata.user.rank": "ascending"}
    assert await _walk(other, sort, 1) == ["item01.png", "item00.png"]
    query = {"filter": {}, "sort": sort}
    error = await other.client.error(ITEMS, dataset=ranked.dataset, filter=query, first=5)
    assert error["extensions"]["code"] == "NOT_FOUND"


@pytest.mark.parametrize(
    ("sent", "stored"),
    [("CLASS", "CLASSIFICATION"), ("SEGMENT", "POLYGON"), ("CUBE", "CUBOID"), ("BOX", "BOX")],
)
async def test_dtlpy_annotation_type_names_create_loom_types(member, sent: str, stored: str):
    world = await make_world(member)
    item = (await world.upload("a.png", image_bytes("PNG", 40, 40)))["id"]
    coordinates = {
        "CLASS": None,
        "SEGMENT": [[1, 1], [20, 1], [10, 20]],
        "CUBE": [[1, 1], [9, 1], [9, 9], [1, 9], [3, 3], [12, 3], [12, 12], [3, 12]],
        "BOX": {"left": 1, "top": 1, "right": 5, "bottom": 5},
    }[sent]
    input_ = {"itemId": item, "type": sent, "label": "x", "coordinates": coordinates}
    assert (await world.client.data(CREATE, input=input_))["createAnnotation"] == {"type": stored}


async def test_a_dtlpy_type_loom_lacks_is_refused(member):
    world = await make_world(member)
    item = (await world.upload("a.png", image_bytes("PNG", 4, 4)))["id"]
    input_ = {"itemId": item, "type": "CUBE_3D", "label": "x"}
    assert await world.client.code(CREATE, input=input_) == "BAD_USER_INPUT"
    with pytest.raises(ValidationError, match="'cube_3d' has no Loom equivalent"):
        AnnotationInput.model_validate({"itemId": item, "type": "cube_3d", "label": "x"})
    accepted = AnnotationInput.model_validate({"itemId": item, "type": "binary", "label": "x"})
    assert accepted.type == "segmentation"
