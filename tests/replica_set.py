"""A three-node embedded replica set for failover tests, and the faults to inflict on it.

A pytest plugin (`pytest_plugins = ["tests.replica_set"]` in the modules that need it): the
set is started once, and only when a test asks for `replica_set`; it is a stack of its own, so
the session's single node — and every other test — is untouched. After each test every killed
node is started again and the set is healthy (one primary, the rest secondaries) before the
next test runs.

Elections are made fast (a 2 s election timeout, heartbeats every 0.5 s, instead of MongoDB's
10 s and 2 s): a failover test then costs seconds, and a primary killed is still unreachable
long enough for a request to meet the election. Who is primary is always asked of the nodes
(`hello`); nothing here sleeps for a fixed time.
"""

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from gateway.embedded import EmbeddedStack
from gateway.embedded.replica_set import ReplicaSet
from tests.conftest import REPO
from tests.waiting import eventually

ELECTION_TIMEOUT_MS = 2000


@dataclass
class Kill:
    """A primary killed with SIGKILL: which node, and when (wall clock, as MongoDB dates)."""

    node: int
    at: datetime
    monotonic: float


@dataclass
class Election:
    """The new primary and what it says of its election (`electionCandidateMetrics`)."""

    primary: int
    seen_after_s: float
    """From the kill until a node answered `hello` as writable primary."""
    metrics: dict[str, Any]

    def after_kill_s(self, kill: Kill, field: str) -> float | None:
        """How long after the kill MongoDB dates one of its election moments."""
        moment = self.metrics.get(field)
        if moment is None:
            return None
        return (moment.replace(tzinfo=UTC) - kill.at).total_seconds()

    def report(self, kill: Kill) -> str:
        elected = self.after_kill_s(kill, "lastElectionDate")
        writable = self.after_kill_s(kill, "wMajorityWriteAvailabilityDate")
        return (
            f"election (MongoDB's own dates, from the kill): elected {elected:.2f} s"
            + (f", majority writes {writable:.2f} s" if writable is not None else "")
            + f"; a node answered hello as primary {self.seen_after_s:.2f} s after the kill"
        )


class ReplicaSetStack:
    def __init__(self, stack: EmbeddedStack) -> None:
        self.stack = stack

    @property
    def nodes(self) -> ReplicaSet:
        assert self.stack.replica_set is not None
        return self.stack.replica_set

    @property
    def mongodb_url(self) -> str:
        return self.stack.mongodb_url

    @property
    def redis_url(self) -> str:
        return self.stack.redis_url

    async def states(self) -> list[str]:
        return await asyncio.to_thread(self.nodes.states)

    async def primary(self) -> int | None:
        return await asyncio.to_thread(self.nodes.primary)

    async def kill_primary(self) -> Kill:
        node = await self.primary()
        assert node is not None, await self.states()
        kill = Kill(node, datetime.now(UTC), time.monotonic())
        await asyncio.to_thread(self.stack.kill_node, node)
        return kill

    async def wait_for_new_primary(self, kill: Kill, within_s: float = 60.0) -> Election:
        """Ask every node `hello` until one other than the killed is writable primary."""
        primary = await eventually(self.primary, lambda p: p not in (None, kill.node), within_s)
        seen_after_s = time.monotonic() - kill.monotonic
        status = await eventually(self._status, lambda s: s is not None, within_s)
        return Election(primary, seen_after_s, status.get("electionCandidateMetrics", {}))

    async def _status(self) -> dict[str, Any] | None:
        try:
            return await asyncio.to_thread(self.nodes.status)
        except Exception:
            return None

    async def restart(self, node: int, within_s: float = 60.0) -> None:
        """Start a killed node again and wait until it says it is a secondary."""
        await asyncio.to_thread(self.stack.restart_node, node)
        await eventually(
            lambda: asyncio.to_thread(self.nodes.state, node), lambda s: s == "SECONDARY", within_s
        )

    async def heal(self) -> None:
        """Restart every killed node and wait for one primary with secondaries beside it."""
        for node, process in enumerate(self.nodes.processes):
            if process is None:
                await asyncio.to_thread(self.stack.restart_node, node)
        if not self.stack.valkey_running:
            await asyncio.to_thread(self.stack.restart_valkey)
        await asyncio.to_thread(self.nodes.wait_until_healthy)


@pytest.fixture(scope="session")
def replica_set_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReplicaSetStack]:
    root = tmp_path_factory.mktemp("replica-set")
    with EmbeddedStack(
        root,
        persistent=False,
        lib_dir=REPO / ".loom" / "lib",
        replicas=3,
        election_timeout_ms=ELECTION_TIMEOUT_MS,
    ) as stack:
        yield ReplicaSetStack(stack)


@pytest.fixture
async def replica_set(replica_set_stack: ReplicaSetStack) -> AsyncIterator[ReplicaSetStack]:
    """The shared three-node set, healthy; healed again after the test, whatever it killed."""
    yield replica_set_stack
    await replica_set_stack.heal()
