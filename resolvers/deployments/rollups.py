"""Rollups of settled prediction slots per minute and per hour, so a deployment's stats read
a few dozen small documents instead of every prediction.

A rollup (`deployment_rollups`) is keyed by deployment, `unit` (minute or hour), `at` (the
start of that minute or hour, from the asset's `createdAt`), role and model version, and holds
one map `counts` of counters:

- `assets` (slots settled with success), `failed`, `predictions`, `outliers` (predictions
  scoring below the asset's `minThreshold`);
- `latency:<bin>`: successful slots by latency, in 5% log-bins (`floor(ln ms / ln 1.05)`);
- `score:<bin>`: predictions by confidence, in 0.01 bins (0..100, 100 holding 1.0 only);
- `label:<label>`: predictions by label;
- `objects:<n>`: successful slots by their number of predictions.

The same counters come out of `counter_stages` whether it runs over the assets a sweep rolls
up or over those not yet rolled up that stats count live, so both read alike. Labels are
field names in a rollup: `.` and `%` in them are escaped (`%2E`, `%25`) there.

`roll_up` (a worker round) takes a batch of settled slots not yet rolled up and, in one
transaction, `$inc`s their minute and hour rollups and marks them (`rolledUp.<role>: true`,
one top-level field of the asset: bookkeeping, as `updatedAt` is, that nothing else reads).
Both writes filter on the marker being unset, in the transaction's one snapshot: a slot that a
concurrent sweep rolls up meanwhile makes this transaction's marking a write conflict, and its
retry finds the slot marked and counts it no more — each slot is counted exactly once however
many workers sweep.
"""

import math
from collections import Counter, defaultdict
from enum import StrEnum
from typing import Any

from bson import ObjectId
from pymongo import UpdateOne
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase

from resolvers.deployments.predictions import Role, SlotStatus
from resolvers.transactions import in_transaction

ROLLUP_BATCH = 1000
"""Slots rolled up per transaction."""
LATENCY_BASE = 1.05
"""Latency bins grow by 5%: a percentile read from them is within 5% of the exact one."""
MIN_LATENCY_MS = 0.01
SETTLED = [str(SlotStatus.SUCCESS), str(SlotStatus.FAILED)]


class Unit(StrEnum):
    """What a rollup spans."""

    MINUTE = "minute"
    HOUR = "hour"


def score_bin_of(confidence: str) -> dict[str, Any]:
    """The 0.01 score bin (0..100, 100 holding 1.0 only) of a confidence, as an expression."""
    scaled = {"$add": [{"$multiply": [confidence, 100]}, 1e-9]}
    return {"$min": [100, {"$max": [0, {"$floor": scaled}]}]}


def unrolled(role: Role) -> dict[str, Any]:
    """The filter of assets whose `role` slot is settled but not yet rolled up."""
    return {f"rolledUp.{role}": None, f"{role}.status": {"$in": SETTLED}}


def _key(prefix: str, number: Any) -> dict[str, Any]:
    return {"$concat": [prefix, {"$toString": {"$toInt": number}}]}


def counter_stages(role: Role, key: dict[str, Any]) -> list[dict[str, Any]]:
    """Stages turning matched assets into one document per `key` (an expression over the
    asset) with `counts: [{k, v}]`, the counters of their `role` slots summed."""
    slot = f"${role}"
    predictions = f"{slot}.predictions"
    success = {"$eq": [f"{slot}.status", str(SlotStatus.SUCCESS)]}
    latency_bin = {
        "$floor": {
            "$divide": [
                {"$ln": {"$max": [f"{slot}.latencyMs", MIN_LATENCY_MS]}},
                math.log(LATENCY_BASE),
            ]
        }
    }
    score_bin = score_bin_of("$$p.confidence")
    on_success = [
        {"k": "assets", "v": 1},
        {"k": _key("latency:", latency_bin), "v": 1},
        {"k": _key("objects:", {"$size": predictions}), "v": 1},
        {"k": "predictions", "v": {"$size": predictions}},
        {
            "k": "outliers",
            "v": {
                "$size": {
                    "$filter": {
                        "input": predictions,
                        "as": "p",
                        "cond": {"$lt": ["$$p.confidence", "$minThreshold"]},
                    }
                }
            },
        },
    ]
    per_prediction = [
        {"$map": {"input": predictions, "as": "p", "in": {"k": _key("score:", score_bin), "v": 1}}},
        {
            "$map": {
                "input": predictions,
                "as": "p",
                "in": {"k": {"$concat": ["label:", "$$p.label"]}, "v": 1},
            }
        },
    ]
    return [
        {
            "$project": {
                "key": key,
                "counts": {
                    "$cond": [
                        success,
                        {"$concatArrays": [on_success, *per_prediction]},
                        [{"k": "failed", "v": 1}],
                    ]
                },
            }
        },
        *summed(),
    ]


def summed() -> list[dict[str, Any]]:
    """Stages summing documents `{key, counts: [{k, v}]}` into one per key."""
    return [
        {"$unwind": "$counts"},
        {"$group": {"_id": {"key": "$key", "k": "$counts.k"}, "v": {"$sum": "$counts.v"}}},
        {"$group": {"_id": "$_id.key", "counts": {"$push": {"k": "$_id.k", "v": "$v"}}}},
    ]


def field_name(counter: str) -> str:
    """A counter's name as a field of `counts` (no `.`, which a path would split at)."""
    return counter.replace("%", "%25").replace(".", "%2E")


def counter_name(field: str) -> str:
    return field.replace("%2E", ".").replace("%25", "%")


async def _roll_up_batch(db: AsyncDatabase, role: Role, ids: list[ObjectId]) -> int:
    settled = {"_id": {"$in": ids}, **unrolled(role)}
    minute = {
        "d": "$deploymentId",
        "v": f"${role}.versionId",
        "m": {"$dateTrunc": {"date": "$createdAt", "unit": "minute"}},
    }

    async def work(session: AsyncClientSession) -> int:
        cursor = await db.predicted_assets.aggregate(
            [{"$match": settled}, *counter_stages(role, minute)], session=session
        )
        rollups: dict[tuple[Any, ...], Counter[str]] = defaultdict(Counter)
        async for row in cursor:
            d, v, at = row["_id"]["d"], row["_id"]["v"], row["_id"]["m"]
            counts = {c["k"]: c["v"] for c in row["counts"]}
            rollups[(d, Unit.MINUTE, at, v)].update(counts)
            rollups[(d, Unit.HOUR, at.replace(minute=0), v)].update(counts)
        writes = [
            UpdateOne(
                {"deploymentId": d, "unit": str(unit), "at": at, "role": str(role), "versionId": v},
                {"$inc": {f"counts.{field_name(k)}": n for k, n in counts.items()}},
                upsert=True,
            )
            for (d, unit, at, v), counts in rollups.items()
        ]
        if not writes:
            return 0
        await db.deployment_rollups.bulk_write(writes, ordered=False, session=session)
        marked = await db.predicted_assets.update_many(
            settled, {"$set": {f"rolledUp.{role}": True}}, session=session
        )
        return marked.modified_count

    return await in_transaction(db, work)


async def roll_up(db: AsyncDatabase, batch: int = ROLLUP_BATCH) -> int:
    """Roll up every settled slot not yet rolled up, a batch per transaction; how many this
    call rolled up."""
    total = 0
    for role in Role:
        while True:
            ids = [
                doc["_id"]
                async for doc in db.predicted_assets.find(unrolled(role), {"_id": 1}).limit(batch)
            ]
            if ids:
                total += await _roll_up_batch(db, role, ids)
            if len(ids) < batch:
                break
    return total
