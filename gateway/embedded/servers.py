"""How to start the two embedded servers and know when each is ready to serve.

Readiness is asked of the server itself (a writable primary, a PONG), never assumed after a
fixed sleep.
"""

import contextlib
import os
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import redis
from pymongo import MongoClient
from pymongo.errors import OperationFailure, PyMongoError

from gateway.embedded import children

REPLICA_SET = "rs0"
_NOT_YET_INITIALIZED = 94


class ServerFailed(RuntimeError):
    pass


def free_ports(preferred: Sequence[int | None]) -> list[int]:
    """One distinct free loopback port per entry: the entry itself when it can still be bound,
    else any. The sockets stay bound until all are chosen, so no two entries get the same.
    Bound as the servers bind (SO_REUSEADDR), so a port whose last connections linger in
    TIME_WAIT after a stop still counts as free — a replica set's nodes leave such."""
    with contextlib.ExitStack() as held:
        ports = []
        for wanted in preferred:
            for candidate in (wanted, 0) if wanted else (0,):
                sock = held.enter_context(socket.socket())
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    sock.bind(("127.0.0.1", candidate))
                except OSError:
                    continue
                ports.append(sock.getsockname()[1])
                break
            else:
                raise ServerFailed("no free loopback port")
        return ports


def wait_until(ready: Callable[[], bool], process: subprocess.Popen, log: Path, what: str) -> None:
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


def spawn_mongod(
    binary: Path,
    data: Path,
    port: int,
    lib_dir: Path | None,
    *,
    cache_gb: float,
    parameters: Sequence[str] = (),
) -> subprocess.Popen:
    """Start one mongod of the replica set `REPLICA_SET` and return once it answers a ping.
    `parameters` are more `--setParameter` values."""
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
            *(argument for value in parameters for argument in ("--setParameter", value)),
        ],
        log=log,
        env=env,
    )
    client = direct_client(f"127.0.0.1:{port}")
    try:
        wait_until(lambda: _answers(client), process, log, "mongod")
    except BaseException:
        children.stop(process)
        raise
    finally:
        client.close()
    return process


def direct_client(host: str) -> MongoClient:
    """A client of that one node, which gives up at once when it does not answer."""
    return MongoClient(
        host, directConnection=True, serverSelectionTimeoutMS=200, connectTimeoutMS=200
    )


def start_mongod(
    binary: Path, data: Path, port: int, lib_dir: Path | None, *, cache_gb: float
) -> subprocess.Popen:
    """Start mongod as a one-node replica set and return once it is a writable primary."""
    process = spawn_mongod(binary, data, port, lib_dir, cache_gb=cache_gb)
    host = f"127.0.0.1:{port}"
    client = direct_client(host)
    try:
        configure_replica_set(client, [host])
        wait_until(
            lambda: is_writable_primary(client), process, data / "mongod.log", "mongod primary"
        )
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


def is_writable_primary(client: MongoClient) -> bool:
    try:
        return bool(client.admin.command("hello").get("isWritablePrimary"))
    except PyMongoError:
        return False


def configure_replica_set(
    client: MongoClient, hosts: Sequence[str], settings: dict[str, int] | None = None
) -> None:
    """Initiate the set on a fresh data folder (through the first node, `client`); re-point it
    when its ports (or the `settings` asked for) changed since. A force reconfig: the set may
    have no primary to accept any other kind while its members moved."""
    members = [{"_id": index, "host": host} for index, host in enumerate(hosts)]
    try:
        config = client.admin.command("replSetGetConfig")["config"]
    except OperationFailure as exc:
        if exc.code != _NOT_YET_INITIALIZED:
            raise
        initial = {"_id": REPLICA_SET, "members": members}
        if settings:
            initial["settings"] = settings
        client.admin.command("replSetInitiate", initial)
        return
    wanted_settings = {**config.get("settings", {}), **(settings or {})}
    if [m["host"] for m in config["members"]] != list(hosts) or (
        wanted_settings != config.get("settings", {})
    ):
        config["members"] = members
        config["settings"] = wanted_settings
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
        wait_until(lambda: _pongs(client), process, log, "valkey")
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
