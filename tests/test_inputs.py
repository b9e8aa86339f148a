"""Malformed inputs get BAD_USER_INPUT with the offending field, and change nothing."""

import pytest

from tests.snapshots import snapshot

CREATE_ORG = "mutation($name: String!) { createOrganization(input: {name: $name}) { id } }"
CREATE_PROJECT = """mutation($org: ID!, $input: ProjectInput!) {
  createProject(organizationId: $org, input: $input) { id name } }"""
ADD_MEMBER = """mutation($org: ID!, $email: String!, $role: OrgRole!) {
  addOrganizationMember(organizationId: $org, input: {user: {email: $email}, role: $role}) {
    role } }"""


@pytest.mark.parametrize(
    "name",
    ["", "   ", "x" * 101, "tab\tinside", "bell\x07"],
    ids=["empty", "blank", "long", "tab", "bell"],
)
async def test_bad_organization_name_is_refused_and_nothing_is_written(member, db, name):
    client, _ = await member("acme", "owner", scoped=False)
    before = await snapshot(db)
    error = await client.error(CREATE_ORG, name=name)
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert error["extensions"]["fields"][0]["field"] == "name"
    assert await snapshot(db) == before


async def test_duplicate_organization_name_is_a_conflict_and_nothing_is_written(member, db):
    client, _ = await member("acme", "owner", scoped=False)
    before = await snapshot(db)
    error = await client.error(CREATE_ORG, name="acme")
    assert error["extensions"]["code"] == "CONFLICT"
    assert await snapshot(db) == before


@pytest.mark.parametrize(
    "project_input",
    [{"name": ""}, {"name": "ok", "description": "d" * 2001}, {"name": "ok", "description": None}],
    ids=["empty-name", "long-description", "null-description"],
)
async def test_bad_project_input_is_refused_and_nothing_is_written(member, db, project_input):
    client, doc = await member("acme", "owner")
    before = await snapshot(db)
    error = await client.error(CREATE_PROJECT, org=str(doc["orgId"]), input=project_input)
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert await snapshot(db) == before


async def test_duplicate_project_name_in_one_org_is_a_conflict_leaving_one_project(member, db):
    client, doc = await member("acme", "owner")
    org = str(doc["orgId"])
    await client.data(CREATE_PROJECT, org=org, input={"name": "cars"})
    before = await snapshot(db)
    assert await client.code(CREATE_PROJECT, org=org, input={"name": "cars"}) == "CONFLICT"
    assert await snapshot(db) == before


@pytest.mark.parametrize("email", ["not-an-email", "a@", "@b.io", "a b@c.io"])
async def test_bad_member_email_is_refused_and_no_user_is_created(member, db, email):
    client, doc = await member("acme", "owner")
    before = await snapshot(db)
    error = await client.error(ADD_MEMBER, org=str(doc["orgId"]), email=email, role="MEMBER")
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert error["extensions"]["fields"][0]["field"] == "user.email"
    assert await snapshot(db) == before


async def test_unknown_role_is_refused_by_the_schema(member, db):
    client, doc = await member("acme", "owner")
    before = await snapshot(db)
    code = await client.code(ADD_MEMBER, org=str(doc["orgId"]), email="bob@acme.io", role="GOD")
    assert code == "BAD_USER_INPUT"
    assert await snapshot(db) == before


async def test_update_project_with_nothing_to_change_is_refused(member, db):
    client, doc = await member("acme", "owner")
    created = await client.data(CREATE_PROJECT, org=str(doc["orgId"]), input={"name": "cars"})
    before = await snapshot(db)
    error = await client.error(
        "mutation($id: ID!) { updateProject(id: $id, input: {}) { id } }",
        id=created["createProject"]["id"],
    )
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert await snapshot(db) == before


async def test_member_email_is_stored_lowercase_and_reused(member, db):
    client, doc = await member("acme", "owner")
    org = str(doc["orgId"])
    await client.data(ADD_MEMBER, org=org, email="Bob@Acme.IO", role="MEMBER")
    assert await db.users.count_documents({"email": "bob@acme.io"}) == 1
    assert await client.code(ADD_MEMBER, org=org, email="bob@acme.io", role="ADMIN") == "CONFLICT"
    assert await db.users.count_documents({"email": "bob@acme.io"}) == 1
