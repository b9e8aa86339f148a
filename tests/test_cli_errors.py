"""`loom` as users run it, when something is wrong: one line on stderr and exit status 2 for
their mistakes, one line and 1 for Loom's bugs (the traceback only with --debug)."""

import asyncio
import hashlib
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from bson import ObjectId

from gateway import cli
from tests.conftest import REPO
from tests.datasets_world import make_world
from tests.loom_cli import run_loom
from tests.servers import free_port
from tests.test_executions import CREATE_SERVICE, EXECUTE


def _env(home: Path, **variables: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LOOM_")}
    return {**clean, "LOOM_HOME": str(home), **variables}


def _one_user_error(run: subprocess.CompletedProcess) -> str:
    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr
    (line,) = run.stderr.splitlines()
    assert line.startswith("loom: ")
    return line


def _on(settings, home: Path, **variables: str) -> dict[str, str]:
    """The environment of a `loom` on the test's own servers and database."""
    return _env(
        home,
        LOOM_MONGODB_URL=str(settings.mongodb_url),
        LOOM_REDIS_URL=str(settings.redis_url),
        LOOM_DB_NAME=settings.db_name,
        **variables,
    )


MISTAKES = {
    "missing flags": ({}, ["keys", "create", "--email", "x@y.io"], "--org, --role"),
    "bad role": ({}, ["keys", "create", "--org", "acme", "--role", "boss"], "'boss'"),
    "reserved email domain": (
        {},
        ["keys", "create", "--org", "acme", "--role", "owner", "--email", "x@y.test"],
        "email",
    ),
    "malformed email": (
        {},
        ["keys", "create", "--org", "acme", "--role", "owner", "--email", "nobody"],
        "email",
    ),
    "org name with a control character": (
        {},
        ["keys", "create", "--org", "ac\x01me", "--role", "owner"],
        "org: ",
    ),
    "empty org name": ({}, ["keys", "create", "--org", " ", "--role", "owner"], "org: "),
    "empty key name": (
        {},
        ["keys", "create", "--org", "acme", "--role", "owner", "--name", ""],
        "name: ",
    ),
    "port not a number": ({"LOOM_PORT": "abc"}, ["serve"], "port"),
    "port out of range": ({}, ["serve", "--port", "70000"], "port"),
    "concurrency below one": ({}, ["worker", "--concurrency", "0"], "--concurrency"),
    "concurrency not a number": ({}, ["worker", "--concurrency", "many"], "--concurrency"),
    "concurrency above the bound": ({}, ["worker", "--concurrency", "5000"], "worker_max_jobs"),
    "unknown log level": ({"LOOM_LOG_LEVEL": "LOUD"}, ["worker"], "LOOM_LOG_LEVEL"),
    "unknown command": ({}, ["frobnicate"], "frobnicate"),
}


@pytest.mark.parametrize("case", MISTAKES.values(), ids=MISTAKES.keys())
def test_a_mistake_is_one_line_and_exit_status_2_before_anything_starts(tmp_path, case):
    variables, args, named = case
    line = _one_user_error(run_loom(_env(tmp_path, **variables), *args))
    assert named in line
    assert not (tmp_path / "dev").exists(), "an embedded stack was started for nothing"


async def test_a_refused_key_request_writes_nothing(settings, db, tmp_path):
    env = _on(settings, tmp_path)
    for email in ("x@y.test", "not an email"):
        _one_user_error(
            run_loom(env, "keys", "create", "--org", "acme", "--role", "owner", "--email", email)
        )
    assert await db.organizations.count_documents({}) == 0
    assert await db.users.count_documents({}) == 0


def test_an_unreachable_mongodb_is_one_line(tmp_path):
    port = free_port()
    env = _env(
        tmp_path,
        LOOM_MONGODB_URL=f"mongodb://127.0.0.1:{port}/?directConnection=true",
        LOOM_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0",
        LOOM_MONGODB_TIMEOUT_MS="300",
    )
    line = _one_user_error(run_loom(env, "keys", "create", "--org", "acme", "--role", "owner"))
    assert line.startswith(f"loom: cannot reach MongoDB at 127.0.0.1:{port} (")
    assert "LOOM_MONGODB_URL" in line


def test_an_unusable_mongodb_url_is_one_line(tmp_path):
    env = _env(tmp_path, LOOM_MONGODB_URL="mongo://nowhere", LOOM_REDIS_URL="redis://127.0.0.1/0")
    line = _one_user_error(run_loom(env, "keys", "create", "--org", "acme", "--role", "owner"))
    assert "LOOM_MONGODB_URL" in line


def test_a_port_in_use_is_one_line_before_anything_starts(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        for args in (["serve"], ["dev", "--seed-demo"]):
            line = _one_user_error(run_loom(_env(tmp_path, LOOM_PORT=port), *args))
            assert line.startswith(f"loom: cannot listen on 127.0.0.1:{port}: ")
        assert not (tmp_path / "dev").exists()


async def test_a_bug_is_one_line_saying_so_and_the_traceback_only_with_debug(
    settings, db, tmp_path
):
    """Loom does not expect MongoDB to refuse a well-formed key; a validator makes it."""
    await db.command("collMod", "api_keys", validator={"$jsonSchema": {"required": ["never"]}})
    env = _on(settings, tmp_path)
    quiet = run_loom(env, "keys", "create", "--org", "acme", "--role", "owner")
    assert quiet.returncode == 1
    (line,) = quiet.stderr.splitlines()
    assert line.startswith("loom: this is a bug in Loom — WriteError: Document failed validation")
    assert line.endswith("(run again with --debug for the traceback)")
    for flags in (["--debug", "keys", "create"], ["keys", "create", "--debug"]):
        loud = run_loom(env, *flags, "--org", "acme", "--role", "owner")
        assert loud.returncode == 1
        assert loud.stderr.startswith("Traceback") or "\nTraceback" in loud.stderr
        assert "pymongo.errors.WriteError" in loud.stderr


def test_concurrency_is_the_workers_max_jobs():
    args = cli.parser().parse_args(["worker", "--concurrency", "3"])
    assert cli._settings(args).worker_max_jobs == 3
    assert cli._settings(cli.parser().parse_args(["worker"])).worker_max_jobs == 10


async def test_a_worker_started_with_concurrency_2_runs_two_executions_at_a_time(
    member, settings, db, tmp_path
):
    world = await make_world(member)
    service = {"name": "tools", "functions": ["sleeper"], "concurrency": 10}
    service_id = (await world.client.data(CREATE_SERVICE, p=world.project, input=service))[
        "createService"
    ]["id"]
    sleep = {"function": "sleeper", "input": {"seconds": 1, "steps": 1}}
    ids = [
        ObjectId((await world.client.data(EXECUTE, s=service_id, input=sleep))["execute"]["id"])
        for _ in range(4)
    ]
    running, most = set(), 0
    pipeline = [{"$match": {"documentKey._id": {"$in": ids}}}]
    async with await db.executions.watch(pipeline) as changes:
        worker = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "worker", "--concurrency", "2"],
            cwd=REPO,
            env=_on(settings, tmp_path),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            finished = 0
            while finished < len(ids):
                change = await asyncio.wait_for(anext(changes), 30)
                status = change.get("updateDescription", {}).get("updatedFields", {}).get("status")
                if status == "inProgress":
                    running.add(change["documentKey"]["_id"])
                    most = max(most, len(running))
                elif status == "success":
                    running.discard(change["documentKey"]["_id"])
                    finished += 1
        finally:
            worker.kill()
            worker.wait()
    assert most == 2


async def test_loom_documents_import_trusts_a_manifest_and_a_bad_one_is_one_line(
    settings, db, tmp_path
):
    query = "query Me { me { email } }"
    digest = hashlib.sha256(query.encode()).hexdigest()
    manifest = tmp_path / "persisted-documents.json"
    manifest.write_text(json.dumps({digest: query}))
    env = _on(settings, tmp_path)
    imported = await asyncio.to_thread(run_loom, env, "documents", "import", str(manifest))
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.strip() == f"1 trusted documents imported from {manifest}"
    stored = await db.persisted_documents.find_one({"_id": digest})
    assert (stored["query"], stored["trusted"]) == (query, True)

    manifest.write_text(json.dumps({"0" * 64: query}))
    refused = await asyncio.to_thread(run_loom, env, "documents", "import", str(manifest))
    assert "is not the sha256 of its document" in _one_user_error(refused)
    assert await db.persisted_documents.count_documents({}) == 1
