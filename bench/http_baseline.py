"""HTTP throughput of Loom's `/graphql` against a bare Starlette route, both behind real uvicorn.

    .venv/bin/python bench/http_baseline.py --seconds 8

Starts a throw-away embedded stack (real mongod + valkey) unless LOOM_MONGODB_URL and
LOOM_REDIS_URL are set, creates an organization and an owner key on a fresh database, then runs
four uvicorn servers, each in its own process:

- loom: Loom's app;
- bare: a Starlette route answering the same JSON a `{ me { id email } }` query does;
- auth: a Starlette route doing Loom's authentication as the gateway does it (its cache of
  found keys, kept by a change feed), without GraphQL;
- core: the same authentication inside graphql-core executing the already parsed and
  validated query on a two-field schema: the floor of any Python server built on graphql-core,
  which Strawberry is.

16 keep-alive connections, each driven by a lean HTTP/1.1 client coroutine, load each server in
turn (warm-up, then a fixed duration) and the script prints requests/s, p50 and p99 latency,
and the ratios to the bare route.

The load generator runs on the same machine as the servers and the databases, so they share
its cores; the figures are a relative baseline, not an absolute capacity. The machinery shared
with the other benchmarks is in `harness.py`.
"""

import argparse
import asyncio
import contextlib
import json
import sys
import uuid
from typing import Any

import harness
import httpx
from harness import BadResponse, Result, Server

QUERY = "{ me { id email } }"
EMAIL = "bench-owner@loom.dev"
TARGET_RATIO = 0.5
CONCURRENCY = 16


# --- server mode: `http_baseline.py --serve {loom,bare,auth} --port N` in a child process ----


def _bare_app(user_id: str, email: str) -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def graphql(_: Request) -> JSONResponse:
        return JSONResponse({"data": {"me": {"id": user_id, "email": email}}})

    return Starlette(routes=[Route("/graphql", graphql, methods=["GET", "POST"])])


def _authenticated_app() -> Any:
    """Starlette doing Loom's authentication (its cache of found keys, kept by a change feed,
    as the gateway runs it) without GraphQL: the gap to Loom is what the GraphQL layer
    costs."""
    from starlette.requests import Request
    from starlette.responses import JSONResponse

    from gateway.settings import Settings

    async def graphql(request: Request) -> JSONResponse:
        key = request.headers["authorization"].split(" ", 1)[1]
        _, user = await request.app.state.authenticate(key)
        return JSONResponse({"data": {"me": {"id": str(user["_id"]), "email": user["email"]}}})

    return harness.authenticating_app(harness.loom_database(Settings()), graphql)


def _graphql_core_app() -> Any:
    """The floor of any GraphQL server on graphql-core: Loom's authentication, then
    graphql-core executing the already parsed and validated query on a two-field schema, and
    the result as JSON. No Strawberry, no extensions, no middleware."""
    from graphql import (
        GraphQLField,
        GraphQLNonNull,
        GraphQLObjectType,
        GraphQLSchema,
        GraphQLString,
        execute,
        parse,
        validate,
    )
    from starlette.requests import Request
    from starlette.responses import JSONResponse

    from gateway.settings import Settings

    async def resolve_me(_: Any, info: Any) -> dict[str, str]:
        _, user = await info.context.authenticate(info.context.key)
        return {"id": str(user["_id"]), "email": user["email"]}

    user_type = GraphQLObjectType(
        "User",
        {"id": GraphQLField(GraphQLNonNull(GraphQLString)), "email": GraphQLField(GraphQLString)},
    )
    schema = GraphQLSchema(
        GraphQLObjectType("Query", {"me": GraphQLField(user_type, resolve=resolve_me)})
    )
    documents: dict[str, Any] = {}

    class Ctx:
        def __init__(self, authenticate: Any, key: str) -> None:
            self.authenticate, self.key = authenticate, key

    async def graphql(request: Request) -> JSONResponse:
        body = json.loads(await request.body())
        query = body["query"]
        document = documents.get(query)
        if document is None:
            document = parse(query)
            if errors := validate(schema, document):
                raise BadResponse(f"invalid query: {errors}")
            documents[query] = document
        key = request.headers["authorization"].split(" ", 1)[1]
        result = await execute(
            schema, document, context_value=Ctx(request.app.state.authenticate, key)
        )
        return JSONResponse({"data": result.data})

    return harness.authenticating_app(harness.loom_database(Settings()), graphql)


def serve(kind: str, port: int, parent: int, user_id: str, email: str) -> None:
    apps = {"loom": harness.loom_app, "auth": _authenticated_app, "core": _graphql_core_app}
    app = apps[kind]() if kind in apps else _bare_app(user_id, email)
    harness.run_uvicorn(app, port, parent, websockets=kind == "loom")


# --- benchmark mode -----------------------------------------------------------------------------


def create_owner_key(mongodb_url: str, db_name: str) -> tuple[str, str]:
    """(api key, user id) of the owner of a new organization."""
    from gateway.bootstrap import create_key
    from resolvers.access import OrgRole

    async def work(_: Any, db: Any) -> tuple[str, str]:
        key, doc = await create_key(db, "Bench", OrgRole.OWNER, EMAIL, "bench")
        return key, str(doc["userId"])

    return asyncio.run(harness.with_db(mongodb_url, db_name, work))


def check(status: int, body: bytes, user_id: str) -> None:
    """Every response, Loom's or the bare one, must be a 200 with data.me and no errors."""
    if status != 200:
        raise BadResponse(f"HTTP {status}: {body[:500]!r}")
    parsed = json.loads(body)
    me = (parsed.get("data") or {}).get("me")
    if parsed.get("errors") or not me or me.get("id") != user_id or me.get("email") != EMAIL:
        raise BadResponse(f"unexpected body: {str(parsed)[:500]}")


def report(loom: Result, bare: Result, auth: Result, core: Result) -> bool:
    ratio = loom.rps / bare.rps
    harness.print_table(
        [harness.RESULT_COLUMNS, *(harness.result_row(r) for r in (bare, auth, core, loom))]
    )
    met = ratio >= TARGET_RATIO
    print(
        f"\nratio loom / bare = {ratio:.3f}x (goal >= {TARGET_RATIO}x: "
        f"{'MET' if met else 'NOT MET'})"
    )
    print(
        f"ratio core_rps / bare_rps = {core.rps / bare.rps:.3f} "
        "(the ceiling of that ratio for any server on graphql-core)"
    )
    print(
        f"ratio loom_rps / core_rps = {loom.rps / core.rps:.3f} "
        "(what Strawberry, Loom's extensions and middleware cost over graphql-core alone)"
    )
    harness.print_cpu_legend()
    return met


def benchmark(seconds: float, warmup: int) -> int:
    print(f"machine: {harness.machine_info(CONCURRENCY)}", flush=True)
    servers: list[Server] = []
    with harness.database_urls() as (mongodb_url, redis_url, origin):
        db_name = f"bench_{uuid.uuid4().hex[:12]}"
        print(f"databases: {origin}; db={db_name}", flush=True)
        try:
            key, user_id = create_owner_key(mongodb_url, db_name)
            env = harness.server_env(mongodb_url, redis_url, db_name)
            extra = ("--user-id", user_id, "--email", EMAIL)
            for kind in ("loom", "bare", "auth", "core"):
                servers.append(Server(__file__, kind, env, extra))
            loom, bare, auth, core = servers
            loom.wait_ready(httpx.Request("GET", f"{loom.url}/readyz"))
            for other in (bare, auth, core):
                probe = httpx.Request(
                    "POST",
                    f"{other.url}/graphql",
                    headers={"authorization": f"Bearer {key}"},
                    json={"query": QUERY},
                )
                other.wait_ready(probe)
            print(f"servers ready: {harness.describe(servers)}", flush=True)
            request = harness.post_request("/graphql", json.dumps({"query": QUERY}).encode(), key)

            def load(name: str, server: Server) -> Result:
                return harness.run_load(
                    name,
                    server,
                    request,
                    lambda status, body: check(status, body, user_id),
                    CONCURRENCY,
                    warmup,
                    seconds,
                )

            bare_result = load("bare", bare)
            auth_result = load("auth", auth)
            core_result = load("core", core)
            loom_result = load("loom", loom)
            report(loom_result, bare_result, auth_result, core_result)
        finally:
            for server in servers:
                server.stop()
            with contextlib.suppress(Exception):
                harness.drop_database(mongodb_url, db_name)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="measured duration per server")
    parser.add_argument("--warmup", type=int, default=200, help="warm-up requests per server")
    parser.add_argument("--serve", choices=["loom", "bare", "auth", "core"], help=argparse.SUPPRESS)
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
