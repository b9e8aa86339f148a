"""Splitting a dataset version into named subsets (train / val / test, or any names), the same
way on every run and every machine, optionally stratified by label.

The algorithm, all of it determined by the seed and the version's content:

1. Each item's key is `sha256("<seed>:<item id>")` (the id as 24 hex digits): no random
   generator, so no library or platform can change the order.
2. Items fall into strata. Without stratification there is one. Stratified by label, an item's
   stratum is its rarest label — the label the fewest of the version's items carry, ties by
   name — and items without annotations are a stratum of their own.
3. A stratum of n items gives subset i `floor(n * ratio_i)` items, and its leftover items go
   one each to the subsets with the largest remainders `n * ratio_i - floor(...)` (ties: the
   subset furthest below its overall target so far, then the earlier subset). Every stratum,
   hence every single-label class, is thus within one item of its target share.
4. In key order, a stratum's first items go to the first subset, the next to the second, …

An item carrying several labels counts for its rarest one: the other labels' shares follow
from the draw and are not bounded by one item.

Each item's subset is stored on the version's copy (`split`), so a subset is the DQL filter
`{"split": "<name>"}` over the version's items. A split is written under a lease, so two
requests never interleave their assignments; splitting again replaces the split, unless a
model's subset uses the version.
"""

import hashlib
import math
from collections import Counter
from collections.abc import Sequence
from datetime import timedelta
from enum import StrEnum
from typing import Any

from bson import ObjectId
from pydantic import Field, field_validator
from pymongo import ReturnDocument

from resolvers.access import Access, Action
from resolvers.errors import Conflict
from resolvers.inputs import Input, Name, parse
from resolvers.timestamps import now
from resolvers.versions.lifecycle import ready_version
from resolvers.versions.removal import users_of

MAX_SUBSETS = 10
WRITE_CHUNK = 5000
LEASE = timedelta(minutes=10)
UNLABELLED = None


class Stratify(StrEnum):
    LABEL = "label"
    NONE = "none"


class SubsetRatio(Input):
    name: Name
    ratio: float = Field(gt=0, le=1, allow_inf_nan=False)


class SplitInput(Input):
    ratios: list[SubsetRatio] = Field(min_length=1, max_length=MAX_SUBSETS)
    seed: int = Field(ge=0, lt=2**63)
    stratify_by: Stratify = Stratify.NONE

    @field_validator("ratios")
    @classmethod
    def _a_partition(cls, ratios: list[SubsetRatio]) -> list[SubsetRatio]:
        if len({r.name for r in ratios}) != len(ratios):
            raise ValueError("subset names must be distinct")
        if not math.isclose(sum(r.ratio for r in ratios), 1.0, abs_tol=1e-9):
            raise ValueError("ratios must add up to 1")
        return ratios


def _key(seed: int, item_id: str) -> str:
    return hashlib.sha256(f"{seed}:{item_id}".encode()).hexdigest()


def _stratum(labels: set[str], carriers: Counter[str]) -> str | None:
    if not labels:
        return UNLABELLED
    return min(labels, key=lambda label: (carriers[label], label))


def _shares(n: int, ratios: Sequence[float], deficits: list[float]) -> list[int]:
    """Largest-remainder counts of n items for these ratios (step 3 of the docstring)."""
    exact = [n * ratio for ratio in ratios]
    counts = [math.floor(share) for share in exact]
    order = sorted(range(len(ratios)), key=lambda i: (-(exact[i] - counts[i]), -deficits[i], i))
    for i in order[: n - sum(counts)]:
        counts[i] += 1
    return counts


def assign(
    items: dict[str, set[str]], ratios: Sequence[float], seed: int, stratify: Stratify
) -> list[list[str]]:
    """Per subset (in the order of `ratios`), the ids of its items; `items` maps each item id
    (hex) to the labels it carries."""
    carriers = Counter(label for labels in items.values() for label in labels)
    strata: dict[str | None, list[str]] = {}
    for item_id, labels in items.items():
        stratum = _stratum(labels, carriers) if stratify == Stratify.LABEL else UNLABELLED
        strata.setdefault(stratum, []).append(item_id)
    subsets: list[list[str]] = [[] for _ in ratios]
    deficits = [0.0] * len(ratios)
    for stratum in sorted(strata, key=lambda s: (s is None, s or "")):
        members = sorted(strata[stratum], key=lambda item_id: _key(seed, item_id))
        counts = _shares(len(members), ratios, deficits)
        start = 0
        for i, count in enumerate(counts):
            subsets[i].extend(members[start : start + count])
            deficits[i] += len(members) * ratios[i] - count
            start += count
    return subsets


async def _labels_of_items(db: Any, version_id: ObjectId) -> tuple[dict[str, set[str]], dict]:
    """Each item's labels, and each item's annotation count per label."""
    items = {
        str(doc["itemId"]): set()
        async for doc in db.version_items.find({"versionId": version_id}, {"itemId": 1})
    }
    per_item: dict[str, Counter[str]] = {}
    pipeline = [
        {"$match": {"versionId": version_id}},
        {"$unwind": "$annotations"},
        {"$group": {"_id": {"item": "$itemId", "label": "$annotations.label"}, "n": {"$sum": 1}}},
    ]
    async for group in await db.version_items.aggregate(pipeline):
        item_id, label = str(group["_id"]["item"]), group["_id"]["label"]
        items.setdefault(item_id, set()).add(label)
        per_item.setdefault(item_id, Counter())[label] = group["n"]
    return items, per_item


def repartition(members: list[str], per_item: dict[str, Counter[str]]) -> dict[str, list]:
    """Picsellia's label repartition of a subset: labels (`x`) and annotation counts (`y`)."""
    total: Counter[str] = Counter()
    for item_id in members:
        total.update(per_item.get(item_id, Counter()))
    labels = sorted(total)
    return {"x": labels, "y": [total[label] for label in labels]}


async def split_version(
    access: Access, version_id: ObjectId, data: dict[str, Any]
) -> dict[str, Any]:
    version = await ready_version(access, version_id)
    await access.require_project(version, Action.MANAGE_DATASETS)
    split = parse(SplitInput, data)
    db = access.db
    if version["split"] is not None and (users := await users_of(db, [version_id])):
        names = ", ".join(repr(model["name"]) for model in users)
        raise Conflict(
            f"The split of {version['name']!r} is used by the subsets of {names}",
            id=str(version_id),
        )
    moment = now()
    claimed = await db.dataset_versions.find_one_and_update(
        {"_id": version_id, "$or": [{"splitting": None}, {"splitting": {"$lt": moment}}]},
        {"$set": {"splitting": moment + LEASE}},
    )
    if claimed is None:
        raise Conflict(f"Version {version['name']!r} is being split", id=str(version_id))
    items, per_item = await _labels_of_items(db, version_id)
    subsets = assign(items, [r.ratio for r in split.ratios], split.seed, split.stratify_by)
    for subset, members in zip(split.ratios, subsets, strict=True):
        for start in range(0, len(members), WRITE_CHUNK):
            chunk = [ObjectId(item_id) for item_id in members[start : start + WRITE_CHUNK]]
            await db.version_items.update_many(
                {"versionId": version_id, "itemId": {"$in": chunk}},
                {"$set": {"split": subset.name}},
            )
    stored = {
        "seed": split.seed,
        "stratifyBy": str(split.stratify_by),
        "subsets": [
            {
                "name": subset.name,
                "ratio": subset.ratio,
                "itemsCount": len(members),
                "repartition": repartition(members, per_item),
            }
            for subset, members in zip(split.ratios, subsets, strict=True)
        ],
        "at": now(),
    }
    return await db.dataset_versions.find_one_and_update(
        {"_id": version_id},
        {"$set": {"split": stored, "splitting": None, "updatedAt": now()}},
        return_document=ReturnDocument.AFTER,
    )
