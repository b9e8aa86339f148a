"""A deployment's monitoring: per role and model version, over a time window cut into buckets,
what its slots did — counts, latency percentiles, score, label and objects-per-asset
distributions, outlying scores — and the drift of the champion's scores and labels from a
reference window.

Windows are counted at whole minutes (the start rounded down, the end up) and bucket sizes are
whole minutes, so every bucket is made of whole rollups (rollups.py): an hour's where the hour
lies inside the window and one bucket, its minutes' elsewhere. Stats read, in one snapshot,
those rollups and, live, the settled slots not yet rolled up: exact and current, with no slot
counted twice or missed while a sweep commits. Latency percentiles come from 5% log-bins, so
they are within 5% of the exact ones. Only successful slots have latencies, predictions and
scores; failed ones are counted.

Drift compares two windows of the same deployment's champion slots (whatever version served):
the population stability index over the 0.01 score bins and over labels (empty bins count as
1e-4; below 0.1 stable, 0.1-0.25 moderate, above 0.25 significant), and the Kolmogorov-Smirnov
distance of the score distributions at the bin edges, drifted when it exceeds the critical
value at alpha 0.05, 1.358·sqrt((n+m)/(n·m)).
"""

import bisect
import itertools
import math
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any

from bson import ObjectId
from pydantic import BeforeValidator, Field, model_validator
from pymongo.asynchronous.database import AsyncDatabase

from resolvers.deployments.predictions import Role
from resolvers.deployments.rollups import (
    LATENCY_BASE,
    Unit,
    counter_name,
    counter_stages,
    summed,
    unrolled,
)
from resolvers.inputs import Input, object_id, parse
from resolvers.timestamps import now

MAX_WINDOW = timedelta(days=31)
MAX_BUCKETS = 1000
MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)
SCORE_BINS = 101
PSI_EMPTY = 1e-4
PSI_MODERATE = 0.1
PSI_SIGNIFICANT = 0.25
KS_ALPHA = 0.05
KS_COEFFICIENT = 1.358
"""c(alpha) of the two-sample Kolmogorov-Smirnov critical value at alpha 0.05."""
_DURATION = re.compile(r"(\d+)([smhd]?)")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def _seconds(value: Any) -> int:
    found = _DURATION.fullmatch(str(value).strip())
    if found is None:
        raise ValueError("a duration is a number of seconds, or one with s, m, h or d (e.g. 5m)")
    return int(found[1]) * _UNITS[found[2]]


def _bucket(value: Any) -> int:
    seconds = _seconds(value)
    if seconds < 60 or seconds % 60:
        raise ValueError("a bucket is a whole number of minutes")
    return seconds


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _floor_minute(moment: datetime) -> datetime:
    return _utc(moment).replace(second=0, microsecond=0)


def _ceil_minute(moment: datetime) -> datetime:
    floored = _floor_minute(moment)
    return floored if floored == _utc(moment) else floored + MINUTE


@dataclass(frozen=True)
class Span:
    """A window at whole minutes, in buckets of `bucket_s`."""

    start: datetime
    end: datetime
    bucket_s: int

    @property
    def buckets(self) -> int:
        return math.ceil((self.end - self.start).total_seconds() / self.bucket_s)

    def bucket_start(self, index: int) -> datetime:
        return self.start + timedelta(seconds=index * self.bucket_s)

    def bucket_end(self, index: int) -> datetime:
        return min(self.end, self.bucket_start(index + 1))

    def bucket_of(self, moment: datetime) -> int:
        return int((moment - self.start).total_seconds() // self.bucket_s)

    def pieces(self) -> tuple[list[datetime], list[tuple[datetime, datetime]]]:
        """The hours read from hour rollups (those inside the window and inside one bucket),
        and the ranges read from minute rollups (the rest)."""
        hour = self.start.replace(minute=0)
        hour = hour if hour == self.start else hour + HOUR
        hours = []
        while hour + HOUR <= self.end:
            if self.bucket_of(hour) == self.bucket_of(hour + HOUR - MINUTE):
                hours.append(hour)
            hour += HOUR
        minutes, at = [], self.start
        for whole in [*hours, self.end]:
            if at < whole:
                minutes.append((at, whole))
            at = whole + HOUR
        return hours, minutes

    def whole(self) -> "Span":
        """The same window in one bucket."""
        return Span(self.start, self.end, int((self.end - self.start).total_seconds()))


def _span(start: datetime, end: datetime, bucket_s: int | None) -> Span:
    if _utc(end) <= _utc(start):
        raise ValueError("the window must end after it starts")
    start, end = _floor_minute(start), _ceil_minute(end)
    if end - start > MAX_WINDOW:
        raise ValueError(f"a window spans at most {MAX_WINDOW.days} days")
    span = Span(start, end, bucket_s) if bucket_s else Span(start, end, 60).whole()
    if span.buckets > MAX_BUCKETS:
        raise ValueError(f"a window holds at most {MAX_BUCKETS} buckets: take larger ones")
    return span


class StatsRequest(Input):
    from_: datetime | None = Field(default=None, alias="from")
    to: datetime = Field(default_factory=now)
    since: Annotated[int, BeforeValidator(_seconds)] | None = None
    bucket: Annotated[int, BeforeValidator(_bucket)] = 3600
    model_version_id: str | None = None

    @model_validator(mode="after")
    def _one_start(self) -> "StatsRequest":
        if (self.from_ is None) == (self.since is None):
            raise ValueError("give exactly one of from and since")
        self.span()
        return self

    def span(self) -> Span:
        start = self.from_ or _utc(self.to) - timedelta(seconds=self.since or 0)
        return _span(start, self.to, self.bucket)


class ReferenceWindow(Input):
    reference_from: datetime
    reference_to: datetime

    @model_validator(mode="after")
    def _checked(self) -> "ReferenceWindow":
        self.span()
        return self

    def span(self) -> Span:
        return _span(self.reference_from, self.reference_to, None)


Counts = dict[tuple[str, ObjectId], dict[int, Counter[str]]]
"""(role, versionId) → bucket index → counters."""


def _bucket_index(date: str, span: Span) -> dict[str, Any]:
    return {
        "$toInt": {"$floor": {"$divide": [{"$subtract": [date, span.start]}, span.bucket_s * 1000]}}
    }


async def _counts(
    db: AsyncDatabase, deployment_id: ObjectId, span: Span, version_id: ObjectId | None,
    roles: tuple[Role, ...] = tuple(Role),
) -> Counts:  # fmt: skip
    """The counters of the window's slots by role, version and bucket: the rollups of its
    minutes, and the settled slots not yet rolled up, read in one snapshot."""
    versions = {} if version_id is None else {"versionId": version_id}
    hours, minutes = span.pieces()
    pieces = [{"unit": str(Unit.MINUTE), "at": {"$gte": a, "$lt": b}} for a, b in minutes]
    if hours:
        pieces.append({"unit": str(Unit.HOUR), "at": {"$in": hours}})
    rolled = [
        {
            "$match": {
                "deploymentId": deployment_id,
                "role": {"$in": [str(r) for r in roles]},
                **versions,
                "$or": pieces,
            }
        },
        {
            "$project": {
                "key": {"r": "$role", "v": "$versionId", "b": _bucket_index("$at", span)},
                "counts": {"$objectToArray": "$counts"},
            }
        },
        *summed(),
    ]
    counts: Counts = defaultdict(lambda: defaultdict(Counter))
    async with db.client.start_session(snapshot=True) as session:
        async for row in await db.deployment_rollups.aggregate(rolled, session=session):
            key = row["_id"]
            into = counts[(key["r"], key["v"])][key["b"]]
            for c in row["counts"]:
                into[counter_name(c["k"])] += c["v"]
        for role in roles:
            live = {
                "deploymentId": deployment_id,
                "createdAt": {"$gte": span.start, "$lt": span.end},
                **unrolled(role),
                **({} if version_id is None else {f"{role}.versionId": version_id}),
            }
            key = {"v": f"${role}.versionId", "b": _bucket_index("$createdAt", span)}
            pipeline = [{"$match": live}, *counter_stages(role, key)]
            async for row in await db.predicted_assets.aggregate(pipeline, session=session):
                into = counts[(str(role), row["_id"]["v"])][row["_id"]["b"]]
                for c in row["counts"]:
                    into[c["k"]] += c["v"]
    return counts


def _histogram(counters: Counter[str], prefix: str) -> dict[str, int]:
    return {k[len(prefix) :]: v for k, v in counters.items() if k.startswith(prefix) and v}


def _percentile(latency: dict[int, int], q: float) -> float:
    """The nearest-rank percentile, as the geometric middle of its bin."""
    bins = sorted(latency.items())
    below = list(itertools.accumulate(n for _, n in bins))
    rank = max(1, math.ceil(q / 100 * below[-1]))
    return LATENCY_BASE ** (bins[bisect.bisect_left(below, rank)][0] + 0.5)


@dataclass(frozen=True)
class Summary:
    """What one bucket (or a whole window) of one role and version holds."""

    start: datetime
    end: datetime
    counters: Counter[str]

    @property
    def prediction_count(self) -> int:
        return self.counters["assets"]

    @property
    def failed_count(self) -> int:
        return self.counters["failed"]

    @property
    def object_count(self) -> int:
        return self.counters["predictions"]

    @property
    def outlier_count(self) -> int:
        return self.counters["outliers"]

    @property
    def outlier_share(self) -> float | None:
        return self.outlier_count / self.object_count if self.object_count else None

    @property
    def objects_per_asset(self) -> float | None:
        return self.object_count / self.prediction_count if self.prediction_count else None

    def latency_percentiles(self) -> tuple[float, float, float] | None:
        bins = {int(k): v for k, v in _histogram(self.counters, "latency:").items()}
        if not bins:
            return None
        return _percentile(bins, 50), _percentile(bins, 95), _percentile(bins, 99)

    def score_histogram(self) -> list[int]:
        """Predictions per 0.01 score bin: [i] counts scores in [i/100, (i+1)/100)."""
        scores = _histogram(self.counters, "score:")
        return [scores.get(str(i), 0) for i in range(SCORE_BINS)]

    def label_counts(self) -> dict[str, int]:
        return _histogram(self.counters, "label:")

    def objects_histogram(self) -> dict[str, int]:
        """Successful slots by their number of predictions."""
        return dict(sorted(_histogram(self.counters, "objects:").items(), key=lambda i: int(i[0])))


@dataclass(frozen=True)
class VersionStats:
    role: Role
    version_id: ObjectId
    total: Summary
    buckets: list[Summary]


@dataclass(frozen=True)
class Stats:
    deployment_id: ObjectId
    span: Span
    versions: list[VersionStats]


def _summaries(span: Span, by_bucket: dict[int, Counter[str]]) -> tuple[list[Summary], Summary]:
    buckets = [
        Summary(span.bucket_start(i), span.bucket_end(i), by_bucket.get(i, Counter()))
        for i in range(span.buckets)
    ]
    total: Counter[str] = sum((b.counters for b in buckets), Counter())
    return buckets, Summary(span.start, span.end, total)


async def deployment_stats(
    db: AsyncDatabase, deployment: dict[str, Any], data: dict[str, Any]
) -> Stats:
    """The stats of a deployment the caller may read; BAD_USER_INPUT for a bad window."""
    request = parse(StatsRequest, data)
    version_id = (
        None
        if request.model_version_id is None
        else object_id(request.model_version_id, "modelVersionId")
    )
    span = request.span()
    counts = await _counts(db, deployment["_id"], span, version_id)
    versions = []
    for (role, version), by_bucket in sorted(counts.items(), key=lambda i: (i[0][0], str(i[0][1]))):
        buckets, total = _summaries(span, by_bucket)
        versions.append(VersionStats(Role(role), version, total, buckets))
    return Stats(deployment["_id"], span, versions)


# --- Drift ----------------------------------------------------------------------------------


class Verdict(StrEnum):
    STABLE = "stable"
    MODERATE = "moderate"
    SIGNIFICANT = "significant"


@dataclass(frozen=True)
class Psi:
    value: float

    @property
    def verdict(self) -> Verdict:
        if self.value < PSI_MODERATE:
            return Verdict.STABLE
        return Verdict.MODERATE if self.value <= PSI_SIGNIFICANT else Verdict.SIGNIFICANT


@dataclass(frozen=True)
class Ks:
    d: float
    critical_value: float

    @property
    def drifted(self) -> bool:
        return self.d > self.critical_value


@dataclass(frozen=True)
class Drift:
    reference: Span
    count: int
    reference_count: int
    score_psi: Psi | None
    label_psi: Psi | None
    score_ks: Ks | None


def psi(current: list[int], reference: list[int]) -> float:
    """Σ (p - q)·ln(p / q) over bins, p and q the shares (1e-4 for an empty bin)."""
    n, m = sum(current), sum(reference)
    total = 0.0
    for a, b in zip(current, reference, strict=True):
        p, q = max(a / n, PSI_EMPTY), max(b / m, PSI_EMPTY)
        total += (p - q) * math.log(p / q)
    return total


def ks(current: list[int], reference: list[int]) -> Ks:
    """The largest gap between the two cumulative distributions at the bin edges."""
    n, m = sum(current), sum(reference)
    d, below_n, below_m = 0.0, 0, 0
    for a, b in zip(current, reference, strict=True):
        below_n, below_m = below_n + a, below_m + b
        d = max(d, abs(below_n / n - below_m / m))
    return Ks(d, KS_COEFFICIENT * math.sqrt((n + m) / (n * m)))


async def champion_total(db: AsyncDatabase, deployment_id: ObjectId, span: Span) -> Summary:
    counts = await _counts(db, deployment_id, span, None, (Role.CHAMPION,))
    total: Counter[str] = Counter()
    for by_bucket in counts.values():
        for counters in by_bucket.values():
            total.update(counters)
    return Summary(span.start, span.end, total)


async def drift(db: AsyncDatabase, stats: Stats, data: dict[str, Any]) -> Drift:
    """The drift of the window's champion scores and labels from a reference window's."""
    reference_span = parse(ReferenceWindow, data).span()
    current = await champion_total(db, stats.deployment_id, stats.span.whole())
    reference = await champion_total(db, stats.deployment_id, reference_span)
    n, m = current.object_count, reference.object_count
    if not n or not m:
        return Drift(reference_span, n, m, None, None, None)
    scores, reference_scores = current.score_histogram(), reference.score_histogram()
    labels = sorted(current.label_counts().keys() | reference.label_counts().keys())
    label_counts = [current.label_counts().get(label, 0) for label in labels]
    reference_labels = [reference.label_counts().get(label, 0) for label in labels]
    return Drift(
        reference_span,
        n,
        m,
        Psi(psi(scores, reference_scores)),
        Psi(psi(label_counts, reference_labels)),
        ks(scores, reference_scores),
    )
