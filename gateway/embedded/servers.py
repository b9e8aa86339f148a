"""How to start the two embedded servers and know when each is ready to serve.

Readiness is asked of the server itself (a writable primary, a PONG), never assumed after a
fixed sleep.
"""

import os
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import redis
from pymongo import MongoClient
from pymongo.errors import OperationFailure, PyMongoError

from gateway.embedded import children

REPLICA_SET = "rs0"
_NOT_YET_INITIALIZED = 94


class ServerFailed(RuntimeError):
    pass


def free_port(preferred: int | None = None) -> int:
    """`preferred` when it can still be bound on loopback, else any free loopback port."""
    for candidate in (preferred, 0) if preferred else (0,):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", candidate))
            except OSError:
                continue
            return sock.getsockname()[1]
    raise ServerFailed("no free loopback port")


def _wait_until(ready: Callable[[], bool], process: subprocess.Popen, log: Path, what: str) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServerFailed(f"{what} exited with code {process.returncode}:\n{_tail(log)}")
        if ready():
            return
        time.sleep(0.05)
    raise ServerFailed(f"{what} was not ready after 90 s:\n{_tail(log)}")


def _tail(log: Path, lines: int = 15) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def start_mongod(
    binary: Path, data: Path, port: int, lib_dir: Path | None, *, cache_gb: float
) -> subprocess.Popen:
    """Start mongod as a one-node replica set and return once it is a writable primary."""
    data.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    if lib_dir is not None:
        env["LD_LIBRARY_PATH"] = os.pathsep.join(
            p for p in (str(lib_dir), env.get("LD_LIBRARY_PATH")) if p
        )
    log = data / "mongod.log"
    process = children.spawn(
        [
            str(binary),
            "--replSet",
            REPLICA_SET,
            "--bind_ip",
            "127.0.0.1",
            "--port",
            str(port),
            "--dbpath",
            str(data),
            "--wiredTigerCacheSizeGB",
            str(cache_gb),
            "--oplogSize",
            "512",
            "--setParameter",
            "diagnosticDataCollectionEnabled=false",
            # Close idle file handles soon: a test suite creates and drops hundreds of
            # databases, and WiredTiger otherwise keeps each file open for ten minutes.
            "--setParameter",
            "wiredTigerFileHandleCloseIdleTime=10",
            "--setParameter",
            "wiredTigerFileHandleCloseMinimum=250",
        ],
        log=log,
        env=env,
    )
    host = f"127.0.0.1:{port}"
    client: MongoClient = MongoClient(
        host, directConnection=True, serverSelectionTimeoutMS=200, connectTimeoutMS=200
    )
    try:
        _wait_until(lambda: _answers(client), process, log, "mongod")
        _configure_replica_set(client, host)
        _wait_until(lambda: _is_writable_primary(client), process, log, "mongod primary")
    except BaseException:
        children.stop(process)
        raise
    finally:
        client.close()
    return process


def _answers(client: MongoClient) -> bool:
    try:
        client.admin.command("ping")
    except PyMongoError:
        return False
    return True


def _is_writable_primary(client: MongoClient) -> bool:
    try:
        return bool(client.admin.command("hello").get("isWritablePrimary"))
    except PyMongoError:
        return False


def _configure_replica_set(client: MongoClient, host: str) -> None:
    """Initiate the set on a fresh data folder; re-point it when the port changed since."""
    member = {"_id": 0, "host": host}
    try:
        config = client.admin.command("replSetGetConfig")["config"]
    except OperationFailure as exc:
        if exc.code != _NOT_YET_INITIALIZED:
            raise
        client.admin.command("replSetInitiate", {"_id": REPLICA_SET, "members": [member]})
        return
    if [m["host"] for m in config["members"]] != [host]:
        config["members"] = [member]
        config["version"] += 1
        client.admin.command("replSetReconfig", config, force=True)


def start_valkey(binary: Path, data: Path, port: int, *, persistent: bool) -> subprocess.Popen:
    """Start valkey-server and return once it answers PING."""
    data.mkdir(parents=True, exist_ok=True)
    log = data / "valkey.log"
    persistence = ["--appendonly", "yes"] if persistent else ["--appendonly", "no"]
    process = children.spawn(
        [
            str(binary),
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--dir",
            str(data),
            "--save",
            "",
            *persistence,
        ],
        log=log,
    )
    client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=0.2)
    try:
        _wait_until(lambda: _pongs(client), process, log, "valkey")
    except BaseException:
        children.stop(process)
        raise
    finally:
        client.close()
    return process


def _pongs(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
