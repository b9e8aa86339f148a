"""Depth, alias, token and page-size bombs are refused before any work, naming the limit."""

from graphql import parse

from gateway.document_cache import ParsedDocuments
from gateway.settings import Limits


def _nested(depth: int) -> str:
    """`organizations.edges.node.projects.edges.node.organization…` down to `depth` levels."""
    fields = ["organizations", "edges", "node"]
    cycle = ["projects", "edges", "node", "organization"]
    while len(fields) < depth - 1:
        fields += cycle
    fields = fields[: depth - 1]
    return "{ " + " { ".join(fields) + " { __typename }" + " }" * (len(fields) - 1) + " }"


async def test_query_deeper_than_the_limit_is_refused_with_the_limit_named(member):
    client, _ = await member("acme", "owner")
    limit = Limits().max_depth
    error = await client.error(_nested(limit + 1))
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert error["extensions"]["limit"] == "maxDepth"
    assert error["extensions"]["max"] == limit
    assert "maxDepth" in error["message"]


async def test_query_at_the_depth_limit_runs(member):
    client, _ = await member("acme", "owner")
    data = await client.data(_nested(Limits().max_depth))
    assert data["organizations"]["edges"]


async def test_depth_hidden_in_fragments_counts(member):
    client, _ = await member("acme", "owner")
    limit = Limits().max_depth
    inner = _nested(limit + 1)[2:-2]
    query = f"query {{ ...Deep }} fragment Deep on Query {{ {inner} }}"
    error = await client.error(query)
    assert error["extensions"]["limit"] == "maxDepth"


async def test_alias_bomb_is_refused_with_the_limit_named(member):
    client, _ = await member("acme", "owner")
    limit = Limits().max_aliases
    query = "{ " + " ".join(f"a{i}: me {{ id }}" for i in range(limit + 1)) + " }"
    error = await client.error(query)
    assert error["extensions"] == {
        "code": "BAD_USER_INPUT",
        "limit": "maxAliases",
        "max": limit,
        "requestId": error["extensions"]["requestId"],
    }


async def test_aliases_up_to_the_limit_run(member):
    client, doc = await member("acme", "owner")
    limit = Limits().max_aliases
    query = "{ " + " ".join(f"a{i}: me {{ id }}" for i in range(limit)) + " }"
    data = await client.data(query)
    assert len(data) == limit
    assert {v["id"] for v in data.values()} == {str(doc["userId"])}


async def test_token_bomb_is_refused_with_the_limit_named(member):
    client, _ = await member("acme", "owner")
    limit = Limits().max_tokens
    query = "{ me { " + " ".join(["id"] * limit) + " } }"
    for _ in range(2):  # a document that failed to parse is never served from the cache
        error = await client.error(query)
        assert error["extensions"]["code"] == "BAD_USER_INPUT"
        assert error["extensions"]["limit"] == "maxTokens"
        assert error["extensions"]["max"] == limit


def test_parsed_documents_keep_the_most_recently_used():
    documents = ParsedDocuments(maxsize=2)
    a, b, c = (parse(f"{{ {field} }}") for field in ("a", "b", "c"))
    documents.put("a", a)
    documents.put("b", b)
    assert documents.get("a") is a
    documents.put("c", c)
    assert documents.get("b") is None
    assert (documents.get("a"), documents.get("c")) == (a, c)


async def test_page_larger_than_the_limit_is_refused_with_the_limit_named(member):
    client, _ = await member("acme", "owner")
    limit = Limits().max_page_size
    error = await client.error(
        "query($n: Int!) { organizations(first: $n) { totalCount } }", n=limit + 1
    )
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert error["extensions"]["limit"] == "maxPageSize"
    assert error["extensions"]["max"] == limit
