"""Free JSON that users store (item metadata, annotation attributes): bounded and storable.

MongoDB refuses field names starting with `$` or holding `.` inside documents we later query
by dotted path, so such keys are refused up front rather than failing half-way.
"""

import json
import math
from datetime import datetime
from typing import Any

from bson import ObjectId

from resolvers.errors import BadUserInput, LimitExceeded

MAX_BYTES = 64 * 1024
MAX_DEPTH = 10


def check(value: Any, field: str, max_bytes: int = MAX_BYTES) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadUserInput(f"{field} must be a JSON object", field=field)
    _walk(value, field, 1)
    size = len(json.dumps(value, separators=(",", ":")).encode())
    if size > max_bytes:
        raise LimitExceeded("maxMetadataBytes", max_bytes, f"{field} is {size} bytes")
    return value


def _walk(value: Any, path: str, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise BadUserInput(f"{path} is nested deeper than {MAX_DEPTH} levels", field=path)
    if isinstance(value, dict):
        for key, child in value.items():
            if not isinstance(key, str) or not key or key.startswith("$") or "." in key:
                raise BadUserInput(
                    f"{path} has a key {key!r}: keys must be non-empty, without '.' or a "
                    "leading '$'",
                    field=path,
                )
            _walk(child, f"{path}.{key}", depth + 1)
    elif isinstance(value, list):
        for child in value:
            _walk(child, path, depth + 1)
    elif isinstance(value, float) and not math.isfinite(value):
        raise BadUserInput(f"{path} holds a non-finite number", field=path)


def as_json(value: Any) -> Any:
    """A stored document as JSON data: ids as strings, dates as ISO-8601 text."""
    if isinstance(value, dict):
        return {key: as_json(child) for key, child in value.items()}
    if isinstance(value, list):
        return [as_json(child) for child in value]
    if isinstance(value, ObjectId):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return value
