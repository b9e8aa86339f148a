"""Several mongod nodes on loopback as one replica set, so failover can be tried, not assumed.

`LOOM_EMBEDDED_REPLICAS=3` (or 5, 7: an odd number, so a majority survives the loss of a node)
starts this instead of the single node. Every node is a child like the single one
(PDEATHSIG, pidfile). Which node is primary, and when a set is ready, is asked of the nodes
themselves (`hello`, `replSetGetStatus`), never assumed after a sleep.

Elections take MongoDB's defaults (a primary silent for 10 s is replaced) unless
`election_timeout_ms` says otherwise: the tests lower it, so each failover costs seconds.
"""

import contextlib
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from pymongo.errors import PyMongoError

from gateway.embedded import children, servers

HEALTHY = {"PRIMARY", "SECONDARY"}
SIGNALED_SHUTDOWN_MS = 500
"""How long a node stopped with SIGTERM waits for a secondary to catch up before it goes
(MongoDB's default, 15 s, makes stopping a whole set slow: its secondaries go first)."""


def replica_count(count: int) -> int:
    """1 (the single node), or an odd number up to 7: with an even one, losing half the
    nodes leaves no majority to elect a primary."""
    if count != 1 and (count % 2 == 0 or not 3 <= count <= 7):
        raise ValueError(f"embedded replicas must be 1 or an odd number from 3 to 7, not {count}")
    return count


class ReplicaSet:
    """Nodes `0 … n-1`, node `i` on `ports[i]` with its data under `data_dirs[i]`."""

    def __init__(
        self,
        binary: Path,
        data_dirs: list[Path],
        ports: list[int],
        lib_dir: Path | None,
        *,
        cache_gb: float,
        election_timeout_ms: int | None = None,
    ) -> None:
        self.binary = binary
        self.data_dirs = data_dirs
        self.ports = ports
        self.lib_dir = lib_dir
        self.cache_gb = cache_gb
        self.election_timeout_ms = election_timeout_ms
        self.processes: list[subprocess.Popen | None] = [None] * len(ports)

    @property
    def hosts(self) -> list[str]:
        return [f"127.0.0.1:{port}" for port in self.ports]

    @property
    def settings(self) -> dict[str, int] | None:
        """Heartbeats four times per election timeout, so a lost primary is noticed in time."""
        if self.election_timeout_ms is None:
            return None
        return {
            "electionTimeoutMillis": self.election_timeout_ms,
            "heartbeatIntervalMillis": max(self.election_timeout_ms // 4, 100),
        }

    def start(self) -> None:
        """Start every node, configure the set, and return once it has a writable primary and
        every other node is a secondary (so the set survives losing any one node at once)."""
        try:
            for index in range(len(self.ports)):
                self.start_node(index)
            with contextlib.closing(servers.direct_client(self.hosts[0])) as first:
                servers.configure_replica_set(first, self.hosts, self.settings)
            self.wait_until_healthy()
        except BaseException:
            self.stop()
            raise

    def start_node(self, index: int) -> subprocess.Popen:
        """Start node `index` (again, after a kill) and return once it answers; it rejoins the
        set on its own — `state(index)` tells when it is a secondary again."""
        process = servers.spawn_mongod(
            self.binary,
            self.data_dirs[index],
            self.ports[index],
            self.lib_dir,
            cache_gb=self.cache_gb,
            parameters=[f"shutdownTimeoutMillisForSignaledShutdown={SIGNALED_SHUTDOWN_MS}"],
        )
        self.processes[index] = process
        return process

    def kill(self, index: int, signum: int = signal.SIGKILL) -> None:
        """Send node `index` a signal (SIGKILL: no step-down, no goodbye) and reap it."""
        process = self.processes[index]
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signum)
        process.wait()
        self.processes[index] = None

    def stop(self) -> None:
        """SIGTERM every node at once, then wait for each: stopped one by one, each would wait
        for the others to elect a successor."""
        running = [p for p in self.processes if p is not None and p.poll() is None]
        for process in running:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
        for process in running:
            children.stop(process)
        self.processes = [None] * len(self.ports)

    def pids(self) -> dict[str, int]:
        """For the pidfile: one entry per running node."""
        return {
            f"mongod:{index}": process.pid
            for index, process in enumerate(self.processes)
            if process is not None
        }

    def state(self, index: int) -> str:
        """What node `index` says it is: PRIMARY, SECONDARY, OTHER (starting, recovering,
        in an election) or DOWN (it does not answer)."""
        with contextlib.closing(servers.direct_client(self.hosts[index])) as client:
            try:
                hello = client.admin.command("hello")
            except PyMongoError:
                return "DOWN"
        if hello.get("isWritablePrimary"):
            return "PRIMARY"
        return "SECONDARY" if hello.get("secondary") else "OTHER"

    def states(self) -> list[str]:
        return [self.state(index) for index in range(len(self.ports))]

    def primary(self) -> int | None:
        """The node that says it is a writable primary; None during an election."""
        return next((i for i, state in enumerate(self.states()) if state == "PRIMARY"), None)

    def wait_until_healthy(self, within_s: float = 90.0) -> int:
        """Wait until one node is primary and all others secondaries; return the primary.

        A freshly initiated set elects its first primary only after an election timeout; a
        secondary that sees no primary is asked to stand at once (`replSetStepUp`).
        """
        deadline = time.monotonic() + within_s
        asked = 0.0
        while True:
            self._check_alive()
            states = self.states()
            if states.count("PRIMARY") == 1 and set(states) <= HEALTHY:
                return states.index("PRIMARY")
            if "PRIMARY" not in states and "SECONDARY" in states and time.monotonic() > asked + 1:
                asked = time.monotonic()
                self._step_up(states.index("SECONDARY"))
            if time.monotonic() > deadline:
                raise servers.ServerFailed(f"the replica set is not healthy: {states}")
            time.sleep(0.05)

    def _step_up(self, index: int) -> None:
        with (
            contextlib.closing(servers.direct_client(self.hosts[index])) as client,
            contextlib.suppress(PyMongoError),
        ):
            client.admin.command("replSetStepUp")

    def _check_alive(self) -> None:
        for index, process in enumerate(self.processes):
            if process is not None and process.poll() is not None:
                raise servers.ServerFailed(
                    f"mongod node {index} exited with code {process.returncode}"
                )

    def status(self) -> dict[str, Any]:
        """`replSetGetStatus` as the primary reports it (its election metrics included)."""
        index = self.primary()
        if index is None:
            raise servers.ServerFailed("the replica set has no primary")
        with contextlib.closing(servers.direct_client(self.hosts[index])) as client:
            return client.admin.command("replSetGetStatus")
