"""Project memberships are read only when they can change the answer: an organization owner or
admin — who sees and may change every project of the organization — costs no read of them,
while a plain member's access is still decided by them."""

from pymongo import monitoring

from tests.command_monitoring import StartedCommands, listening_gateway
from tests.graphql_client import GraphQLClient

CREATE_PROJECT = """mutation($org: ID!, $name: String!) {
  createProject(organizationId: $org, input: {name: $name}) { id } }"""
PROJECT = "query($id: ID!) { project(id: $id) { id name } }"
UPDATE_PROJECT = """mutation($id: ID!, $name: String!) {
  updateProject(id: $id, input: {name: $name}) { name } }"""
PROJECTS = "{ projects { nodes { name } } }"


class MembershipReads(StartedCommands):
    def __init__(self) -> None:
        self.reads = 0

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        reading = event.command_name in ("find", "aggregate", "count", "distinct")
        if reading and event.command.get(event.command_name) == "project_members":
            self.reads += 1


async def test_an_org_owner_reads_and_changes_projects_without_reading_memberships(
    member, settings, stack, redis
):
    owner, doc = await member("acme", "owner")
    project = (await owner.data(CREATE_PROJECT, org=str(doc["orgId"]), name="p"))["createProject"]
    reads = MembershipReads()
    async with listening_gateway(settings, stack, redis, reads) as (_, http):
        client = GraphQLClient(http, owner.key)
        assert (await client.data(PROJECT, id=project["id"]))["project"]["name"] == "p"
        renamed = await client.data(UPDATE_PROJECT, id=project["id"], name="q")
        assert renamed["updateProject"]["name"] == "q"
        assert (await client.data(PROJECTS))["projects"]["nodes"] == [{"name": "q"}]
    assert reads.reads == 0


async def test_a_plain_member_is_still_judged_by_project_memberships(
    member, settings, stack, redis
):
    owner, doc = await member("acme", "owner")
    project = (await owner.data(CREATE_PROJECT, org=str(doc["orgId"]), name="p"))["createProject"]
    outsider, _ = await member("acme", "member")
    reads = MembershipReads()
    async with listening_gateway(settings, stack, redis, reads) as (_, http):
        client = GraphQLClient(http, outsider.key)
        error = await client.error(PROJECT, id=project["id"])
        assert (await client.data(PROJECTS))["projects"]["nodes"] == []
    assert error["extensions"]["code"] == "NOT_FOUND"
    assert reads.reads >= 1
