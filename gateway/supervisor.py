"""Keep a child process running: `loom dev` supervises its worker.

A developer's `loom dev` is the gateway, the embedded stack and one worker. If the worker dies —
a crash, an out-of-memory kill, Redis gone for longer than it waits — nothing would run until
someone noticed and restarted everything. So a thread waits on the worker and starts a new one
when it exits, after a backoff that doubles from `first_delay_s` to `max_delay_s` (a worker that
dies at start-up is not restarted in a tight loop) and starts again from `first_delay_s` once a
worker has run for `settled_s`. Each restart is one line on the output, with the exit status.
Only `stop()` — Ctrl-C or SIGTERM of `loom dev` — ends the supervision, and the worker with it.
"""

import signal
import subprocess
import threading
import time
from collections.abc import Callable

from gateway.embedded import children as child_processes


def exit_status(returncode: int) -> str:
    """A child's exit as a person reads it: `exit status 1`, `killed by SIGKILL`."""
    if returncode >= 0:
        return f"exit status {returncode}"
    try:
        return f"killed by {signal.Signals(-returncode).name}"
    except ValueError:
        return f"killed by signal {-returncode}"


class Supervisor:
    def __init__(
        self,
        name: str,
        start: Callable[[], subprocess.Popen],
        say: Callable[[str], None],
        first_delay_s: float = 1.0,
        max_delay_s: float = 30.0,
        settled_s: float = 60.0,
    ) -> None:
        self.name = name
        self.restarts = 0
        self._start = start
        self._say = say
        self._first_delay_s = first_delay_s
        self._max_delay_s = max_delay_s
        self._settled_s = settled_s
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._process: subprocess.Popen | None = None
        self._thread = threading.Thread(target=self._watch, name=f"supervise {name}", daemon=True)

    def start(self) -> None:
        """Start the child, and the thread that restarts it. The thread starts every child:
        each is bound to that thread's lifetime (PR_SET_PDEATHSIG follows the thread that
        forked it), and the thread lives until `stop()`."""
        self._thread.start()

    def stop(self) -> None:
        """Stop supervising, then stop the child (SIGTERM, SIGKILL if it lingers)."""
        with self._lock:
            self._stopping.set()
            process = self._process
        if process is not None:
            child_processes.stop(process)
        if self._thread.is_alive():
            self._thread.join()

    def _watch(self) -> None:
        delay = self._first_delay_s
        while True:
            with self._lock:
                if self._stopping.is_set():
                    return
                began = time.monotonic()
                try:
                    self._process = self._start()
                except OSError as exc:
                    self._say(f"loom: cannot start the {self.name} ({exc})")
                    self._process = None
            if self._process is not None:
                returncode = self._process.wait()
                if self._stopping.is_set():
                    return
                status = exit_status(returncode)
            else:
                status = "not started"
            if time.monotonic() - began >= self._settled_s:
                delay = self._first_delay_s
            self.restarts += 1
            self._say(
                f"loom: the {self.name} stopped ({status}); restarting it in {delay:g} s "
                f"(restart {self.restarts})"
            )
            if self._stopping.wait(delay):
                return
            delay = min(delay * 2, self._max_delay_s)
