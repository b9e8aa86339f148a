"""`deployment.stats`: a deployment's monitoring over a time window, per role and model
version, bucketed for charts, and the champion's drift from a reference window
(resolvers/deployments/stats.py). Headline numbers are typed fields; the bulky histograms are
JSON."""

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import strawberry
from bson import ObjectId
from strawberry.scalars import JSON

from resolvers.deployments import stats, training_drift
from resolvers.deployments.lifecycle import get_deployment
from resolvers.deployments.predictions import Role

if TYPE_CHECKING:
    from schema.models import ModelVersion


@strawberry.input(description="A time window: `from` (and `to`, now if not given) or `since`.")
class StatsWindowInput:
    from_: datetime | None = strawberry.field(name="from", default=None)
    to: datetime | None = None
    since: str | None = strawberry.field(
        default=None, description="A duration before `to`: seconds, or e.g. 90s, 15m, 24h, 7d."
    )


@strawberry.type(description="Latency percentiles in ms, from 5% log-bins (within 5%).")
class LatencyPercentiles:
    p50: float
    p95: float
    p99: float


@strawberry.type(description="What one model version's slots did in a bucket (or the window).")
class StatsBucket:
    summary: strawberry.Private[stats.Summary]
    start: datetime
    end: datetime

    @strawberry.field(description="Slots settled with success.")
    def prediction_count(self) -> int:
        return self.summary.prediction_count

    @strawberry.field(description="Slots settled with a failure.")
    def failed_count(self) -> int:
        return self.summary.failed_count

    @strawberry.field(description="Predictions (objects) of the successful slots.")
    def object_count(self) -> int:
        return self.summary.object_count

    @strawberry.field(description="Mean predictions per successful slot.")
    def objects_per_asset(self) -> float | None:
        return self.summary.objects_per_asset

    @strawberry.field(description="Predictions scoring below their asset's minThreshold.")
    def outlier_count(self) -> int:
        return self.summary.outlier_count

    @strawberry.field(description="outlierCount / objectCount.")
    def outlier_share(self) -> float | None:
        return self.summary.outlier_share

    @strawberry.field(description="Of the successful slots; null without any.")
    def latency_ms(self) -> LatencyPercentiles | None:
        found = self.summary.latency_percentiles()
        return (
            LatencyPercentiles(**dict(zip(("p50", "p95", "p99"), found, strict=True)))
            if found
            else None
        )

    @strawberry.field(description="101 counts: [i] is predictions scoring in [i/100, (i+1)/100).")
    def score_histogram(self) -> JSON:
        return self.summary.score_histogram()

    @strawberry.field(description="{label: predictions}.")
    def label_counts(self) -> JSON:
        return self.summary.label_counts()

    @strawberry.field(description="{objects: successful slots with that many predictions}.")
    def objects_per_asset_histogram(self) -> JSON:
        return self.summary.objects_histogram()

    @classmethod
    def of(cls, summary: stats.Summary) -> "StatsBucket":
        return cls(summary=summary, start=summary.start, end=summary.end)


@strawberry.type(description="One model version's slots of one role over the window.")
class VersionStats:
    version_id: strawberry.Private[ObjectId]
    model_version_id: strawberry.ID
    total: StatsBucket
    buckets: list[StatsBucket]

    @strawberry.field(description="The version, while it exists.")
    async def model_version(
        self, info: strawberry.Info
    ) -> Annotated["ModelVersion", strawberry.lazy("schema.models")] | None:
        from schema.deployments import version_or_none

        return await version_or_none(info, self.version_id)


DriftVerdictEnum = strawberry.enum(
    stats.Verdict,
    name="DriftVerdict",
    description=f"A PSI below {stats.PSI_MODERATE} is stable, up to {stats.PSI_SIGNIFICANT} "
    "moderate, above it significant.",
)


@strawberry.type(description="A population stability index and what it says.")
class PsiMeasure:
    value: float
    moderate_threshold: float = stats.PSI_MODERATE
    significant_threshold: float = stats.PSI_SIGNIFICANT
    verdict: DriftVerdictEnum


@strawberry.type(
    description="The two-sample Kolmogorov-Smirnov distance of the score distributions at the "
    "0.01 bin edges, against its critical value at alpha."
)
class KsMeasure:
    d: float
    critical_value: float
    alpha: float = stats.KS_ALPHA
    drifted: bool = strawberry.field(description="d exceeds the critical value.")


@strawberry.type(
    description="The champion's scores and labels in the window against a reference window "
    "(null measures when either has no predictions)."
)
class Drift:
    reference_from: datetime
    reference_to: datetime
    object_count: int = strawberry.field(description="Predictions in the window.")
    reference_object_count: int
    score_psi: PsiMeasure | None
    label_psi: PsiMeasure | None
    score_ks: KsMeasure | None


@strawberry.type(
    description="The champion's predictions in the window against its training data (null "
    "measures when either side has none)."
)
class TrainingDrift:
    dataset_id: strawberry.ID
    model_run_id: strawberry.ID | None
    object_count: int = strawberry.field(description="Predictions in the window.")
    reference_label_count: int = strawberry.field(description="Annotations of the dataset.")
    reference_score_count: int = strawberry.field(description="Predictions of the model run.")
    label_psi: PsiMeasure | None
    score_psi: PsiMeasure | None
    score_ks: KsMeasure | None


def _ks(found: stats.Ks | None) -> KsMeasure | None:
    if found is None:
        return None
    return KsMeasure(d=found.d, critical_value=found.critical_value, drifted=found.drifted)


def _psi(found: stats.Psi | None) -> PsiMeasure | None:
    return None if found is None else PsiMeasure(value=found.value, verdict=found.verdict)


def _versions(found: stats.Stats, role: Role) -> list[VersionStats]:
    return [
        VersionStats(
            version_id=v.version_id,
            model_version_id=strawberry.ID(str(v.version_id)),
            total=StatsBucket.of(v.total),
            buckets=[StatsBucket.of(b) for b in v.buckets],
        )
        for v in found.versions
        if v.role == role
    ]


@strawberry.type(
    description="A deployment's slots in a window at whole minutes, per role and model version."
)
class DeploymentStats:
    found: strawberry.Private[stats.Stats]
    from_: datetime = strawberry.field(name="from")
    to: datetime
    bucket_seconds: int

    @strawberry.field(description="Champion slots, per model version that served.")
    def champion(self) -> list[VersionStats]:
        return _versions(self.found, Role.CHAMPION)

    @strawberry.field(description="Shadow slots, per model version that shadowed.")
    def shadow(self) -> list[VersionStats]:
        return _versions(self.found, Role.SHADOW)

    @strawberry.field(
        description="The champion's drift (whatever version served, modelVersionId aside) "
        "from a past window of the same deployment."
    )
    async def drift(
        self, info: strawberry.Info, reference_from: datetime, reference_to: datetime
    ) -> Drift:
        access = await info.context.access()
        found = await stats.drift(
            access.db,
            self.found,
            {"referenceFrom": reference_from, "referenceTo": reference_to},
        )
        ks = found.score_ks
        return Drift(
            reference_from=found.reference.start,
            reference_to=found.reference.end,
            object_count=found.count,
            reference_object_count=found.reference_count,
            score_psi=_psi(found.score_psi),
            label_psi=_psi(found.label_psi),
            score_ks=_ks(ks),
        )

    @strawberry.field(
        description="The champion's drift from its training data: a dataset of the project "
        "(label distribution of its annotations) and, optionally, a model run on it (score "
        "distribution of its predictions)."
    )
    async def training_drift(
        self,
        info: strawberry.Info,
        dataset_id: strawberry.ID,
        model_run_id: strawberry.ID | None = None,
    ) -> TrainingDrift:
        access = await info.context.access()
        deployment = await get_deployment(access, self.found.deployment_id)
        found = await training_drift.training_drift(
            access, deployment, self.found, {"datasetId": dataset_id, "modelRunId": model_run_id}
        )
        return TrainingDrift(
            dataset_id=strawberry.ID(str(found.dataset_id)),
            model_run_id=strawberry.ID(str(found.model_run_id)) if found.model_run_id else None,
            object_count=found.count,
            reference_label_count=found.reference_label_count,
            reference_score_count=found.reference_score_count,
            label_psi=_psi(found.label_psi),
            score_psi=_psi(found.score_psi),
            score_ks=_ks(found.score_ks),
        )


async def deployment_stats(
    info: strawberry.Info,
    deployment: dict[str, Any],
    window: StatsWindowInput,
    bucket: str,
    model_version_id: strawberry.ID | None,
) -> DeploymentStats:
    """The stats of a deployment already read with the caller's access."""
    data = {"from": window.from_, "to": window.to, "since": window.since, "bucket": bucket}
    data = {k: v for k, v in data.items() if v is not None}
    if model_version_id is not None:
        data["modelVersionId"] = model_version_id
    access = await info.context.access()
    found = await stats.deployment_stats(access.db, deployment, data)
    return DeploymentStats(
        found=found, from_=found.span.start, to=found.span.end, bucket_seconds=found.span.bucket_s
    )
