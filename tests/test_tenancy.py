"""Tenancy: a key of organization A can neither see nor touch anything of organization B.

Invisible things are NOT_FOUND (their existence is not revealed), `node(id)` answers null,
lists leave them out, and every refused mutation leaves B exactly as it was. A key limited to
one organization sees only that organization, even when its user also belongs to another. Inside
one organization, a project is visible to org owners and admins and to its own members only.
"""

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from bson import ObjectId

from resolvers.api_keys import issue_key
from tests.graphql_client import GraphQLClient

ORGS = "query { organizations { nodes { id name } } }"
ORG = "query($id: ID!) { organization(id: $id) { id name } }"
ORG_MEMBERS = "query($id: ID!) { organization(id: $id) { members { totalCount } } }"
ORG_PROJECTS = "query($id: ID!) { organization(id: $id) { projects { nodes { id } } } }"
PROJECTS = "query { projects { nodes { id } } }"
PROJECTS_OF = "query($org: ID!) { projects(organizationId: $org) { nodes { id } } }"
PROJECT = "query($id: ID!) { project(id: $id) { id name } }"
PROJECT_MEMBERS = "query($id: ID!) { project(id: $id) { members { totalCount } } }"
NODE = "query($id: ID!) { node(id: $id) { __typename id } }"

CREATE_PROJECT = """mutation($org: ID!, $name: String!) {
  createProject(organizationId: $org, input: {name: $name}) { id name } }"""
UPDATE_ORG = """mutation($id: ID!, $name: String!) {
  updateOrganization(id: $id, input: {name: $name}) { id name } }"""
ADD_ORG_MEMBER = """mutation($org: ID!, $email: String!, $role: OrgRole!) {
  addOrganizationMember(organizationId: $org, input: {user: {email: $email}, role: $role}) {
    role } }"""
UPDATE_ORG_MEMBER = """mutation($org: ID!, $user: ID!, $role: OrgRole!) {
  updateOrganizationMember(organizationId: $org, userId: $user, role: $role) { role } }"""
REMOVE_ORG_MEMBER = """mutation($org: ID!, $user: ID!) {
  removeOrganizationMember(organizationId: $org, userId: $user) }"""
UPDATE_PROJECT = """mutation($id: ID!, $name: String!) {
  updateProject(id: $id, input: {name: $name}) { id name } }"""
ADD_PROJECT_MEMBER = """mutation($project: ID!, $user: ID!, $role: ProjectRole!) {
  addProjectMember(projectId: $project, userId: $user, role: $role) { role } }"""
UPDATE_PROJECT_MEMBER = """mutation($project: ID!, $user: ID!, $role: ProjectRole!) {
  updateProjectMember(projectId: $project, userId: $user, role: $role) { role } }"""
REMOVE_PROJECT_MEMBER = """mutation($project: ID!, $user: ID!) {
  removeProjectMember(projectId: $project, userId: $user) }"""
CREATE_API_KEY = """mutation($name: String!, $org: ID) {
  createApiKey(input: {name: $name, organizationId: $org}) {
    key apiKey { id organizationId } } }"""


@dataclass
class Caller:
    client: GraphQLClient
    user_id: str
    email: str
    org_id: str


@dataclass
class World:
    """Organization A ("acme") and organization B ("beta"), each with a project."""

    a_org: str
    a_project: str
    stranger: Caller  # owner of A, never a member of B
    dual: Caller  # owner of A and of B (same user), calling with its key for A
    dual_b: GraphQLClient  # the same user's key for B
    b_org: str
    b_project: str
    b_owner: Caller  # created B's project, so also its project owner
    b_owner2: Caller
    b_member: Caller  # annotator of B's project
    b_extra: Caller  # B worker, in no project


async def _caller(member, org: str, role: str, email: str | None = None) -> Caller:
    address = email or f"{role}-{uuid.uuid4().hex[:8]}@{org}.io"
    client, doc = await member(org, role, email=address)
    return Caller(client, str(doc["userId"]), address, str(doc["orgId"]))


async def _create_project(client: GraphQLClient, org: str, name: str) -> str:
    data = await client.data(CREATE_PROJECT, org=org, name=name)
    return data["createProject"]["id"]


@pytest.fixture
async def world(member) -> World:
    b_owner = await _caller(member, "beta", "owner")
    b_owner2 = await _caller(member, "beta", "owner")
    b_member = await _caller(member, "beta", "member")
    b_extra = await _caller(member, "beta", "worker")
    stranger = await _caller(member, "acme", "owner")
    dual = await _caller(member, "acme", "owner", email="dual@both.io")
    dual_b, _ = await member("beta", "owner", email="dual@both.io")

    a_org, b_org = stranger.org_id, b_owner.org_id
    b_project = await _create_project(b_owner.client, b_org, "Beta secrets")
    for user, role in ((b_member.user_id, "ANNOTATOR"), (dual.user_id, "DEVELOPER")):
        await b_owner.client.data(ADD_PROJECT_MEMBER, project=b_project, user=user, role=role)
    a_project = await _create_project(stranger.client, a_org, "Acme public")
    return World(
        a_org=a_org,
        a_project=a_project,
        stranger=stranger,
        dual=dual,
        dual_b=dual_b,
        b_org=b_org,
        b_project=b_project,
        b_owner=b_owner,
        b_owner2=b_owner2,
        b_member=b_member,
        b_extra=b_extra,
    )


async def _tenant_state(db, org_id: str) -> dict[str, Any]:
    """Everything stored about one organization, for before/after comparison."""
    oid = ObjectId(org_id)

    async def rows(collection: str, projection: dict[str, int] | None = None) -> list[dict]:
        return await db[collection].find({"orgId": oid}, projection).sort("_id").to_list()

    return {
        "organization": await db.organizations.find_one({"_id": oid}),
        "org_members": await rows("org_members"),
        "projects": await rows("projects"),
        "project_members": await rows("project_members"),
        "api_keys": await rows("api_keys", {"lastUsedAt": 0}),
        "users": await db.users.count_documents({}),
        "all_api_keys": await db.api_keys.count_documents({}),
    }


# Each mutation naming an object of B: (query, variables from the world and the caller).
B_MUTATIONS: dict[str, tuple[str, Callable[[World, Caller], dict[str, Any]]]] = {
    "updateOrganization": (UPDATE_ORG, lambda w, c: {"id": w.b_org, "name": "Pwned"}),
    "addOrganizationMember-new-user": (
        ADD_ORG_MEMBER,
        lambda w, c: {"org": w.b_org, "email": "newcomer@evil.io", "role": "MEMBER"},
    ),
    "addOrganizationMember-self-as-owner": (
        ADD_ORG_MEMBER,
        lambda w, c: {"org": w.b_org, "email": c.email, "role": "OWNER"},
    ),
    "updateOrganizationMember": (
        UPDATE_ORG_MEMBER,
        lambda w, c: {"org": w.b_org, "user": w.b_member.user_id, "role": "OWNER"},
    ),
    "removeOrganizationMember-member": (
        REMOVE_ORG_MEMBER,
        lambda w, c: {"org": w.b_org, "user": w.b_member.user_id},
    ),
    "removeOrganizationMember-owner": (
        REMOVE_ORG_MEMBER,
        lambda w, c: {"org": w.b_org, "user": w.b_owner2.user_id},
    ),
    "createProject": (CREATE_PROJECT, lambda w, c: {"org": w.b_org, "name": "Planted"}),
    "updateProject": (UPDATE_PROJECT, lambda w, c: {"id": w.b_project, "name": "Renamed"}),
    "addProjectMember": (
        ADD_PROJECT_MEMBER,
        lambda w, c: {"project": w.b_project, "user": w.b_extra.user_id, "role": "OWNER"},
    ),
    "updateProjectMember": (
        UPDATE_PROJECT_MEMBER,
        lambda w, c: {"project": w.b_project, "user": w.b_member.user_id, "role": "OWNER"},
    ),
    "removeProjectMember": (
        REMOVE_PROJECT_MEMBER,
        lambda w, c: {"project": w.b_project, "user": w.b_member.user_id},
    ),
    "createApiKey": (CREATE_API_KEY, lambda w, c: {"name": "into-b", "org": w.b_org}),
}


@pytest.mark.parametrize("mutation", list(B_MUTATIONS))
async def test_mutation_on_org_b_object_is_not_found_for_org_a_keys_and_changes_nothing(
    world, db, mutation
):
    query, variables = B_MUTATIONS[mutation]
    before = await _tenant_state(db, world.b_org)

    for caller in (world.stranger, world.dual):
        error = await caller.client.error(query, **variables(world, caller))
        assert error["extensions"]["code"] == "NOT_FOUND", caller
        assert "beta" not in error["message"].lower()
        assert await _tenant_state(db, world.b_org) == before

    # The control: the very same request from B's own owner goes through, so the refusal above
    # is tenancy, not a malformed request or a stale id.
    await world.b_owner.client.data(query, **variables(world, world.stranger))
    assert await _tenant_state(db, world.b_org) != before


@pytest.mark.parametrize(
    ("query", "target"),
    [
        pytest.param(ORG, "b_org", id="organization"),
        pytest.param(ORG_MEMBERS, "b_org", id="organization.members"),
        pytest.param(ORG_PROJECTS, "b_org", id="organization.projects"),
        pytest.param(PROJECTS_OF, "b_org", id="projects(organizationId)"),
        pytest.param(PROJECT, "b_project", id="project"),
        pytest.param(PROJECT_MEMBERS, "b_project", id="project.members"),
    ],
)
async def test_reading_an_org_b_object_is_not_found_for_org_a_keys(world, query, target):
    variables = {"org" if "$org" in query else "id": getattr(world, target)}
    for caller in (world.stranger, world.dual):
        error = await caller.client.error(query, **variables)
        assert error["extensions"]["code"] == "NOT_FOUND", caller
        assert "beta" not in error["message"].lower()
    assert not (await world.b_owner.client.execute(query, **variables)).get("errors")


@pytest.mark.parametrize("target", ["b_org", "b_project"])
async def test_node_of_an_org_b_object_is_null_for_org_a_keys(world, target):
    for caller in (world.stranger, world.dual):
        data = await caller.client.data(NODE, id=getattr(world, target))
        assert data["node"] is None, caller
    owner_view = await world.b_owner.client.data(NODE, id=getattr(world, target))
    assert owner_view["node"]["id"] == getattr(world, target)


@pytest.mark.parametrize(
    ("target", "typename"), [("a_org", "Organization"), ("a_project", "Project")]
)
async def test_node_of_an_own_object_resolves_to_that_object(world, target, typename):
    data = await world.stranger.client.data(NODE, id=getattr(world, target))
    assert data["node"] == {"__typename": typename, "id": getattr(world, target)}


async def test_org_b_and_its_projects_never_appear_in_org_a_keys_lists(world):
    for caller in (world.stranger, world.dual):
        orgs = (await caller.client.data(ORGS))["organizations"]["nodes"]
        assert orgs == [{"id": world.a_org, "name": "acme"}]

        projects = (await caller.client.data(PROJECTS))["projects"]["nodes"]
        assert projects == [{"id": world.a_project}]

        own = (await caller.client.data(PROJECTS_OF, org=world.a_org))["projects"]["nodes"]
        assert own == [{"id": world.a_project}]

        nested = (await caller.client.data(ORG_PROJECTS, id=world.a_org))["organization"]
        assert nested["projects"]["nodes"] == [{"id": world.a_project}]


async def test_same_user_sees_org_b_through_its_key_for_org_b(world):
    """The control for the `same-user` attacker: B is refused only because of the key."""
    client = world.dual_b
    orgs = (await client.data(ORGS))["organizations"]["nodes"]
    assert orgs == [{"id": world.b_org, "name": "beta"}]
    assert (await client.data(ORG, id=world.b_org))["organization"]["name"] == "beta"
    assert (await client.data(PROJECT, id=world.b_project))["project"]["name"] == "Beta secrets"
    assert await client.code(ORG, id=world.a_org) == "NOT_FOUND"


async def test_unscoped_key_of_the_same_user_sees_each_organization_by_id(world, db):
    key, _ = await issue_key(db, ObjectId(world.dual.user_id), "everywhere", None)
    client = GraphQLClient(world.dual.client.http, key)

    orgs = (await client.data(ORGS))["organizations"]["nodes"]
    assert {o["id"] for o in orgs} == {world.a_org, world.b_org}
    for org_id, name in ((world.a_org, "acme"), (world.b_org, "beta")):
        assert (await client.data(ORG, id=org_id))["organization"] == {"id": org_id, "name": name}


async def test_key_created_by_an_org_scoped_key_stays_limited_to_that_org(world):
    created = (await world.dual.client.data(CREATE_API_KEY, name="child"))["createApiKey"]
    assert created["apiKey"]["organizationId"] == world.a_org

    child = GraphQLClient(world.dual.client.http, created["key"])
    orgs = (await child.data(ORGS))["organizations"]["nodes"]
    assert [o["id"] for o in orgs] == [world.a_org]
    assert await child.code(ORG, id=world.b_org) == "NOT_FOUND"
    assert await child.code(PROJECT, id=world.b_project) == "NOT_FOUND"


async def test_revoking_a_key_of_another_users_org_b_key_is_not_found(world, db):
    b_key = await db.api_keys.find_one({"userId": ObjectId(world.b_owner.user_id)})
    mutation = "mutation($id: ID!) { revokeApiKey(id: $id) { id revokedAt } }"

    assert await world.stranger.client.code(mutation, id=str(b_key["_id"])) == "NOT_FOUND"

    assert (await db.api_keys.find_one({"_id": b_key["_id"]}))["revokedAt"] is None
    assert (await world.b_owner.client.data(ORG, id=world.b_org))["organization"]["name"] == "beta"


# --- Projects inside one organization -----------------------------------------------------


@dataclass
class Acme:
    org: str
    project: str
    creator: Caller


@pytest.fixture
async def acme(member) -> Acme:
    creator = await _caller(member, "acme", "member")
    project = await _create_project(creator.client, creator.org_id, "Private work")
    return Acme(org=creator.org_id, project=project, creator=creator)


SEES_EVERY_PROJECT = {"owner": True, "admin": True, "member": False, "worker": False}


@pytest.mark.parametrize("role", list(SEES_EVERY_PROJECT))
async def test_project_outside_ones_membership_is_visible_only_to_org_owners_and_admins(
    member, acme, role
):
    viewer = await _caller(member, "acme", role)
    visible = SEES_EVERY_PROJECT[role]

    body = await viewer.client.execute(PROJECT, id=acme.project)
    if visible:
        assert body["data"]["project"] == {"id": acme.project, "name": "Private work"}
    else:
        assert [e["extensions"]["code"] for e in body["errors"]] == ["NOT_FOUND"]

    expected = [{"id": acme.project}] if visible else []
    assert (await viewer.client.data(PROJECTS))["projects"]["nodes"] == expected
    listed = await viewer.client.data(PROJECTS_OF, org=acme.org)
    assert listed["projects"]["nodes"] == expected
    nested = (await viewer.client.data(ORG_PROJECTS, id=acme.org))["organization"]
    assert nested["projects"]["nodes"] == expected

    members = await viewer.client.execute(PROJECT_MEMBERS, id=acme.project)
    if visible:
        assert members["data"]["project"]["members"]["totalCount"] == 1
    else:
        assert [e["extensions"]["code"] for e in members["errors"]] == ["NOT_FOUND"]


@pytest.mark.parametrize("role", ["member", "worker"])
async def test_project_outside_ones_membership_is_null_through_node(member, acme, role):
    viewer = await _caller(member, "acme", role)
    assert (await viewer.client.data(NODE, id=acme.project))["node"] is None


@pytest.mark.parametrize("role", ["member", "worker"])
async def test_updating_a_project_outside_ones_membership_is_not_found(member, db, acme, role):
    viewer = await _caller(member, "acme", role)
    assert await viewer.client.code(UPDATE_PROJECT, id=acme.project, name="Mine") == "NOT_FOUND"
    assert (await db.projects.find_one({"_id": ObjectId(acme.project)}))["name"] == "Private work"


@pytest.mark.parametrize("role", ["member", "worker"])
async def test_project_becomes_visible_to_an_org_member_once_added_to_it(member, acme, role):
    viewer = await _caller(member, "acme", role)
    assert await viewer.client.code(PROJECT, id=acme.project) == "NOT_FOUND"

    await acme.creator.client.data(
        ADD_PROJECT_MEMBER, project=acme.project, user=viewer.user_id, role="ANNOTATOR"
    )

    assert (await viewer.client.data(PROJECT, id=acme.project))["project"]["id"] == acme.project
    assert (await viewer.client.data(PROJECTS))["projects"]["nodes"] == [{"id": acme.project}]
