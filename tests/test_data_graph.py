"""The nested data graph: DQL-filtered keyset pages, joins, `node`, and a bounded number of
MongoDB round trips whatever the size of the answer."""

import pytest
from pymongo import monitoring

from tests.command_monitoring import StartedCommands, listening_gateway
from tests.datasets_world import CREATE_DATASET, image_bytes, make_world

ITEMS = """query($id: ID!, $filter: JSON, $first: Int!, $after: String, $order: ItemOrder) {
  dataset(id: $id) { items(filter: $filter, first: $first, after: $after, orderBy: $order) {
    totalCount edges { cursor node { name size dir metadata } }
    pageInfo { hasNextPage endCursor } } } }"""
CREATE_MANY = """mutation($inputs: [AnnotationInput!]!) {
  createAnnotations(inputs: $inputs) { id } }"""
NESTED = """query($first: Int!) { organizations { nodes { name projects { nodes { name
  datasets { nodes { name items(first: $first) { nodes { name
    annotations { label coordinates item { name } } } } } } } } } } }"""


async def _items(world, count: int, **extra) -> list[dict]:
    created = []
    for i in range(count):
        created.append(
            await world.upload(
                f"img-{i:02}.png",
                image_bytes("PNG", 4 + i, 4),
                dir="/train" if i % 2 else "/val",
                metadata={"split": "train" if i % 2 else "val", "rank": i % 3},
                **extra,
            )
        )
    return created


async def _names(world, **variables) -> list[str]:
    data = await world.client.data(ITEMS, id=world.dataset, first=50, **variables)
    return [edge["node"]["name"] for edge in data["dataset"]["items"]["edges"]]


async def test_items_filter_by_dql_bare_or_as_a_whole_query(member):
    world = await make_world(member)
    await _items(world, 6)
    bare = await _names(world, filter={"metadata.user.split": "train"})
    assert bare == ["img-01.png", "img-03.png", "img-05.png"]
    whole = await _names(
        world,
        filter={
            "resource": "items",
            "filter": {"$and": [{"dir": "/val"}, {"metadata.user.rank": {"$in": [0, 1]}}]},
            "sort": {"name": "descending"},
        },
    )
    assert whole == ["img-04.png", "img-00.png"]
    globbed = await _names(world, filter={"name": {"$glob": "img-0[12]*"}})
    assert globbed == []
    by_filename = [f"img-0{i}.png" for i in (1, 3, 5, 0, 2, 4)]  # /train/… before /val/…
    assert await _names(world, filter={"name": {"$glob": "img-0?.png"}}) == by_filename


async def test_items_join_on_annotations(member):
    world = await make_world(member)
    items = await _items(world, 4)
    inputs = [
        {"itemId": items[1]["id"], "type": "CLASSIFICATION", "label": "car"},
        {"itemId": items[2]["id"], "type": "CLASSIFICATION", "label": "bus"},
        {"itemId": items[3]["id"], "type": "CLASSIFICATION", "label": "car"},
    ]
    await world.client.data(CREATE_MANY, inputs=inputs)
    joined = await _names(
        world,
        filter={
            "resource": "items",
            "filter": {},
            "join": {
                "on": {"resource": "annotations", "local": "itemId", "forigen": "id"},
                "filter": {"label": "car"},
            },
        },
    )
    assert joined == ["img-01.png", "img-03.png"]


@pytest.mark.parametrize(
    "bad",
    [
        {"$where": "1"},
        {"name": {"$regex": "x"}},
        {"password": 1},
        {"resource": "annotations", "filter": {}},
        {"resource": "items", "sort": {"tags": "ascending"}},
    ],
    ids=["where", "regex", "unknown-field", "wrong-resource", "unsortable"],
)
async def test_bad_item_filters_are_bad_user_input(member, bad):
    world = await make_world(member)
    error = await world.client.error(ITEMS, id=world.dataset, first=5, filter=bad)
    assert error["extensions"]["code"] == "BAD_USER_INPUT"


async def test_keyset_pages_over_tied_sizes_cover_every_item_once(member):
    world = await make_world(member)
    for i in range(7):
        await world.upload(f"same-{i}.bin", b"x" * (i % 2), "application/octet-stream")
    seen, after = [], None
    order = {"field": "SIZE", "direction": "DESC"}
    while True:
        data = await world.client.data(ITEMS, id=world.dataset, first=2, after=after, order=order)
        page = data["dataset"]["items"]
        seen += [(edge["node"]["size"], edge["node"]["name"]) for edge in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert len(seen) == 7
    assert len(set(seen)) == 7
    assert [size for size, _ in seen] == sorted((size for size, _ in seen), reverse=True)
    assert page["totalCount"] == 7


async def test_node_resolves_data_objects_only_for_their_tenant(member):
    world = await make_world(member)
    item = (await _items(world, 1))[0]
    query = '{ node(id: "%s") { __typename id } }'
    assert (await world.client.data(query % item["id"]))["node"] == {
        "__typename": "Item",
        "id": item["id"],
    }
    assert (await world.client.data(query % world.dataset))["node"]["__typename"] == "Dataset"
    stranger = await make_world(member, org="beta")
    assert (await stranger.client.data(query % item["id"]))["node"] is None
    assert (await stranger.client.data(query % world.dataset))["node"] is None


def _change_stream(command: dict) -> bool:
    """The gateway's change feed (for subscriptions) reads on its own schedule: not counted."""
    pipeline = command.get("pipeline") or []
    watching = any("$changeStream" in stage for stage in pipeline)
    return watching or command.get("collection") == "$cmd.aggregate"


class ReadCounter(StartedCommands):
    """Counts the read commands (find, aggregate, getMore, count…) MongoDB receives."""

    READS = frozenset({"find", "aggregate", "getMore", "count", "distinct"})

    def __init__(self) -> None:
        self.reads = 0

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.reads += event.command_name in self.READS and not _change_stream(event.command)


async def _annotated_org(member, org: str, datasets: int, items: int, annotations: int):
    world = await make_world(member, org=org)
    dataset_ids = [world.dataset]
    for n in range(1, datasets):
        created = await world.client.data(
            CREATE_DATASET, project=world.project, input={"name": f"set-{n}"}
        )
        dataset_ids.append(created["createDataset"]["id"])
    for dataset in dataset_ids:
        for i in range(items):
            item = await world.upload_to(dataset, f"{i}.png", image_bytes("PNG", 8, 8 + i))
            inputs = [
                {
                    "itemId": item["id"],
                    "type": "POINT",
                    "label": "p",
                    "coordinates": {"x": 1, "y": j},
                }
                for j in range(annotations)
            ]
            if inputs:
                await world.client.data(CREATE_MANY, inputs=inputs)
    return world


async def _nested_query_cost(settings, stack, redis, world) -> tuple[int, int, int]:
    """(MongoDB reads, items, annotations) of the nested query, through a counting client."""
    counter = ReadCounter()
    async with listening_gateway(settings, stack, redis, counter) as (_, http):
        counter.reads = 0
        response = await http.post(
            "/graphql",
            json={"query": NESTED, "variables": {"first": 100}},
            headers={"Authorization": f"Bearer {world.client.key}"},
        )
        reads = counter.reads
    body = response.json()
    assert "errors" not in body, body
    (org,) = body["data"]["organizations"]["nodes"]
    (project,) = org["projects"]["nodes"]
    items = [item for d in project["datasets"]["nodes"] for item in d["items"]["nodes"]]
    annotations = [a for item in items for a in item["annotations"]]
    assert all(a["item"]["name"] == item["name"] for item in items for a in item["annotations"])
    return reads, len(items), len(annotations)


async def test_nested_query_costs_the_same_reads_whatever_it_returns(
    member, settings, stack, redis, db
):
    small = await _annotated_org(member, "small", datasets=1, items=1, annotations=1)
    large = await _annotated_org(member, "large", datasets=3, items=4, annotations=5)
    small_cost = await _nested_query_cost(settings, stack, redis, small)
    large_cost = await _nested_query_cost(settings, stack, redis, large)
    assert small_cost[1:] == (1, 1)
    assert large_cost[1:] == (12, 60)
    assert small_cost[0] == large_cost[0]
    assert large_cost[0] <= 7


async def test_dataloop_default_item_filter_is_understood(member):
    world = await make_world(member)
    await world.upload("shown.png", image_bytes("PNG", 4, 4))
    await world.upload("hidden.png", image_bytes("PNG", 5, 5), hidden=True)
    dataloop_default = {
        "resource": "items",
        "filter": {"$and": [{"hidden": False}, {"type": "file"}]},
        "page": 0,
        "pageSize": 1000,
    }
    assert await _names(world, filter=dataloop_default) == ["shown.png"]
