"""Expected failures carry a code; unexpected ones are masked and logged with the request id;
MongoDB or Redis briefly away is UNAVAILABLE with retryAfter."""

import logging

import pytest
import redis.exceptions
from bson import ObjectId
from graphql import GraphQLError
from pymongo import AsyncMongoClient
from pymongo.errors import (
    AutoReconnect,
    DuplicateKeyError,
    ExecutionTimeout,
    NotPrimaryError,
    OperationFailure,
    ServerSelectionTimeoutError,
)
from redis.asyncio import Redis

from gateway.graphql_errors import classify
from gateway.http_negotiation import GRAPHQL_RESPONSE_JSON, JSON, headers_of, status_of
from tests.servers import free_port

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


def _classified(original: BaseException) -> dict:
    error = GraphQLError("boom", path=["field"], original_error=original)
    return classify(error, "req-1", retry_after_s=7).formatted


async def test_redis_that_does_not_answer_is_unavailable_with_retry_after():
    with pytest.raises(redis.exceptions.ConnectionError) as refused:
        await Redis(port=free_port(), socket_connect_timeout=0.5).ping()
    formatted = _classified(refused.value)
    assert formatted["extensions"] == {"code": "UNAVAILABLE", "retryAfter": 7, "requestId": "req-1"}
    assert "Redis" in formatted["message"]


async def test_mongodb_without_a_reachable_primary_is_unavailable():
    client = AsyncMongoClient(f"127.0.0.1:{free_port()}", serverSelectionTimeoutMS=100)
    with pytest.raises(ServerSelectionTimeoutError) as timed_out:
        await client.admin.command("ping")
    await client.close()
    assert _classified(timed_out.value)["extensions"]["code"] == "UNAVAILABLE"


@pytest.mark.parametrize(
    "original",
    [
        OperationFailure("txn", 251, {"errorLabels": ["TransientTransactionError"]}),
        OperationFailure("write", 1, {"errorLabels": ["RetryableWriteError"]}),
        OperationFailure("stepped down", 189),
        NotPrimaryError("not primary"),
        RuntimeError("wrapped"),
    ],
    ids=["transient-label", "retryable-label", "stepped-down-code", "not-primary", "cause"],
)
def test_transient_mongodb_errors_are_unavailable(original):
    if isinstance(original, RuntimeError):
        original.__cause__ = AutoReconnect("connection reset")
    assert _classified(original)["extensions"]["code"] == "UNAVAILABLE"


def test_errors_that_waiting_would_not_fix_stay_masked():
    handling = KeyError("bug")
    handling.__context__ = AutoReconnect("raised while handling this")
    for original in (
        DuplicateKeyError("dup", 11000),
        ExecutionTimeout("maxTimeMS", 50),
        OperationFailure("bad", 2),
        handling,
    ):
        assert _classified(original)["extensions"]["code"] == "INTERNAL_SERVER_ERROR"


def test_unavailable_without_data_is_503_with_retry_after_only_under_the_new_media_type():
    error = {"message": "x", "extensions": {"code": "UNAVAILABLE", "retryAfter": 4}}
    body = {"data": None, "errors": [error]}
    assert status_of(body, GRAPHQL_RESPONSE_JSON) == 503
    assert headers_of(body, 503) == {"Retry-After": "4"}
    assert status_of(body, JSON) == 200
    assert headers_of(body, 200) == {}
    assert status_of({"data": {"a": 1}, "errors": [error]}, GRAPHQL_RESPONSE_JSON) == 200
    other = {"data": None, "errors": [{"message": "x", "extensions": {"code": "NOT_FOUND"}}]}
    assert status_of(other, GRAPHQL_RESPONSE_JSON) == 200
