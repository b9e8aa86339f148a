"""A running subscription follows its caller's access, over a real WebSocket: what changed
after a member was removed is never delivered, what changed after one was added is, and a
subscription whose caller lost what it named ends with the error it would now get.

The change stream delivers changes in commit order, so each test proves "not delivered" by a
later change that is delivered first.
"""

import asyncio
from dataclasses import dataclass

from bson import ObjectId

from gateway.auth_cache import AuthCache
from gateway.change_feed import AccessChanged, ChangeFeed
from resolvers.timestamps import now
from resolvers.transactions import in_transaction
from tests.datasets_world import CREATE_PROJECT, World, make_world
from tests.graphql_client import GraphQLClient
from tests.test_auth_cache import caught_up
from tests.test_subscriptions import (
    EXECUTION_UPDATED,
    _execute,
    _members,
    _next_data,
    _percent,
    _service,
    _wait_for_subscribers,
)
from tests.ws_client import subscribe

ADD_TO_PROJECT = """mutation($p: ID!, $u: ID!) {
  addProjectMember(projectId: $p, userId: $u, role: ANNOTATOR) { role } }"""
REMOVE_FROM_PROJECT = (
    "mutation($p: ID!, $u: ID!) { removeProjectMember(projectId: $p, userId: $u) }"
)
REMOVE_FROM_ORG = """mutation($o: ID!, $u: ID!) {
  removeOrganizationMember(organizationId: $o, userId: $u) }"""


async def _second_project(world: World) -> tuple[str, str]:
    """(project, execution): another project of the world's org, with an execution in it."""
    project = (await world.client.data(CREATE_PROJECT, org=world.org, name="Lidar"))[
        "createProject"
    ]["id"]
    elsewhere = World(world.client, world.org, project, world.dataset)
    return project, await _execute(elsewhere, await _service(elsewhere))


async def _annotator(member, world: World, *projects: str):
    """An org `member` who is an annotator of `projects`: (client, user id)."""
    client, doc = await member("acme", "member")
    user = str(doc["userId"])
    for project in projects:
        await world.client.data(ADD_TO_PROJECT, p=project, u=user)
    return client, user


@dataclass
class TwoProjects:
    """An org's two projects with an execution in each, and an annotator of one or both."""

    world: World
    vision: str
    lidar: str
    client: GraphQLClient
    user: str


async def _two_projects(member, app, db, *, annotates_vision: bool) -> TwoProjects:
    """Set up, then wait until the feed has seen every change of the set-up."""
    world = await make_world(member)
    vision = await _execute(world, await _service(world))
    lidar_project, lidar = await _second_project(world)
    projects = [world.project, lidar_project] if annotates_vision else [lidar_project]
    client, user = await _annotator(member, world, *projects)
    await caught_up(app, db)
    return TwoProjects(world, vision, lidar, client, user)


async def _error_then_complete(updates) -> str:
    message = await asyncio.wait_for(updates.next(), 10)
    assert message["type"] == "next", message
    assert message["payload"]["data"] is None
    code = message["payload"]["errors"][0]["extensions"]["code"]
    assert (await asyncio.wait_for(updates.next(), 10))["type"] == "complete"
    return code


async def test_a_member_removed_from_a_project_receives_nothing_changed_there_afterwards(
    member, server, db, app
):
    scene = await _two_projects(member, app, db, annotates_vision=True)
    world, vision, lidar, user = scene.world, scene.vision, scene.lidar, scene.user
    async with subscribe(server, scene.client.key, EXECUTION_UPDATED) as updates:
        await _wait_for_subscribers(app, 1)
        await _percent(db, vision, 10)
        assert (await _next_data(updates))[1]["id"] == vision
        await world.client.data(REMOVE_FROM_PROJECT, p=world.project, u=user)
        await _percent(db, vision, 20)
        await _percent(db, lidar, 30)
        assert (await _next_data(updates))[1]["id"] == lidar


async def test_a_change_committed_with_the_removal_is_not_delivered(member, server, db, app):
    scene = await _two_projects(member, app, db, annotates_vision=True)
    world, vision, lidar, user = scene.world, scene.vision, scene.lidar, scene.user
    async with subscribe(server, scene.client.key, EXECUTION_UPDATED) as updates:
        await _wait_for_subscribers(app, 1)

        async def removal_and_change(session) -> None:
            membership = {"projectId": ObjectId(world.project), "userId": ObjectId(user)}
            await db.project_members.delete_one(membership, session=session)
            await db.executions.update_one(
                {"_id": ObjectId(vision)}, {"$set": {"progress.percent": 20}}, session=session
            )

        # Both events reach the feed back to back, before the subscription can re-check.
        await in_transaction(db, removal_and_change)
        await _percent(db, lidar, 30)
        assert (await _next_data(updates))[1]["id"] == lidar


async def test_a_member_added_to_a_project_receives_what_changes_there_from_then_on(
    member, server, db, app
):
    scene = await _two_projects(member, app, db, annotates_vision=False)
    world, vision, lidar, user = scene.world, scene.vision, scene.lidar, scene.user
    async with subscribe(server, scene.client.key, EXECUTION_UPDATED) as updates:
        await _wait_for_subscribers(app, 1)
        await _percent(db, vision, 10)
        await _percent(db, lidar, 20)
        assert (await _next_data(updates))[1]["id"] == lidar
        await world.client.data(ADD_TO_PROJECT, p=world.project, u=user)
        await _percent(db, vision, 30)
        _, update = await _next_data(updates)
        assert (update["id"], update["progress"]["percent"]) == (vision, 30)


async def test_a_subscription_to_an_execution_ends_with_not_found_when_its_caller_leaves_the_org(
    member, server, db, app
):
    world = await make_world(member)
    vision = await _execute(world, await _service(world))
    client, user = await _annotator(member, world, world.project)
    await caught_up(app, db)
    async with subscribe(server, client.key, EXECUTION_UPDATED, e=vision) as updates:
        await _wait_for_subscribers(app, 1)
        await _percent(db, vision, 10)
        assert (await _next_data(updates))[1]["id"] == vision
        await world.client.data(REMOVE_FROM_ORG, o=world.org, u=user)
        await _percent(db, vision, 20)
        assert await _error_then_complete(updates) == "NOT_FOUND"
    assert app.state.feed.subscribers == set()


async def test_a_key_revoked_by_another_process_ends_its_running_subscription(
    member, server, db, app
):
    world = await make_world(member)
    vision = await _execute(world, await _service(world))
    client, user = await _annotator(member, world, world.project)
    await caught_up(app, db)
    async with (
        subscribe(server, client.key, EXECUTION_UPDATED, "op-1") as first,
        subscribe(server, client.key, EXECUTION_UPDATED, "op-2") as second,
    ):
        await _members(app, count=2, groups=1)
        await db.api_keys.update_many({"userId": ObjectId(user)}, {"$set": {"revokedAt": now()}})
        await _percent(db, vision, 10)
        assert await _error_then_complete(first) == "UNAUTHENTICATED"
        assert await _error_then_complete(second) == "UNAUTHENTICATED"
    assert app.state.feed.subscribers == set()


async def test_an_access_change_concerns_only_the_subscribers_of_its_user(member, db, app):
    world = await make_world(member)
    _, removed = await _annotator(member, world, world.project)
    _, bystander = await _annotator(member, world, world.project)
    feed = app.state.feed
    await caught_up(app, db)
    everything = lambda doc: True  # noqa: E731
    async with (
        feed.subscribe("executions", everything, everything, ObjectId(removed)) as concerned,
        feed.subscribe("executions", everything, everything, ObjectId(bystander)) as unconcerned,
    ):
        await db.project_members.delete_one(
            {"projectId": ObjectId(world.project), "userId": ObjectId(removed)}
        )
        assert await asyncio.wait_for(concerned.next(), 10) == AccessChanged(1)
        await caught_up(app, db)
        assert unconcerned.access_changes == 0
        assert unconcerned.sees is everything


async def test_a_burst_of_access_changes_takes_one_place_and_one_recheck_covers_it(db):
    feed = ChangeFeed(db, queue_size=10, auth_cache=AuthCache(maxsize=0))
    in_org_a = lambda doc: doc["org"] == "a"  # noqa: E731
    async with feed.subscribe("executions", lambda doc: True, in_org_a) as subscriber:
        feed.publish("executions", {"org": "b", "n": 0})
        subscriber.access_changed()
        feed.publish("executions", {"org": "b", "n": 1})
        subscriber.access_changed()
        assert await subscriber.next() == AccessChanged(1)
        assert subscriber.access_changes == 2  # what a re-check starting now covers
        feed.publish("executions", {"org": "b", "n": 2})
        subscriber.access_changed()
        subscriber.rechecked(2, in_org_a)  # a newer change came: documents stay unfiltered
        feed.publish("executions", {"org": "b", "n": 3})
        assert [(await subscriber.next())["n"] for _ in range(2)] == [1, 2]
        assert await subscriber.next() == AccessChanged(3)
        subscriber.rechecked(3, in_org_a)
        feed.publish("executions", {"org": "b", "n": 4})
        feed.publish("executions", {"org": "a", "n": 5})
        assert [(await subscriber.next())["n"] for _ in range(2)] == [3, 5]
