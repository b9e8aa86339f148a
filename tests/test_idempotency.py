"""Idempotency keys: a mutation retried with its key returns its first answer, once, for the
same caller only; the same key with other arguments is refused."""

import asyncio
from datetime import timedelta

import httpx
from bson import ObjectId

from gateway.app import create_app
from gateway.connections import Connections
from resolvers.timestamps import now
from tests.datasets_world import image_bytes, make_world
from tests.graphql_client import GraphQLClient
from tests.test_executions import CREATE_SERVICE

EXECUTE = """mutation($s: ID!, $input: ExecuteInput!, $key: String) {
  execute(serviceId: $s, input: $input, idempotencyKey: $key) { id status } }"""
EXECUTE_BATCH = """mutation($s: ID!, $input: BatchInput!, $key: String) {
  executeBatch(serviceId: $s, input: $input, idempotencyKey: $key) { id } }"""
CREATE_DATASET = """mutation($p: ID!, $input: DatasetInput!, $key: String) {
  createDataset(projectId: $p, input: $input, idempotencyKey: $key) { id name } }"""
UPLOAD = """mutation($dataset: ID!, $file: Upload!, $key: String) {
  uploadItem(datasetId: $dataset, file: $file, idempotencyKey: $key) { id name } }"""
ECHO = {"function": "echo", "input": {"n": 1}}


async def _service(world) -> str:
    service = {"name": "tools", "functions": ["echo"]}
    created = await world.client.data(CREATE_SERVICE, p=world.project, input=service)
    return created["createService"]["id"]


async def test_the_same_key_sent_concurrently_creates_one_execution(member, db):
    world = await make_world(member)
    service = await _service(world)
    answers = await asyncio.gather(
        *(world.client.data(EXECUTE, s=service, input=ECHO, key="order-1") for _ in range(8))
    )
    assert len({a["execute"]["id"] for a in answers}) == 1
    assert await db.executions.count_documents({}) == 1
    assert await db.idempotency_keys.count_documents({}) == 1


async def test_the_same_key_after_a_gateway_restart_returns_the_first_execution(
    member, db, settings, mongo, redis
):
    world = await make_world(member)
    service = await _service(world)
    first = await world.client.data(EXECUTE, s=service, input=ECHO, key="order-2")
    restarted = create_app(settings, Connections(mongo=mongo, db=db, redis=redis))
    async with (
        restarted.router.lifespan_context(restarted),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=restarted), base_url="http://loom.test"
        ) as http,
    ):
        again = await GraphQLClient(http, world.client.key).data(
            EXECUTE, s=service, input=ECHO, key="order-2"
        )
    assert again == first
    assert await db.executions.count_documents({}) == 1


async def test_the_same_key_with_other_arguments_is_refused_and_creates_nothing(member, db):
    world = await make_world(member)
    service = await _service(world)
    await world.client.data(EXECUTE, s=service, input=ECHO, key="order-3")
    other = {"function": "echo", "input": {"n": 2}}
    error = await world.client.error(EXECUTE, s=service, input=other, key="order-3")
    assert error["extensions"]["code"] == "CONFLICT"
    assert "idempotencyKey" in error["message"]
    assert await db.executions.count_documents({}) == 1


async def test_another_users_same_key_never_returns_the_first_users_execution(member, db):
    world = await make_world(member)
    stranger = await make_world(member, org="beta")
    mine = await world.client.data(EXECUTE, s=await _service(world), input=ECHO, key="shared")
    theirs = await stranger.client.data(
        EXECUTE, s=await _service(stranger), input=ECHO, key="shared"
    )
    assert theirs["execute"]["id"] != mine["execute"]["id"]
    owners = {e["orgId"] for e in await db.executions.find().to_list()}
    assert owners == {ObjectId(world.org), ObjectId(stranger.org)}


async def test_a_refused_mutation_stores_no_key_and_a_key_older_than_a_day_is_gone(member, db):
    world = await make_world(member)
    service = await _service(world)
    bad = {"function": "nope"}
    assert await world.client.code(EXECUTE, s=service, input=bad, key="k") == "BAD_USER_INPUT"
    assert await db.idempotency_keys.count_documents({}) == 0
    first = await world.client.data(EXECUTE, s=service, input=ECHO, key="k")
    await db.idempotency_keys.update_many({}, {"$set": {"createdAt": now() - timedelta(hours=25)}})
    later = await world.client.data(EXECUTE, s=service, input=ECHO, key="k")
    assert later["execute"]["id"] != first["execute"]["id"]
    assert await db.executions.count_documents({}) == 2


async def test_create_dataset_upload_item_and_execute_batch_answer_a_retry_with_the_first(
    member, db
):
    world = await make_world(member)
    datasets = await asyncio.gather(
        *(
            world.client.data(CREATE_DATASET, p=world.project, input={"name": "bikes"}, key="d")
            for _ in range(4)
        )
    )
    assert len({d["createDataset"]["id"] for d in datasets}) == 1
    assert await db.datasets.count_documents({"name": "bikes"}) == 1

    files = {"file": ("a.png", image_bytes("PNG", 4, 4), "image/png")}
    uploads = await asyncio.gather(
        *(world.client.upload(UPLOAD, files, dataset=world.dataset, key="u") for _ in range(4))
    )
    assert len({u["data"]["uploadItem"]["id"] for u in uploads}) == 1, uploads
    assert await db.items.count_documents({}) == 1
    other = {"file": ("a.png", image_bytes("PNG", 5, 4), "image/png")}
    refused = await world.client.upload(UPLOAD, other, dataset=world.dataset, key="u")
    assert refused["errors"][0]["extensions"]["code"] == "CONFLICT"

    service = await _service(world)
    batches = await asyncio.gather(
        *(world.client.data(EXECUTE_BATCH, s=service, input=ECHO, key="b") for _ in range(4))
    )
    assert len({b["executeBatch"]["id"] for b in batches}) == 1
    assert await db.commands.count_documents({"type": "executeBatch"}) == 1
