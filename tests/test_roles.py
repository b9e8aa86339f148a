"""Roles: each org role and each project role may do exactly what the grant tables say.

Expectations are derived from ORG_GRANTS / PROJECT_GRANTS in resolvers/access.py so the tests
follow the table; `test_grant_table_cells_*` and `test_concrete_*` pin a few cells by hand so a
wrong table fails too. Visible-but-not-permitted is FORBIDDEN; invisible is NOT_FOUND.
"""

import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from bson import ObjectId

from resolvers.access import ORG_GRANTS, PROJECT_GRANTS, Action, OrgRole, ProjectRole
from tests.graphql_client import GraphQLClient
from tests.snapshots import snapshot

ORG_MEMBERS = "query($id: ID!) { organization(id: $id) { members { totalCount } } }"
PROJECTS_OF = "query($org: ID!) { projects(organizationId: $org) { nodes { id } } }"
PROJECTS = "query { projects { nodes { id } } }"
PROJECT = "query($id: ID!) { project(id: $id) { id } }"
PROJECT_MEMBERS = """query($id: ID!) {
  project(id: $id) { members { totalCount nodes { role user { id } } } } }"""

UPDATE_ORG = """mutation($id: ID!, $name: String!) {
  updateOrganization(id: $id, input: {name: $name}) { id name } }"""
ADD_ORG_MEMBER = """mutation($org: ID!, $email: String!, $role: OrgRole!) {
  addOrganizationMember(organizationId: $org, input: {user: {email: $email}, role: $role}) {
    role user { id } } }"""
UPDATE_ORG_MEMBER = """mutation($org: ID!, $user: ID!, $role: OrgRole!) {
  updateOrganizationMember(organizationId: $org, userId: $user, role: $role) { role } }"""
REMOVE_ORG_MEMBER = """mutation($org: ID!, $user: ID!) {
  removeOrganizationMember(organizationId: $org, userId: $user) }"""
CREATE_PROJECT = """mutation($org: ID!, $name: String!) {
  createProject(organizationId: $org, input: {name: $name}) { id } }"""
UPDATE_PROJECT = """mutation($id: ID!, $name: String!) {
  updateProject(id: $id, input: {name: $name}) { id name } }"""
ADD_PROJECT_MEMBER = """mutation($project: ID!, $user: ID!, $role: ProjectRole!) {
  addProjectMember(projectId: $project, userId: $user, role: $role) { role } }"""
REMOVE_PROJECT_MEMBER = """mutation($project: ID!, $user: ID!) {
  removeProjectMember(projectId: $project, userId: $user) }"""


@dataclass(frozen=True)
class Case:
    """A caller's standing: its org role, and its role in the project under test (if any)."""

    org_role: OrgRole
    project_role: ProjectRole | None = None

    @property
    def id(self) -> str:
        return f"project-{self.project_role}" if self.project_role else f"org-{self.org_role}"


ORG_CASES = [Case(role) for role in OrgRole]
# Project roles are held by plain org members, added to the project by its creator.
PROJECT_CASES = [Case(OrgRole.MEMBER, role) for role in ProjectRole]
ALL_CASES = ORG_CASES + PROJECT_CASES


def _ids(cases: list[Case]) -> list[str]:
    return [c.id for c in cases]


def org_outcome(case: Case, action: Action) -> str | None:
    """None when the org tables allow `action`, else FORBIDDEN (the org itself is visible)."""
    return None if case.org_role in ORG_GRANTS[action] else "FORBIDDEN"


def project_visible(case: Case) -> bool:
    return case.org_role in ORG_GRANTS[Action.READ_PROJECT] or (
        case.project_role in PROJECT_GRANTS[Action.READ_PROJECT]
    )


def project_outcome(case: Case, action: Action) -> str | None:
    """None when allowed on the project under test; FORBIDDEN if only visible; else NOT_FOUND."""
    if not project_visible(case):
        return "NOT_FOUND"
    if case.org_role in ORG_GRANTS[action] or case.project_role in PROJECT_GRANTS[action]:
        return None
    return "FORBIDDEN"


@dataclass
class Org:
    """Organization "acme": its founder (an org owner) created `project` and `other`; `target`
    is a plain org member in no project; `caller` holds the roles of the case."""

    org: str
    project: str
    other: str
    founder: GraphQLClient
    founder_id: str
    target_id: str
    caller: GraphQLClient
    caller_id: str


async def _attempt(client: GraphQLClient, query: str, **variables) -> str | None:
    """None on success, else the code of the single error."""
    body = await client.execute(query, **variables)
    if not body.get("errors"):
        return None
    assert len(body["errors"]) == 1, body
    return body["errors"][0]["extensions"]["code"]


async def project_caller(member, world: Any, case: Case) -> GraphQLClient:
    """A new user of the world's organization in the case's organization role, made a member
    of the world's project in the case's project role, if it has one."""
    client, doc = await member("acme", case.org_role.value)
    if case.project_role is not None:
        await world.client.data(
            ADD_PROJECT_MEMBER,
            project=world.project,
            user=str(doc["userId"]),
            role=case.project_role.name,
        )
    return client


async def _user(member, role: str) -> tuple[GraphQLClient, str, str]:
    client, doc = await member("acme", role, email=f"{role}-{uuid.uuid4().hex[:8]}@acme.io")
    return client, str(doc["userId"]), str(doc["orgId"])


async def _org(member, case: Case) -> Org:
    founder, founder_id, org = await _user(member, "owner")
    project = (await founder.data(CREATE_PROJECT, org=org, name="Main"))["createProject"]["id"]
    other = (await founder.data(CREATE_PROJECT, org=org, name="Other"))["createProject"]["id"]
    _, target_id, _ = await _user(member, "member")
    caller, caller_id, _ = await _user(member, case.org_role.value)
    if case.project_role is not None:
        await founder.data(
            ADD_PROJECT_MEMBER, project=project, user=caller_id, role=case.project_role.name
        )
    return Org(org, project, other, founder, founder_id, target_id, caller, caller_id)


async def _org_members(db, org: str) -> list[tuple[ObjectId, str]]:
    docs = await db.org_members.find({"orgId": ObjectId(org)}).sort("_id").to_list()
    return [(d["userId"], d["role"]) for d in docs]


async def _project_members(db, project: str) -> list[tuple[ObjectId, str]]:
    docs = await db.project_members.find({"projectId": ObjectId(project)}).sort("_id").to_list()
    return [(d["userId"], d["role"]) for d in docs]


# --- The tables themselves -----------------------------------------------------------------


def test_grant_table_cells_match_the_documented_policy():
    assert ORG_GRANTS[Action.UPDATE_ORG] == {OrgRole.OWNER, OrgRole.ADMIN}
    assert ORG_GRANTS[Action.READ_ORG] == set(OrgRole)
    assert OrgRole.WORKER not in ORG_GRANTS[Action.READ_ORG_MEMBERS]
    assert OrgRole.MEMBER in ORG_GRANTS[Action.CREATE_PROJECT]
    assert OrgRole.MEMBER not in ORG_GRANTS[Action.READ_PROJECT]
    assert PROJECT_GRANTS[Action.UPDATE_PROJECT] == {ProjectRole.OWNER}
    assert PROJECT_GRANTS[Action.MANAGE_PROJECT_MEMBERS] == {ProjectRole.OWNER}
    assert ProjectRole.ANNOTATOR in PROJECT_GRANTS[Action.READ_PROJECT_MEMBERS]


# --- Organization actions, per org role ---------------------------------------------------


@pytest.mark.parametrize("case", ORG_CASES, ids=_ids(ORG_CASES))
async def test_update_organization_follows_org_grants(member, db, case):
    world = await _org(member, case)
    expected = org_outcome(case, Action.UPDATE_ORG)

    assert await _attempt(world.caller, UPDATE_ORG, id=world.org, name="Renamed") == expected

    stored = await db.organizations.find_one({"_id": ObjectId(world.org)})
    assert stored["name"] == ("acme" if expected else "Renamed")


@pytest.mark.parametrize("case", ORG_CASES, ids=_ids(ORG_CASES))
async def test_listing_org_members_follows_org_grants(member, case):
    world = await _org(member, case)
    expected = org_outcome(case, Action.READ_ORG_MEMBERS)

    body = await world.caller.execute(ORG_MEMBERS, id=world.org)

    if expected is None:
        assert body["data"]["organization"]["members"]["totalCount"] == 3
    else:
        assert [e["extensions"]["code"] for e in body["errors"]] == [expected]


@pytest.mark.parametrize("case", ORG_CASES, ids=_ids(ORG_CASES))
async def test_adding_org_members_follows_org_grants(member, db, case):
    world = await _org(member, case)
    expected = org_outcome(case, Action.MANAGE_ORG_MEMBERS)
    before = await _org_members(db, world.org)

    code = await _attempt(
        world.caller, ADD_ORG_MEMBER, org=world.org, email="new@acme.io", role="MEMBER"
    )

    assert code == expected
    after = await _org_members(db, world.org)
    assert len(after) == len(before) + (1 if expected is None else 0)
    assert after[: len(before)] == before
    assert await db.users.count_documents({"email": "new@acme.io"}) == (expected is None)


@pytest.mark.parametrize("case", ORG_CASES, ids=_ids(ORG_CASES))
async def test_creating_projects_follows_org_grants(member, db, case):
    world = await _org(member, case)
    expected = org_outcome(case, Action.CREATE_PROJECT)

    assert await _attempt(world.caller, CREATE_PROJECT, org=world.org, name="Fresh") == expected

    created = await db.projects.find_one({"orgId": ObjectId(world.org), "name": "Fresh"})
    assert (created is not None) == (expected is None)
    if created is not None:
        assert await _project_members(db, str(created["_id"])) == [
            (ObjectId(world.caller_id), "owner")
        ]


# --- Project visibility and actions, per org role and per project role --------------------


@pytest.mark.parametrize("case", ALL_CASES, ids=_ids(ALL_CASES))
async def test_seeing_projects_follows_grants(member, case):
    world = await _org(member, case)
    sees_all = case.org_role in ORG_GRANTS[Action.READ_PROJECT]
    expected = {world.project, world.other} if sees_all else set()
    if case.project_role in PROJECT_GRANTS[Action.READ_PROJECT]:
        expected.add(world.project)

    listed = await world.caller.data(PROJECTS_OF, org=world.org)
    assert {p["id"] for p in listed["projects"]["nodes"]} == expected
    everywhere = await world.caller.data(PROJECTS)
    assert {p["id"] for p in everywhere["projects"]["nodes"]} == expected
    for project in (world.project, world.other):
        code = await _attempt(world.caller, PROJECT, id=project)
        assert code == (None if project in expected else "NOT_FOUND"), project


@pytest.mark.parametrize("case", ALL_CASES, ids=_ids(ALL_CASES))
async def test_update_project_follows_grants(member, db, case):
    world = await _org(member, case)
    expected = project_outcome(case, Action.UPDATE_PROJECT)

    code = await _attempt(world.caller, UPDATE_PROJECT, id=world.project, name="Renamed")

    assert code == expected
    stored = await db.projects.find_one({"_id": ObjectId(world.project)})
    assert stored["name"] == ("Main" if expected else "Renamed")


@pytest.mark.parametrize("case", ALL_CASES, ids=_ids(ALL_CASES))
async def test_listing_project_members_follows_grants(member, case):
    world = await _org(member, case)
    expected = project_outcome(case, Action.READ_PROJECT_MEMBERS)

    body = await world.caller.execute(PROJECT_MEMBERS, id=world.project)

    if expected is None:
        members = body["data"]["project"]["members"]
        assert members["totalCount"] == (2 if case.project_role else 1)
        assert {"role": "OWNER", "user": {"id": world.founder_id}} in members["nodes"]
    else:
        assert [e["extensions"]["code"] for e in body["errors"]] == [expected]


@pytest.mark.parametrize("case", ALL_CASES, ids=_ids(ALL_CASES))
async def test_adding_project_members_follows_grants(member, db, case):
    world = await _org(member, case)
    expected = project_outcome(case, Action.MANAGE_PROJECT_MEMBERS)
    before = await _project_members(db, world.project)

    code = await _attempt(
        world.caller,
        ADD_PROJECT_MEMBER,
        project=world.project,
        user=world.target_id,
        role="ANNOTATOR",
    )

    assert code == expected
    added = [(ObjectId(world.target_id), "annotator")] if expected is None else []
    assert await _project_members(db, world.project) == before + added


# Hand-written cells: these do not consult the tables, so a wrong table fails here.
CONCRETE = [
    pytest.param(Case(OrgRole.MEMBER), UPDATE_ORG, "org", "FORBIDDEN", id="member-updateOrg"),
    pytest.param(Case(OrgRole.ADMIN), UPDATE_ORG, "org", None, id="admin-updateOrg"),
    pytest.param(Case(OrgRole.WORKER), ORG_MEMBERS, "org", "FORBIDDEN", id="worker-orgMembers"),
    pytest.param(
        Case(OrgRole.MEMBER), UPDATE_PROJECT, "project", "NOT_FOUND", id="member-updateProject"
    ),
    pytest.param(Case(OrgRole.ADMIN), UPDATE_PROJECT, "project", None, id="admin-updateProject"),
    pytest.param(
        Case(OrgRole.MEMBER, ProjectRole.DEVELOPER),
        UPDATE_PROJECT,
        "project",
        "FORBIDDEN",
        id="developer-updateProject",
    ),
    pytest.param(
        Case(OrgRole.MEMBER, ProjectRole.ANNOTATOR),
        PROJECT_MEMBERS,
        "project",
        None,
        id="annotator-projectMembers",
    ),
    pytest.param(
        Case(OrgRole.MEMBER, ProjectRole.OWNER),
        UPDATE_PROJECT,
        "project",
        None,
        id="projectOwner-updateProject",
    ),
]


@pytest.mark.parametrize(("case", "query", "on", "expected"), CONCRETE)
async def test_concrete_role_cells(member, case, query, on, expected):
    world = await _org(member, case)
    target = world.org if on == "org" else world.project
    variables = {"id": target} | ({"name": "Renamed"} if "mutation" in query else {})
    assert await _attempt(world.caller, query, **variables) == expected


# --- The owner role is special --------------------------------------------------------------


@pytest.mark.parametrize(("role", "expected"), [("owner", None), ("admin", "FORBIDDEN")])
async def test_only_an_org_owner_may_add_an_owner(member, db, role, expected):
    world = await _org(member, Case(OrgRole(role)))
    before = await _org_members(db, world.org)

    code = await _attempt(
        world.caller, ADD_ORG_MEMBER, org=world.org, email="boss@acme.io", role="OWNER"
    )

    assert code == expected
    after = await _org_members(db, world.org)
    if expected is None:
        assert after[-1][1] == "owner"
        assert after[:-1] == before
    else:
        assert after == before


@pytest.mark.parametrize(("role", "expected"), [("owner", None), ("admin", "FORBIDDEN")])
async def test_only_an_org_owner_may_promote_a_member_to_owner(member, db, role, expected):
    world = await _org(member, Case(OrgRole(role)))
    before = await _org_members(db, world.org)

    code = await _attempt(
        world.caller, UPDATE_ORG_MEMBER, org=world.org, user=world.target_id, role="OWNER"
    )

    assert code == expected
    after = dict(await _org_members(db, world.org))
    assert after[ObjectId(world.target_id)] == ("owner" if expected is None else "member")
    if expected:
        assert await _org_members(db, world.org) == before


@pytest.mark.parametrize(("role", "expected"), [("owner", None), ("admin", "FORBIDDEN")])
async def test_only_an_org_owner_may_demote_an_owner(member, db, role, expected):
    world = await _org(member, Case(OrgRole(role)))
    before = await _org_members(db, world.org)

    code = await _attempt(
        world.caller, UPDATE_ORG_MEMBER, org=world.org, user=world.founder_id, role="ADMIN"
    )

    assert code == expected
    after = dict(await _org_members(db, world.org))
    assert after[ObjectId(world.founder_id)] == ("admin" if expected is None else "owner")
    if expected:
        assert await _org_members(db, world.org) == before


@pytest.mark.parametrize(("role", "expected"), [("owner", None), ("admin", "FORBIDDEN")])
async def test_only_an_org_owner_may_remove_an_owner(member, db, role, expected):
    world = await _org(member, Case(OrgRole(role)))
    # The founder's projects keep an owner after the founder leaves.
    for project in (world.project, world.other):
        await world.founder.data(
            ADD_PROJECT_MEMBER, project=project, user=world.caller_id, role="OWNER"
        )
    before = await _org_members(db, world.org)
    founder_projects = await db.project_members.count_documents(
        {"userId": ObjectId(world.founder_id)}
    )

    code = await _attempt(world.caller, REMOVE_ORG_MEMBER, org=world.org, user=world.founder_id)

    assert code == expected
    after = dict(await _org_members(db, world.org))
    assert (ObjectId(world.founder_id) in after) == (expected is not None)
    if expected:
        assert await _org_members(db, world.org) == before
        remaining = await db.project_members.count_documents({"userId": ObjectId(world.founder_id)})
        assert remaining == founder_projects == 2


async def test_admin_may_change_and_remove_non_owner_members(member, db):
    world = await _org(member, Case(OrgRole.ADMIN))

    changed = await world.caller.data(
        UPDATE_ORG_MEMBER, org=world.org, user=world.target_id, role="WORKER"
    )
    assert changed["updateOrganizationMember"]["role"] == "WORKER"
    removed = await world.caller.data(REMOVE_ORG_MEMBER, org=world.org, user=world.target_id)
    assert removed["removeOrganizationMember"] is True
    assert ObjectId(world.target_id) not in dict(await _org_members(db, world.org))


@pytest.mark.parametrize("new_role", ["ADMIN", "MEMBER", "WORKER"])
async def test_last_org_owner_cannot_be_demoted_and_nothing_changes(member, db, new_role):
    world = await _org(member, Case(OrgRole.ADMIN))
    before = await _org_members(db, world.org)
    version = (await db.organizations.find_one({"_id": ObjectId(world.org)}))["membersVersion"]

    code = await _attempt(
        world.founder, UPDATE_ORG_MEMBER, org=world.org, user=world.founder_id, role=new_role
    )

    assert code == "CONFLICT"
    assert await _org_members(db, world.org) == before
    org = await db.organizations.find_one({"_id": ObjectId(world.org)})
    assert org["membersVersion"] == version


async def test_last_org_owner_cannot_be_removed_and_nothing_changes(member, db):
    world = await _org(member, Case(OrgRole.ADMIN))
    before = await _org_members(db, world.org)
    projects_before = await _project_members(db, world.project)

    code = await _attempt(world.founder, REMOVE_ORG_MEMBER, org=world.org, user=world.founder_id)

    assert code == "CONFLICT"
    assert await _org_members(db, world.org) == before
    assert await _project_members(db, world.project) == projects_before
    assert (await world.founder.data(PROJECT, id=world.project))["project"]["id"] == world.project


async def test_one_of_two_org_owners_may_step_down(member, db):
    world = await _org(member, Case(OrgRole.OWNER))
    for project in (world.project, world.other):
        await world.founder.data(
            ADD_PROJECT_MEMBER, project=project, user=world.caller_id, role="OWNER"
        )

    await world.founder.data(UPDATE_ORG_MEMBER, org=world.org, user=world.founder_id, role="MEMBER")
    await world.caller.data(REMOVE_ORG_MEMBER, org=world.org, user=world.founder_id)

    members = dict(await _org_members(db, world.org))
    assert ObjectId(world.founder_id) not in members
    assert members[ObjectId(world.caller_id)] == "owner"


# --- Membership side effects and inputs ------------------------------------------------------


async def test_removing_a_user_from_the_org_ends_their_project_memberships(member, db):
    world = await _org(member, Case(OrgRole.ADMIN))
    target = ObjectId(world.target_id)
    for project, role in ((world.project, "ANNOTATOR"), (world.other, "DEVELOPER")):
        await world.founder.data(
            ADD_PROJECT_MEMBER, project=project, user=world.target_id, role=role
        )
    # The same user in another organization, with a project there: untouched by the removal.
    beta, beta_doc = await member("beta", "owner", email="beta-owner@beta.io")
    await member("beta", "member", email=(await db.users.find_one({"_id": target}))["email"])
    beta_org = str(beta_doc["orgId"])
    beta_project = (await beta.data(CREATE_PROJECT, org=beta_org, name="B"))["createProject"]["id"]
    await beta.data(ADD_PROJECT_MEMBER, project=beta_project, user=world.target_id, role="OWNER")

    await world.caller.data(REMOVE_ORG_MEMBER, org=world.org, user=world.target_id)

    in_acme = {"userId": target, "orgId": ObjectId(world.org)}
    assert await db.project_members.count_documents(in_acme) == 0
    for project in (world.project, world.other):
        assert target not in dict(await _project_members(db, project))
        listed = await world.founder.data(PROJECT_MEMBERS, id=project)
        assert {"id": world.target_id} not in [
            n["user"] for n in listed["project"]["members"]["nodes"]
        ]
    assert await _project_members(db, world.project) == [(ObjectId(world.founder_id), "owner")]
    assert await _project_members(db, beta_project) == [
        (ObjectId(beta_doc["userId"]), "owner"),
        (target, "owner"),
    ]


@pytest.mark.parametrize("who", ["member-of-another-org", "unknown-user"])
async def test_adding_a_non_member_of_the_org_to_a_project_is_bad_user_input(member, db, who):
    world = await _org(member, Case(OrgRole.ADMIN))
    if who == "member-of-another-org":
        outsider = str((await member("beta", "owner"))[1]["userId"])
    else:
        outsider = str(ObjectId())
    before = await _project_members(db, world.project)

    for client in (world.founder, world.caller):
        code = await _attempt(
            client, ADD_PROJECT_MEMBER, project=world.project, user=outsider, role="ANNOTATOR"
        )
        assert code == "BAD_USER_INPUT"

    assert await _project_members(db, world.project) == before
    assert await db.project_members.count_documents({"userId": ObjectId(outsider)}) == 0


async def test_last_owner_of_a_project_cannot_leave_the_org_and_nothing_changes(member, db):
    world = await _org(member, Case(OrgRole.ADMIN))
    await world.founder.data(
        ADD_PROJECT_MEMBER, project=world.project, user=world.target_id, role="OWNER"
    )
    await world.founder.data(REMOVE_PROJECT_MEMBER, project=world.project, user=world.founder_id)
    before = await snapshot(db)
    error = await world.caller.error(REMOVE_ORG_MEMBER, org=world.org, user=world.target_id)
    assert error["extensions"]["code"] == "CONFLICT"
    assert "owner" in error["message"]
    assert await snapshot(db) == before
