"""Splits of a dataset version: the same seed gives the same subsets in every run and every
process; stratified by label, every label keeps its share within one item, however skewed."""

import json
import subprocess
import sys
from collections import Counter

from bson import ObjectId

from tests.conftest import REPO
from tests.datasets_world import make_world
from tests.test_clone import _seed_items
from tests.test_dataset_versions import _version

CREATE_MANY = """mutation($inputs: [AnnotationInput!]!) {
  createAnnotations(inputs: $inputs) { id } }"""
SPLIT = """mutation($id: ID!, $input: SplitInput!) { splitDatasetVersion(id: $id, input: $input) {
  split { seed stratifyBy subsets { name ratio itemsCount filter repartition { x y } } } } }"""
SUBSET_ITEMS = """query($id: ID!, $filter: JSON) { datasetVersion(id: $id) {
  items(filter: $filter, first: 500) { nodes { id } }
  split { subsets { name items(first: 500) { nodes { id } } } } } }"""
SKEW = {"common": 200, "medium": 37, "rare": 5, "single": 1}
RATIOS = [
    {"name": "train", "ratio": 0.7},
    {"name": "val", "ratio": 0.2},
    {"name": "test", "ratio": 0.1},
]


async def _skewed_version(world, db, redis, settings) -> tuple[str, dict[str, str]]:
    """250 items: one label each in the SKEW proportions (two annotations of it), 7 without."""
    await _seed_items(db, ObjectId(world.dataset), 250)
    ids = [str(i) for i in await db.items.distinct("_id", {"datasetId": ObjectId(world.dataset)})]
    labels = [label for label, n in SKEW.items() for _ in range(n)]
    label_of = dict(zip(ids, labels, strict=False))
    inputs = [
        {"itemId": item, "type": "CLASSIFICATION", "label": label}
        for item, label in label_of.items()
        for _ in range(2)
    ]
    await world.client.data(CREATE_MANY, inputs=inputs)
    return await _version(world, db, redis, settings), label_of


async def _assignment(db, version: str) -> dict[str, str]:
    query = {"versionId": ObjectId(version)}
    return {str(d["itemId"]): d["split"] async for d in db.version_items.find(query)}


async def test_a_stratified_split_keeps_every_label_within_one_item_of_its_share(
    member, db, redis, settings
):
    world = await make_world(member)
    version, label_of = await _skewed_version(world, db, redis, settings)
    split = await world.client.data(
        SPLIT, id=version, input={"ratios": RATIOS, "seed": "42", "stratifyBy": "LABEL"}
    )
    subsets = split["splitDatasetVersion"]["split"]["subsets"]
    assignment = await _assignment(db, version)
    assert len(assignment) == 250
    assert sorted(Counter(assignment.values()).items()) == sorted(
        (s["name"], s["itemsCount"]) for s in subsets
    )
    for label, n in {**SKEW, None: 7}.items():
        members = [item for item in assignment if label_of.get(item) == label]
        assert len(members) == n
        per_subset = Counter(assignment[item] for item in members)
        for ratio in RATIOS:
            assert abs(per_subset[ratio["name"]] - n * ratio["ratio"]) < 1, (label, per_subset)
    for subset in subsets:
        counted = Counter(
            label_of.get(i) for i, name in assignment.items() if name == subset["name"]
        )
        counted.pop(None, None)
        expected = sorted(counted)
        assert subset["repartition"] == {"x": expected, "y": [2 * counted[x] for x in expected]}
        assert subset["filter"] == {"split": subset["name"]}
    read = await world.client.data(SUBSET_ITEMS, id=version, filter={"split": "val"})
    by_filter = {node["id"] for node in read["datasetVersion"]["items"]["nodes"]}
    assert by_filter == {item for item, name in assignment.items() if name == "val"}
    listed = {s["name"]: s["items"]["nodes"] for s in read["datasetVersion"]["split"]["subsets"]}
    assert {node["id"] for node in listed["val"]} == by_filter


async def test_the_same_seed_gives_the_same_split_in_two_runs_and_two_processes(
    member, db, redis, settings
):
    world = await make_world(member)
    version, label_of = await _skewed_version(world, db, redis, settings)
    given = {"ratios": RATIOS, "seed": "7", "stratifyBy": "NONE"}
    await world.client.data(SPLIT, id=version, input=given)
    first = await _assignment(db, version)
    await world.client.data(SPLIT, id=version, input={**given, "seed": "8"})
    other_seed = await _assignment(db, version)
    await world.client.data(SPLIT, id=version, input=given)
    assert await _assignment(db, version) == first
    assert other_seed != first
    labels = {item: [label_of[item]] if item in label_of else [] for item in first}
    program = (
        "import json, sys\n"
        "from resolvers.versions.splits import Stratify, assign\n"
        "items = {k: set(v) for k, v in json.load(sys.stdin).items()}\n"
        "print(json.dumps(assign(items, [0.7, 0.2, 0.1], 7, Stratify.NONE)))\n"
    )
    ran = subprocess.run(
        [sys.executable, "-c", program],
        input=json.dumps(labels),
        capture_output=True,
        text=True,
        cwd=REPO,
        check=True,
    )
    subsets = json.loads(ran.stdout)
    names = ("train", "val", "test")
    assert {item: name for name, ids in zip(names, subsets, strict=True) for item in ids} == first
    sizes = Counter(first.values())
    assert (sizes["train"], sizes["val"], sizes["test"]) == (175, 50, 25)


async def test_bad_split_inputs_are_refused_and_change_nothing(member, db, redis, settings):
    world = await make_world(member)
    version, _ = await _skewed_version(world, db, redis, settings)
    bad = [
        {"ratios": [{"name": "a", "ratio": 0.5}, {"name": "b", "ratio": 0.4}], "seed": "1"},
        {"ratios": [{"name": "a", "ratio": 0.5}, {"name": "a", "ratio": 0.5}], "seed": "1"},
        {"ratios": [{"name": "a", "ratio": 1.0}], "seed": "-1"},
        {"ratios": [{"name": "a", "ratio": 1.0}], "seed": "x"},
        {"ratios": [{"name": "a", "ratio": 0}, {"name": "b", "ratio": 1}], "seed": "1"},
    ]
    for given in bad:
        assert await world.client.code(SPLIT, id=version, input=given) == "BAD_USER_INPUT", given
    stored = await db.dataset_versions.find_one({"_id": ObjectId(version)})
    assert stored["split"] is None
    assert set(await db.version_items.distinct("split", {"versionId": ObjectId(version)})) == {None}
