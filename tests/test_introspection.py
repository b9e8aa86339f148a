"""The standard introspection queries run through Loom's limits — graphql-js's as text, gql's
over its HTTP and WebSocket transports against a real uvicorn — while deep data queries are
still refused; with introspection turned off, `__schema` and `__type` are refused with their
code and `__typename` still works."""

from pathlib import Path

import httpx
import pytest
from gql import Client, GraphQLRequest
from gql.transport.httpx import HTTPXAsyncTransport
from gql.transport.websockets import WebsocketsTransport
from graphql import GraphQLSchema, parse

from gateway.connections import Connections
from gateway.settings import Limits
from tests.command_monitoring import gateway

GRAPHQL_JS_INTROSPECTION = (Path(__file__).parent / "introspection_graphql_js.graphql").read_text()
"""graphql-js 17's getIntrospectionQuery with every option on: 15 levels deep."""

GQL_INTROSPECTION_ARGS = {
    "descriptions": True,
    "specified_by_url": True,
    "directive_is_repeatable": True,
    "schema_description": True,
    "input_value_deprecation": True,
    "input_object_one_of": True,
}

DEEP_DATA = (
    "{ organizations { edges { node { projects { edges { node { organization { projects"
    " { edges { node { organization { projects { edges { node { id } } } } } } } } } } }"
    " } } } }"
)
"""15 levels of data, as deep as the graphql-js introspection query."""


def _depth_of(query: str) -> int:
    """Nesting of the first operation's selections, fragments expanded, nothing left out."""
    document = parse(query)
    fragments = {d.name.value: d for d in document.definitions if d.kind == "fragment_definition"}

    def depth(selection_set) -> int:
        deepest = 0
        for selection in selection_set.selections if selection_set else ():
            if selection.kind == "fragment_spread":
                deepest = max(deepest, depth(fragments[selection.name.value].selection_set))
            elif selection.kind == "inline_fragment":
                deepest = max(deepest, depth(selection.selection_set))
            else:
                deepest = max(deepest, 1 + depth(selection.selection_set))
        return deepest

    return depth(document.definitions[0].selection_set)


async def test_graphql_js_introspection_query_runs_through_the_depth_limit(gql):
    assert _depth_of(GRAPHQL_JS_INTROSPECTION) == 15 > Limits().max_depth
    data = await gql().data(GRAPHQL_JS_INTROSPECTION)
    types = {t["name"]: t for t in data["__schema"]["types"]}
    assert data["__schema"]["queryType"]["name"] == "Query"
    assert {"Organization", "Dataset", "Item"} <= set(types)
    assert any(d["name"] == "oneOf" for d in data["__schema"]["directives"])


async def test_a_data_query_as_deep_as_introspection_is_still_refused(member):
    client, _ = await member("acme", "owner")
    assert _depth_of(DEEP_DATA) == 15
    error = await client.error(DEEP_DATA)
    assert error["extensions"]["limit"] == "maxDepth"


async def test_data_beside_introspection_still_counts_its_depth(member):
    client, _ = await member("acme", "owner")
    error = await client.error("{ __schema { types { name } } " + DEEP_DATA[1:])
    assert error["extensions"]["limit"] == "maxDepth"


async def test_introspection_lists_nested_in_lists_are_refused_with_the_limit_named(gql):
    query = "{ __schema { types { fields { type { fields { type { fields { name } } } } } } } }"
    error = await gql().error(query)
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert error["extensions"]["limit"] == "maxIntrospectionDepth"
    assert error["extensions"]["max"] == 3


async def test_aliases_inside_introspection_still_count(gql):
    limit = Limits().max_aliases
    aliases = " ".join(f"a{i}: description" for i in range(limit + 1))
    error = await gql().error(f"{{ __schema {{ {aliases} }} }}")
    assert error["extensions"]["limit"] == "maxAliases"


async def test_gql_fetches_the_schema_over_httpx_from_a_real_uvicorn(server):
    transport = HTTPXAsyncTransport(url=f"{server}/graphql")
    client = Client(
        transport=transport,
        fetch_schema_from_transport=True,
        introspection_args=GQL_INTROSPECTION_ARGS,
    )
    async with client as session:
        result = await session.execute(GraphQLRequest("{ __typename }"))
    assert result == {"__typename": "Query"}
    assert isinstance(client.schema, GraphQLSchema)
    assert client.schema.get_type("Dataset") is not None


async def test_gql_fetches_the_schema_over_graphql_transport_ws(server, member):
    client, _ = await member("acme", "member")
    transport = WebsocketsTransport(
        url=server.replace("http://", "ws://") + "/graphql",
        subprotocols=[WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL],
        init_payload={"Authorization": f"Bearer {client.key}"},
    )
    ws_client = Client(
        transport=transport,
        fetch_schema_from_transport=True,
        introspection_args=GQL_INTROSPECTION_ARGS,
    )
    async with ws_client as session:
        result = await session.execute(GraphQLRequest("{ me { email } }"))
    assert transport.subprotocol == "graphql-transport-ws"
    assert result["me"]["email"].endswith("@acme.io")
    assert ws_client.schema.get_type("Organization") is not None


@pytest.fixture
async def closed_to_introspection(settings, mongo, db, redis):
    """A gateway with `LOOM_INTROSPECTION=false`."""
    closed = settings.model_copy(update={"introspection": False})
    async with gateway(closed, Connections(mongo=mongo, db=db, redis=redis)) as (_, http):
        yield http


@pytest.mark.parametrize(
    "query",
    ["{ __schema { types { name } } }", '{ __type(name: "Query") { name } }'],
    ids=["__schema", "__type"],
)
async def test_with_introspection_off_schema_and_type_are_refused_with_their_code(
    closed_to_introspection: httpx.AsyncClient, query
):
    response = await closed_to_introspection.post(
        "/graphql",
        json={"query": query},
        headers={"Accept": "application/graphql-response+json"},
    )
    assert response.status_code == 400
    body = response.json()
    assert "data" not in body
    [error] = body["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert error["extensions"]["limit"] == "introspection"
    assert "Introspection is turned off" in error["message"]


async def test_with_introspection_off_the_standard_query_is_refused(closed_to_introspection):
    response = await closed_to_introspection.post(
        "/graphql", json={"query": GRAPHQL_JS_INTROSPECTION}
    )
    codes = {e["extensions"]["limit"] for e in response.json()["errors"]}
    assert codes == {"introspection"}


async def test_with_introspection_off_typename_still_works(closed_to_introspection):
    response = await closed_to_introspection.post("/graphql", json={"query": "{ __typename }"})
    assert response.json() == {"data": {"__typename": "Query"}}
