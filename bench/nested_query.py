"""A nested read — organizations → projects → first dataset → 100 items → their annotations —
through Loom's `/graphql`, against a hand-written Starlette endpoint doing the same reads.

    .venv/bin/python bench/nested_query.py --seconds 8
    .venv/bin/python bench/nested_query.py --profile

Starts a throw-away embedded stack (real mongod + valkey) unless LOOM_MONGODB_URL and
LOOM_REDIS_URL are set, and seeds a fresh database directly with PyMongo (documents of exactly
the shape Loom's resolvers write): one organization with an owner key, one project, 10 datasets
x 2,000 items x 10 box annotations (200,000 annotations). Then three uvicorn servers, each in
its own process, answer the query below — 100 items and 1,000 annotations per response:

- loom: Loom's gateway, the query as GraphQL (it reads only the annotation fields a query
  selects);
- baseline: one Starlette route doing the same reads with PyMongo's async client (Loom's
  authentication as its gateway runs it — the cache of found keys kept by a change feed — then
  one find per level, one `$in` find for the annotations) and returning the same nested JSON;
- projected: the same route with each find reading only the fields the response needs.

Each is loaded in turn by `--concurrency` keep-alive connections (default 16); every response
is checked (no errors, exactly 100 items and 1,000 annotations). The script prints requests/s,
p50/p99 latency, the MongoDB commands per request (counted by a PyMongo CommandListener inside
each server, read at `/commands` just before and after the measured window), the CPU split,
and the ratios against the goal (Loom within 3x of the baseline), and to the projected route.

`--profile` instead runs the query in-process (httpx.ASGITransport, no network, one request at
a time) under cProfile and prints where Loom's time goes.
"""

import argparse
import asyncio
import contextlib
import cProfile
import io
import json
import pstats
import random
import sys
import sysconfig
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import harness
import httpx
from harness import REPO, BadResponse, Result, Server
from pymongo import monitoring

EMAIL = "bench-owner@loom.dev"
ITEM_FIELDS = ("name", "width", "height", "metadata")
DATASETS = 10
ITEMS_PER_DATASET = 2_000
ANNOTATIONS_PER_ITEM = 10
PAGE = 100
EXPECTED_ITEMS = PAGE
EXPECTED_ANNOTATIONS = PAGE * ANNOTATIONS_PER_ITEM
GOAL = 3.0
SEED_BATCH = 5_000
SEED_PARALLEL = 3
QUERY = (
    "{ organizations { nodes { name projects { nodes { name datasets(first: 1) { nodes { name "
    f"items(first: {PAGE}) {{ nodes {{ id name width height metadata "
    "annotations { id label coordinates } } } } } } } } } }"
)
LABELS = ("car", "pedestrian", "cyclist", "truck", "bus", "traffic light", "traffic sign")
CAMERAS = ("front", "left", "right")
IMAGE_SIZES = ((1920, 1080), (1280, 720), (1600, 900), (1024, 768))


# --- server mode: `nested_query.py --serve {loom,baseline} --port N` in a child process -------


class CommandCounter(monitoring.CommandListener):
    """Counts the MongoDB commands this process starts, by name (a PyMongo CommandListener)."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.counts[event.command_name] += 1

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


def with_commands_route(app: Any, counter: CommandCounter) -> Any:
    """`app`, plus `GET /commands`: the counts so far as JSON (touches no database)."""

    async def wrapped(scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != "/commands":
            await app(scope, receive, send)
            return
        body = json.dumps(counter.counts).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return wrapped


def baseline_app(settings: Any, projected: bool = False) -> Any:
    """The query's reads written by hand: Loom's authentication, then one find per level;
    `projected`, each find reading only the fields the response needs."""
    from bson import ObjectId
    from starlette.requests import Request
    from starlette.responses import JSONResponse

    from gateway.context import bearer_key

    db = harness.loom_database(settings)

    by_name = [("name", 1), ("_id", 1)]

    def fields(*names: str) -> dict[str, int] | None:
        return dict.fromkeys(names, 1) if projected else None

    async def projects_of(org_id: ObjectId) -> list[dict[str, Any]]:
        cursor = db.projects.find({"orgId": org_id}, fields("name"))
        return await cursor.sort(by_name).limit(20).to_list()

    async def first_dataset(project_id: ObjectId) -> list[dict[str, Any]]:
        query = {"projectId": project_id, "deleting": False}
        return await db.datasets.find(query, fields("name")).sort(by_name).limit(1).to_list()

    async def items_of(dataset_id: ObjectId) -> list[dict[str, Any]]:
        cursor = db.items.find({"datasetId": dataset_id}, fields(*ITEM_FIELDS))
        return await cursor.sort([("filename", 1), ("_id", 1)]).limit(PAGE).to_list()

    async def graphql(request: Request) -> JSONResponse:
        access, _ = await request.app.state.authenticate(bearer_key(request.headers) or "")
        orgs = await (
            db.organizations.find({"_id": {"$in": list(access.org_roles)}}, fields("name"))
            .sort(by_name)
            .limit(20)
            .to_list()
        )
        projects = await asyncio.gather(*(projects_of(o["_id"]) for o in orgs))
        datasets = await asyncio.gather(*(first_dataset(p["_id"]) for ps in projects for p in ps))
        items = await asyncio.gather(*(items_of(d["_id"]) for ds in datasets for d in ds))
        item_ids = [i["_id"] for page in items for i in page]
        annotations: dict[ObjectId, list[dict[str, Any]]] = {i: [] for i in item_ids}
        query = {"itemId": {"$in": item_ids}}
        cursor = db.annotations.find(query, fields("itemId", "label", "coordinates")).sort(
            [("itemId", 1), ("_id", 1)]
        )
        async for a in cursor:
            annotations[a["itemId"]].append(
                {"id": str(a["_id"]), "label": a["label"], "coordinates": a["coordinates"]}
            )
        pages = iter(items)
        dataset_lists = iter(datasets)

        def item_node(i: dict[str, Any]) -> dict[str, Any]:
            return {
                "id": str(i["_id"]),
                "name": i["name"],
                "width": i["width"],
                "height": i["height"],
                "metadata": i["metadata"],
                "annotations": annotations[i["_id"]],
            }

        def dataset_node(d: dict[str, Any]) -> dict[str, Any]:
            return {"name": d["name"], "items": {"nodes": [item_node(i) for i in next(pages)]}}

        def project_node(p: dict[str, Any]) -> dict[str, Any]:
            nodes = [dataset_node(d) for d in next(dataset_lists)]
            return {"name": p["name"], "datasets": {"nodes": nodes}}

        org_nodes = [
            {"name": o["name"], "projects": {"nodes": [project_node(p) for p in ps]}}
            for o, ps in zip(orgs, projects, strict=True)
        ]
        return JSONResponse({"data": {"organizations": {"nodes": org_nodes}}})

    return harness.authenticating_app(db, graphql)


def serve(kind: str, port: int, parent: int) -> None:
    from gateway.settings import Settings

    counter = CommandCounter()
    monitoring.register(counter)  # before any client exists: every client of this process
    app = harness.loom_app() if kind == "loom" else baseline_app(Settings(), kind == "projected")
    harness.run_uvicorn(with_commands_route(app, counter), port, parent, websockets=kind == "loom")


# --- seeding ------------------------------------------------------------------------------------


def _png(width: int, height: int, shade: int) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (shade, 90, 160)).save(buffer, "PNG")
    return buffer.getvalue()


def _item(
    owner: Any, dataset: dict[str, Any], index: int, blob: Any, rng: random.Random
) -> dict[str, Any]:
    """An item as `resolvers.items.upload_item` writes it (already annotated)."""
    from resolvers import directories
    from resolvers.timestamps import new_document

    name = f"frame-{index:05d}.png"
    directory = "/val" if index % 5 == 4 else "/train"
    return new_document(
        owner,
        orgId=dataset["orgId"],
        projectId=dataset["projectId"],
        datasetId=dataset["_id"],
        name=name,
        dir=directory,
        filename=directories.join(directory, name),
        type="file",
        mimetype="image/png",
        size=blob.size,
        width=blob.width,
        height=blob.height,
        sha256=blob.sha256,
        metadata={
            "user": {
                "camera": CAMERAS[index % len(CAMERAS)],
                "sequence": index // 50,
                "frame": index % 50,
                "weather": rng.choice(("clear", "rain", "fog")),
                "night": rng.random() < 0.3,
            },
            "system": {"originalName": name},
        },
        tags=["night"] if index % 7 == 0 else [],
        description="",
        hidden=False,
        annotated=True,
        annotationsCount=ANNOTATIONS_PER_ITEM,
    )


def _annotation(
    owner: Any, item: dict[str, Any], number: int, model_id: str, rng: random.Random
) -> dict[str, Any]:
    """A box as `resolvers.annotations._document` writes it; every other one by a model."""
    from resolvers.timestamps import new_document

    width, height = item["width"], item["height"]
    left, top = rng.uniform(0, width - 50), rng.uniform(0, height - 50)
    right = min(width, left + rng.uniform(8, 400))
    bottom = min(height, top + rng.uniform(8, 300))
    automated = number % 2 == 0
    return new_document(
        owner,
        orgId=item["orgId"],
        projectId=item["projectId"],
        datasetId=item["datasetId"],
        itemId=item["_id"],
        type="box",
        label=rng.choice(LABELS),
        coordinates={
            "left": round(left, 2),
            "top": round(top, 2),
            "right": round(right, 2),
            "bottom": round(bottom, 2),
        },
        attributes={},
        status="clear",
        automated=automated,
        parentId=None,
        objectId=None,
        frames=[],
        modelInfo={
            "name": "yolov8x",
            "modelId": model_id,
            "confidence": round(rng.uniform(0.3, 0.99), 4),
        }
        if automated
        else None,
        metadata={"user": {}},
    )


async def seed(db: Any) -> str:
    """The benchmark's data; returns the organization owner's API key."""
    from bson import ObjectId

    from gateway.bootstrap import create_key
    from gateway.indexes import ensure_indexes
    from resolvers import files, labels, memberships
    from resolvers.access import OrgRole, ProjectRole
    from resolvers.inputs import parse
    from resolvers.memberships import PROJECT_MEMBERS
    from resolvers.timestamps import new_document, now
    from resolvers.transactions import in_transaction

    await ensure_indexes(db)
    key, key_doc = await create_key(db, "Bench", OrgRole.OWNER, EMAIL, "bench")
    owner, org_id = key_doc["userId"], key_doc["orgId"]

    # As resolvers.projects.create_project: the project and its owner, in one transaction.
    project = new_document(
        owner,
        orgId=org_id,
        name="Street scenes",
        description="Dash-cam frames",
        archived=False,
        membersVersion=0,
    )

    async def create_project(session: Any) -> None:
        await db.projects.insert_one(project, session=session)
        await memberships.insert_member(
            db, PROJECT_MEMBERS, project, owner, ProjectRole.OWNER, owner, session
        )

    await in_transaction(db, create_project)

    # A few shared images, stored as resolvers.files does (GridFS + a reference-counted blob).
    blobs = []
    for shade, (width, height) in enumerate(IMAGE_SIZES):
        content = io.BytesIO(_png(width, height, 40 * shade))
        blobs.append(await files.write(db, content, f"frame-{width}x{height}.png"))
    ontology = labels.add(
        [],
        [
            parse(
                labels.Label,
                {"name": name, "attributes": [{"key": "occluded", "type": "yesNo"}]}
                if name == "car"
                else {"name": name},
            )
            for name in LABELS
        ],
    )
    items_per_blob = Counter(i % len(blobs) for i in range(ITEMS_PER_DATASET))
    await db.blobs.insert_many(
        [
            {
                "_id": blob.sha256,
                "gridfsId": blob.gridfs_id,
                "size": blob.size,
                "mimetype": "image/png",
                "refs": items_per_blob[n] * DATASETS,
                "createdAt": now(),
            }
            for n, blob in enumerate(blobs)
        ]
    )
    model_id = str(ObjectId())
    limit = asyncio.Semaphore(SEED_PARALLEL)

    async def dataset(number: int) -> None:
        # As resolvers.datasets.create_dataset, with the counters its items moved.
        doc = new_document(
            owner,
            orgId=org_id,
            projectId=project["_id"],
            name=f"drive-{number:02d}",
            description="",
            readonly=False,
            labels=ontology,
            labelsVersion=0,
            directories=["/", "/train", "/val"],
            itemsCount=ITEMS_PER_DATASET,
            annotationsCount=ITEMS_PER_DATASET * ANNOTATIONS_PER_ITEM,
            deleting=False,
        )
        rng = random.Random(number)
        async with limit:
            await db.datasets.insert_one(doc)
            items = [
                _item(owner, doc, i, blobs[i % len(blobs)], rng) for i in range(ITEMS_PER_DATASET)
            ]
            await db.items.insert_many(items, ordered=False)
            batch: list[dict[str, Any]] = []
            for item in items:
                batch += (
                    _annotation(owner, item, n, model_id, rng) for n in range(ANNOTATIONS_PER_ITEM)
                )
                if len(batch) >= SEED_BATCH:
                    await db.annotations.insert_many(batch, ordered=False)
                    batch = []
            if batch:
                await db.annotations.insert_many(batch, ordered=False)

    await asyncio.gather(*(dataset(n) for n in range(DATASETS)))
    return key


def seed_database(mongodb_url: str, db_name: str) -> str:
    started = time.perf_counter()

    async def work(_: Any, db: Any) -> str:
        key = await seed(db)
        counts = {
            name: await db[name].estimated_document_count()
            for name in ("datasets", "items", "annotations")
        }
        print(
            f"seeded 1 organization, 1 project, {counts['datasets']} datasets, "
            f"{counts['items']:,} items, {counts['annotations']:,} annotations "
            f"in {time.perf_counter() - started:.1f}s",
            flush=True,
        )
        return key

    return asyncio.run(harness.with_db(mongodb_url, db_name, work))


# --- checks and measurements --------------------------------------------------------------------


def check(status: int, body: bytes) -> None:
    """A 200 without errors holding exactly EXPECTED_ITEMS items and EXPECTED_ANNOTATIONS
    annotations, whoever answered."""
    if status != 200:
        raise BadResponse(f"HTTP {status}: {body[:500]!r}")
    parsed = json.loads(body)
    if parsed.get("errors"):
        raise BadResponse(f"errors: {str(parsed['errors'])[:500]}")
    items = annotations = 0
    try:
        for org in parsed["data"]["organizations"]["nodes"]:
            for project in org["projects"]["nodes"]:
                for dataset in project["datasets"]["nodes"]:
                    for item in dataset["items"]["nodes"]:
                        items += 1
                        annotations += len(item["annotations"])
    except (KeyError, TypeError) as exc:
        raise BadResponse(f"unexpected shape ({exc!r}): {str(parsed)[:500]}") from exc
    if items != EXPECTED_ITEMS or annotations != EXPECTED_ANNOTATIONS:
        raise BadResponse(
            f"{items} items and {annotations} annotations, expected "
            f"{EXPECTED_ITEMS} and {EXPECTED_ANNOTATIONS}"
        )


def commands_snapshot(server: Server) -> Any:
    async def snapshot() -> Counter[str]:
        async with httpx.AsyncClient() as client:
            response = await client.get(f"{server.url}/commands")
            response.raise_for_status()
            return Counter(response.json())

    return snapshot


def commands_per_request(result: Result) -> tuple[float, dict[str, float]]:
    before, after = result.snapshots
    used = after - before
    per_name = {name: n / result.requests for name, n in sorted(used.items())}
    return sum(used.values()) / result.requests, per_name


def report(loom: Result, baseline: Result, projected: Result) -> bool:
    columns = (*harness.RESULT_COLUMNS[:5], "mongo cmds/req", *harness.RESULT_COLUMNS[5:])
    rows = [columns]
    breakdown = []
    for r in (baseline, projected, loom):
        total, per_name = commands_per_request(r)
        row = harness.result_row(r)
        rows.append((*row[:5], f"{total:.2f}", *row[5:]))
        breakdown.append(
            f"  {r.name}: " + ", ".join(f"{name} {n:.2f}" for name, n in per_name.items())
        )
    harness.print_table(rows)
    print("mongo commands per request, by command:")
    print("\n".join(breakdown))
    latency = loom.percentile(50) / baseline.percentile(50)
    throughput = baseline.rps / loom.rps
    met = latency <= GOAL and throughput <= GOAL
    print(
        f"\nratio loom_p50 / baseline_p50 = {latency:.2f}x (goal <= {GOAL:g}x: "
        f"{'MET' if latency <= GOAL else 'NOT MET'})"
    )
    print(
        f"ratio baseline_rps / loom_rps = {throughput:.2f}x (goal <= {GOAL:g}x: "
        f"{'MET' if throughput <= GOAL else 'NOT MET'})"
    )
    print(
        f"ratio projected_rps / loom_rps = {projected.rps / loom.rps:.2f}x (against the "
        "hand-written route that also reads only the fields the response needs, as Loom does)"
    )
    harness.print_cpu_legend()
    return met


def background_cores(seconds: float = 1.0) -> str:
    """Cores' worth of CPU the machine spends before the benchmark starts anything: other
    work sharing the cores skews every figure."""
    busy0 = harness.machine_busy_s()
    time.sleep(seconds)
    busy1 = harness.machine_busy_s()
    return harness.cores(None if busy0 is None or busy1 is None else (busy1 - busy0) / seconds)


def benchmark(seconds: float, warmup: int, concurrency: int) -> int:
    print(f"machine: {harness.machine_info(concurrency)}", flush=True)
    print(f"background load before the run: {background_cores()} cores busy", flush=True)
    servers: list[Server] = []
    with harness.database_urls() as (mongodb_url, redis_url, origin):
        db_name = f"bench_{uuid.uuid4().hex[:12]}"
        print(f"databases: {origin}; db={db_name}", flush=True)
        try:
            key = seed_database(mongodb_url, db_name)
            env = harness.server_env(mongodb_url, redis_url, db_name)
            kinds = ("loom", "baseline", "projected")
            servers = [Server(__file__, kind, env) for kind in kinds]
            loom, baseline, projected = servers
            loom.wait_ready(httpx.Request("GET", f"{loom.url}/readyz"))
            body = json.dumps({"query": QUERY}).encode()
            headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}
            for hand_written in (baseline, projected):
                hand_written.wait_ready(
                    httpx.Request(
                        "POST", f"{hand_written.url}/graphql", headers=headers, content=body
                    )
                )
            print(f"servers ready: {harness.describe(servers)}", flush=True)
            sizes = {}
            for server in servers:
                answer = httpx.post(f"{server.url}/graphql", headers=headers, content=body)
                check(answer.status_code, answer.content)
                sizes[server.kind] = len(answer.content)
            print(
                "response bytes: " + ", ".join(f"{kind} {size:,}" for kind, size in sizes.items()),
                flush=True,
            )
            request = harness.post_request("/graphql", body, key)

            def load(server: Server) -> Result:
                return harness.run_load(
                    server.kind,
                    server,
                    request,
                    check,
                    concurrency,
                    warmup,
                    seconds,
                    commands_snapshot(server),
                )

            baseline_result = load(baseline)
            projected_result = load(projected)
            loom_result = load(loom)
            report(loom_result, baseline_result, projected_result)
        finally:
            for server in servers:
                server.stop()
            with contextlib.suppress(Exception):
                harness.drop_database(mongodb_url, db_name)
    return 0


# --- profile ------------------------------------------------------------------------------------

SITE_PACKAGES = Path(sysconfig.get_paths()["purelib"])
PLAT_PACKAGES = Path(sysconfig.get_paths()["platlib"])
STDLIB = Path(sysconfig.get_paths()["stdlib"])


def _where(filename: str) -> tuple[str, str]:
    """(group, short path) of a profiled function's file: its package, Loom's top-level
    directory, or the standard library module."""
    path = Path(filename)
    for root, prefix in ((SITE_PACKAGES, ""), (PLAT_PACKAGES, ""), (REPO, "loom/"), (STDLIB, "")):
        with contextlib.suppress(ValueError):
            relative = path.relative_to(root)
            group = relative.parts[0].removesuffix(".py")
            if root == STDLIB:
                group = f"stdlib {group}"
            return prefix + group, str(relative)
    return "other", filename


def _builtin_group(name: str) -> str:
    for marker, group in (
        ("bson", "bson (C)"),
        ("pymongo", "pymongo (C)"),
        ("_json", "json (C)"),
        ("json", "json (C)"),
        ("uvloop", "uvloop (C)"),
        ("_asyncio", "asyncio (C)"),
        ("socket", "sockets (C)"),
    ):
        if marker in name:
            return group
    return "builtins"


def print_profile(stats: pstats.Stats, requests: int, top: int) -> None:
    entries = stats.stats  # type: ignore[attr-defined]
    total = sum(tt for _, _, tt, _, _ in entries.values())

    def label(key: tuple[str, int, str]) -> str:
        filename, line, name = key
        if filename == "~":
            return name
        return f"{_where(filename)[1]}:{line}({name})"

    def table(title: str, order: int, count: int, only: tuple[str, ...] = ("",)) -> None:
        print(f"\n{title} (ms per request = seconds / {requests} requests)")
        print(f"{'calls':>9} {'tottime ms':>10} {'cumtime ms':>10}  function")
        chosen = [kv for kv in entries.items() if kv[0][0].startswith(only)]
        ranked = sorted(chosen, key=lambda kv: kv[1][order], reverse=True)[:count]
        for key, (_, calls, tt, ct, _) in ranked:
            per = 1000 / requests
            print(f"{calls:>9} {tt * per:>10.3f} {ct * per:>10.3f}  {label(key)}")

    print(
        "\ncoroutines: each resumption counts as a call, and cumulative time covers the time a "
        "coroutine runs, not the time it waits (DataLoader batches run in their own tasks)"
    )
    table(f"top {top} by cumulative time", 3, top)
    table("top 20 by own time", 2, 20)
    loom = tuple(str(REPO / d) for d in ("gateway", "resolvers", "schema", "triggers"))
    table("Loom's own functions, top 15 by cumulative time", 3, 15, only=loom)
    groups: Counter[str] = Counter()
    for (filename, _, name), (_, _, tt, _, _) in entries.items():
        groups[_builtin_group(name) if filename == "~" else _where(filename)[0]] += tt
    print(f"\nown time by package (total {total * 1000 / requests:.2f} ms per request)")
    for group, tt in groups.most_common(18):
        print(f"  {group:<28} {tt * 1000 / requests:7.2f} ms  {100 * tt / total:5.1f} %")


async def _profile_run(
    settings: Any, key: str, requests: int, warmup: int
) -> tuple[dict[str, float], pstats.Stats]:
    from gateway import logs
    from gateway.app import create_app

    logs.configure("WARNING")
    body = json.dumps({"query": QUERY}).encode()
    headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}
    loom, baseline = create_app(settings), baseline_app(settings)
    profiler = cProfile.Profile()

    async def timed(app: Any, n: int, profiled: bool = False) -> float:
        """ms per request, one at a time; responses are checked after the timing (and the
        profile) ends."""
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            if profiled:
                profiler.enable()
            started = time.perf_counter()
            responses = [
                await client.post("/graphql", content=body, headers=headers) for _ in range(n)
            ]
            elapsed = time.perf_counter() - started
            if profiled:
                profiler.disable()
        for response in responses:
            check(response.status_code, response.content)
        return elapsed * 1000 / n

    async with (
        loom.router.lifespan_context(loom),
        baseline.router.lifespan_context(baseline),
    ):
        await timed(loom, warmup)
        await timed(baseline, warmup)
        figures = {"loom": await timed(loom, requests), "baseline": await timed(baseline, requests)}
        figures["loom under cProfile"] = await timed(loom, requests, profiled=True)
    return figures, pstats.Stats(profiler)


def profile(requests: int, warmup: int, top: int, dump: str | None) -> int:
    from gateway.settings import Settings

    machine = harness.machine_info(1).partition("; uvicorn")[0]
    print(f"machine: {machine}; loop={harness.LOOP_IMPL}", flush=True)
    print(f"background load before the run: {background_cores()} cores busy", flush=True)
    with harness.database_urls() as (mongodb_url, redis_url, origin):
        db_name = f"bench_{uuid.uuid4().hex[:12]}"
        print(f"databases: {origin}; db={db_name}", flush=True)
        try:
            key = seed_database(mongodb_url, db_name)
            settings = Settings(
                mongodb_url=mongodb_url, redis_url=redis_url, db_name=db_name, log_level="WARNING"
            )
            print(
                f"in-process (httpx.ASGITransport, one request at a time): {warmup} warm-up "
                f"requests each, then {requests} timed, then {requests} under cProfile ...",
                flush=True,
            )
            figures, stats = harness.run_async(_profile_run(settings, key, requests, warmup))
            print(
                "ms per request: "
                + ", ".join(f"{name} {ms:.2f}" for name, ms in figures.items())
                + f"  (loom / baseline = {figures['loom'] / figures['baseline']:.2f}x)"
            )
            print_profile(stats, requests, top)
            if dump:
                stats.dump_stats(dump)
                print(f"\nprofile written to {dump} (python -m pstats {dump})")
        finally:
            with contextlib.suppress(Exception):
                harness.drop_database(mongodb_url, db_name)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="measured duration per server")
    parser.add_argument("--warmup", type=int, default=32, help="warm-up requests per server")
    parser.add_argument("--concurrency", type=int, default=16, help="keep-alive connections")
    parser.add_argument(
        "--profile", action="store_true", help="profile Loom in-process instead of loading it"
    )
    parser.add_argument("--profile-requests", type=int, default=200, help="requests profiled")
    parser.add_argument("--top", type=int, default=25, help="functions listed by the profile")
    parser.add_argument("--profile-out", metavar="PATH", help="also write the pstats file there")
    parser.add_argument(
        "--serve", choices=["loom", "baseline", "projected"], help=argparse.SUPPRESS
    )
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--parent", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port, args.parent)
        return 0
    try:
        if args.profile:
            return profile(args.profile_requests, args.warmup, args.top, args.profile_out)
        return benchmark(args.seconds, args.warmup, args.concurrency)
    except BadResponse as exc:
        print(f"\nFAILED: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
