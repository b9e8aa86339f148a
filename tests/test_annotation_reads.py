"""`item.annotations` reads only the document fields its selection needs — fragments and
aliases included — and answers exactly what reading whole documents answers."""

from pymongo import monitoring

from schema.annotations import DOCUMENT_FIELDS
from tests.command_monitoring import StartedCommands, listening_gateway
from tests.graphql_client import GraphQLClient
from tests.test_annotations import BOX, CREATE, _world_with_item

EVERYTHING = """query($id: ID!) { item(id: $id) { annotations {
  id datasetId type label coordinates attributes status automated parentId objectId frames
  modelInfo { name modelId confidence } metadata createdAt updatedAt item { id } } } }"""
PIECES = """query($id: ID!) { item(id: $id) {
  labels: annotations { label }
  shapes: annotations { ...Shape ... on Annotation { modelInfo { name } } __typename }
} }
fragment Shape on Annotation { id type coordinates }"""


class AnnotationFinds(StartedCommands):
    """The projection of every find on annotations: what was read."""

    def __init__(self) -> None:
        self.projections: list[dict | None] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name == "find" and event.command.get("find") == "annotations":
            self.projections.append(event.command.get("projection"))


async def _annotated_item(member) -> tuple[GraphQLClient, str]:
    world, item = await _world_with_item(member)
    for label, automated in (("car", True), ("bus", False)):
        annotation = {"itemId": item, "type": "BOX", "label": label, "coordinates": BOX}
        if automated:
            annotation |= {"automated": True, "modelInfo": {"name": "yolo", "confidence": 0.5}}
        await world.client.data(CREATE, input=annotation)
    return world.client, item


async def test_each_selection_reads_only_its_fields_and_answers_as_whole_documents_do(
    member, settings, stack, redis
):
    client, item = await _annotated_item(member)
    finds = AnnotationFinds()
    async with listening_gateway(settings, stack, redis, finds) as (_, http):
        other = GraphQLClient(http, client.key)
        whole = (await other.data(EVERYTHING, id=item))["item"]["annotations"]
        pieces = (await other.data(PIECES, id=item))["item"]

    read = sorted(" ".join(sorted(projection)) for projection in finds.projections)
    assert read == [
        "attributes automated coordinates createdAt datasetId frames itemId label metadata "
        "modelInfo objectId parentId status type updatedAt",
        "coordinates itemId modelInfo type",
        "itemId label",
    ]
    assert [a["label"] for a in pieces["labels"]] == [a["label"] for a in whole]
    assert pieces["shapes"] == [
        {
            "id": a["id"],
            "type": a["type"],
            "coordinates": a["coordinates"],
            "modelInfo": a["modelInfo"] and {"name": a["modelInfo"]["name"]},
            "__typename": "Annotation",
        }
        for a in whole
    ]
    assert [a["modelInfo"] for a in whole] == [
        {"name": "yolo", "modelId": None, "confidence": 0.5},
        None,
    ]
    assert all(a["item"]["id"] == item and a["createdAt"] for a in whole)


async def test_every_annotation_field_says_which_document_fields_it_reads(member):
    client, _ = await member("acme", "owner")
    described = await client.data('{ __type(name: "Annotation") { fields { name } } }')
    assert {f["name"] for f in described["__type"]["fields"]} == set(DOCUMENT_FIELDS)
