"""Shared set-up for data-graph tests: an org with a project, a dataset, real images."""

import io
from dataclasses import dataclass

from PIL import Image

from tests.graphql_client import GraphQLClient

CREATE_PROJECT = """mutation($org: ID!, $name: String!) {
  createProject(organizationId: $org, input: {name: $name}) { id } }"""
CREATE_DATASET = """mutation($project: ID!, $input: DatasetInput!) {
  createDataset(projectId: $project, input: $input) { id name } }"""
UPLOAD = """mutation($dataset: ID!, $file: Upload!, $input: ItemInput) {
  uploadItem(datasetId: $dataset, file: $file, input: $input) {
    id name dir filename mimetype size width height sha256 metadata tags } }"""


def image_bytes(
    fmt: str, width: int, height: int, color: tuple[int, int, int] = (200, 30, 30)
) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, format=fmt)
    return buffer.getvalue()


@dataclass
class World:
    client: GraphQLClient
    org: str
    project: str
    dataset: str

    async def upload(
        self, name: str, content: bytes, mimetype: str = "image/png", **item_input
    ) -> dict:
        return await self.upload_to(self.dataset, name, content, mimetype, **item_input)

    async def upload_to(
        self, dataset: str, name: str, content: bytes, mimetype: str = "image/png", **item_input
    ) -> dict:
        body = await self.client.upload(
            UPLOAD, {"file": (name, content, mimetype)}, dataset=dataset, input=item_input or None
        )
        assert not body.get("errors"), body
        return body["data"]["uploadItem"]


async def make_world(member, org: str = "acme", role: str = "owner") -> World:
    client, doc = await member(org, role)
    org_id = str(doc["orgId"])
    project = (await client.data(CREATE_PROJECT, org=org_id, name="Vision"))["createProject"]["id"]
    dataset = (await client.data(CREATE_DATASET, project=project, input={"name": "cars"}))[
        "createDataset"
    ]["id"]
    return World(client, org_id, project, dataset)
