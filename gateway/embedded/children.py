"""Child server processes that never outlive Loom.

Each child runs in its own process group and is asked by the kernel to die with its parent
(`PR_SET_PDEATHSIG`), so even a SIGKILLed Loom leaves nothing behind. A pidfile covers the rest
(a non-Linux kernel, a child that ignored the signal): the next start kills what it lists.
"""

import contextlib
import ctypes
import json
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

_PR_SET_PDEATHSIG = 1


def _prepare_child() -> None:
    """In the child, before exec: die with the parent, and allow as many open files as the
    system lets us (mongod keeps a file per collection and index)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def spawn(argv: Sequence[str], *, log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start `argv` in a new process group, output to `log`, bound to our lifetime."""
    with log.open("ab") as out:
        return subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            preexec_fn=_prepare_child,
        )


def stop(process: subprocess.Popen, timeout: float = 20.0) -> None:
    """SIGTERM the child's group, wait for a clean exit, SIGKILL if it does not come."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _is_running(pid: int, name: str) -> bool:
    """Whether `pid` still runs the executable `name` names (`mongod:1`: node 1's mongod)."""
    executable_name = name.partition(":")[0]
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return executable_name.encode() in cmdline.split(b"\0", 1)[0]


class PidFile:
    """Records the children of one stack so a later start can reap them after a crash."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, children: dict[str, int]) -> None:
        self.path.write_text(json.dumps(children))

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)

    def reap_orphans(self) -> list[int]:
        """Kill children left by a previous run that died without cleaning up."""
        if not self.path.exists():
            return []
        try:
            recorded: dict[str, int] = json.loads(self.path.read_text())
        except ValueError:
            recorded = {}
        killed = []
        for name, pid in recorded.items():
            if _is_running(pid, name):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
                killed.append(pid)
        deadline = time.monotonic() + 10
        while any(_is_running(pid, name) for name, pid in recorded.items()):
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        self.clear()
        return killed
