"""Expected failures carry a code; unexpected ones are masked and logged with the request id."""

import logging

import pytest
from bson import ObjectId

ME = "{ me { id } }"


async def test_request_without_a_key_is_unauthenticated(gql):
    assert await gql().code(ME) == "UNAUTHENTICATED"


async def test_request_with_an_unknown_key_is_unauthenticated(gql):
    assert await gql("loom_" + "x" * 43).code(ME) == "UNAUTHENTICATED"
    assert await gql("not-even-a-loom-key").code(ME) == "UNAUTHENTICATED"


async def test_response_carries_the_request_id_header_and_honours_a_given_one(http):
    response = await http.post("/graphql", json={"query": ME})
    generated = response.headers["x-request-id"]
    assert len(generated) == 32
    given = "trace-1234abcd"
    response = await http.post("/graphql", json={"query": ME}, headers={"x-request-id": given})
    assert response.headers["x-request-id"] == given
    assert response.json()["errors"][0]["extensions"]["requestId"] == given


async def test_unexpected_failure_is_masked_and_logged_with_the_request_id(
    http, member, db, caplog: pytest.LogCaptureFixture
):
    client, doc = await member("acme", "owner")
    # A document written by some other tool without the fields Loom requires.
    await db.projects.insert_one(
        {"_id": ObjectId(), "orgId": doc["orgId"], "name": "broken", "createdAt": None}
    )
    with caplog.at_level(logging.ERROR, logger="loom.graphql"):
        response = await http.post(
            "/graphql",
            json={"query": "{ projects { edges { node { id description } } } }"},
            headers={"Authorization": f"Bearer {client.key}", "x-request-id": "req-masked-01"},
        )
    error = response.json()["errors"][0]
    assert error["message"] == "Internal server error"
    assert error["extensions"] == {"code": "INTERNAL_SERVER_ERROR", "requestId": "req-masked-01"}
    assert "KeyError" not in response.text
    logged = [r for r in caplog.records if "req-masked-01" in r.getMessage()]
    assert logged, "the masked error must be logged with its request id"
    assert logged[0].exc_info is not None


async def test_syntax_error_is_bad_user_input(member):
    client, _ = await member("acme", "owner")
    assert await client.code("{ me { id ") == "BAD_USER_INPUT"


async def test_unknown_field_is_bad_user_input(member):
    client, _ = await member("acme", "owner")
    assert await client.code("{ me { password } }") == "BAD_USER_INPUT"


async def test_variable_of_the_wrong_type_is_bad_user_input(member):
    client, _ = await member("acme", "owner")
    query = "query($n: Int!) { organizations(first: $n) { totalCount } }"
    assert await client.code(query, n="many") == "BAD_USER_INPUT"


async def test_malformed_id_is_bad_user_input(member):
    client, _ = await member("acme", "owner")
    error = await client.error('{ project(id: "not-an-object-id") { id } }')
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert error["extensions"]["field"] == "id"


async def test_missing_object_is_not_found(member):
    client, _ = await member("acme", "owner")
    error = await client.error(f'{{ project(id: "{ObjectId()}") {{ id }} }}')
    assert error["extensions"]["code"] == "NOT_FOUND"
