"""Deployments: the predict round trip through the gateway, next to calling the same function
directly in this process.

    .venv/bin/python bench/deployments.py            # about a minute on 2 cores

Starts a throw-away embedded stack (real mongod + valkey) unless LOOM_MONGODB_URL and
LOOM_REDIS_URL are set. On a fresh database: an organization with an owner key, a project, a
dataset with one demo picture (gateway/demo_images.py, the detector finds two regions in it),
a service running the built-in `detect-colour-regions`, a model whose version predicts with
it, and a deployment serving that version. One Loom gateway runs under uvicorn in a child
process, one real `loom worker` beside it (LOOM_LOG_LEVEL=WARNING, nothing else changed).

1. Direct: the detector's function called in this process on the picture's bytes (what a
   service's function costs with no Loom around it), --rounds times: p50 / p99.
2. Loom: --rounds sequential `predict(deploymentId, itemId)` mutations over one keep-alive
   HTTP connection, each answered once the worker has run the function and stored the
   champion's predictions: p50 / p99. The overhead Loom adds is the difference of the p50s.

Goal, printed as `(goal <op> <target>: MET | NOT MET)`: the overhead at p50 at most 15 ms.
"""

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import httpx  # noqa: E402

from bench import harness  # noqa: E402

EMAIL = "bench-owner@loom.dev"
OVERHEAD_GOAL_MS = 15.0
WARM_UP = 20
DETECTOR = {"red": "sign.stop", "yellow": "sign.yield", "green": "tree"}
PREDICT = """mutation($d: ID!, $item: ID!) { predict(deploymentId: $d, itemId: $item) {
  id champion { status predictions { label confidence } } } }"""
SETUP = {
    "project": """mutation($org: ID!) {
      createProject(organizationId: $org, input: {name: "Serving"}) { id } }""",
    "dataset": """mutation($p: ID!) {
      createDataset(projectId: $p, input: {name: "gates"}) { id } }""",
    "service": """mutation($p: ID!) { createService(projectId: $p, input: {name: "detector",
      functions: ["detect-colour-regions"], concurrency: 10}) { id } }""",
    "model": """mutation($p: ID!, $input: ModelInput!) {
      createModel(projectId: $p, input: $input) { id } }""",
    "version": "mutation($m: ID!) { createModelVersion(modelId: $m) { id } }",
    "deployment": """mutation($p: ID!, $v: ID!) { createDeployment(projectId: $p,
      input: {name: "gate", championVersionId: $v}) { id } }""",
}
UPLOAD = """mutation($dataset: ID!, $file: Upload!) {
  uploadItem(datasetId: $dataset, file: $file) { id } }"""


def serve(port: int, parent: int) -> None:
    harness.run_uvicorn(harness.loom_app(), port, parent)


def _picture() -> bytes:
    from gateway import demo_images

    return demo_images.render(demo_images.layout(6))


def _p(values: list[float], q: float) -> float:
    return harness.percentile(values, q)


async def direct_round_trips(rounds: int) -> list[float]:
    """The detector's function on the picture, in this process: milliseconds per call."""
    from resolvers import functions
    from triggers.execution_engine import RunContext

    function = functions.lookup("detect-colour-regions")
    data = function.input.model_validate({"labels": DETECTOR})
    picture = _picture()

    async def read() -> bytes:
        return picture

    async def progress(percent: int, message: str) -> None:
        return None

    import logging

    context = RunContext(None, None, logging.getLogger("bench"), progress, read)
    times = []
    for n in range(WARM_UP + rounds):
        began = time.perf_counter()
        result = await function.run(data, context)
        if n >= WARM_UP:
            times.append((time.perf_counter() - began) * 1000)
    assert result["predictions"], "the detector found nothing in the bench picture"
    return times


class Bench:
    def __init__(self, mongodb_url: str, redis_url: str) -> None:
        self.mongodb_url, self.redis_url = mongodb_url, redis_url
        self.db_name = f"bench_{uuid.uuid4().hex[:12]}"
        self.env = harness.server_env(mongodb_url, redis_url, self.db_name)
        self.logs = Path(tempfile.mkdtemp(prefix="loom-bench-logs-"))
        self.server: harness.Server | None = None
        self.worker: harness.LoomWorker | None = None

    async def __aenter__(self) -> "Bench":
        from pymongo import AsyncMongoClient

        self.mongo = AsyncMongoClient(self.mongodb_url, w="majority", tz_aware=True)
        self.db = self.mongo[self.db_name]
        return self

    async def __aexit__(self, *_: object) -> None:
        if self.worker is not None:
            self.worker.stop()
        if self.server is not None:
            self.server.stop()
        with contextlib.suppress(Exception):
            await self.mongo.drop_database(self.db_name)
        await self.mongo.close()

    async def graphql(self, client: httpx.AsyncClient, query: str, **variables: Any) -> Any:
        response = await client.post(
            "/graphql", json={"query": query, "variables": variables}, headers=self.headers
        )
        body = response.json()
        if body.get("errors"):
            raise SystemExit(f"GraphQL failed: {str(body)[:500]}")
        return body["data"]

    async def setup(self) -> tuple[str, str]:
        """(deployment id, item id), the gateway and a worker running."""
        from gateway.bootstrap import create_key
        from gateway.indexes import ensure_indexes
        from resolvers.access import OrgRole

        await ensure_indexes(self.db)
        key, key_doc = await create_key(self.db, "Bench", OrgRole.OWNER, EMAIL, "bench")
        self.headers = {"authorization": f"Bearer {key}"}
        self.server = harness.Server(__file__, "loom", self.env)
        probe = httpx.Request("GET", f"{self.server.url}/readyz")
        await asyncio.to_thread(self.server.wait_ready, probe)
        self.worker = harness.LoomWorker(self.env, self.logs / "worker.log")
        async with httpx.AsyncClient(base_url=self.server.url, timeout=60) as client:
            gql = self.graphql
            project = (await gql(client, SETUP["project"], org=str(key_doc["orgId"])))[
                "createProject"
            ]["id"]
            dataset = (await gql(client, SETUP["dataset"], p=project))["createDataset"]["id"]
            service = (await gql(client, SETUP["service"], p=project))["createService"]["id"]
            model_input = {
                "name": "colours",
                "configuration": {"labels": DETECTOR},
                "functions": {"serviceId": service, "predict": "detect-colour-regions"},
            }
            model = (await gql(client, SETUP["model"], p=project, input=model_input))[
                "createModel"
            ]["id"]
            version = (await gql(client, SETUP["version"], m=model))["createModelVersion"]["id"]
            deployment = (await gql(client, SETUP["deployment"], p=project, v=version))[
                "createDeployment"
            ]["id"]
            operations = {"query": UPLOAD, "variables": {"dataset": dataset, "file": None}}
            response = await client.post(
                "/graphql",
                data={
                    "operations": json.dumps(operations),
                    "map": json.dumps({"0": ["variables.file"]}),
                },
                files={"0": ("gate.png", _picture(), "image/png")},
                headers=self.headers,
            )
            item = response.json()["data"]["uploadItem"]["id"]
        print(f"gateway and worker ready: {harness.describe([self.server])}", flush=True)
        return deployment, item

    async def predict_round_trips(self, deployment: str, item: str, rounds: int) -> list[float]:
        assert self.server is not None
        body = json.dumps({"query": PREDICT, "variables": {"d": deployment, "item": item}})
        request = harness.post_request("/graphql", body.encode(), self.headers["authorization"][7:])
        times = []
        async with harness.KeepAliveConnection(self.server.port, request) as connection:
            for n in range(WARM_UP + rounds):
                began = time.perf_counter()
                status, answer = await connection.send()
                elapsed = (time.perf_counter() - began) * 1000
                if status != 200 or b'"status":"SUCCESS"' not in answer:
                    raise SystemExit(f"predict failed ({status}): {answer[:500]!r}")
                if n >= WARM_UP:
                    times.append(elapsed)
        return times


async def run(args: argparse.Namespace, mongodb_url: str, redis_url: str, origin: str) -> int:
    print(f"databases: {origin}", flush=True)
    async with Bench(mongodb_url, redis_url) as bench:
        deployment, item = await bench.setup()
        direct = await direct_round_trips(args.rounds)
        loom = await bench.predict_round_trips(deployment, item, args.rounds)
    print(
        f"detector called directly in-process: p50 {_p(direct, 50):.2f} ms, "
        f"p99 {_p(direct, 99):.2f} ms ({args.rounds} calls)"
    )
    print(
        f"predict through the gateway and a worker: p50 {_p(loom, 50):.2f} ms, "
        f"p99 {_p(loom, 99):.2f} ms ({args.rounds} calls, one connection)"
    )
    overhead = _p(loom, 50) - _p(direct, 50)
    met = overhead <= OVERHEAD_GOAL_MS
    print(
        f"predict overhead at p50 = {overhead:.2f} ms "
        f"(goal <= {OVERHEAD_GOAL_MS:g} ms: {'MET' if met else 'NOT MET'})"
    )
    return 0 if met else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--serve", choices=["loom"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--parent", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.port, args.parent)
        return 0
    with harness.database_urls() as (mongodb_url, redis_url, origin):
        return harness.run_async(run(args, mongodb_url, redis_url, origin))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
