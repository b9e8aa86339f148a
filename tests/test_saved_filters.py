"""Saved filters: save a DQL query by name, list, load it back, use it, replace, delete."""

from tests.datasets_world import image_bytes, make_world
from tests.snapshots import snapshot

SAVE = """mutation($p: ID!, $name: String!, $q: JSON!) {
  saveFilter(projectId: $p, name: $name, query: $q) { name resource query } }"""
LOAD = """query($p: ID!, $name: String!) { project(id: $p) {
  savedFilter(name: $name) { name query } savedFilters { nodes { name } } } }"""
ITEMS = """query($d: ID!, $f: JSON) { dataset(id: $d) {
  items(filter: $f) { nodes { name } } } }"""
DELETE = "mutation($p: ID!, $name: String!) { deleteSavedFilter(projectId: $p, name: $name) }"


async def test_saved_filter_loads_by_name_and_filters_items(member):
    world = await make_world(member)
    await world.upload("a.png", image_bytes("PNG", 4, 4), dir="/train")
    await world.upload("b.png", image_bytes("PNG", 5, 5), dir="/val")
    query = {"resource": "items", "filter": {"dir": "/train"}}
    saved = await world.client.data(SAVE, p=world.project, name="train", q=query)
    assert saved["saveFilter"] == {"name": "train", "resource": "items", "query": query}
    await world.client.data(SAVE, p=world.project, name="all", q={"hidden": False})
    loaded = (await world.client.data(LOAD, p=world.project, name="train"))["project"]
    assert [n["name"] for n in loaded["savedFilters"]["nodes"]] == ["all", "train"]
    items = await world.client.data(ITEMS, d=world.dataset, f=loaded["savedFilter"]["query"])
    assert items["dataset"]["items"]["nodes"] == [{"name": "a.png"}]


async def test_saving_again_replaces_and_delete_removes(member):
    world = await make_world(member)
    await world.client.data(SAVE, p=world.project, name="f", q={"dir": "/a"})
    await world.client.data(SAVE, p=world.project, name="f", q={"dir": "/b"})
    loaded = (await world.client.data(LOAD, p=world.project, name="f"))["project"]
    assert loaded["savedFilter"]["query"] == {"resource": "items", "filter": {"dir": "/b"}}
    assert len(loaded["savedFilters"]["nodes"]) == 1
    assert (await world.client.data(DELETE, p=world.project, name="f"))["deleteSavedFilter"]
    assert await world.client.code(LOAD, p=world.project, name="f") == "NOT_FOUND"


async def test_invalid_query_is_refused_and_not_saved(member, db):
    world = await make_world(member)
    before = await snapshot(db)
    error = await world.client.error(SAVE, p=world.project, name="bad", q={"$where": "1"})
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert await snapshot(db) == before


async def test_another_orgs_saved_filters_are_not_found(member, db):
    world = await make_world(member)
    await world.client.data(SAVE, p=world.project, name="f", q={"dir": "/a"})
    stranger = await make_world(member, org="beta")
    before = await snapshot(db)
    assert await stranger.client.code(LOAD, p=world.project, name="f") == "NOT_FOUND"
    assert await stranger.client.code(SAVE, p=world.project, name="g", q={}) == "NOT_FOUND"
    assert await stranger.client.code(DELETE, p=world.project, name="f") == "NOT_FOUND"
    assert await snapshot(db) == before
