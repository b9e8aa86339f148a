"""API keys: shown once, stored hashed, revocable at once, last-used time kept."""

import hashlib

CREATE_KEY = """mutation($input: ApiKeyInput!) {
  createApiKey(input: $input) { key apiKey { id name hint organizationId revokedAt } } }"""
REVOKE_KEY = "mutation($id: ID!) { revokeApiKey(id: $id) { id revokedAt } }"


async def test_created_key_works_and_only_its_hash_is_stored(member, gql, db):
    client, doc = await member("acme", "owner")
    created = (await client.data(CREATE_KEY, input={"name": "ci"}))["createApiKey"]
    key = created["key"]
    assert key.startswith("loom_")
    assert key.startswith(created["apiKey"]["hint"])
    assert created["apiKey"]["organizationId"] == str(doc["orgId"])
    stored = await db.api_keys.find_one({"name": "ci"})
    assert stored["hash"] == hashlib.sha256(key.encode()).hexdigest()
    assert key not in str(stored)
    me = await gql(key).data("{ me { id currentKeyId } }")
    assert me["me"] == {"id": str(doc["userId"]), "currentKeyId": created["apiKey"]["id"]}


async def test_key_listing_never_shows_the_secret(member):
    client, _ = await member("acme", "owner")
    await client.data(CREATE_KEY, input={"name": "ci"})
    body = await client.execute("{ me { apiKeys { edges { node { name hint } } } } }")
    names = [e["node"]["name"] for e in body["data"]["me"]["apiKeys"]["edges"]]
    assert sorted(names) == ["ci", "test"]
    assert "secret" not in str(body)
    assert all(len(e["node"]["hint"]) == 11 for e in body["data"]["me"]["apiKeys"]["edges"])


async def test_revoked_key_fails_at_once(member, gql):
    client, _ = await member("acme", "owner")
    created = (await client.data(CREATE_KEY, input={"name": "temp"}))["createApiKey"]
    temp = gql(created["key"])
    assert (await temp.data("{ me { id } }"))["me"]["id"]
    revoked = (await client.data(REVOKE_KEY, id=created["apiKey"]["id"]))["revokeApiKey"]
    assert revoked["revokedAt"] is not None
    assert await temp.code("{ me { id } }") == "UNAUTHENTICATED"
    assert (await client.data("{ me { id } }"))["me"]["id"]


async def test_a_key_can_revoke_itself_and_then_fails(member):
    client, doc = await member("acme", "owner")
    await client.data(REVOKE_KEY, id=str(doc["_id"]))
    assert await client.code("{ me { id } }") == "UNAUTHENTICATED"


async def test_nobody_can_revoke_another_users_key(member):
    alice, _ = await member("acme", "owner")
    _, bob_key = await member("acme", "admin")
    assert await alice.code(REVOKE_KEY, id=str(bob_key["_id"])) == "NOT_FOUND"


async def test_last_used_time_is_recorded(member, db):
    client, doc = await member("acme", "owner")
    assert (await db.api_keys.find_one({"_id": doc["_id"]}))["lastUsedAt"] is None
    await client.data("{ me { id } }")
    used = (await db.api_keys.find_one({"_id": doc["_id"]}))["lastUsedAt"]
    assert used is not None
    listed = await client.data("{ me { apiKeys { nodes { id lastUsedAt } } } }")
    assert [k["lastUsedAt"] for k in listed["me"]["apiKeys"]["nodes"]] == [used.isoformat()]


async def test_key_limited_to_an_org_cannot_create_organizations(member):
    client, _ = await member("acme", "owner")
    query = 'mutation { createOrganization(input: {name: "other"}) { id } }'
    assert await client.code(query) == "FORBIDDEN"


async def test_unscoped_key_creates_an_org_and_owns_it(member):
    client, _ = await member("acme", "owner", scoped=False)
    created = await client.data(
        'mutation { createOrganization(input: {name: "Beta"}) { id role } }'
    )
    assert created["createOrganization"]["role"] == "OWNER"
    names = await client.data("{ organizations { nodes { name } totalCount } }")
    assert names["organizations"] == {
        "nodes": [{"name": "Beta"}, {"name": "acme"}],
        "totalCount": 2,
    }


async def test_key_limited_to_one_org_neither_sees_nor_revokes_the_users_other_keys(member, db):
    email = "dana@two.io"
    acme, acme_key = await member("acme", "owner", email=email)
    beta, beta_key = await member("beta", "owner", email=email)
    unscoped, _ = await member("acme", "owner", email=email, scoped=False)
    listed = await acme.data("{ me { apiKeys { nodes { id organizationId } } } }")
    acme_keys = await db.api_keys.find({"orgId": acme_key["orgId"]}).sort("_id").to_list()
    assert listed["me"]["apiKeys"]["nodes"] == [
        {"id": str(k["_id"]), "organizationId": str(acme_key["orgId"])} for k in acme_keys
    ]
    assert str(beta_key["orgId"]) not in str(listed)
    assert await acme.code(REVOKE_KEY, id=str(beta_key["_id"])) == "NOT_FOUND"
    assert (await db.api_keys.find_one({"_id": beta_key["_id"]}))["revokedAt"] is None
    assert (await beta.data("{ me { id } }"))["me"]["id"]
    everything = await unscoped.data("{ me { apiKeys { totalCount } } }")
    assert everything["me"]["apiKeys"]["totalCount"] == len(acme_keys) + 2
