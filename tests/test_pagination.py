"""Keyset cursors: pages are disjoint and complete, in order, even when sort keys tie."""

import base64
import json

CREATE_PROJECT = """mutation($org: ID!, $name: String!) {
  createProject(organizationId: $org, input: {name: $name}) { id } }"""
PAGE = """query($after: String) {
  projects(first: 4, after: $after) {
    edges { cursor node { id name } }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor } } }"""


async def _three_orgs_with_tied_project_names(member) -> tuple:
    email = "carol@multi.io"
    orgs = []
    for org in ("north", "south", "west"):
        _, doc = await member(org, "owner", email=email)
        orgs.append(doc["orgId"])
    client, _ = await member("north", "owner", email=email, scoped=False)
    expected = []
    for org_id in orgs:
        for i in range(5):
            created = await client.data(CREATE_PROJECT, org=str(org_id), name=f"p{i}")
            expected.append((f"p{i}", created["createProject"]["id"]))
    return client, sorted(expected)


async def test_paging_through_tied_names_returns_every_project_once_in_order(member):
    client, expected = await _three_orgs_with_tied_project_names(member)
    seen, after, pages = [], None, 0
    while True:
        page = (await client.data(PAGE, after=after))["projects"]
        pages += 1
        seen += [(e["node"]["name"], e["node"]["id"]) for e in page["edges"]]
        assert page["pageInfo"]["hasPreviousPage"] is (after is not None)
        assert page["pageInfo"]["endCursor"] == page["edges"][-1]["cursor"]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert seen == expected
    assert pages == 4


async def test_total_count_counts_all_matches_not_the_page(member):
    client, expected = await _three_orgs_with_tied_project_names(member)
    data = await client.data("{ projects(first: 2) { totalCount edges { node { id } } } }")
    assert data["projects"]["totalCount"] == len(expected) == 15
    assert len(data["projects"]["edges"]) == 2


async def test_a_page_of_zero_reports_whether_more_exist(member):
    client, _ = await _three_orgs_with_tied_project_names(member)
    data = await client.data("{ projects(first: 0) { edges { cursor } pageInfo { hasNextPage } } }")
    assert data["projects"] == {"edges": [], "pageInfo": {"hasNextPage": True}}


async def test_tampered_cursor_is_bad_user_input(member):
    client, _ = await member("acme", "owner")
    for cursor in ("!!!", "bm90IGpzb24=", "WzFd"):
        error = await client.error(PAGE, after=cursor)
        assert error["extensions"]["code"] == "BAD_USER_INPUT"
        assert error["extensions"]["field"] == "after"


async def test_a_cursor_holding_operators_is_refused_not_run_as_a_query(member):
    """A cursor is data Loom wrote: an operator document, a regex or code a client puts in one
    is refused, never spliced into the range query (it would have returned every project)."""
    client, _ = await _three_orgs_with_tied_project_names(member)
    forged = [
        [{"$ne": "nothing"}, {"$oid": "0" * 24}],
        [{"$regex": ".*"}, {"$oid": "0" * 24}],
        [{"$foo": 1}, {"$oid": "0" * 24}],
        [{"$code": "1"}, {"$oid": "0" * 24}],
        [["p0"], {"$oid": "0" * 24}],
    ]
    for values in forged:
        cursor = base64.urlsafe_b64encode(json.dumps(values).encode()).decode()
        error = await client.error(PAGE, after=cursor)
        assert error["extensions"]["code"] == "BAD_USER_INPUT", values
        assert error["extensions"]["field"] == "after"
