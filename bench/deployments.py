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

3. Stats: --stats-assets predicted assets (200,000 by default) of five predictions each
   (1,000,000 predictions), and 2% more whose champion failed, over 24 h, written with
   insert_many in the shape predict writes, rolled up by the sweep
   (resolvers/deployments/rollups.py, the worker's round sweeping beside it); then
   `deployment.stats` for those 24 h in 24 buckets through the gateway,
   --stats-rounds times: p50 / p99, next to the same aggregation written by hand in PyMongo
   over the raw assets (one $facet pipeline; exact latency percentiles from the pushed
   latencies), whose totals must equal the gateway's.

Goals, printed as `(goal <op> <target>: MET | NOT MET)`: the overhead at p50 at most 15 ms;
stats at p50 at most 500 ms. `--part predict` or `--part stats` runs one part only.
"""

import argparse
import json
import os
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import httpx  # noqa: E402
import numpy as np  # noqa: E402
from bson import ObjectId  # noqa: E402

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
STATS_GOAL_MS = 500.0
STATS_WARM_UP = 3
BASELINE_ROUNDS = 3
STATS_LABELS = ["car", "person", "bicycle", "truck", "sign.stop", "tree"]
SUMMARY = """predictionCount failedCount objectCount objectsPerAsset outlierCount outlierShare
  latencyMs { p50 p95 p99 } scoreHistogram labelCounts objectsPerAssetHistogram"""
STATS = f"""query($d: ID!, $w: StatsWindowInput!) {{ deployment(id: $d) {{
  stats(window: $w, bucket: "1h") {{ champion {{ modelVersionId total {{ {SUMMARY} }}
    buckets {{ start {SUMMARY} }} }} }} }} }}"""


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


class Bench(harness.GatewayBench):
    async def setup(self) -> tuple[str, str]:
        """(deployment id, item id), the gateway and a worker running."""
        key_doc = await self.start(__file__, EMAIL)
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


def stats_assets(deployment: dict[str, Any], start: Any, n: int) -> list[dict[str, Any]]:
    """`n` predicted assets over the 24 h from `start` with five predictions each, and 2% more
    whose champion failed, as predict writes them."""
    rng = np.random.default_rng(15)
    count = n + n // 50
    failed = rng.permutation(np.arange(count) >= n)
    offsets = np.sort(rng.integers(0, 24 * 3600 * 1000, size=count))
    latencies = rng.lognormal(np.log(40), 0.5, size=count).round(3)
    scores = rng.beta(5, 2, size=(count, 5)).round(4)
    labels = rng.integers(0, len(STATS_LABELS), size=(count, 5))
    docs = []
    for i in range(count):
        created = start + timedelta(milliseconds=int(offsets[i]))
        predictions = [
            {"type": "classification", "label": STATS_LABELS[labels[i, j]], "coordinates": None,
             "confidence": float(scores[i, j]), "classPdf": None, "metadata": {}}
            for j in range(5)
        ]  # fmt: skip
        slot = {
            "versionId": deployment["championVersionId"], "executionId": ObjectId(),
            "status": "failed" if failed[i] else "success",
            "predictions": [] if failed[i] else predictions,
            "error": "timed out" if failed[i] else None, "latencyMs": float(latencies[i]),
            "durationMs": float(latencies[i]) / 2, "finishedAt": created,
        }  # fmt: skip
        docs.append(
            {
                "_id": ObjectId(), "orgId": deployment["orgId"],
                "projectId": deployment["projectId"], "deploymentId": deployment["_id"],
                "itemId": ObjectId(), "datasetId": ObjectId(), "minThreshold": 0.5, "tags": [],
                "metadata": {}, "champion": slot, "shadow": None, "review": None,
                "createdAt": created, "updatedAt": created, "creator": None,
            }
        )  # fmt: skip
    return docs


def hand_written(deployment_id: Any, start: Any, end: Any) -> list[dict[str, Any]]:
    """The stats of 24 hourly buckets written by hand over the raw assets: one pipeline."""
    hour = {"$toInt": {"$floor": {"$divide": [{"$subtract": ["$createdAt", start]}, 3600_000]}}}
    per_prediction = [
        {"$unwind": "$p"},
        {
            "$group": {
                "_id": {"b": "$b", "bin": {"$floor": {"$multiply": ["$p.confidence", 100]}}},
                "n": {"$sum": 1},
                "outliers": {"$sum": {"$cond": [{"$lt": ["$p.confidence", "$t"]}, 1, 0]}},
            }
        },
    ]
    return [
        {
            "$match": {
                "deploymentId": deployment_id,
                "createdAt": {"$gte": start, "$lt": end},
                "champion.status": {"$in": ["success", "failed"]},
            }
        },
        {
            "$project": {
                "b": hour,
                "ok": {"$eq": ["$champion.status", "success"]},
                "latency": "$champion.latencyMs",
                "objects": {"$size": "$champion.predictions"},
                "p": "$champion.predictions",
                "t": "$minThreshold",
            }
        },
        {
            "$facet": {
                "slots": [
                    {
                        "$group": {
                            "_id": "$b",
                            "assets": {"$sum": {"$cond": ["$ok", 1, 0]}},
                            "failed": {"$sum": {"$cond": ["$ok", 0, 1]}},
                            "latencies": {"$push": {"$cond": ["$ok", "$latency", "$$REMOVE"]}},
                        }
                    }
                ],
                "objects": [
                    {"$match": {"ok": True}},
                    {"$group": {"_id": {"b": "$b", "n": "$objects"}, "n": {"$sum": 1}}},
                ],
                "scores": per_prediction,
                "labels": [
                    {"$unwind": "$p"},
                    {"$group": {"_id": {"b": "$b", "label": "$p.label"}, "n": {"$sum": 1}}},
                ],
            }
        },
    ]


class StatsBench:
    """The stats part, over the bench's deployment."""

    def __init__(self, bench: Bench, deployment_id: str) -> None:
        self.bench = bench
        self.deployment_id = deployment_id

    async def fill(self, n: int) -> tuple[Any, Any]:
        """Write and roll up `n` assets; the 24 h window they lie in."""
        from resolvers.deployments.rollups import roll_up

        db = self.bench.db
        deployment = await db.deployments.find_one({"_id": ObjectId(self.deployment_id)})
        start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=2)
        began = time.perf_counter()
        docs = stats_assets(deployment, start, n)
        for at in range(0, len(docs), 5000):
            await db.predicted_assets.insert_many(docs[at : at + 5000], ordered=False)
        written = time.perf_counter() - began
        began = time.perf_counter()
        while await db.predicted_assets.count_documents({"rolledUp.champion": None}, limit=1):
            await roll_up(db)
        rolled = time.perf_counter() - began
        print(
            f"stats history: {len(docs):,} assets ({5 * n:,} predictions) written in "
            f"{written:.1f} s, rolled up in {rolled:.1f} s ({len(docs) / rolled:,.0f} slots/s, "
            f"{await db.deployment_rollups.count_documents({}):,} rollups)",
            flush=True,
        )
        return start, start + timedelta(days=1)

    async def through_gateway(self, start: Any, end: Any, rounds: int) -> tuple[list[float], Any]:
        assert self.bench.server is not None
        window = {"from": start.isoformat(), "to": end.isoformat()}
        variables = {"d": self.deployment_id, "w": window}
        body = json.dumps({"query": STATS, "variables": variables}).encode()
        request = harness.post_request("/graphql", body, self.bench.headers["authorization"][7:])
        times = []
        async with harness.KeepAliveConnection(self.bench.server.port, request) as connection:
            for n in range(STATS_WARM_UP + rounds):
                began = time.perf_counter()
                status, answer = await connection.send()
                elapsed = (time.perf_counter() - began) * 1000
                if status != 200 or b'"errors"' in answer:
                    raise SystemExit(f"stats failed ({status}): {answer[:500]!r}")
                if n >= STATS_WARM_UP:
                    times.append(elapsed)
        [champion] = json.loads(answer)["data"]["deployment"]["stats"]["champion"]
        return times, champion

    async def by_hand(self, start: Any, end: Any) -> tuple[list[float], dict[str, Any]]:
        pipeline = hand_written(ObjectId(self.deployment_id), start, end)
        times = []
        for _ in range(BASELINE_ROUNDS):
            began = time.perf_counter()
            [found] = await (await self.bench.db.predicted_assets.aggregate(pipeline)).to_list()
            latencies = sorted(x for row in found["slots"] for x in row["latencies"])
            p99 = latencies[max(0, -(-99 * len(latencies) // 100) - 1)]
            times.append((time.perf_counter() - began) * 1000)
        totals = {
            "objectCount": sum(row["n"] for row in found["scores"]),
            "outlierCount": sum(row["outliers"] for row in found["scores"]),
            "predictionCount": sum(row["assets"] for row in found["slots"]),
            "p99": p99,
        }
        return times, totals


async def stats_part(args: argparse.Namespace, bench: Bench, deployment: str) -> bool:
    part = StatsBench(bench, deployment)
    start, end = await part.fill(args.stats_assets)
    loom, champion = await part.through_gateway(start, end, args.stats_rounds)
    by_hand, totals = await part.by_hand(start, end)
    total = champion["total"]
    mine = {k: total[k] for k in ("objectCount", "outlierCount", "predictionCount")}
    if mine != {k: totals[k] for k in mine} or len(champion["buckets"]) != 24:
        raise SystemExit(f"the gateway's stats {mine} differ from the hand-written {totals}")
    p99_error = abs(total["latencyMs"]["p99"] / totals["p99"] - 1) * 100
    print(
        f"stats over {total['objectCount']:,} predictions, 24 h in 24 buckets, through the "
        f"gateway: p50 {_p(loom, 50):.1f} ms, p99 {_p(loom, 99):.1f} ms "
        f"({args.stats_rounds} calls; latency p99 within {p99_error:.1f}% of the exact one)"
    )
    print(
        f"the same aggregation hand-written in PyMongo over the raw assets: "
        f"p50 {_p(by_hand, 50):.1f} ms ({BASELINE_ROUNDS} calls)"
    )
    met = _p(loom, 50) <= STATS_GOAL_MS
    print(
        f"stats p50 = {_p(loom, 50):.1f} ms "
        f"(goal <= {STATS_GOAL_MS:g} ms: {'MET' if met else 'NOT MET'})"
    )
    return met


async def predict_part(args: argparse.Namespace, bench: Bench, deployment: str, item: str) -> bool:
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
    return met


async def run(args: argparse.Namespace, mongodb_url: str, redis_url: str, origin: str) -> int:
    print(f"databases: {origin}", flush=True)
    met = True
    async with Bench(mongodb_url, redis_url) as bench:
        deployment, item = await bench.setup()
        if args.part in ("all", "predict"):
            met = await predict_part(args, bench, deployment, item) and met
        if args.part in ("all", "stats"):
            met = await stats_part(args, bench, deployment) and met
    return 0 if met else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--stats-assets", type=int, default=200_000)
    parser.add_argument("--stats-rounds", type=int, default=20)
    parser.add_argument("--part", choices=["all", "predict", "stats"], default="all")
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
