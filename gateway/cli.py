"""`loom`: run the gateway, a worker, or both on the embedded stack; issue API keys.

    loom dev [--seed-demo]        embedded mongod + Valkey, gateway and one worker
    loom serve                    the gateway only
    loom worker                   one arq worker
    loom keys create --org ACME --role owner --email ops@acme.io

With LOOM_MONGODB_URL / LOOM_REDIS_URL unset, every command uses the embedded stack under
`$LOOM_HOME/dev`: it attaches to the one `loom dev` runs, or starts (and later stops) its own.
"""

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

from gateway import bootstrap, logs, serving
from gateway.app import create_app
from gateway.connections import mongo_client
from gateway.embedded import EmbeddedStack, EmbeddedStackError
from gateway.embedded import children as child_processes
from gateway.settings import Settings
from resolvers.access import OrgRole
from triggers.worker import build_worker

log = logging.getLogger("loom")


@contextlib.contextmanager
def stack_for(settings: Settings) -> Iterator[Settings]:
    """Settings with both URLs resolved, owning an embedded stack for the block if needed."""
    if not settings.uses_embedded_stack:
        yield settings
        return
    root = settings.home / "dev"
    running = EmbeddedStack.running_at(root)
    if running is not None:
        log.info("attached to the running embedded stack under %s", root)
        yield settings.model_copy(update=running)
        return
    stack = EmbeddedStack(root, persistent=True, lib_dir=settings.home / "lib")
    log.info("starting the embedded stack (mongod + valkey) under %s", root)
    with stack:
        log.info("mongodb %s, redis %s", stack.mongodb_url, stack.redis_url)
        yield settings.model_copy(
            update={"mongodb_url": stack.mongodb_url, "redis_url": stack.redis_url}
        )


def serve(settings: Settings) -> None:
    serving.run(serving.uvicorn_config(create_app(settings), settings))


def dev(settings: Settings, seed_demo: bool) -> None:
    if seed_demo:
        key, doc = asyncio.run(_seed_demo(settings))
        print(f"Demo organization {bootstrap.DEMO_ORG!r} ({doc['orgId']}) — API key:\n  {key}\n")
    env = {
        **os.environ,
        "LOOM_MONGODB_URL": str(settings.mongodb_url),
        "LOOM_REDIS_URL": str(settings.redis_url),
    }
    settings.home.mkdir(parents=True, exist_ok=True)
    worker = child_processes.spawn(
        [sys.executable, "-m", "gateway.cli", "worker"], log=settings.home / "worker.log", env=env
    )
    base = f"http://{settings.host}:{settings.port}"
    print(f"Loom is starting: GraphQL + GraphiQL {base}/graphql, readiness {base}/readyz")
    print(f"Worker log: {settings.home / 'worker.log'}. Ctrl-C stops everything.", flush=True)
    try:
        serve(settings)
    finally:
        child_processes.stop(worker)


async def _seed_demo(settings: Settings) -> tuple[str, dict]:
    """The demo data, and its key, kept in the dev home so each start shows the same one."""
    saved = settings.home / "dev" / "demo-key"
    client = mongo_client(str(settings.mongodb_url), settings)
    try:
        known = saved.read_text().strip() if saved.exists() else None
        key, doc = await bootstrap.seed_demo(client[settings.db_name], known)
    finally:
        await client.close()
    if key != known:
        _write_private(saved, key + "\n")
    return key, doc


def _write_private(path: Path, text: str) -> None:
    """Replace `path` with `text`, readable by its owner only from the first byte on."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fresh = path.with_name(path.name + ".new")
    fresh.unlink(missing_ok=True)
    with os.fdopen(os.open(fresh, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as out:
        out.write(text)
    os.replace(fresh, path)


async def _create_key(settings: Settings, args: argparse.Namespace) -> tuple[str, dict]:
    client = mongo_client(str(settings.mongodb_url), settings)
    try:
        db = client[settings.db_name]
        return await bootstrap.create_key(db, args.org, OrgRole(args.role), args.email, args.name)
    finally:
        await client.close()


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="loom", description=__doc__.split("\n")[0])
    commands = root.add_subparsers(dest="command", required=True)
    dev_cmd = commands.add_parser("dev", help="embedded stack + gateway + one worker")
    dev_cmd.add_argument("--seed-demo", action="store_true", help="load a demo organization")
    for command in (dev_cmd, commands.add_parser("serve", help="the gateway only")):
        command.add_argument("--host")
        command.add_argument("--port", type=int)
    commands.add_parser("worker", help="one arq worker")
    keys = commands.add_parser("keys", help="API keys").add_subparsers(dest="action", required=True)
    create = keys.add_parser("create", help="give a user a role in an org and a key for it")
    create.add_argument("--org", required=True, help="organization id or name (created if new)")
    create.add_argument("--role", required=True, choices=[r.value for r in OrgRole])
    create.add_argument("--email", default="admin@loom.dev", help="the key's user")
    create.add_argument("--name", default="cli", help="a label for the key")
    return root


def _exit_cleanly(signum: int, _frame: object) -> None:
    """Ctrl-C and SIGTERM unwind normally, so the stack and worker we own are stopped."""
    raise SystemExit(0)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _exit_cleanly)
    overrides = {k: v for k in ("host", "port") if (v := getattr(args, k, None)) is not None}
    settings = Settings().model_copy(update=overrides)
    logs.configure(settings.log_level)
    try:
        with stack_for(settings) as resolved:
            if args.command == "dev":
                dev(resolved, args.seed_demo)
            elif args.command == "serve":
                serve(resolved)
            elif args.command == "worker":
                build_worker(resolved).run()
            else:
                key, doc = asyncio.run(_create_key(resolved, args))
                print(key)
                log.info(
                    "key %s for user %s in organization %s", doc["_id"], doc["userId"], doc["orgId"]
                )
    except EmbeddedStackError as exc:
        print(f"loom: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
