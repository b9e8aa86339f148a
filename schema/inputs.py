"""Strawberry inputs → the camelCase dicts the pydantic models in resolvers/ validate."""

import dataclasses
from enum import Enum
from typing import Any

from pydantic.alias_generators import to_camel
from strawberry import UNSET


def as_input(value: Any) -> Any:
    """Recursively turn a Strawberry input object into plain data, dropping unset fields."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            to_camel(f.name): as_input(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if getattr(value, f.name) is not UNSET
        }
    if isinstance(value, list):
        return [as_input(v) for v in value]
    if isinstance(value, Enum):
        return value.value
    return value
