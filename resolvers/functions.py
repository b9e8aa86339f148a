"""The function registry: what a service may run.

Installed packages declare functions under the entry-point group `loom.functions`, each entry
naming a `LoomFunction`; Loom's own built-ins are registered the same way (pyproject.toml).
A service can only name registered functions — never an arbitrary import path — so what runs
on workers is exactly what was installed on them.
"""

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import cache
from importlib.metadata import entry_points
from typing import Any, Protocol

from pydantic import BaseModel, ValidationError

from resolvers.errors import BadUserInput

GROUP = "loom.functions"
log = logging.getLogger("loom.functions")


class FunctionContext(Protocol):
    """What a running function may use besides its input."""

    resource: dict[str, Any] | None
    """The item, dataset or annotation the execution is about, if any."""

    event: dict[str, Any] | None
    """For an execution a trigger created, the event that fired it: `resource`, `resourceId`,
    `action`, and the document `before` and `after` the change."""

    log: logging.Logger
    """Lines logged here are stored with the execution."""

    async def progress(self, percent: int, message: str = "") -> None:
        """Report progress (0-100); subscribers see it live."""

    async def read_file(self) -> bytes:
        """The content of the item the execution is about (ValueError if it is not an item)."""


@dataclass(frozen=True)
class LoomFunction:
    description: str
    input: type[BaseModel]
    run: Callable[[Any, FunctionContext], Awaitable[Any]]
    """Called with the validated input (an instance of `input`) and the context."""


@cache
def registry() -> dict[str, LoomFunction]:
    """Every installed function, by entry-point name (loaded once per process)."""
    found: dict[str, LoomFunction] = {}
    for entry in entry_points(group=GROUP):
        function = entry.load()
        if not isinstance(function, LoomFunction):
            log.warning(
                "entry point %s = %s is not a LoomFunction; ignored", entry.name, entry.value
            )
            continue
        found[entry.name] = function
    return found


def lookup(name: str) -> LoomFunction:
    function = registry().get(name)
    if function is None:
        known = ", ".join(sorted(registry())) or "none"
        raise BadUserInput(
            f"{name!r} is not a registered function (registered: {known})", field="function"
        )
    return function


def validate_input(name: str, data: Any) -> dict[str, Any]:
    """The input as the function's model accepts it (BAD_USER_INPUT otherwise), as JSON data."""
    try:
        return lookup(name).input.model_validate(data).model_dump(mode="json")
    except ValidationError as exc:
        raise BadUserInput.from_validation(exc) from exc
