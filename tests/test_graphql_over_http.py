"""GraphQL over HTTP as the spec asks, through a real uvicorn: the negotiated media type, the
status each kind of failure answers with under it, 406, 405 and 415 with coded errors — and
request ids, metrics and uploads as before."""

import json

import httpx
import pytest

from gateway.http_negotiation import GRAPHQL_RESPONSE_JSON, JSON, negotiate
from tests.datasets_world import CREATE_PROJECT, UPLOAD, make_world

GR = GRAPHQL_RESPONSE_JSON


@pytest.mark.parametrize(
    ("accept", "chosen"),
    [
        (None, JSON),
        ("", JSON),
        ("*/*", JSON),
        ("application/*", JSON),
        ("application/json", JSON),
        (GR, GR),
        (f"{GR}, application/json;q=0.9", GR),
        (f"application/json, {GR}", GR),
        (f"{GR};q=0.5, application/json", JSON),
        (f"application/json;q=0.5, {GR}", GR),
        (f"{GR};q=0.5, */*", JSON),
        (f"{GR};q=0, */*", JSON),
        (f"{GR}, */*;q=0.1", GR),
        (f"{GR}; charset=utf-8", GR),
        ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", JSON),
        ("text/html", None),
        ("application/xml, text/plain", None),
        ("application/json; charset=latin1", None),
        ("application/json;q=0", None),
        ("application/json;q=lots", None),
    ],
)
def test_accept_negotiation_weighs_q_values_and_wildcards(accept, chosen):
    assert negotiate(accept) == chosen


async def _post(server: str, body: object, accept: str | None, **headers: str) -> httpx.Response:
    if accept is not None:
        headers["Accept"] = accept
    async with httpx.AsyncClient(base_url=server) as http:
        return await http.post("/graphql", json=body, headers=headers)


async def test_a_client_accepting_graphql_response_json_gets_it(server):
    response = await _post(server, {"query": "{ __typename }"}, f"{GR}, application/json;q=0.9")
    assert response.status_code == 200
    assert response.headers["content-type"] == f"{GR}; charset=utf-8"
    assert response.json() == {"data": {"__typename": "Query"}}


@pytest.mark.parametrize("accept", [None, "application/json", "*/*"])
async def test_legacy_clients_get_application_json(server, accept):
    async with httpx.AsyncClient(base_url=server) as http:
        request = http.build_request("POST", "/graphql", json={"query": "{ __typename }"})
        if accept is None:
            del request.headers["accept"]
        else:
            request.headers["accept"] = accept
        response = await http.send(request)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json; charset=utf-8"


REQUEST_ERRORS = {
    "syntax": {"query": "{ me { id "},
    "validation": {"query": "{ me { password } }"},
    "variable-coercion": {
        "query": "query($n: Int!) { organizations(first: $n) { totalCount } }",
        "variables": {"n": "many"},
    },
    "limit": {"query": "{ " + " ".join(f"a{i}: __typename" for i in range(31)) + " }"},
}
"""Requests that fail before execution begins, each with one BAD_USER_INPUT error."""


@pytest.mark.parametrize("case", REQUEST_ERRORS, ids=list(REQUEST_ERRORS))
async def test_request_errors_are_400_without_data_under_graphql_response_json(server, case):
    response = await _post(server, REQUEST_ERRORS[case], GR)
    assert response.status_code == 400
    assert response.headers["content-type"] == f"{GR}; charset=utf-8"
    payload = response.json()
    assert "data" not in payload
    [error] = payload["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert error["extensions"]["requestId"] == response.headers["x-request-id"]


@pytest.mark.parametrize("case", REQUEST_ERRORS, ids=list(REQUEST_ERRORS))
async def test_request_errors_are_200_without_data_under_application_json(server, case):
    response = await _post(server, REQUEST_ERRORS[case], "application/json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    payload = response.json()
    assert "data" not in payload
    assert payload["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_field_errors_keep_data_and_200_under_graphql_response_json(server):
    response = await _post(server, {"query": "{ __typename me { id } }"}, GR)
    assert response.status_code == 200
    payload = response.json()
    assert payload["data"] is None
    assert payload["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert payload["errors"][0]["path"] == ["me"]


async def test_typename_answers_without_a_key(server):
    response = await _post(server, {"query": "{ __typename }"}, GR)
    assert response.json() == {"data": {"__typename": "Query"}}


@pytest.mark.parametrize("accept", ["text/html", "application/xml, text/plain;q=0.5"])
async def test_an_accept_header_admitting_neither_json_type_is_406_with_a_coded_error(
    server, accept
):
    response = await _post(server, {"query": "{ __typename }"}, accept)
    assert response.status_code == 406
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    [error] = response.json()["errors"]
    assert error["extensions"] == {
        "code": "BAD_USER_INPUT",
        "requestId": response.headers["x-request-id"],
    }
    assert GR in error["message"]


async def test_graphiql_is_still_served_to_a_browser_accepting_only_html(server):
    async with httpx.AsyncClient(base_url=server) as http:
        page = await http.get("/graphql", headers={"Accept": "text/html"})
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")


@pytest.mark.parametrize("accept", [GR, "application/json"])
async def test_a_mutation_over_get_is_405_with_allow_post(server, member, accept):
    client, doc = await member("acme", "owner")
    variables = json.dumps({"org": str(doc["orgId"]), "name": "over-get"})
    async with httpx.AsyncClient(base_url=server) as http:
        response = await http.get(
            "/graphql",
            params={"query": CREATE_PROJECT, "variables": variables},
            headers={"Accept": accept, "Authorization": f"Bearer {client.key}"},
        )
        projects = await http.post(
            "/graphql",
            json={"query": "{ projects { totalCount } }"},
            headers={"Authorization": f"Bearer {client.key}"},
        )
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    [error] = response.json()["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "POST" in error["message"]
    assert projects.json()["data"]["projects"]["totalCount"] == 0


async def test_a_query_over_get_answers_under_the_negotiated_type(server):
    async with httpx.AsyncClient(base_url=server) as http:
        response = await http.get(
            "/graphql", params={"query": "{ __typename }"}, headers={"Accept": GR}
        )
    assert response.status_code == 200
    assert response.headers["content-type"] == f"{GR}; charset=utf-8"


@pytest.mark.parametrize(
    "content_type", [None, "text/plain", "application/graphql", "application/x-www-form-urlencoded"]
)
async def test_a_post_in_an_unsupported_content_type_is_415_with_a_coded_error(
    server, content_type
):
    headers = {"Content-Type": content_type} if content_type else {}
    async with httpx.AsyncClient(base_url=server) as http:
        response = await http.post(
            "/graphql", content=b'{"query": "{ __typename }"}', headers=headers
        )
    assert response.status_code == 415
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


@pytest.mark.parametrize(
    "body",
    [
        b'{"query": ',
        b'{"notquery": "{ __typename }"}',
        b'{"query": 42}',
        b'{"query": "{ __typename }", "variables": "x"}',
    ],
    ids=["bad-json", "no-query", "query-not-a-string", "variables-not-a-map"],
)
async def test_a_malformed_request_is_400_with_a_coded_error_and_the_request_id(server, body):
    async with httpx.AsyncClient(base_url=server) as http:
        response = await http.post(
            "/graphql",
            content=body,
            headers={"Content-Type": "application/json", "X-Request-Id": "malformed-0001"},
        )
    assert response.status_code == 400
    assert response.headers["x-request-id"] == "malformed-0001"
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    [error] = response.json()["errors"]
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "requestId": "malformed-0001"}


async def test_status_codes_are_counted_in_the_metrics(server):
    await _post(server, {"query": "{ me { id "}, GR)
    await _post(server, {"query": "{ __typename }"}, "text/html")
    async with httpx.AsyncClient(base_url=server) as http:
        text = (await http.get("/metrics")).text
    assert 'loom_http_requests_total{method="POST",path="/graphql",status="400"}' in text
    assert 'loom_http_requests_total{method="POST",path="/graphql",status="406"}' in text


async def test_uploads_still_work_and_answer_under_the_negotiated_type(server, member):
    world = await make_world(member)
    operations = {"query": UPLOAD, "variables": {"dataset": world.dataset, "file": None}}
    async with httpx.AsyncClient(base_url=server) as http:
        response = await http.post(
            "/graphql",
            data={"operations": json.dumps(operations), "map": '{"0": ["variables.file"]}'},
            files={"0": ("notes.txt", b"hello", "text/plain")},
            headers={"Authorization": f"Bearer {world.client.key}", "Accept": GR},
        )
    assert response.status_code == 200
    assert response.headers["content-type"] == f"{GR}; charset=utf-8"
    assert response.json()["data"]["uploadItem"]["name"] == "notes.txt"
