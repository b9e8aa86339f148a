"""The embedded stack as a three-node replica set: one primary, failover, rejoin, no orphans."""

import json
import signal

import pytest
from pydantic import ValidationError
from pymongo import MongoClient

from gateway.embedded import EmbeddedStack
from gateway.settings import Settings
from tests.test_embedded_stack import LIB, _alive, _gone, stack_in_a_parent
from tests.waiting import eventually

pytest_plugins = ["tests.replica_set"]


def test_replicas_setting_takes_one_or_an_odd_number_up_to_seven(monkeypatch):
    monkeypatch.setenv("LOOM_EMBEDDED_REPLICAS", "3")
    assert Settings().embedded_replicas == 3
    for refused in ("2", "4", "9", "0"):
        monkeypatch.setenv("LOOM_EMBEDDED_REPLICAS", refused)
        with pytest.raises(ValidationError, match="odd number"):
            Settings()


async def test_three_node_stack_has_one_primary_and_two_secondaries(replica_set):
    assert sorted(await replica_set.states()) == ["PRIMARY", "SECONDARY", "SECONDARY"]
    assert replica_set.mongodb_url.count("127.0.0.1:") == 3
    recorded = json.loads((replica_set.stack.root / "children.json").read_text())
    assert sorted(recorded) == ["mongod:0", "mongod:1", "mongod:2", "valkey-server"]
    with MongoClient(replica_set.mongodb_url) as client:
        members = client.admin.command("replSetGetStatus")["members"]
        assert [m["stateStr"] for m in members].count("PRIMARY") == 1
        settings = client.admin.command("replSetGetConfig")["config"]["settings"]
        assert settings["electionTimeoutMillis"] == replica_set.nodes.election_timeout_ms == 2000


async def test_killing_the_primary_elects_another_and_the_restarted_node_rejoins_with_all_data(
    replica_set,
):
    with MongoClient(replica_set.mongodb_url, w="majority") as client:
        notes = client.failover_test.notes
        notes.insert_one({"_id": "before"})
        kill = await replica_set.kill_primary()
        election = await replica_set.wait_for_new_primary(kill)
        print(f"\n{election.report(kill)}")
        assert election.primary != kill.node
        assert election.metrics["lastElectionReason"] == "electionTimeout"
        notes.insert_one({"_id": "after"})

        await replica_set.restart(kill.node)
        assert sorted(await replica_set.states()) == ["PRIMARY", "SECONDARY", "SECONDARY"]
        assert await replica_set.primary() == election.primary
        host = replica_set.nodes.hosts[kill.node]
        with MongoClient(host, directConnection=True, readPreference="secondary") as rejoined:

            async def kept() -> list[str]:
                return sorted(d["_id"] for d in rejoined.failover_test.notes.find())

            assert await eventually(kept, lambda ids: ids == ["after", "before"])
        client.drop_database("failover_test")


async def test_nothing_is_left_running_after_a_replica_set_stack_stops(tmp_path):
    with EmbeddedStack(tmp_path / "s", persistent=False, lib_dir=LIB, replicas=3):
        pids = list(json.loads((tmp_path / "s" / "children.json").read_text()).values())
        assert len(pids) == 4
        assert all(_alive(pid) for pid in pids)
    assert not any(_alive(pid) for pid in pids)
    assert not (tmp_path / "s" / "children.json").exists()


async def test_replica_set_nodes_die_when_loom_is_killed_with_sigkill(tmp_path):
    parent, pids = stack_in_a_parent(tmp_path / "s", replicas=3)
    assert len(pids) == 4
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    await _gone(pids)


async def test_persistent_replica_set_keeps_its_data_and_its_ports_across_runs(tmp_path):
    root = tmp_path / "dev"
    with EmbeddedStack(root, persistent=True, lib_dir=LIB, replicas=3) as first:
        ports = list(first.mongod_ports)
        with MongoClient(first.mongodb_url, w="majority") as client:
            client.loom.notes.insert_one({"_id": "kept"})
    with EmbeddedStack(root, persistent=True, lib_dir=LIB, replicas=3) as again:
        assert again.mongod_ports == ports
        assert sorted(again.replica_set.states()) == ["PRIMARY", "SECONDARY", "SECONDARY"]
        with MongoClient(again.mongodb_url) as client:
            assert client.loom.notes.find_one({"_id": "kept"}) == {"_id": "kept"}
    assert EmbeddedStack.running_at(root) is None
