"""What Loom's benchmarks share: databases, uvicorn servers in child processes, a lean
keep-alive HTTP/1.1 load generator, CPU accounting and result tables.

A benchmark script runs in two modes: the benchmark itself, and `--serve KIND --port N
--parent PID` in a child process, where it builds its app and hands it to `run_uvicorn`.
`Server` starts such a child from the benchmark; `run_load` drives it with `concurrency`
keep-alive connections and returns a `Result`.
"""

import asyncio
import contextlib
import ctypes
import os
import platform
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import httpx  # noqa: E402

READY_TIMEOUT_S = 60.0


def _has(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


HTTP_IMPL = "httptools" if _has("httptools") else "h11"
LOOP_IMPL = "uvloop" if _has("uvloop") else "asyncio"


# --- server mode: a child process running uvicorn -------------------------------------------


def _exit_with_parent(parent: int) -> None:
    """A server whose benchmark died (even by SIGKILL) must not outlive it."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def run_uvicorn(app: Any, port: int, parent: int, websockets: bool = False) -> None:
    """Serve `app` on 127.0.0.1:`port` with Loom's uvicorn options, until terminated or until
    `parent` is gone."""

    from gateway.serving import run, uvicorn_config
    from gateway.settings import Settings

    _exit_with_parent(parent)
    config = uvicorn_config(
        app,
        Settings(),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        http=HTTP_IMPL,
        loop=LOOP_IMPL,
        **({} if websockets else {"ws": "none"}),
    )
    run(config)


def loom_app() -> Any:
    """Loom's gateway as `loom serve` builds it, configured by the LOOM_* environment."""
    from gateway import logs
    from gateway.app import create_app
    from gateway.settings import Settings

    logs.configure("WARNING")
    return create_app(Settings())


@contextlib.asynccontextmanager
async def loom_authentication(db: Any) -> AsyncIterator[Callable[[str], Awaitable[Any]]]:
    """`authenticate(key)` exactly as Loom's gateway does it, for the hand-written baselines:
    its cache of found keys, kept honest by a change feed of its own (gateway/auth_cache.py)."""
    from gateway.auth_cache import AuthCache
    from gateway.change_feed import ChangeFeed
    from gateway.settings import Settings

    settings = Settings()
    cache = AuthCache(settings.auth_cache_size, settings.auth_cache_max_age_s)
    feed = ChangeFeed(db, settings.subscription_queue_size, cache)
    await feed.start()
    await feed.ready()

    async def authenticate(key: str) -> Any:
        return await cache.authenticate(db, key)

    try:
        yield authenticate
    finally:
        await feed.stop()


def authenticating_app(db: Any, graphql: Callable[[Any], Awaitable[Any]]) -> Any:
    """A Starlette app with one route, `POST /graphql` → `graphql(request)`, where
    `request.app.state.authenticate(key)` authenticates as Loom does (`loom_authentication`
    over `db`): what every hand-written baseline stands on."""
    from starlette.applications import Starlette
    from starlette.routing import Route

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with loom_authentication(db) as authenticate:
            app.state.authenticate = authenticate
            yield

    return Starlette(routes=[Route("/graphql", graphql, methods=["POST"])], lifespan=lifespan)


def loom_database(settings: Any) -> Any:
    """The database `settings` name, through a client configured as Loom's."""
    from gateway.connections import mongo_client

    return mongo_client(str(settings.mongodb_url), settings)[settings.db_name]


def run_async(work: Awaitable[Any]) -> Any:
    """Run a coroutine on the event loop the servers use (uvloop when installed)."""
    if LOOP_IMPL == "uvloop":
        import uvloop

        return uvloop.run(work)
    return asyncio.run(work)


# --- databases --------------------------------------------------------------------------------


@contextlib.contextmanager
def database_urls() -> Iterator[tuple[str, str, str]]:
    """(mongodb_url, redis_url, origin): the caller's servers, or a throw-away embedded stack."""
    mongodb_url, redis_url = os.environ.get("LOOM_MONGODB_URL"), os.environ.get("LOOM_REDIS_URL")
    if mongodb_url and redis_url:
        yield mongodb_url, redis_url, "LOOM_MONGODB_URL / LOOM_REDIS_URL"
        return
    from gateway.embedded import EmbeddedStack

    with (
        tempfile.TemporaryDirectory(prefix="loom-bench-") as root,
        EmbeddedStack(Path(root) / "stack", persistent=False, lib_dir=REPO / ".loom" / "lib") as s,
    ):
        yield s.mongodb_url, s.redis_url, "embedded stack (throw-away)"


async def with_db(
    mongodb_url: str, db_name: str, work: Callable[[Any, Any], Awaitable[Any]]
) -> Any:
    """`work(client, db)` with a client configured as Loom's, closed afterwards."""
    from gateway.connections import mongo_client
    from gateway.settings import Settings

    client = mongo_client(mongodb_url, Settings(mongodb_url=mongodb_url))
    try:
        return await work(client, client[db_name])
    finally:
        await client.close()


def drop_database(mongodb_url: str, db_name: str) -> None:
    async def work(client: Any, _: Any) -> None:
        await client.drop_database(db_name)

    asyncio.run(with_db(mongodb_url, db_name, work))


def server_env(mongodb_url: str, redis_url: str, db_name: str) -> dict[str, str]:
    """The environment of a server child: Loom's settings pointing at the benchmark's data."""
    return {
        **os.environ,
        "LOOM_MONGODB_URL": mongodb_url,
        "LOOM_REDIS_URL": redis_url,
        "LOOM_DB_NAME": db_name,
        "LOOM_LOG_LEVEL": "WARNING",
    }


# --- benchmark mode: servers ------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """One uvicorn in a child process: `script --serve KIND --port N --parent PID [extra]`."""

    def __init__(
        self, script: str, kind: str, env: dict[str, str], extra: tuple[str, ...] = ()
    ) -> None:
        self.kind = kind
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        argv = [sys.executable, script, "--serve", kind, "--port", str(self.port)]
        argv += ["--parent", str(os.getpid()), *extra]
        self.process = subprocess.Popen(argv, cwd=REPO, env=env)

    def wait_ready(self, probe: httpx.Request) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        last = "no answer yet"
        with httpx.Client(timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise SystemExit(f"{self.kind} server exited with {self.process.returncode}")
                try:
                    response = client.send(probe)
                    if response.status_code == 200:
                        return
                    last = f"{response.status_code} {response.text[:200]}"
                except httpx.TransportError as exc:
                    last = repr(exc)
                time.sleep(0.05)
        raise SystemExit(f"{self.kind} server not ready after {READY_TIMEOUT_S}s: {last}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def describe(servers: list[Server]) -> str:
    return ", ".join(f"{s.kind} {s.url} (pid {s.process.pid})" for s in servers)


# --- Loom workers -----------------------------------------------------------------------------

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In a child, before exec: the kernel SIGTERMs it when the benchmark dies (Linux)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class LoomWorker:
    """One arq worker in a child process, as `loom worker` runs it (or `argv`, e.g. a worker a
    benchmark builds itself), in its own process group, output to `log`."""

    def __init__(self, env: dict[str, str], log: Path, argv: list[str] | None = None) -> None:
        self.log = log
        argv = argv or [sys.executable, "-m", "gateway.cli", "worker"]
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                argv,
                cwd=REPO,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            tail = self.log.read_text(errors="replace")[-2000:]
            raise SystemExit(f"worker {self.pid} exited with {self.process.returncode}:\n{tail}")

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (arq shuts down cleanly), SIGKILL if it takes longer than `timeout`."""
        if self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


class GatewayBench:
    """A benchmark's fresh database, one Loom gateway (the calling script in `--serve loom`
    mode) and one `loom worker` on it, an owner key, and GraphQL through the gateway;
    everything stopped and dropped on leaving."""

    def __init__(self, mongodb_url: str, redis_url: str) -> None:
        self.mongodb_url, self.redis_url = mongodb_url, redis_url
        self.db_name = f"bench_{uuid.uuid4().hex[:12]}"
        self.env = server_env(mongodb_url, redis_url, self.db_name)
        self.logs = Path(tempfile.mkdtemp(prefix="loom-bench-logs-"))
        self.server: Server | None = None
        self.worker: LoomWorker | None = None

    async def __aenter__(self) -> Any:
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

    async def start(self, script: str, email: str, worker: bool = True) -> dict[str, Any]:
        """Indexes, an owner key for `email` (kept for `graphql`), the gateway and (unless
        not `worker`) a worker running; the key's document (its `orgId`)."""
        from gateway.bootstrap import create_key
        from gateway.indexes import ensure_indexes
        from resolvers.access import OrgRole

        await ensure_indexes(self.db)
        key, key_doc = await create_key(self.db, "Bench", OrgRole.OWNER, email, "bench")
        self.headers = {"authorization": f"Bearer {key}"}
        self.server = Server(script, "loom", self.env)
        probe = httpx.Request("GET", f"{self.server.url}/readyz")
        await asyncio.to_thread(self.server.wait_ready, probe)
        if worker:
            self.worker = LoomWorker(self.env, self.logs / "worker.log")
        return key_doc

    async def graphql(self, client: httpx.AsyncClient, query: str, **variables: Any) -> Any:
        response = await client.post(
            "/graphql", json={"query": query, "variables": variables}, headers=self.headers
        )
        body = response.json()
        if body.get("errors"):
            raise SystemExit(f"GraphQL failed: {str(body)[:500]}")
        return body["data"]


def raise_open_files_limit() -> int:
    """Soft RLIMIT_NOFILE up to the hard limit (children inherit it); returns the new limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# --- CPU accounting ---------------------------------------------------------------------------


def process_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of one process so far (Linux /proc), None where unavailable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_s() -> float | None:
    """CPU seconds all cores spent not idle so far (Linux /proc/stat), None where unavailable."""
    try:
        ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    except (OSError, ValueError):
        return None
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """Cores' worth of CPU used during a window by the server, this load generator, and the rest
    (the databases, the other server idling, the OS)."""

    def __init__(self, server_pid: int) -> None:
        self.server_pid = server_pid

    def __enter__(self) -> "CpuMeter":
        self._t0 = time.perf_counter()
        self._server0 = process_cpu_s(self.server_pid)
        self._client0 = time.process_time()
        self._busy0 = machine_busy_s()
        return self

    def __exit__(self, *_: object) -> None:
        wall = time.perf_counter() - self._t0
        server1, busy1 = process_cpu_s(self.server_pid), machine_busy_s()
        self.client = (time.process_time() - self._client0) / wall
        self.server = None if server1 is None else (server1 - self._server0) / wall
        self.total = None if busy1 is None else (busy1 - self._busy0) / wall
        self.other = (
            None
            if self.total is None or self.server is None
            else max(0.0, self.total - self.server - self.client)
        )


class CpuWindow:
    """Cores' worth of CPU used during a window by named processes, this process, and the
    whole machine; 'other' is the rest (databases, the OS, processes not named)."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids

    def __enter__(self) -> "CpuWindow":
        self._t0 = time.perf_counter()
        self._cpu0 = {name: process_cpu_s(pid) for name, pid in self.pids.items()}
        self._self0 = time.process_time()
        self._busy0 = machine_busy_s()
        return self

    def __exit__(self, *_: object) -> None:
        self.seconds = wall = time.perf_counter() - self._t0
        self.cores: dict[str, float | None] = {}
        for name, pid in self.pids.items():
            before, after = self._cpu0[name], process_cpu_s(pid)
            self.cores[name] = None if before is None or after is None else (after - before) / wall
        self.cores["benchmark"] = (time.process_time() - self._self0) / wall
        busy1 = machine_busy_s()
        total = None if busy1 is None or self._busy0 is None else (busy1 - self._busy0) / wall
        known = [v for v in self.cores.values() if v is not None]
        self.cores["other"] = None if total is None else max(0.0, total - sum(known))
        self.cores["machine"] = total

    def summary(self) -> str:
        return ", ".join(f"{name} {cores(value)}" for name, value in self.cores.items())


def cores(value: float | None) -> str:
    return "?" if value is None else f"{value:.2f}"


# --- load generation --------------------------------------------------------------------------


@dataclass
class Result:
    name: str
    requests: int
    seconds: float
    latencies_ms: list[float]
    cpu: CpuMeter
    snapshots: tuple[Any, Any] = (None, None)
    """What `snapshot` (see `drive`) returned just before and just after the measured window."""

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    def percentile(self, p: float) -> float:
        return percentile(self.latencies_ms, p)


def percentile(values: list[float], p: float) -> float:
    """The value below which `p` % of `values` lie (nearest rank on the sorted values)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


class BadResponse(RuntimeError):
    pass


Check = Callable[[int, bytes], None]
"""Raises BadResponse unless (status, body) is the answer expected."""


class KeepAliveConnection:
    """A minimal HTTP/1.1 client on one keep-alive connection.

    A full client (httpx) spends more CPU per request than the bare server it measures, which
    would make the baseline a measure of the load generator; this one spends a fraction.
    """

    def __init__(self, port: int, request: bytes) -> None:
        self.port = port
        self.request = request

    async def __aenter__(self) -> "KeepAliveConnection":
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        return self

    async def __aexit__(self, *_: object) -> None:
        self.writer.close()
        await self.writer.wait_closed()

    async def send(self) -> tuple[int, bytes]:
        self.writer.write(self.request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        length = next(
            int(line.split(b":", 1)[1])
            for line in lines[1:]
            if line.lower().startswith(b"content-length:")
        )
        return status, await self.reader.readexactly(length)


def post_request(path: str, body: bytes, key: str) -> bytes:
    """The bytes of one HTTP/1.1 POST with a JSON body and a bearer key, sent again and again."""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {key}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def drive(
    name: str,
    server: Server,
    request: bytes,
    check: Check,
    concurrency: int,
    warmup: int,
    seconds: float,
    snapshot: Callable[[], Awaitable[Any]] | None = None,
) -> Result:
    """`concurrency` connections send `request`: `warmup` requests in all, then as many as fit
    in `seconds`, every response checked; latencies and CPU are recorded for the latter only.

    `snapshot()`, if given, runs when no request is in flight just before and just after the
    measured window (e.g. to read a server-side counter); both results land in the Result.
    """
    latencies: list[float] = []
    clock = time.perf_counter
    remaining = [warmup]
    warm = [0]
    warmed, started = asyncio.Event(), asyncio.Event()
    deadline = 0.0

    async def worker() -> None:
        async with KeepAliveConnection(server.port, request) as connection:
            while remaining[0] > 0:
                remaining[0] -= 1
                check(*await connection.send())
            warm[0] += 1
            if warm[0] == concurrency:
                warmed.set()
            await started.wait()
            while (begun := clock()) < deadline:
                check(*await connection.send())
                latencies.append((clock() - begun) * 1000)

    workers = [asyncio.create_task(worker()) for _ in range(concurrency)]
    await warmed.wait()
    before = await snapshot() if snapshot else None
    with CpuMeter(server.process.pid) as cpu:
        start = clock()
        deadline = start + seconds
        started.set()
        await asyncio.gather(*workers)
        elapsed = clock() - start
    after = await snapshot() if snapshot else None
    return Result(name, len(latencies), elapsed, latencies, cpu, (before, after))


def run_load(
    name: str,
    server: Server,
    request: bytes,
    check: Check,
    concurrency: int,
    warmup: int,
    seconds: float,
    snapshot: Callable[[], Awaitable[Any]] | None = None,
) -> Result:
    print(f"  {name}: {warmup} warm-up requests, then {seconds:g}s ...", flush=True)
    return run_async(drive(name, server, request, check, concurrency, warmup, seconds, snapshot))


# --- reporting --------------------------------------------------------------------------------


def machine_info(concurrency: int) -> str:
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else "?"
    return (
        f"cpu_count={os.cpu_count()} usable={affinity} {platform.machine()} "
        f"{platform.system()} {platform.release()}; python {platform.python_version()}; "
        f"uvicorn http={HTTP_IMPL} loop={LOOP_IMPL}; "
        f"concurrency={concurrency} (load generator shares the cores with servers and databases)"
    )


RESULT_COLUMNS = (
    "server",
    "requests",
    "req/s",
    "p50 ms",
    "p99 ms",
    "cpu:server",
    "cpu:loadgen",
    "cpu:other",
)


def result_row(r: Result) -> tuple[str, ...]:
    """One row under RESULT_COLUMNS."""
    return (
        r.name,
        str(r.requests),
        f"{r.rps:.1f}",
        f"{r.percentile(50):.2f}",
        f"{r.percentile(99):.2f}",
        cores(r.cpu.server),
        cores(r.cpu.client),
        cores(r.cpu.other),
    )


def print_table(rows: list[tuple[str, ...]]) -> None:
    """A header row, a rule, then the rows: first column left-aligned, the others right."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    print()
    for i, row in enumerate(rows):
        print(
            "  ".join(
                cell.rjust(w) if j else cell.ljust(w)
                for j, (cell, w) in enumerate(zip(row, widths, strict=True))
            )
        )
        if i == 0:
            print("  ".join("-" * w for w in widths))


def print_cpu_legend() -> None:
    print(
        "cpu columns: cores' worth of CPU during the measured window (of "
        f"{os.cpu_count()}); 'other' = mongod, valkey, the idle server, the OS"
    )
