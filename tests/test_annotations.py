"""Annotations: per-type validation, bulk all-or-nothing, exact counters, updates, deletion."""

import asyncio

import pytest

from tests.datasets_world import image_bytes, make_world
from tests.snapshots import snapshot

CREATE = """mutation($input: AnnotationInput!) { createAnnotation(input: $input) {
  id type label coordinates status automated modelInfo { name confidence } parentId
  item { id annotationsCount annotated } } }"""
CREATE_MANY = """mutation($inputs: [AnnotationInput!]!) {
  createAnnotations(inputs: $inputs) { id label } }"""
UPDATE = """mutation($id: ID!, $input: AnnotationChangesInput!) {
  updateAnnotation(id: $id, input: $input) { label coordinates status } }"""
DELETE = "mutation($ids: [ID!]!) { deleteAnnotations(ids: $ids) }"
ITEM = """query($id: ID!, $filter: JSON) { item(id: $id) { annotationsCount annotated
  annotations(filter: $filter) { label type } } }"""
COUNT = "query($id: ID!) { dataset(id: $id) { annotationsCount } }"
ADD_LABELS = """mutation($id: ID!, $labels: JSON!) {
  addLabels(datasetId: $id, labels: $labels) { id } }"""

BOX = {"left": 1, "top": 2, "right": 10, "bottom": 20}


async def _world_with_item(member, width: int = 64, height: int = 48):
    world = await make_world(member)
    item = await world.upload("a.png", image_bytes("PNG", width, height))
    return world, item["id"]


async def test_box_annotation_is_stored_normalised_and_counted(member):
    world, item = await _world_with_item(member)
    created = await world.client.data(
        CREATE,
        input={
            "itemId": item,
            "type": "BOX",
            "label": "car",
            "coordinates": BOX,
            "automated": True,
            "modelInfo": {"name": "yolo", "confidence": 0.75},
        },
    )
    annotation = created["createAnnotation"]
    assert annotation["coordinates"] == {"left": 1.0, "top": 2.0, "right": 10.0, "bottom": 20.0}
    assert annotation["status"] == "CLEAR"
    assert annotation["modelInfo"] == {"name": "yolo", "confidence": 0.75}
    assert annotation["item"] == {"id": item, "annotationsCount": 1, "annotated": True}
    assert (await world.client.data(COUNT, id=world.dataset))["dataset"]["annotationsCount"] == 1


@pytest.mark.parametrize(
    ("kind", "coordinates"),
    [
        ("BOX", {"left": 10, "top": 2, "right": 1, "bottom": 20}),
        ("BOX", {"left": 1, "top": 2, "right": 100, "bottom": 20}),
        ("POLYGON", [{"x": 1, "y": 1}, {"x": 2, "y": 2}]),
        ("POINT", {"x": "NaN", "y": 1}),
        ("SEGMENTATION", {"size": [48, 64], "counts": [1, 2]}),
        ("SEGMENTATION", {"size": [10, 10], "counts": [50, 50]}),
    ],
    ids=["inverted-box", "outside-image", "two-point-polygon", "nan", "rle-sum", "rle-size"],
)
async def test_invalid_coordinates_are_refused_and_nothing_is_written(
    member, db, kind, coordinates
):
    world, item = await _world_with_item(member)
    before = await snapshot(db)
    error = await world.client.error(
        CREATE, input={"itemId": item, "type": kind, "label": "car", "coordinates": coordinates}
    )
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert error["extensions"]["field"] == "coordinates"
    assert await snapshot(db) == before


async def test_model_confidence_outside_zero_to_one_is_refused(member, db):
    world, item = await _world_with_item(member)
    before = await snapshot(db)
    code = await world.client.code(
        CREATE,
        input={
            "itemId": item,
            "type": "CLASSIFICATION",
            "label": "car",
            "modelInfo": {"name": "m", "confidence": 1.5},
        },
    )
    assert code == "BAD_USER_INPUT"
    assert await snapshot(db) == before


async def test_label_must_belong_to_the_ontology_when_the_dataset_has_one(member, db):
    world, item = await _world_with_item(member)
    await world.client.data(
        ADD_LABELS, id=world.dataset, labels=[{"name": "vehicle", "children": [{"name": "car"}]}]
    )
    accepted = await world.client.data(
        CREATE, input={"itemId": item, "type": "CLASSIFICATION", "label": "vehicle.car"}
    )
    assert accepted["createAnnotation"]["label"] == "vehicle.car"
    before = await snapshot(db)
    error = await world.client.error(
        CREATE, input={"itemId": item, "type": "CLASSIFICATION", "label": "bike"}
    )
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert error["extensions"]["field"] == "label"
    assert await snapshot(db) == before


async def test_bulk_create_writes_all_or_none_and_names_the_bad_index(member, db):
    world, item = await _world_with_item(member)
    good = {"itemId": item, "type": "BOX", "label": "car", "coordinates": BOX}
    bad = {**good, "coordinates": {"left": 5, "top": 5, "right": 5, "bottom": 9}}
    before = await snapshot(db)
    error = await world.client.error(CREATE_MANY, inputs=[good] * 5 + [bad] + [good])
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert error["extensions"]["index"] == 5
    assert await snapshot(db) == before

    created = await world.client.data(CREATE_MANY, inputs=[good] * 7)
    assert len(created["createAnnotations"]) == 7
    assert (await world.client.data(ITEM, id=item))["item"]["annotationsCount"] == 7


async def test_ten_thousand_annotations_in_one_request(member, db):
    world, item = await _world_with_item(member)
    inputs = [
        {"itemId": item, "type": "POINT", "label": "dot", "coordinates": {"x": i % 64, "y": 1}}
        for i in range(10_000)
    ]
    created = await world.client.data(CREATE_MANY, inputs=inputs)
    assert len(created["createAnnotations"]) == 10_000
    assert (await world.client.data(COUNT, id=world.dataset))["dataset"]["annotationsCount"] == (
        10_000
    )
    assert await world.client.code(CREATE_MANY, inputs=[*inputs, inputs[0]]) == "BAD_USER_INPUT"


async def test_concurrent_annotation_writes_keep_counters_exact(member):
    world, item = await _world_with_item(member)
    one = {"itemId": item, "type": "CLASSIFICATION", "label": "car"}
    await asyncio.gather(*(world.client.data(CREATE_MANY, inputs=[one] * 3) for _ in range(20)))
    data = await world.client.data(ITEM, id=item)
    assert data["item"]["annotationsCount"] == 60
    assert len(data["item"]["annotations"]) == 60


async def test_update_revalidates_coordinates_for_the_type(member, db):
    world, item = await _world_with_item(member)
    created = await world.client.data(
        CREATE, input={"itemId": item, "type": "BOX", "label": "car", "coordinates": BOX}
    )
    annotation = created["createAnnotation"]["id"]
    changed = await world.client.data(
        UPDATE, id=annotation, input={"label": "bus", "status": "APPROVED"}
    )
    assert changed["updateAnnotation"]["label"] == "bus"
    assert changed["updateAnnotation"]["status"] == "APPROVED"
    before = await snapshot(db)
    code = await world.client.code(UPDATE, id=annotation, input={"coordinates": [{"x": 1}]})
    assert code == "BAD_USER_INPUT"
    assert await snapshot(db) == before


async def test_children_need_a_parent_on_the_same_item_and_go_with_it_with_their_own(member, db):
    world, item = await _world_with_item(member)
    other = (await world.upload("b.png", image_bytes("PNG", 8, 8)))["id"]
    parent = await world.client.data(
        CREATE, input={"itemId": item, "type": "BOX", "label": "car", "coordinates": BOX}
    )
    parent_id = parent["createAnnotation"]["id"]
    child = {"itemId": item, "type": "CLASSIFICATION", "label": "red", "parentId": parent_id}
    created = await world.client.data(CREATE, input=child)
    assert created["createAnnotation"]["parentId"] == parent_id
    before = await snapshot(db)
    code = await world.client.code(CREATE, input={**child, "itemId": other})
    assert code == "BAD_USER_INPUT"
    assert await snapshot(db) == before

    grandchild = {**child, "label": "dark", "parentId": created["createAnnotation"]["id"]}
    await world.client.data(CREATE, input=grandchild)

    assert (await world.client.data(DELETE, ids=[parent_id]))["deleteAnnotations"] == 3
    assert await db.annotations.count_documents({}) == 0
    data = await world.client.data(ITEM, id=item)
    assert data["item"] == {"annotationsCount": 0, "annotated": False, "annotations": []}
    assert (await world.client.data(COUNT, id=world.dataset))["dataset"]["annotationsCount"] == 0


async def test_two_concurrent_deletes_of_an_annotation_delete_it_once_and_count_exactly(member):
    world, item = await _world_with_item(member)
    box = {"itemId": item, "type": "BOX", "label": "car", "coordinates": BOX}
    parent = (await world.client.data(CREATE, input=box))["createAnnotation"]["id"]
    await world.client.data(CREATE, input={**box, "label": "wheel", "parentId": parent})
    await world.client.data(CREATE, input={**box, "label": "bus"})

    answers = await asyncio.gather(*(world.client.execute(DELETE, ids=[parent]) for _ in range(2)))

    outcomes = [
        str(a["data"]["deleteAnnotations"])
        if a.get("data")
        else a["errors"][0]["extensions"]["code"]
        for a in answers
    ]
    assert sorted(outcomes) == ["2", "NOT_FOUND"]
    data = await world.client.data(ITEM, id=item)
    assert data["item"] == {
        "annotationsCount": 1,
        "annotated": True,
        "annotations": [{"label": "bus", "type": "BOX"}],
    }


async def test_item_annotations_filter_by_dql(member):
    world, item = await _world_with_item(member)
    inputs = [
        {"itemId": item, "type": "CLASSIFICATION", "label": label}
        for label in ("car", "bus", "car.red")
    ]
    await world.client.data(CREATE_MANY, inputs=inputs)
    data = await world.client.data(ITEM, id=item, filter={"label": {"$glob": "car*"}})
    assert sorted(a["label"] for a in data["item"]["annotations"]) == ["car", "car.red"]
    error = await world.client.error(ITEM, id=item, filter={"label": {"$regex": "car"}})
    assert error["extensions"]["code"] == "BAD_USER_INPUT"


async def test_annotating_another_orgs_item_is_not_found_and_writes_nothing(member, db):
    _, item = await _world_with_item(member)
    stranger = await make_world(member, org="beta")
    before = await snapshot(db)
    code = await stranger.client.code(
        CREATE, input={"itemId": item, "type": "CLASSIFICATION", "label": "car"}
    )
    assert code == "NOT_FOUND"
    assert await snapshot(db) == before
