"""`loom`: run the gateway, a worker, or both on the embedded stack; issue API keys.

    loom dev [--seed-demo]        embedded mongod + Valkey, gateway and one worker
    loom serve                    the gateway only
    loom worker [--concurrency N] one arq worker, running up to N jobs at once
    loom keys create --org ACME --role owner --email ops@acme.io
    loom documents import persisted-documents.json   trust a manifest's documents

With LOOM_MONGODB_URL / LOOM_REDIS_URL unset, every command uses the embedded stack under
`$LOOM_HOME/dev`: it attaches to the one `loom dev` runs, or starts (and later stops) its own.

A mistake of the user's or of the environment (a bad flag or setting, an invalid email, a port
in use, a server that does not answer) is one line on stderr, `loom: …`, and exit status 2.
Anything else is a bug in Loom: one line saying so and exit status 1, or with `--debug` the
traceback.
"""

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

from pydantic import ValidationError
from pymongo.errors import ConfigurationError, ConnectionFailure
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway import bootstrap, demo, logs, persisted_documents, serving
from gateway.app import create_app
from gateway.connections import Connections, mongo_client
from gateway.embedded import EmbeddedStack, EmbeddedStackError
from gateway.embedded import children as child_processes
from gateway.settings import Settings
from gateway.supervisor import Supervisor
from resolvers.access import OrgRole
from resolvers.errors import BadUserInput, LoomError
from triggers.webhooks.secret_key import secret_box
from triggers.worker import build_worker

log = logging.getLogger("loom")


class UserError(Exception):
    """A failure the user can fix: reported as one line, never with a traceback."""


class Parser(argparse.ArgumentParser):
    """argparse, with its errors on one line and the same exit status as every user error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"loom: {message} (see: {self.prog} --help)\n")


def _at_least_one(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return value


@contextlib.contextmanager
def stack_for(settings: Settings) -> Iterator[Settings]:
    """Settings with both URLs resolved, owning an embedded stack for the block if needed. A URL
    that is set wins over the embedded stack's."""
    if not settings.uses_embedded_stack:
        yield settings
        return
    root = settings.home / "dev"
    running = EmbeddedStack.running_at(root)
    if running is not None:
        log.info("attached to the running embedded stack under %s", root)
        yield _unset_urls(settings, running)
        return
    stack = EmbeddedStack(
        root, persistent=True, lib_dir=settings.home / "lib", replicas=settings.embedded_replicas
    )
    log.info("starting the embedded stack (mongod + valkey) under %s", root)
    with stack:
        log.info("mongodb %s, redis %s", stack.mongodb_url, stack.redis_url)
        urls = {"mongodb_url": stack.mongodb_url, "redis_url": stack.redis_url}
        yield _unset_urls(settings, urls)


def _unset_urls(settings: Settings, urls: dict[str, str]) -> Settings:
    return settings.model_copy(
        update={name: url for name, url in urls.items() if getattr(settings, name) is None}
    )


def check_port_free(host: str, port: int) -> None:
    """Refuse, before anything starts, a host and port the gateway could not listen on (uvicorn
    would find out only after the stack, the seed and the worker had started)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise UserError(
                f"cannot listen on {host}:{port}: {reason} (choose another with --port or "
                "LOOM_PORT)"
            ) from exc


def serve(settings: Settings) -> None:
    serving.run(serving.uvicorn_config(create_app(settings), settings))


def dev(settings: Settings, seed_demo: bool) -> None:
    # Local development: the dev inbox receives webhooks on loopback, which the SSRF guard
    # refuses unless told otherwise (an explicit LOOM_WEBHOOK_ALLOW_PRIVATE wins).
    local = {"LOOM_DEV_INBOX": "true", "LOOM_WEBHOOK_ALLOW_PRIVATE": "true"}
    local = {name: os.environ.get(name, value) for name, value in local.items()}
    settings = settings.model_copy(
        update={
            "dev_inbox": local["LOOM_DEV_INBOX"].lower() in ("1", "true", "yes", "on"),
            "webhook_allow_private": local["LOOM_WEBHOOK_ALLOW_PRIVATE"].lower()
            in ("1", "true", "yes", "on"),
        }
    )
    if seed_demo:
        key, org_id = asyncio.run(_seed_demo(settings))
        print(f"Demo organization {demo.DEMO_ORG!r} ({org_id}) — API key:\n  {key}\n")
    env = {
        **os.environ,
        **local,
        "LOOM_MONGODB_URL": str(settings.mongodb_url),
        "LOOM_REDIS_URL": str(settings.redis_url),
    }
    settings.home.mkdir(parents=True, exist_ok=True)
    worker = Supervisor(
        "worker",
        lambda: child_processes.spawn(
            [sys.executable, "-m", "gateway.cli", "worker"],
            log=settings.home / "worker.log",
            env=env,
        ),
        say=lambda line: print(line, flush=True),
    )
    worker.start()
    base = f"http://{settings.host}:{settings.port}"
    print(f"Loom is starting: GraphQL + GraphiQL {base}/graphql, readiness {base}/readyz")
    print(f"Console (sign in with an API key): {base}/console")
    if settings.dev_inbox:
        print(
            f"Webhook inbox (what webhooks pointed at {base}/dev/inbox/<name> got): "
            f"{base}/dev/inbox"
        )
    print(
        f"Worker log: {settings.home / 'worker.log'} (restarted if it dies). "
        "Ctrl-C stops everything.",
        flush=True,
    )
    try:
        serve(settings)
    finally:
        worker.stop()


async def _seed_demo(settings: Settings) -> tuple[str, Any]:
    """The demo data, and its key, kept in the dev home so each start shows the same one."""
    saved = settings.home / "dev" / "demo-key"
    connections = await Connections.open(settings)
    try:
        known = saved.read_text().strip() if saved.exists() else None
        inbox = None
        if settings.dev_inbox:
            host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
            inbox = demo.DevInbox(
                f"http://{host}:{settings.port}/dev/inbox/demo", secret_box(settings)
            )
        key, org_id = await demo.seed(connections.db, connections.redis, known, inbox)
    finally:
        await connections.close()
    if key != known:
        _write_private(saved, key + "\n")
    return key, org_id


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


async def _import_documents(settings: Settings, manifest: Path) -> int:
    client = mongo_client(str(settings.mongodb_url), settings)
    try:
        return await persisted_documents.import_manifest(client[settings.db_name], manifest)
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    finally:
        await client.close()


def parser() -> argparse.ArgumentParser:
    root = Parser(prog="loom", description=__doc__.split("\n")[0])
    root.add_argument("--debug", action="store_true", help="show the traceback of a bug")
    # On each command too (`loom serve --debug`); SUPPRESS keeps a root --debug from being reset.
    debug = Parser(add_help=False)
    debug.add_argument("--debug", action="store_true", default=argparse.SUPPRESS)
    commands = root.add_subparsers(dest="command", required=True)
    dev_cmd = commands.add_parser(
        "dev", parents=[debug], help="embedded stack + gateway + one worker"
    )
    dev_cmd.add_argument("--seed-demo", action="store_true", help="load a demo organization")
    serve_cmd = commands.add_parser("serve", parents=[debug], help="the gateway only")
    for command in (dev_cmd, serve_cmd):
        command.add_argument("--host")
        command.add_argument("--port", type=int)
    worker = commands.add_parser("worker", parents=[debug], help="one arq worker")
    worker.add_argument(
        "--concurrency",
        type=_at_least_one,
        dest="worker_max_jobs",
        metavar="N",
        help="jobs run at once (default: LOOM_WORKER_MAX_JOBS, or 10)",
    )
    keys = commands.add_parser("keys", help="API keys").add_subparsers(dest="action", required=True)
    create = keys.add_parser(
        "create", parents=[debug], help="give a user a role in an org and a key for it"
    )
    create.add_argument("--org", required=True, help="organization id or name (created if new)")
    create.add_argument("--role", required=True, choices=[r.value for r in OrgRole])
    create.add_argument("--email", default="admin@loom.dev", help="the key's user")
    create.add_argument("--name", default="cli", help="a label for the key")
    documents = commands.add_parser("documents", help="trusted documents").add_subparsers(
        dest="action", required=True
    )
    trust = documents.add_parser(
        "import", parents=[debug], help="trust the documents of a persisted-query manifest"
    )
    trust.add_argument("manifest", type=Path, help="Apollo's manifest or a {sha256: query} map")
    return root


def _exit_cleanly(signum: int, _frame: object) -> None:
    """Ctrl-C and SIGTERM unwind normally, so the stack and worker we own are stopped."""
    raise SystemExit(0)


def _settings(args: argparse.Namespace) -> Settings:
    """The environment's settings with the command's flags on top, all validated."""
    flags = ("host", "port", "worker_max_jobs")
    overrides = {name: value for name in flags if (value := getattr(args, name, None)) is not None}
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        invalid = BadUserInput.from_validation(exc).message
        raise UserError(f"{invalid} (from the flags or LOOM_* variables)") from exc
    try:
        logs.configure(settings.log_level)
    except ValueError as exc:
        raise UserError(f"LOOM_LOG_LEVEL: {exc} (use DEBUG, INFO, WARNING or ERROR)") from exc
    return settings


def _run(args: argparse.Namespace, settings: Settings) -> None:
    if args.command in ("dev", "serve"):
        check_port_free(settings.host, settings.port)
    if args.command == "keys":
        bootstrap.check_key_request(args.org, args.email, args.name)
    with stack_for(settings) as resolved:
        if args.command == "dev":
            dev(resolved, args.seed_demo)
        elif args.command == "serve":
            serve(resolved)
        elif args.command == "worker":
            build_worker(resolved).run()
        elif args.command == "documents":
            count = asyncio.run(_import_documents(resolved, args.manifest))
            print(f"{count} trusted documents imported from {args.manifest}")
        else:
            key, doc = asyncio.run(_create_key(resolved, args))
            print(key)
            log.info(
                "key %s for user %s in organization %s", doc["_id"], doc["userId"], doc["orgId"]
            )


def _where(url: str | None) -> str:
    """A server URL's hosts, without the credentials it may hold."""
    if not url:
        return "the embedded stack"
    rest = url.split("://", 1)[-1]
    return rest.split("/", 1)[0].rsplit("@", 1)[-1]


def user_error(exc: BaseException, settings: Settings | None) -> str | None:
    """The one line telling the user what to fix, or None when `exc` is a bug."""
    mongodb_url = settings.mongodb_url if settings else None
    redis_url = settings.redis_url if settings else None
    if isinstance(exc, UserError | EmbeddedStackError):
        return str(exc)
    if isinstance(exc, LoomError):
        return exc.message
    if isinstance(exc, ValidationError):
        return BadUserInput.from_validation(exc).message
    if isinstance(exc, ConnectionFailure):
        where = _where(mongodb_url)
        cause = _first_cause(exc).removeprefix(f"{where}: ")
        return f"cannot reach MongoDB at {where} ({cause}); check LOOM_MONGODB_URL"
    if isinstance(exc, ConfigurationError):
        return f"LOOM_MONGODB_URL cannot be used: {exc}"
    if isinstance(exc, RedisConnectionError | RedisTimeoutError):
        return f"cannot reach Redis at {_where(redis_url)} ({exc}); check LOOM_REDIS_URL"
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{exc.filename}: {exc.strerror or exc}"
    return None


def _first_cause(exc: ConnectionFailure) -> str:
    """What the first server said, without pymongo's topology dump (one line of it is enough)."""
    description = getattr(exc, "details", None)
    servers = getattr(description, "server_descriptions", dict)()
    errors = [server.error for server in servers.values() if server.error is not None]
    reason = str(errors[0] if errors else exc)
    return reason.split(" (configured timeouts")[0].split(", Timeout:")[0]


def _one_line(text: str) -> str:
    return " ".join(text.split())


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _exit_cleanly)
    settings: Settings | None = None
    try:
        settings = _settings(args)
        _run(args, settings)
    except Exception as exc:
        message = user_error(exc, settings)
        if message is not None:
            print(_one_line(f"loom: {message}"), file=sys.stderr)
            return 2
        if args.debug:
            raise
        bug = _one_line(f"{type(exc).__name__}: {exc}")
        print(
            f"loom: this is a bug in Loom — {bug} (run again with --debug for the traceback)",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
