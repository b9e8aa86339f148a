"""HTTP throughput of Loom's `/graphql` against a bare Starlette route, both behind real uvicorn.

    .venv/bin/python bench/http_baseline.py --seconds 8

Starts a throw-away embedded stack (real mongod + valkey) unless LOOM_MONGODB_URL and
LOOM_REDIS_URL are set, creates an organization and an owner key on a fresh database, then runs
three uvicorn servers, each in its own process: Loom's app; a bare Starlette app whose single
route answers the same JSON a `{ me { id email } }` query does; and a Starlette route doing
Loom's authentication lookup without GraphQL (to show what the GraphQL layer costs). 16
keep-alive connections, each driven by a lean HTTP/1.1 client coroutine, load each server in
turn (warm-up, then a fixed duration) and the script prints requests/s, p50 and p99 latency,
and the ratio loom_rps / bare_rps against the target.

The load generator runs on the same machine as the servers and the databases, so they share
its cores; the figures are a relative baseline, not an absolute capacity.
"""

import argparse
import asyncio
import contextlib
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import httpx  # noqa: E402

QUERY = "{ me { id email } }"
EMAIL = "bench-owner@loom.dev"
TARGET_RATIO = 0.5
CONCURRENCY = 16
READY_TIMEOUT_S = 60.0


def _has(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


HTTP_IMPL = "httptools" if _has("httptools") else "h11"
LOOP_IMPL = "uvloop" if _has("uvloop") else "asyncio"


# --- server mode: `http_baseline.py --serve {loom,bare} --port N` in a child process ---------


def _exit_with_parent(parent: int) -> None:
    """A server whose benchmark died (even by SIGKILL) must not outlive it."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _bare_app(user_id: str, email: str) -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def graphql(_: Request) -> JSONResponse:
        return JSONResponse({"data": {"me": {"id": user_id, "email": email}}})

    return Starlette(routes=[Route("/graphql", graphql, methods=["GET", "POST"])])


def _authenticated_app() -> Any:
    """Starlette doing Loom's authentication (the same one-aggregation lookup) without GraphQL:
    the gap to Loom is what the GraphQL layer costs."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from gateway.connections import mongo_client
    from gateway.settings import Settings
    from resolvers.api_keys import authenticate

    settings = Settings()
    db = mongo_client(str(settings.mongodb_url), settings)[settings.db_name]

    async def graphql(request: Request) -> JSONResponse:
        _, user = await authenticate(db, request.headers["authorization"].split(" ", 1)[1])
        return JSONResponse({"data": {"me": {"id": str(user["_id"]), "email": user["email"]}}})

    return Starlette(routes=[Route("/graphql", graphql, methods=["POST"])])


def _loom_app() -> Any:
    from gateway import logs
    from gateway.app import create_app
    from gateway.settings import Settings

    logs.configure("WARNING")
    return create_app(Settings())  # LOOM_* from the environment the benchmark passes


def serve(kind: str, port: int, parent: int, user_id: str, email: str) -> None:
    import uvicorn

    _exit_with_parent(parent)
    apps = {"loom": _loom_app, "auth": _authenticated_app}
    app = apps[kind]() if kind in apps else _bare_app(user_id, email)
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_config=None,
        log_level="warning",
        access_log=False,
        http=HTTP_IMPL,
        loop=LOOP_IMPL,
        ws="websockets-sansio" if kind == "loom" else "none",
        lifespan="on",
    )
    uvicorn.Server(config).run()


# --- benchmark mode -----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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


async def _with_db(mongodb_url: str, db_name: str, work: Any) -> Any:
    from gateway.connections import mongo_client
    from gateway.settings import Settings

    client = mongo_client(mongodb_url, Settings(mongodb_url=mongodb_url))
    try:
        return await work(client, client[db_name])
    finally:
        await client.close()


def create_owner_key(mongodb_url: str, db_name: str) -> tuple[str, str]:
    """(api key, user id) of the owner of a new organization."""
    from gateway.bootstrap import create_key
    from resolvers.access import OrgRole

    async def work(_: Any, db: Any) -> tuple[str, str]:
        key, doc = await create_key(db, "Bench", OrgRole.OWNER, EMAIL, "bench")
        return key, str(doc["userId"])

    return asyncio.run(_with_db(mongodb_url, db_name, work))


def drop_database(mongodb_url: str, db_name: str) -> None:
    async def work(client: Any, _: Any) -> None:
        await client.drop_database(db_name)

    asyncio.run(_with_db(mongodb_url, db_name, work))


class Server:
    """One uvicorn in a child process running this script in `--serve` mode."""

    def __init__(self, kind: str, env: dict[str, str], user_id: str) -> None:
        self.kind = kind
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        argv = [sys.executable, __file__, "--serve", kind, "--port", str(self.port)]
        argv += ["--parent", str(os.getpid()), "--user-id", user_id, "--email", EMAIL]
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


@dataclass
class Result:
    name: str
    requests: int
    seconds: float
    latencies_ms: list[float]
    cpu: CpuMeter

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


class BadResponse(RuntimeError):
    pass


def check(status: int, body: bytes, user_id: str) -> None:
    """Every response, Loom's or the bare one, must be a 200 with data.me and no errors."""
    if status != 200:
        raise BadResponse(f"HTTP {status}: {body[:500]!r}")
    parsed = json.loads(body)
    me = (parsed.get("data") or {}).get("me")
    if parsed.get("errors") or not me or me.get("id") != user_id or me.get("email") != EMAIL:
        raise BadResponse(f"unexpected body: {str(parsed)[:500]}")


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


def http_request(key: str) -> bytes:
    body = json.dumps({"query": QUERY}).encode()
    head = (
        "POST /graphql HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {key}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def drive(
    name: str, server: "Server", key: str, user_id: str, warmup: int, seconds: float
) -> Result:
    request = http_request(key)
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
                check(*await connection.send(), user_id)
            warm[0] += 1
            if warm[0] == CONCURRENCY:
                warmed.set()
            await started.wait()
            while (begun := clock()) < deadline:
                check(*await connection.send(), user_id)
                latencies.append((clock() - begun) * 1000)

    workers = [asyncio.create_task(worker()) for _ in range(CONCURRENCY)]
    await warmed.wait()
    with CpuMeter(server.process.pid) as cpu:
        start = clock()
        deadline = start + seconds
        started.set()
        await asyncio.gather(*workers)
        elapsed = clock() - start
    return Result(name, len(latencies), elapsed, latencies, cpu)


def run_load(
    name: str, server: "Server", key: str, user_id: str, warmup: int, seconds: float
) -> Result:
    print(f"  {name}: {warmup} warm-up requests, then {seconds:g}s ...", flush=True)
    work = drive(name, server, key, user_id, warmup, seconds)
    if LOOP_IMPL == "uvloop":
        import uvloop

        return uvloop.run(work)
    return asyncio.run(work)


def machine_info() -> str:
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else "?"
    return (
        f"cpu_count={os.cpu_count()} usable={affinity} {platform.machine()} "
        f"{platform.system()} {platform.release()}; python {platform.python_version()}; "
        f"uvicorn http={HTTP_IMPL} loop={LOOP_IMPL}; "
        f"concurrency={CONCURRENCY} (load generator shares the cores with servers and databases)"
    )


def report(loom: Result, bare: Result, auth: Result) -> bool:
    ratio = loom.rps / bare.rps

    def cores(value: float | None) -> str:
        return "?" if value is None else f"{value:.2f}"

    rows = [
        (
            "server",
            "requests",
            "req/s",
            "p50 ms",
            "p99 ms",
            "cpu:server",
            "cpu:loadgen",
            "cpu:other",
        )
    ]
    for r in (bare, auth, loom):
        rows.append(
            (
                r.name,
                str(r.requests),
                f"{r.rps:.1f}",
                f"{r.percentile(50):.2f}",
                f"{r.percentile(99):.2f}",
                cores(r.cpu.server),
                cores(r.cpu.client),
                cores(r.cpu.other),
            )
        )
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
    met = ratio >= TARGET_RATIO
    print(
        f"\nratio loom_rps / bare_rps = {ratio:.3f} (target >= {TARGET_RATIO}: "
        f"{'MET' if met else 'NOT MET'})"
    )
    print(
        f"ratio loom_rps / auth_rps = {loom.rps / auth.rps:.3f} "
        "(the GraphQL layer's cost over the same authentication in plain Starlette)"
    )
    print(
        "cpu columns: cores' worth of CPU during the measured window (of "
        f"{os.cpu_count()}); 'other' = mongod, valkey, the idle server, the OS"
    )
    return met


def benchmark(seconds: float, warmup: int) -> int:
    print(f"machine: {machine_info()}", flush=True)
    servers: list[Server] = []
    with database_urls() as (mongodb_url, redis_url, origin):
        db_name = f"bench_{uuid.uuid4().hex[:12]}"
        print(f"databases: {origin}; db={db_name}", flush=True)
        try:
            key, user_id = create_owner_key(mongodb_url, db_name)
            env = {
                **os.environ,
                "LOOM_MONGODB_URL": mongodb_url,
                "LOOM_REDIS_URL": redis_url,
                "LOOM_DB_NAME": db_name,
                "LOOM_LOG_LEVEL": "WARNING",
            }
            loom = Server("loom", env, user_id)
            servers.append(loom)
            bare = Server("bare", env, user_id)
            servers.append(bare)
            auth = Server("auth", env, user_id)
            servers.append(auth)
            loom.wait_ready(httpx.Request("GET", f"{loom.url}/readyz"))
            for other in (bare, auth):
                probe = httpx.Request(
                    "POST", f"{other.url}/graphql", headers={"authorization": f"Bearer {key}"}
                )
                other.wait_ready(probe)
            print(
                "servers ready: "
                + ", ".join(f"{s.kind} {s.url} (pid {s.process.pid})" for s in servers),
                flush=True,
            )
            bare_result = run_load("bare", bare, key, user_id, warmup, seconds)
            auth_result = run_load("auth", auth, key, user_id, warmup, seconds)
            loom_result = run_load("loom", loom, key, user_id, warmup, seconds)
            report(loom_result, bare_result, auth_result)
        finally:
            for server in servers:
                server.stop()
            with contextlib.suppress(Exception):
                drop_database(mongodb_url, db_name)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="measured duration per server")
    parser.add_argument("--warmup", type=int, default=200, help="warm-up requests per server")
    parser.add_argument("--serve", choices=["loom", "bare", "auth"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--parent", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--user-id", default="", help=argparse.SUPPRESS)
    parser.add_argument("--email", default=EMAIL, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port, args.parent, args.user_id, args.email)
        return 0
    try:
        return benchmark(args.seconds, args.warmup)
    except BadResponse as exc:
        print(f"\nFAILED: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
