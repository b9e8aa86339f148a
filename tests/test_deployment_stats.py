"""deployment.stats on a generated history with known distributions, written straight into
MongoDB: part rolled up by the sweep, part left live, pending slots ignored. Counts, per-bucket
counts, latency percentiles (within the 5% log-bins), score, label and objects histograms,
outlying scores, PSI and KS are checked against numpy and scipy computed here. Two sweeps at
once roll each slot up exactly once; bad windows are BAD_USER_INPUT; whoever can read the
deployment reads its stats, nobody else (NOT_FOUND)."""

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from bson import ObjectId
from scipy import stats as scipy_stats

from resolvers.deployments.rollups import roll_up
from tests.datasets_world import World, image_bytes, make_world
from tests.test_deployments import CREATE_MODEL, CREATE_VERSION
from tests.test_model_run_commit import CREATE_MANY, UPLOAD
from tests.test_predictions import CREATE_RUN
from tests.test_roles import ALL_CASES, _attempt, project_caller, project_visible

CREATE_DEPLOYMENT = """mutation($p: ID!, $input: DeploymentInput!) {
  createDeployment(projectId: $p, input: $input) { id } }"""
BUCKET = """start end predictionCount failedCount objectCount objectsPerAsset outlierCount
  outlierShare latencyMs { p50 p95 p99 } scoreHistogram labelCounts objectsPerAssetHistogram"""
STATS = f"""query($d: ID!, $w: StatsWindowInput!, $b: String, $v: ID) {{ deployment(id: $d) {{
  stats(window: $w, bucket: $b, modelVersionId: $v) {{ from to bucketSeconds
    champion {{ modelVersionId modelVersion {{ id }} total {{ {BUCKET} }}
      buckets {{ start end predictionCount failedCount }} }}
    shadow {{ modelVersionId total {{ predictionCount failedCount objectCount }} }} }} }} }}"""
DRIFT = """query($d: ID!, $w: StatsWindowInput!, $rf: DateTime!, $rt: DateTime!) {
  deployment(id: $d) { stats(window: $w) { drift(referenceFrom: $rf, referenceTo: $rt) {
    referenceFrom referenceTo objectCount referenceObjectCount
    scorePsi { value moderateThreshold significantThreshold verdict } labelPsi { value verdict }
    scoreKs { d criticalValue alpha drifted } } } } }"""
THRESHOLD = 0.3
LABELS = ["car", "person", "sign.stop"]
HOURS_3 = timedelta(hours=3)


@dataclass
class Slots:
    """What was generated for one role: per successful slot, its time, latency, scores."""

    created: list[datetime] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    scores: list[list[int]] = field(default_factory=list)
    labels: list[list[str]] = field(default_factory=list)
    failed: int = 0

    @property
    def all_scores(self) -> np.ndarray:
        return np.array([s for scores in self.scores for s in scores], dtype=int)

    @property
    def all_labels(self) -> list[str]:
        return [label for labels in self.labels for label in labels]


def _slot(version: ObjectId, status: str, predictions: list, latency: float | None) -> dict:
    return {
        "versionId": version, "executionId": ObjectId(), "status": status,
        "predictions": predictions, "error": "boom" if status == "failed" else None,
        "latencyMs": latency, "durationMs": latency and latency / 2, "finishedAt": None,
    }  # fmt: skip


def _prediction(score: int, label: str) -> dict:
    return {"type": "classification", "label": label, "coordinates": None,
            "confidence": score / 100, "classPdf": None, "metadata": {}}  # fmt: skip


@dataclass
class History:
    """Generated assets of one deployment, and what they hold."""

    deployment: dict[str, Any]
    rng: np.random.Generator
    champion: Slots = field(default_factory=Slots)
    shadow: Slots = field(default_factory=Slots)

    def assets(
        self, start: datetime, span: timedelta, n: int, scores: Any, label_p: list[float]
    ) -> list[dict]:
        """`n` assets over `span` from `start`: a champion slot (1 in 10 failed) scoring by
        `scores(rng, size)` (ints 0..100: confidences on the 0.01 grid), labels by
        `label_p`, and a shadow slot, always successful, with one prediction."""
        docs = []
        span_ms = max(1, int(span.total_seconds() * 1000))
        for _ in range(n):
            created = start + timedelta(milliseconds=int(self.rng.integers(span_ms)))
            objects = int(self.rng.integers(0, 5))
            latency = round(float(self.rng.lognormal(np.log(50), 0.6)), 3)
            drawn = [int(s) for s in scores(self.rng, objects)]
            labels = [str(x) for x in self.rng.choice(LABELS, size=objects, p=label_p)]
            if self.rng.random() < 0.1:
                champion = _slot(self.deployment["championVersionId"], "failed", [], latency)
                self.champion.failed += 1
            else:
                predictions = [_prediction(s, x) for s, x in zip(drawn, labels, strict=True)]
                champion = _slot(
                    self.deployment["championVersionId"], "success", predictions, latency
                )
                for into, value in (
                    (self.champion.created, created), (self.champion.latencies, latency),
                    (self.champion.scores, drawn), (self.champion.labels, labels),
                ):  # fmt: skip
                    into.append(value)
            shadow = _slot(
                self.deployment["shadowVersionId"], "success", [_prediction(70, "car")], 9.0
            )
            self.shadow.created.append(created)
            docs.append(self._asset(created, champion, shadow))
        return docs

    def pending(self, created: datetime) -> dict:
        """An asset whose slots have no outcome yet: counted nowhere."""
        champion = _slot(self.deployment["championVersionId"], "pending", [], None)
        shadow = _slot(self.deployment["shadowVersionId"], "pending", [], None)
        return self._asset(created, champion, shadow)

    def _asset(self, created: datetime, champion: dict, shadow: dict) -> dict:
        d = self.deployment
        return {
            "_id": ObjectId(), "orgId": d["orgId"], "projectId": d["projectId"],
            "deploymentId": d["_id"], "itemId": ObjectId(), "datasetId": ObjectId(),
            "minThreshold": THRESHOLD, "tags": [], "metadata": {}, "champion": champion,
            "shadow": shadow, "review": None, "createdAt": created, "updatedAt": created,
            "creator": None,
        }  # fmt: skip


def _uniform(rng: np.random.Generator, size: int) -> np.ndarray:
    return rng.integers(0, 101, size=size)


def _skewed(rng: np.random.Generator, size: int) -> np.ndarray:
    return rng.binomial(100, 0.65, size=size)


async def _deployment(world: World, db) -> dict[str, Any]:
    model = await world.client.data(CREATE_MODEL, p=world.project, input={"name": "m"})
    versions = [
        (await world.client.data(CREATE_VERSION, m=model["createModel"]["id"]))[
            "createModelVersion"
        ]["id"]
        for _ in range(2)
    ]
    created = await world.client.data(
        CREATE_DEPLOYMENT,
        p=world.project,
        input={"name": "gate", "championVersionId": versions[0], "shadowVersionId": versions[1],
               "minThreshold": THRESHOLD},
    )  # fmt: skip
    return await db.deployments.find_one({"_id": ObjectId(created["createDeployment"]["id"])})


def _iso(moment: datetime) -> str:
    return moment.isoformat()


def _start() -> datetime:
    """A whole hour well in the past: the window is [start, start + 3 h)."""
    return datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=5)


async def test_stats_and_drift_equal_what_numpy_and_scipy_compute(member, db):
    world = await make_world(member)
    deployment = await _deployment(world, db)
    start = _start()
    window = {"from": _iso(start), "to": _iso(start + timedelta(hours=3))}
    reference = History(deployment, np.random.default_rng(7))
    current = History(deployment, np.random.default_rng(11))
    # The reference (ten hours earlier) and half the window are rolled up; the rest stays live.
    await db.predicted_assets.insert_many(
        reference.assets(start - timedelta(hours=10), HOURS_3, 500, _skewed, [0.3, 0.3, 0.4])
    )
    await db.predicted_assets.insert_many(
        current.assets(start, HOURS_3, 400, _uniform, [0.5, 0.3, 0.2])
    )
    assert await roll_up(db) == 2 * 900
    await db.predicted_assets.insert_many(
        [
            *current.assets(start, HOURS_3, 300, _uniform, [0.5, 0.3, 0.2]),
            current.pending(start + timedelta(minutes=5)),
        ]
    )
    # outside the window: just before and at its end
    outside = History(deployment, np.random.default_rng(3))
    await db.predicted_assets.insert_many(
        [
            *outside.assets(start - timedelta(minutes=1), timedelta(0), 1, _uniform, [1, 0, 0]),
            *outside.assets(start + timedelta(hours=3), timedelta(0), 1, _uniform, [1, 0, 0]),
        ]
    )
    assert await db.predicted_assets.count_documents({"rolledUp.champion": True}) == 900

    found = (await world.client.data(STATS, d=str(deployment["_id"]), w=window, b="1h"))[
        "deployment"
    ]["stats"]
    assert (found["from"], found["bucketSeconds"]) == (_iso(start), 3600)
    champion_version = str(deployment["championVersionId"])
    [champion] = found["champion"]
    assert champion["modelVersionId"] == champion_version
    assert champion["modelVersion"] == {"id": champion_version}
    total, slots = champion["total"], current.champion
    scores = slots.all_scores
    assert total["predictionCount"] == len(slots.created)
    assert total["failedCount"] == slots.failed
    assert total["objectCount"] == len(scores)
    assert total["objectsPerAsset"] == pytest.approx(len(scores) / len(slots.created))
    assert total["objectsPerAssetHistogram"] == {
        str(k): v for k, v in sorted(Counter(len(s) for s in slots.scores).items())
    }
    assert total["scoreHistogram"] == np.bincount(scores, minlength=101).tolist()
    assert total["labelCounts"] == dict(Counter(slots.all_labels))
    outliers = int(np.sum(scores / 100 < THRESHOLD))
    assert (total["outlierCount"], total["outlierShare"]) == (outliers, outliers / len(scores))
    for q in (50, 95, 99):
        exact = np.percentile(slots.latencies, q, method="inverted_cdf")
        assert total["latencyMs"][f"p{q}"] == pytest.approx(exact, rel=0.05), q
    hours = [int((c - start).total_seconds() // 3600) for c in slots.created]
    assert [b["predictionCount"] for b in champion["buckets"]] == np.bincount(hours).tolist()
    assert [b["start"] for b in champion["buckets"]] == [
        _iso(start + timedelta(hours=h)) for h in range(3)
    ]
    assert sum(b["failedCount"] for b in champion["buckets"]) == slots.failed
    [shadow] = found["shadow"]
    assert shadow["modelVersionId"] == str(deployment["shadowVersionId"])
    assert shadow["total"] == {"predictionCount": 700, "failedCount": 0, "objectCount": 700}

    # a window off the hours, in 2 h buckets: minute rollups, an hour rollup, live slots
    odd = {
        "from": _iso(start + timedelta(minutes=7, seconds=30)),
        "to": _iso(start + timedelta(hours=2, minutes=49, seconds=10)),
    }
    found = await world.client.data(STATS, d=str(deployment["_id"]), w=odd, b="2h")
    stats = found["deployment"]["stats"]
    first = start + timedelta(minutes=7)
    assert (stats["from"], stats["to"]) == (_iso(first), _iso(start + timedelta(minutes=170)))
    buckets = [
        int((c - first).total_seconds() // 7200)
        for c in slots.created
        if first <= c < start + timedelta(minutes=170)
    ]
    assert [b["predictionCount"] for b in stats["champion"][0]["buckets"]] == np.bincount(
        buckets
    ).tolist()

    # only the shadow's version
    only = await world.client.data(
        STATS, d=str(deployment["_id"]), w=window, v=str(deployment["shadowVersionId"])
    )
    assert only["deployment"]["stats"]["champion"] == []
    assert only["deployment"]["stats"]["shadow"][0]["total"]["predictionCount"] == 700

    # drift from the reference window, and from the window itself
    ref_start = start - timedelta(hours=10)
    body = await world.client.data(
        DRIFT, d=str(deployment["_id"]), w=window,
        rf=_iso(ref_start), rt=_iso(ref_start + timedelta(hours=3)),
    )  # fmt: skip
    drift = body["deployment"]["stats"]["drift"]
    ref_scores = reference.champion.all_scores
    assert (drift["objectCount"], drift["referenceObjectCount"]) == (len(scores), len(ref_scores))

    def independent_psi(a: np.ndarray, b: np.ndarray) -> float:
        p, q = np.maximum(a / a.sum(), 1e-4), np.maximum(b / b.sum(), 1e-4)
        return float(np.sum((p - q) * np.log(p / q)))

    score_psi = independent_psi(
        np.bincount(scores, minlength=101), np.bincount(ref_scores, minlength=101)
    )
    labels_now, labels_ref = Counter(slots.all_labels), Counter(reference.champion.all_labels)
    label_psi = independent_psi(
        np.array([labels_now[x] for x in LABELS]), np.array([labels_ref[x] for x in LABELS])
    )
    assert drift["scorePsi"] == {
        "value": pytest.approx(score_psi, rel=1e-9),
        "moderateThreshold": 0.1,
        "significantThreshold": 0.25,
        "verdict": "SIGNIFICANT",
    }
    assert score_psi > 0.25
    assert drift["labelPsi"]["value"] == pytest.approx(label_psi, rel=1e-9)
    assert drift["labelPsi"]["verdict"] == ("MODERATE" if label_psi <= 0.25 else "SIGNIFICANT")
    ks = scipy_stats.ks_2samp(scores / 100, ref_scores / 100)
    n, m = len(scores), len(ref_scores)
    critical = 1.358 * np.sqrt((n + m) / (n * m))
    assert drift["scoreKs"] == {
        "d": pytest.approx(ks.statistic, abs=1e-12),
        "criticalValue": pytest.approx(critical, rel=1e-12),
        "alpha": 0.05,
        "drifted": True,
    }
    itself = await world.client.data(
        DRIFT, d=str(deployment["_id"]), w=window, rf=window["from"], rt=window["to"]
    )
    same = itself["deployment"]["stats"]["drift"]
    assert same["scorePsi"] == {**same["scorePsi"], "value": 0.0, "verdict": "STABLE"}
    assert same["scoreKs"]["d"] == 0.0
    assert not same["scoreKs"]["drifted"]


async def test_two_concurrent_sweeps_roll_each_slot_up_exactly_once(member, db):
    world = await make_world(member)
    deployment = await _deployment(world, db)
    history = History(deployment, np.random.default_rng(5))
    await db.predicted_assets.insert_many(
        history.assets(_start(), timedelta(hours=2), 1500, _uniform, [0.4, 0.4, 0.2])
    )
    rolled = await asyncio.gather(roll_up(db, batch=400), roll_up(db, batch=400))
    assert sum(rolled) == 2 * 1500
    assert await roll_up(db) == 0
    expected = {"assets": len(history.champion.created), "failed": history.champion.failed}
    for unit in ("minute", "hour"):
        totals: Counter[str] = Counter()
        async for rollup in db.deployment_rollups.find({"role": "champion", "unit": unit}):
            totals.update({k: v for k, v in rollup["counts"].items() if k in expected})
        assert totals == expected, unit
    for role in ("champion", "shadow"):
        assert await db.predicted_assets.count_documents({f"rolledUp.{role}": True}) == 1500
    # deleting the deployment takes its rollups with it
    delete = "mutation($id: ID!) { deleteDeployment(id: $id) }"
    await world.client.data(delete, id=str(deployment["_id"]))
    assert await db.deployment_rollups.count_documents({}) == 0


async def test_bad_windows_are_refused_and_only_readers_of_the_deployment_see_stats(member, db):
    world = await make_world(member)
    deployment = await _deployment(world, db)
    d = str(deployment["_id"])
    start = _start()
    good = {"since": "24h"}
    cases = [
        ({"w": {}}, "no start"),
        ({"w": {"from": _iso(start), "since": "1h"}}, "both starts"),
        ({"w": {"since": "a while"}}, "bad duration"),
        ({"w": {"since": "0"}}, "empty"),
        ({"w": {"from": _iso(start), "to": _iso(start - timedelta(hours=1))}}, "reversed"),
        ({"w": {"since": "32d"}}, "too long"),
        ({"w": {"since": "31d"}, "b": "1m"}, "too many buckets"),
        ({"w": good, "b": "30s"}, "part of a minute"),
        ({"w": good, "b": "1w"}, "bad unit"),
        ({"w": good, "v": "not-an-id"}, "bad version id"),
    ]
    for variables, case in cases:
        assert await world.client.code(STATS, d=d, **variables) == "BAD_USER_INPUT", case
    reversed_reference = {"rf": _iso(start), "rt": _iso(start - timedelta(hours=1))}
    assert await world.client.code(DRIFT, d=d, w=good, **reversed_reference) == "BAD_USER_INPUT"
    answer = await world.client.data(STATS, d=d, w={"since": "30d"}, b="1d")
    assert len(answer["deployment"]["stats"]["champion"]) == 0

    rival = await make_world(member, org="rival")
    assert await rival.client.code(STATS, d=d, w=good) == "NOT_FOUND"
    for case in ALL_CASES:
        client = await project_caller(member, world, case)
        outcome = await _attempt(client, STATS, d=d, w=good)
        assert outcome == (None if project_visible(case) else "NOT_FOUND"), case.id


TRAINING_DRIFT = """query($d: ID!, $w: StatsWindowInput!, $ds: ID!, $run: ID) {
  deployment(id: $d) { stats(window: $w) { trainingDrift(datasetId: $ds, modelRunId: $run) {
    datasetId modelRunId objectCount referenceLabelCount referenceScoreCount
    labelPsi { value verdict } scorePsi { value } scoreKs { d criticalValue drifted } } } } }"""


def _numpy_psi(a: np.ndarray, b: np.ndarray) -> float:
    p, q = np.maximum(a / a.sum(), 1e-4), np.maximum(b / b.sum(), 1e-4)
    return float(np.sum((p - q) * np.log(p / q)))


async def test_training_drift_compares_the_window_with_a_dataset_and_a_model_run(member, db):
    world = await make_world(member)
    deployment = await _deployment(world, db)
    start = _start()
    window = {"from": _iso(start), "to": _iso(start + HOURS_3)}
    current = History(deployment, np.random.default_rng(13))
    await db.predicted_assets.insert_many(
        current.assets(start, HOURS_3, 300, _uniform, [0.6, 0.3, 0.1])
    )
    await roll_up(db)
    rng = np.random.default_rng(17)
    items = [(await world.upload(f"t{n}.png", image_bytes("PNG", 8, 8)))["id"] for n in range(4)]
    truth = [str(x) for x in rng.choice(LABELS, size=80, p=[0.2, 0.3, 0.5])]
    await world.client.data(
        CREATE_MANY,
        inputs=[{"itemId": items[n % 4], "type": "CLASSIFICATION", "label": label}
                for n, label in enumerate(truth)],
    )  # fmt: skip
    run = await world.client.data(
        CREATE_RUN,
        input={"modelVersionId": str(deployment["championVersionId"]),
               "datasetId": world.dataset, "name": "training"},
    )  # fmt: skip
    run_id = run["createModelRun"]["id"]
    run_scores = rng.binomial(100, 0.8, size=90)
    await world.client.data(
        UPLOAD,
        run=run_id,
        p=[{"itemId": items[n % 4], "type": "CLASSIFICATION", "label": "car",
            "confidence": int(s) / 100, "annotationId": f"p{n}"}
           for n, s in enumerate(run_scores)],
        update=False,
    )  # fmt: skip
    answer = await world.client.data(
        TRAINING_DRIFT, d=str(deployment["_id"]), w=window, ds=world.dataset, run=run_id
    )
    drift = answer["deployment"]["stats"]["trainingDrift"]
    scores = current.champion.all_scores
    assert (drift["objectCount"], drift["referenceLabelCount"], drift["referenceScoreCount"]) == (
        len(scores), 80, 90,
    )  # fmt: skip
    now_labels, truth_labels = Counter(current.champion.all_labels), Counter(truth)
    label_psi = _numpy_psi(
        np.array([now_labels[x] for x in LABELS]), np.array([truth_labels[x] for x in LABELS])
    )
    assert drift["labelPsi"]["value"] == pytest.approx(label_psi, rel=1e-9)
    score_psi = _numpy_psi(
        np.bincount(scores, minlength=101), np.bincount(run_scores, minlength=101)
    )
    assert drift["scorePsi"]["value"] == pytest.approx(score_psi, rel=1e-9)
    ks = scipy_stats.ks_2samp(scores / 100, run_scores / 100)
    assert drift["scoreKs"]["d"] == pytest.approx(ks.statistic, abs=1e-12)
    assert drift["scoreKs"]["drifted"] is True
    # without a run: labels only; another project's run or dataset is refused
    labels_only = await world.client.data(
        TRAINING_DRIFT, d=str(deployment["_id"]), w=window, ds=world.dataset
    )
    assert labels_only["deployment"]["stats"]["trainingDrift"]["scoreKs"] is None
    rival = await make_world(member, org="rival")
    for variables in ({"ds": rival.dataset}, {"ds": world.dataset, "run": str(ObjectId())}):
        code = await world.client.code(
            TRAINING_DRIFT, d=str(deployment["_id"]), w=window, **variables
        )
        assert code == "BAD_USER_INPUT", variables
