"""The relay's triggers, kept in memory and matched against each event.

The triggers arrive in the same change stream as the data they watch, so the set changes at
exactly its place among the events: a trigger created, changed, activated or deleted applies
to the changes committed after that, and to none before. Filters are validated once, when a
trigger is loaded, and evaluated in memory (resolvers/dql.py `matcher`) against the document
after the change, or before it for deletes.

A match becomes an execution keyed by (trigger, event) — (trigger, resource) for `Once` — so
however often an event is read, it runs each trigger at most once.
"""

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from bson import ObjectId

from resolvers import dql, trigger_operations
from resolvers.triggers import COLLECTIONS, ExecutionMode, Resource, TriggerAction, stored

log = logging.getLogger("loom.relay")


@dataclass(frozen=True)
class Armed:
    """An active trigger as the relay matches it."""

    doc: dict[str, Any]
    actions: frozenset[str]
    matches: Callable[[dict[str, Any]], bool]


class TriggerSet:
    def __init__(self) -> None:
        self._by_id: dict[ObjectId, tuple[tuple[ObjectId, str], Armed | None]] = {}
        self._armed: dict[tuple[ObjectId, str], dict[ObjectId, Armed]] = {}
        self._watching: dict[tuple[ObjectId, str], int] = {}

    def load(self, docs: Iterable[dict[str, Any]]) -> None:
        for doc in docs:
            self.put(doc)

    def put(self, raw: dict[str, Any]) -> None:
        """A trigger as it now is (created, changed); an unusable one is logged and skipped."""
        self.remove(raw["_id"])
        doc = stored(raw)
        key = (doc["projectId"], doc["resource"])
        armed = None
        if doc["active"]:
            try:
                collection = COLLECTIONS[Resource(doc["resource"])]
                armed = Armed(
                    doc, frozenset(doc["actions"]), dql.matcher(collection, doc["filter"])
                )
            except Exception:
                log.exception("trigger %s cannot be matched; it fires on nothing", doc["_id"])
        self._by_id[doc["_id"]] = (key, armed)
        self._watching[key] = self._watching.get(key, 0) + 1
        if armed is not None:
            self._armed.setdefault(key, {})[doc["_id"]] = armed

    def remove(self, trigger_id: ObjectId) -> None:
        known = self._by_id.pop(trigger_id, None)
        if known is None:
            return
        key, armed = known
        self._watching[key] -= 1
        if not self._watching[key]:
            del self._watching[key]
        if armed is not None:
            self._armed[key].pop(trigger_id, None)
            if not self._armed[key]:
                del self._armed[key]

    def execution_projects(self) -> frozenset[ObjectId]:
        """The projects with triggers (active or not) on executions: only their executions'
        changes are events."""
        return frozenset(
            project for project, resource in self._watching if resource == Resource.Execution
        )

    def matching(self, event: dict[str, Any]) -> list[Armed]:
        """The active triggers the event fires, in a stable order."""
        armed = self._armed.get((event["projectId"], event["resource"]))
        if not armed:
            return []
        document = event["before"] if event["action"] == TriggerAction.Deleted else event["after"]
        fired = []
        for trigger in armed.values():
            if event["action"] not in trigger.actions:
                continue
            try:
                if trigger.matches(document):
                    fired.append(trigger)
            except Exception:
                log.exception("trigger %s failed on event %s", trigger.doc["_id"], event["_id"])
        return sorted(fired, key=lambda trigger: trigger.doc["_id"])

    def get(self, trigger_id: ObjectId) -> dict[str, Any] | None:
        known = self._by_id.get(trigger_id)
        return known[1].doc if known and known[1] else None


def firing_key(trigger: dict[str, Any], event: dict[str, Any]) -> str:
    """What a trigger's execution or delivery for an event is unique on: (trigger, event), or
    (trigger, resource) for `Once`."""
    if trigger["executionMode"] == ExecutionMode.Once:
        return f"{trigger['_id']}:resource:{event['resourceId']}"
    return f"{trigger['_id']}:event:{event['_id']}"


class Executions:
    """The executions of one round of events. Each trigger's first is built as any execution is
    (resolvers/executions.py `new_execution`) and the others are copies of it with their own
    id, resource and keys: a burst makes thousands per trigger, and building each afresh was a
    tenth of the relay's time."""

    def __init__(self) -> None:
        self._first: dict[ObjectId, dict[str, Any]] = {}

    def of(
        self, trigger: dict[str, Any], event: dict[str, Any], service: dict[str, Any]
    ) -> dict[str, Any]:
        """The execution an event runs for a trigger, keyed so that it is created once."""
        first = self._first.get(trigger["_id"])
        if first is None:
            first = trigger_operations.execution_for(trigger, service, None)
            self._first[trigger["_id"]] = first
        kind = COLLECTIONS[Resource(event["resource"])][:-1]
        execution = {
            **first,
            "_id": ObjectId(),
            # A deleted resource is gone: the function gets it from the event instead.
            "resource": None
            if event["action"] == TriggerAction.Deleted
            else {"type": kind, "id": event["resourceId"]},
            "statusLog": [dict(first["statusLog"][0])],
            "progress": dict(first["progress"]),
            "logs": [],
            "eventId": event["_id"],
            "triggerKey": firing_key(trigger, event),
        }
        if trigger["ordered"]:
            execution["orderKey"] = f"{trigger['_id']}:{event['resourceId']}"
            execution["orderSeq"] = event["token"]
        return execution
