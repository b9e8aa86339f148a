async def test_me_answers_with_the_key_owner(member):
    client, doc = await member("acme", "owner", email="alice@acme.io")
    data = await client.data(
        "{ me { id email currentKeyId organizations: apiKeys { totalCount } } }"
    )
    assert data["me"]["email"] == "alice@acme.io"
    assert data["me"]["id"] == str(doc["userId"])
    assert data["me"]["currentKeyId"] == str(doc["_id"])
