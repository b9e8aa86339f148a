"""DQL, Dataloop's JSON filter language: the one module that validates it, translates it into a
MongoDB query (`to_mongo`, `parse`) and evaluates it against one document in memory (`matches`,
for trigger matching).

Both interpret the same validated tree, and `matches` mirrors MongoDB's own matcher for every
construct the validation lets through; a property test holds the two together against a real
mongod. What MongoDB does too oddly to mirror simply, or what could not be stored the way it was
sent, is refused with BAD_USER_INPUT instead, so the two never disagree:

- comparisons (`$gt $gte $lt $lte`) with null: MongoDB lets `$gte: null` match missing fields;
- equality with an array or an object (bare values, `$eq`, `$ne`, `$in` members): it would
  depend on element and key order; use `$in` for "one of", a dotted path for a sub-field;
- NaN, ±Infinity, integers beyond 64 bits, strings that are not valid Unicode;
- every other operator: `$regex` (use `$glob`), `$where`, `$expr`, `$function`, `$elemMatch`,
  `$size`, `$type`, `$nor`, and `$not` inside a field (write `{"$not": {field: ...}}`);
- `$glob` on ids and dates, which are never strings.

Semantics kept from MongoDB: dotted paths reach into sub-documents, into the documents inside
arrays, and through numeric segments to array positions; a condition on a field holding an array
holds if it holds for one element (or for the array); `$ne`, `$nin` and `$exists: false` are
negations, so they match documents lacking the field; null matches a missing field; numbers
compare with numbers (ints and floats exactly; NaN equals nothing we accept), strings with strings
(code point order, which is MongoDB's UTF-8 byte order), booleans, dates and ids each only with
their own kind. Other BSON types (binary, Decimal128, …) never satisfy a comparison in memory;
Loom stores none in the fields DQL reaches.

A dataset version holds copies of its items (resolvers/versions/): the same fields, with the
original id under `itemId` (each copy has its own `_id`) and the item's place in the version's
split under `split`. `parse(..., in_version=True)` translates the same DQL for those copies:
`id` reads the original id, and items may be filtered on `split`. Their annotations are the
live documents, so annotation filters are unchanged.

Wildcards in plain values, as Dataloop's DQL has them: a string containing `*` given as a bare
value, to `$eq`, `$ne`, or as a member of `$in` / `$nin`, is a `$glob` pattern (`{"name":
"dog*"}`, dtlpy's recursive directory filter `{"filename": "/test/**"}`, `{"mimetype":
"image/*"}`). `*` and `**` alike match any run of characters, `/` included, so `/test/*` reaches
into sub-directories as `/test/**` does (`{"dir": "/test"}` is one directory); `?` is a wildcard
only inside such a pattern, and a value without `*` is compared exactly. Id, date and number
fields take no patterns.

dtlpy's names: `metadata.system.mimetype`, `.size`, `.width`, `.height` and `.originalname` are
the item fields Loom keeps as `mimetype`, `size`, `width`, `height`, `metadata.system.originalName`;
number fields take numbers written as strings too (`{"size": {"$gt": "0"}}`, as dtlpy's docs
write them). An annotations filter's `type` values may be dtlpy's type names (`class`, `segment`,
`binary`, `cube`), compared as Loom's (`classification`, `polygon`, `segmentation`, `cuboid`);
dtlpy's types that Loom lacks (`cube_3d`, `subtitle`, …) stay as they are and match nothing, so
dtlpy's default annotations filter (every type but `note`) works unchanged.

`$glob`: `*` is any run of characters, `?` exactly one, everything else literal (there is no
escape), case-sensitive, over the whole value. It becomes `{"$regex": "^…\\z", "$options": "s"}`:
`\\z` because `$` would also match before a final newline, `s` so wildcards cross newlines. In
memory it is matched without regular expressions, in O(len(pattern) * len(value)), so a pattern
full of `*` cannot stall trigger matching.
"""

import json
import math
import operator
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

from bson import ObjectId, Regex

from resolvers.annotation_shapes import stored_type
from resolvers.errors import BadUserInput, LimitExceeded
from resolvers.inputs import object_id

MAX_DEPTH = 8
"""Nesting of filter objects; `{"a": 1}` has depth 1, `{"$not": {"a": 1}}` depth 2."""
MAX_CONDITIONS = 200
"""Field conditions in one filter: `{"a": 1}` is one, `{"a": {"$gt": 1, "$lt": 5}}` two."""
MAX_IN_VALUES = 1000
MAX_STRING_LENGTH = 1000
MAX_BYTES = 64 * 1024
"""Of the JSON text of a filter or a whole query."""
MAX_PATH_SEGMENTS = 8
"""Below `metadata.` or `attributes.`."""
MAX_PAGE_SIZE = 1000
MAX_SORT_KEYS = 8
MAX_OFFSET = 100_000
"""Documents before a DQL page (`page * pageSize`): each is read and skipped."""
DEFAULT_PAGE_SIZE = 1000
"""dtlpy's, for a query that gives `page` without `pageSize`."""

RESOURCE_FIELDS: dict[str, dict[str, str]] = {
    "items": {
        "id": "_id",
        "datasetId": "datasetId",
        "name": "name",
        "filename": "filename",
        "dir": "dir",
        "mimetype": "mimetype",
        "size": "size",
        "width": "width",
        "height": "height",
        "hash": "sha256",
        "referenceId": "referenceId",
        "type": "type",
        "tags": "tags",
        "hidden": "hidden",
        "description": "description",
        "annotated": "annotated",
        "annotationsCount": "annotationsCount",
        "createdAt": "createdAt",
        "updatedAt": "updatedAt",
        "creator": "creator",
        "metadata.system.mimetype": "mimetype",
        "metadata.system.size": "size",
        "metadata.system.width": "width",
        "metadata.system.height": "height",
        "metadata.system.originalname": "metadata.system.originalName",
    },
    "annotations": {
        "id": "_id",
        "itemId": "itemId",
        "datasetId": "datasetId",
        "type": "type",
        "label": "label",
        "status": "status",
        "automated": "automated",
        "parentId": "parentId",
        "objectId": "objectId",
        "createdAt": "createdAt",
        "updatedAt": "updatedAt",
        "creator": "creator",
        "modelInfo.name": "modelInfo.name",
        "modelInfo.modelId": "modelInfo.modelId",
        "modelInfo.confidence": "modelInfo.confidence",
    },
    "datasets": {
        "id": "_id",
        "projectId": "projectId",
        "name": "name",
        "description": "description",
        "readonly": "readonly",
        "itemsCount": "itemsCount",
        "annotationsCount": "annotationsCount",
        "createdAt": "createdAt",
        "updatedAt": "updatedAt",
        "creator": "creator",
    },
    "executions": {
        "id": "_id",
        "serviceId": "serviceId",
        "projectId": "projectId",
        "batchId": "batchId",
        "triggerId": "triggerId",
        "function": "function",
        "status": "status",
        "attempts": "attempts",
        "maxAttempts": "maxAttempts",
        "duration": "duration",
        "error": "error",
        "progress.percent": "progress.percent",
        "progress.message": "progress.message",
        "resource.type": "resource.type",
        "resource.id": "resource.id",
        "startedAt": "startedAt",
        "createdAt": "createdAt",
        "updatedAt": "updatedAt",
        "creator": "creator",
    },
    "deployments": {
        "id": "_id",
        "projectId": "projectId",
        "name": "name",
        "description": "description",
        "active": "active",
        "championVersionId": "championVersionId",
        "shadowVersionId": "shadowVersionId",
        "targetDatasetId": "targetDatasetId",
        "minThreshold": "minThreshold",
        "createdAt": "createdAt",
        "updatedAt": "updatedAt",
        "creator": "creator",
    },
    "dataset_versions": {
        "id": "_id",
        "datasetId": "datasetId",
        "projectId": "projectId",
        "name": "name",
        "description": "description",
        "status": "status",
        "itemsCount": "itemsCount",
        "annotationsCount": "annotationsCount",
        "split.seed": "split.seed",
        "split.stratifyBy": "split.stratifyBy",
        "createdAt": "createdAt",
        "updatedAt": "updatedAt",
        "creator": "creator",
    },
    "predicted_assets": {
        "id": "_id",
        "deploymentId": "deploymentId",
        "itemId": "itemId",
        "datasetId": "datasetId",
        "batchId": "batchId",
        "tags": "tags",
        "minThreshold": "minThreshold",
        "champion.status": "champion.status",
        "champion.versionId": "champion.versionId",
        "champion.latencyMs": "champion.latencyMs",
        "shadow.status": "shadow.status",
        "shadow.versionId": "shadow.versionId",
        "shadow.latencyMs": "shadow.latencyMs",
        "review.status": "review.status",
        "review.at": "review.at",
        "review.trainingDue": "review.trainingDue",
        "createdAt": "createdAt",
        "updatedAt": "updatedAt",
        "creator": "creator",
    },
}
"""Per resource, each wire field name and the MongoDB field it reads."""
RESOURCE_FIELDS["version_items"] = {**RESOURCE_FIELDS["items"], "id": "itemId", "split": "split"}
IN_VERSION = {"items": "version_items"}
"""The resources a dataset version holds copies of, and the fields of those copies (its
annotations are the live documents, inside its items' copies)."""
PUBLIC_RESOURCES = tuple(r for r in RESOURCE_FIELDS if r not in IN_VERSION.values())
QUERY_RESOURCES = ("items", "annotations", "executions", "predicted_assets")
"""What a whole DQL query may be over; datasets are only matched in memory (triggers)."""

_OPEN_PREFIXES = {
    "items": ("metadata",),
    "annotations": ("attributes", "metadata"),
    "datasets": (),
    "executions": ("input", "output"),
    "deployments": (),
    "predicted_assets": ("metadata",),
    "dataset_versions": (),
}
_OPEN_PREFIXES.update({stored: _OPEN_PREFIXES[resource] for resource, stored in IN_VERSION.items()})
"""Free-form sub-documents: any `prefix.<path>` may be filtered on."""
_ID_FIELDS = frozenset(
    {
        "id",
        "datasetId",
        "itemId",
        "parentId",
        "creator",
        "modelInfo.modelId",
        "serviceId",
        "projectId",
        "batchId",
        "triggerId",
        "resource.id",
        "deploymentId",
        "championVersionId",
        "shadowVersionId",
        "targetDatasetId",
        "champion.versionId",
        "shadow.versionId",
    }
)
_DATE_FIELDS = frozenset({"createdAt", "updatedAt", "startedAt"})
_NUMBER_FIELDS = frozenset(
    {"size", "width", "height"} | {f"metadata.system.{f}" for f in ("size", "width", "height")}
)
_SEGMENT = re.compile(r"[A-Za-z0-9_\-]+")

_COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    "$gt": operator.gt,
    "$gte": operator.ge,
    "$lt": operator.lt,
    "$lte": operator.le,
}
_NEGATIONS = {"$ne": "$eq", "$nin": "$in"}
_FIELD_OPERATORS = ("$eq", "$ne", *_COMPARISONS, "$in", "$nin", "$exists", "$glob")
_ENVELOPE_KEYS = ("resource", "filter", "join", "sort", "page", "pageSize")
_DIRECTIONS = {"ascending": 1, "descending": -1, 1: 1, -1: -1}
_INT64 = 2**63


class DqlJoin(NamedTuple):
    """The joined resource, the MongoDB filter on its collection, its field holding the key
    (`local`) and this resource's field the key refers to (`foreign`)."""

    resource: str
    filter: dict[str, Any]
    local: str
    foreign: str


@dataclass(frozen=True)
class DqlQuery:
    """A validated DQL query. A join is executed by the caller: the distinct `local` values of
    the joined documents matching `join.filter` restrict this resource's `foreign` field."""

    resource: str
    filter: dict[str, Any]
    join: DqlJoin | None
    sort: list[tuple[str, int]]
    page: int
    page_size: int | None

    @property
    def window(self) -> tuple[int, int] | None:
        """(offset, size) of the dtlpy page asked for, None when the query asks for none."""
        if self.page_size is None and self.page == 0:
            return None
        size = self.page_size or DEFAULT_PAGE_SIZE
        return self.page * size, size


def to_mongo(resource: str, filter: dict[str, Any] | None) -> dict[str, Any]:
    """The MongoDB query for a DQL filter of `resource` (`{}` for none)."""
    return _query(_validated(resource, filter))


def matches(resource: str, filter: dict[str, Any] | None, doc: dict[str, Any]) -> bool:
    """Whether MongoDB would return `doc` (as PyMongo decodes it) for this filter."""
    return _compiled(_validated(resource, filter))(doc)


def matcher(resource: str, filter: dict[str, Any] | None) -> Callable[[dict[str, Any]], bool]:
    """`matches` with the filter validated once, for a filter applied to many documents."""
    return _compiled(_validated(resource, filter))


def from_json(resource: str, doc: dict[str, Any]) -> dict[str, Any]:
    """A document written as JSON (ids and dates as strings) as MongoDB would hold it, for
    `matches`: the id and date fields DQL knows are converted where they are strings."""
    converted = json.loads(json.dumps(doc))
    for wire, stored in RESOURCE_FIELDS[_resource(resource)].items():
        kind = _kind_of(wire)
        if kind not in ("id", "date"):
            continue
        *parents, last = stored.split(".")
        holder: Any = converted
        for key in parents:
            holder = holder.get(key) if isinstance(holder, dict) else None
        if isinstance(holder, dict) and isinstance(holder.get(last), str):
            holder[last] = _scalar(holder[last], kind, f"document.{wire}")
    return converted


def parse(dql: dict[str, Any], *, in_version: bool = False) -> DqlQuery:
    """Validate a whole DQL query: envelope, filters, join, sort and paging; `in_version`:
    translated for a dataset version's copies (module docstring)."""
    if not isinstance(dql, dict):
        raise BadUserInput("A DQL query must be a JSON object", field="dql")
    _check_size(dql, "dql")
    unknown = [key for key in dql if key not in _ENVELOPE_KEYS]
    if unknown:
        raise BadUserInput(
            f"Unknown DQL key {unknown[0]!r}; a query has {', '.join(_ENVELOPE_KEYS)}",
            field=str(unknown[0]),
        )
    resource = _resource(dql.get("resource"), QUERY_RESOURCES)
    stored = IN_VERSION.get(resource, resource) if in_version else resource
    if in_version and stored == resource:
        raise BadUserInput(f"A dataset version holds no {resource}", field="resource")
    query = DqlQuery(
        resource=resource,
        filter=_query(_compile(stored, dql.get("filter"), "filter")),
        join=_join(resource, dql.get("join")),
        sort=_sort(stored, dql.get("sort")),
        page=_page(dql.get("page")),
        page_size=_page_size(dql.get("pageSize")),
    )
    if query.window and query.window[0] > MAX_OFFSET:
        raise LimitExceeded(
            "maxDqlOffset", MAX_OFFSET, f"page {query.page} starts after {query.window[0]} items"
        )
    return query


def envelope(resource: str, value: Any) -> dict[str, Any]:
    """A whole DQL query for `resource` from what a caller sent: a query (its resource, if
    given, must be `resource`) or a bare filter."""
    if isinstance(value, dict) and any(key in value for key in _ENVELOPE_KEYS):
        if value.get("resource", resource) != resource:
            raise BadUserInput(f"This DQL query must be over {resource}", field="resource")
        return {**value, "resource": resource}
    return {"resource": resource, "filter": value}


def narrowed(resource: str, value: Any, clause: dict[str, Any]) -> dict[str, Any]:
    """The query a caller sent (a query or a bare filter), its filter and-ed with `clause`."""
    query = envelope(resource, value)
    given = query.get("filter")
    return {**query, "filter": {"$and": [clause, given]} if given else clause}


# -- validation: DQL -> a tree of clauses ---------------------------------------------------


@dataclass(frozen=True)
class _Pattern:
    """A plain value holding `*`: matched as a `$glob` by the equality operators."""

    text: str


@dataclass(frozen=True)
class _Field:
    path: tuple[str, ...]
    conditions: tuple[tuple[str, Any], ...]


@dataclass(frozen=True)
class _Logic:
    operator: str
    filters: tuple["_Filter", ...]


_Filter = tuple[_Field | _Logic, ...]
"""Clauses that must all hold."""


def _validated(resource: str, filter: dict[str, Any] | None) -> _Filter:
    resource = _resource(resource)
    _check_size(filter, "filter")
    return _compile(resource, filter, "filter")


def _resource(resource: Any, among: Sequence[str] = PUBLIC_RESOURCES) -> str:
    if not isinstance(resource, str) or resource not in among:
        raise BadUserInput(
            f"resource must be one of {', '.join(among)}, not {resource!r}",
            field="resource",
        )
    return resource


def _check_size(value: Any, where: str) -> None:
    try:
        size = len(json.dumps(value, separators=(",", ":")).encode())
    except (TypeError, ValueError, RecursionError) as exc:
        raise BadUserInput(f"{where} is not JSON or is nested too deeply", field=where) from exc
    if size > MAX_BYTES:
        raise LimitExceeded("maxDqlBytes", MAX_BYTES, f"{where} is {size} bytes of JSON")


def _compile(resource: str, filter: Any, where: str) -> _Filter:
    if filter is None:
        return ()
    compiled = _filter(resource, filter, where, 1)
    count = _count(compiled)
    if count > MAX_CONDITIONS:
        raise LimitExceeded("maxDqlConditions", MAX_CONDITIONS, f"{where} has {count} conditions")
    return compiled


def _count(filter_: _Filter) -> int:
    return sum(
        len(clause.conditions) if isinstance(clause, _Field) else sum(map(_count, clause.filters))
        for clause in filter_
    )


def _filter(resource: str, node: Any, where: str, depth: int) -> _Filter:
    if depth > MAX_DEPTH:
        raise LimitExceeded("maxDqlDepth", MAX_DEPTH, f"{where} is nested too deeply")
    if not isinstance(node, dict):
        raise BadUserInput(f"{where} must be a JSON object", field=where)
    clauses: list[_Field | _Logic] = []
    for key, value in node.items():
        at = f"{where}.{key}"
        if key in ("$and", "$or"):
            if not isinstance(value, list) or not value:
                raise BadUserInput(f"{at} must be a non-empty list of filters", field=at)
            children = (_filter(resource, v, f"{at}.{i}", depth + 1) for i, v in enumerate(value))
            clauses.append(_Logic(key, tuple(children)))
        elif key == "$not":
            clauses.append(_Logic(key, (_filter(resource, value, at, depth + 1),)))
        elif key.startswith("$"):
            raise BadUserInput(
                f"{key} is not allowed here: a filter holds fields, $and, $or and $not", field=at
            )
        else:
            path = _path(resource, key, at)
            clauses.append(_Field(path, _conditions(resource, key, value, at)))
    return tuple(clauses)


def _path(resource: str, wire: str, where: str) -> tuple[str, ...]:
    fields = RESOURCE_FIELDS[resource]
    if wire in fields:
        return tuple(fields[wire].split("."))
    prefix, _, rest = wire.partition(".")
    if prefix in _OPEN_PREFIXES[resource] and rest:
        segments = rest.split(".")
        if len(segments) > MAX_PATH_SEGMENTS:
            raise LimitExceeded(
                "maxDqlPathDepth", MAX_PATH_SEGMENTS, f"{wire!r} has {len(segments)} segments"
            )
        if not all(_SEGMENT.fullmatch(segment) for segment in segments):
            raise BadUserInput(
                f"{wire!r} is not a valid path: its segments are letters, digits, '_' and '-'",
                field=where,
            )
        return (prefix, *segments)
    open_paths = ", ".join(f"{prefix}.<path>" for prefix in _OPEN_PREFIXES[resource])
    raise BadUserInput(
        f"Unknown field {wire!r} for {resource}; fields are {', '.join(fields)}, {open_paths}",
        field=where,
    )


def _conditions(resource: str, wire: str, value: Any, where: str) -> tuple[tuple[str, Any], ...]:
    kind = _kind_of(wire)
    if not isinstance(value, dict):
        conditions: tuple[tuple[str, Any], ...] = (("$eq", _plain(value, kind, where)),)
    elif not value:
        raise BadUserInput(f"{where} needs at least one operator", field=where)
    else:
        conditions = tuple(
            (op, _operand(op, arg, kind, f"{where}.{op}")) for op, arg in value.items()
        )
    if resource == "annotations" and wire == "type":
        return tuple((op, _annotation_types(op, arg)) for op, arg in conditions)
    return conditions


def _kind_of(wire: str) -> str | None:
    if wire in _ID_FIELDS:
        return "id"
    if wire in _DATE_FIELDS:
        return "date"
    return "number" if wire in _NUMBER_FIELDS else None


def _annotation_types(op: str, arg: Any) -> Any:
    """dtlpy's type names as the types Loom stores, in the operators that compare values."""
    if op not in ("$eq", "$ne", "$in", "$nin"):
        return arg
    if isinstance(arg, tuple):
        return tuple(stored_type(v) if isinstance(v, str) else v for v in arg)
    return stored_type(arg) if isinstance(arg, str) else arg


def _plain(value: Any, kind: str | None, where: str) -> Any:
    """A value compared for equality: a string with `*` in it is a pattern."""
    value = _scalar(value, kind, where)
    if kind is None and isinstance(value, str) and "*" in value:
        return _Pattern(re.sub(r"\*+", "*", value))
    return value


def _operand(op: str, arg: Any, kind: str | None, where: str) -> Any:
    if op not in _FIELD_OPERATORS:
        raise BadUserInput(_not_an_operator(op), field=where)
    if op == "$exists":
        if not isinstance(arg, bool):
            raise BadUserInput(f"{where} must be true or false", field=where)
        return arg
    if op == "$glob":
        if kind is not None:
            raise BadUserInput(f"$glob matches strings; this field holds {kind}s", field=where)
        if not isinstance(arg, str):
            raise BadUserInput(f"{where} must be a string pattern", field=where)
        return re.sub(r"\*+", "*", _string(arg, where))
    if op in ("$in", "$nin"):
        if not isinstance(arg, list):
            raise BadUserInput(f"{where} must be a list of values", field=where)
        if len(arg) > MAX_IN_VALUES:
            raise LimitExceeded("maxDqlInValues", MAX_IN_VALUES, f"{where} has {len(arg)} values")
        return tuple(_plain(value, kind, f"{where}.{i}") for i, value in enumerate(arg))
    if op in ("$eq", "$ne"):
        return _plain(arg, kind, where)
    value = _scalar(arg, kind, where)
    if value is None and op in _COMPARISONS:
        raise BadUserInput(f"{op} cannot compare with null; use $eq: null or $exists", field=where)
    return value


def _not_an_operator(op: str) -> str:
    if op == "$not":
        return '$not takes a whole filter: write {"$not": {"field": {...}}}'
    if op == "$regex":
        return "$regex is not allowed; use $glob with * and ?"
    if op == "$match":
        return "$match is not supported; write a wildcard pattern as the value, or use $glob"
    if op.startswith("$"):
        return f"{op} is not a DQL operator; field operators are {' '.join(_FIELD_OPERATORS)}"
    return (
        f"{op!r} is not an operator: a field's value is a string, number, boolean or null, "
        "or an object of operators (use a dotted path for a sub-field)"
    )


def _scalar(value: Any, kind: str | None, where: str) -> Any:
    """A JSON scalar as MongoDB will see it: ids and dates converted, the rest checked."""
    if value is None:
        return None
    if isinstance(value, str):
        value = _string(value, where)
    elif not isinstance(value, int | float):
        raise BadUserInput(f"{where} must be a string, number, boolean or null", field=where)
    if kind == "id":
        return object_id(value, where)
    if kind == "number" and isinstance(value, str):
        return _number(value, where)
    if kind == "date":
        if not isinstance(value, str):
            raise BadUserInput(f"{where} must be an ISO-8601 date string", field=where)
        return _datetime(value, where)
    if isinstance(value, int) and not -_INT64 <= value < _INT64:
        raise BadUserInput(f"{where} does not fit in 64 bits", field=where)
    if isinstance(value, float) and not math.isfinite(value):
        raise BadUserInput(f"{where} must be a finite number", field=where)
    return value


def _number(text: str, where: str) -> int | float:
    """A number written as a string, as dtlpy's docs write them: `"5242880"`."""
    try:
        number = float(text) if any(c in text for c in ".eE") else int(text)
    except ValueError:
        raise BadUserInput(f"{where} must be a number, not {text!r}", field=where) from None
    if isinstance(number, float) and not math.isfinite(number):
        raise BadUserInput(f"{where} must be a finite number", field=where)
    if isinstance(number, int) and not -_INT64 <= number < _INT64:
        raise BadUserInput(f"{where} does not fit in 64 bits", field=where)
    return number


def _string(value: str, where: str) -> str:
    if len(value) > MAX_STRING_LENGTH:
        raise LimitExceeded(
            "maxDqlStringLength", MAX_STRING_LENGTH, f"{where} is {len(value)} characters"
        )
    try:
        value.encode()
    except UnicodeEncodeError as exc:
        raise BadUserInput(f"{where} is not valid Unicode", field=where) from exc
    return value


def _datetime(value: str, where: str) -> datetime:
    """Timezone-aware, UTC if no offset is given, at MongoDB's millisecond precision."""
    try:
        moment = datetime.fromisoformat(value)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return _milliseconds(moment.astimezone(UTC))
    except (ValueError, OverflowError) as exc:
        raise BadUserInput(f"{where} is not an ISO-8601 date: {value!r}", field=where) from exc


def _milliseconds(moment: datetime) -> datetime:
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


# -- the envelope ---------------------------------------------------------------------------


def _join(resource: str, join: Any) -> DqlJoin | None:
    if join is None:
        return None
    if resource != "items":
        raise BadUserInput("Only items queries can join annotations", field="join")
    shape = isinstance(join, dict) and isinstance(join.get("on"), dict)
    if not shape or set(join) - {"on", "filter"}:
        raise BadUserInput('join must be {"on": {...}, "filter": {...}}', field="join")
    on = join["on"]
    foreign = [key for key in ("forigen", "foreign") if key in on]
    if (
        set(on) - {"resource", "local", "forigen", "foreign"}
        or len(foreign) != 1
        or (on.get("resource"), on.get("local"), on[foreign[0]]) != ("annotations", "itemId", "id")
    ):
        raise BadUserInput(
            'join.on must be {"resource": "annotations", "local": "itemId", "forigen": "id"}',
            field="join.on",
        )
    return DqlJoin(
        resource="annotations",
        filter=_query(_compile("annotations", join.get("filter"), "join.filter")),
        local=RESOURCE_FIELDS["annotations"]["itemId"],
        foreign=RESOURCE_FIELDS["items"]["id"],
    )


def _sort(resource: str, sort: Any) -> list[tuple[str, int]]:
    if sort is None:
        return []
    if not isinstance(sort, dict):
        raise BadUserInput('sort must be an object like {"createdAt": "descending"}', field="sort")
    if len(sort) > MAX_SORT_KEYS:
        raise LimitExceeded("maxDqlSortKeys", MAX_SORT_KEYS, f"sort has {len(sort)} fields")
    keys = []
    for wire, direction in sort.items():
        where = f"sort.{wire}"
        path = _path(resource, wire, where)
        known = isinstance(direction, str | int) and not isinstance(direction, bool)
        if not known or direction not in _DIRECTIONS:
            raise BadUserInput(f"{where} must be ascending, descending, 1 or -1", field=where)
        keys.append((".".join(path), _DIRECTIONS[direction]))
    return keys


def _page(page: Any) -> int:
    if page is None:
        return 0
    if isinstance(page, bool) or not isinstance(page, int) or page < 0:
        raise BadUserInput("page must be a whole number, 0 or more", field="page")
    return page


def _page_size(page_size: Any) -> int | None:
    if page_size is None:
        return None
    if isinstance(page_size, bool) or not isinstance(page_size, int) or page_size < 1:
        raise BadUserInput("pageSize must be a whole number, 1 or more", field="pageSize")
    if page_size > MAX_PAGE_SIZE:
        raise LimitExceeded("maxDqlPageSize", MAX_PAGE_SIZE, f"pageSize={page_size} is too large")
    return page_size


# -- translation ----------------------------------------------------------------------------


def _query(filter_: _Filter) -> dict[str, Any]:
    """One object when its keys differ, else (two patterns on one field) an `$and` of them."""
    parts: list[tuple[str, Any]] = []
    for clause in filter_:
        if isinstance(clause, _Logic):
            key = "$nor" if clause.operator == "$not" else clause.operator
            parts.append((key, [_query(child) for child in clause.filters]))
        else:
            path = ".".join(clause.path)
            parts.extend((path, query) for query in _field_queries(clause.conditions))
    if len({key for key, _ in parts}) == len(parts):
        return dict(parts)
    return {"$and": [{key: query} for key, query in parts]}


def _field_queries(conditions: tuple[tuple[str, Any], ...]) -> list[Any]:
    """The operator objects for one field: one, unless two conditions need the same MongoDB
    operator (`$regex` for a `$glob` and a pattern, say)."""
    if len(conditions) == 1 and conditions[0][0] == "$eq":
        arg = conditions[0][1]
        return [_regex(arg.text) if isinstance(arg, _Pattern) else arg]
    objects: list[dict[str, Any]] = []
    for op, arg in conditions:
        operators = _mongo_operators(op, arg)
        free = next((o for o in objects if not set(o) & set(operators)), None)
        if free is None:
            objects.append(operators)
        else:
            free.update(operators)
    return objects


def _mongo_operators(op: str, arg: Any) -> dict[str, Any]:
    if op == "$glob" or (op == "$eq" and isinstance(arg, _Pattern)):
        text = arg.text if isinstance(arg, _Pattern) else arg
        return {"$regex": _glob_regex(text), "$options": "s"}
    if op == "$ne" and isinstance(arg, _Pattern):
        return {"$not": _regex(arg.text)}
    if isinstance(arg, tuple):
        return {op: [_regex(v.text) if isinstance(v, _Pattern) else v for v in arg]}
    return {op: arg}


def _regex(pattern: str) -> Regex:
    """A pattern as a BSON regular expression: `$in`, `$nin` and `$not` take them as values."""
    return Regex(_glob_regex(pattern), "s")


def _glob_regex(pattern: str) -> str:
    """The regular expression of a wildcard pattern, for MongoDB and (`_glob`) in memory alike:
    each segment between `*`s at its earliest place (a lazy, atomic group — the choice glob
    matching never needs to revisit), the last one at the end. A greedy `.*` per `*`
    backtracks exponentially on crafted texts, and MongoDB's regex engine then gives up and
    reports no match where the in-memory matcher finds one."""
    parts = [_segment_regex(part) for part in re.split(r"\*+", pattern)]
    if len(parts) == 1:
        return f"^{parts[0]}\\z"
    first, *middle, last = parts
    groups = "".join(f"(?>.*?{segment})" for segment in middle)
    return f"^{first}{groups}.*{last}\\z"


def _segment_regex(segment: str) -> str:
    return "".join("." if c == "?" else "\\x00" if c == "\x00" else re.escape(c) for c in segment)


# -- evaluation in memory -------------------------------------------------------------------

_MISSING = object()
"""What a path yields where a document has no value (MongoDB's EOO)."""


Check = Callable[[Any], bool]


def _compiled(filter_: _Filter) -> Check:
    """The filter as nested closures over a document, built once: each operator, kind and
    path is worked out here, so matching one document only walks its values (a trigger's
    filter is matched against every change of its resource)."""
    checks = [_compiled_clause(clause) for clause in filter_]
    if len(checks) == 1:
        return checks[0]

    def every(doc: Any) -> bool:
        for check in checks:  # noqa: SIM110 — a loop is half the cost of all() over a generator
            if not check(doc):
                return False
        return True

    return every


def _compiled_clause(clause: _Field | _Logic) -> Check:
    if isinstance(clause, _Logic):
        children = [_compiled(child) for child in clause.filters]
        if clause.operator == "$or":
            return lambda doc: any(child(doc) for child in children)
        if clause.operator == "$and":
            return lambda doc: all(child(doc) for child in children)
        (only,) = children  # $not, over its one filter
        return lambda doc: not only(doc)
    tests = [_condition(op, arg) for op, arg in clause.conditions]
    path = clause.path

    def values_of(doc: Any) -> list[Any]:
        # Sub-documents are walked here; an array on the way takes MongoDB's full walk.
        value = doc
        for segment in path:
            if isinstance(value, dict):
                value = value.get(segment, _MISSING)
                if value is _MISSING:
                    return [_MISSING]
            elif isinstance(value, list):
                return list(_values(doc, path))
            else:
                return [_MISSING]
        return [value, *value] if isinstance(value, list) else [value]

    def field(doc: Any) -> bool:
        values = values_of(doc)
        for test in tests:  # noqa: SIM110 — as in `every`
            if not test(values):
                return False
        return True

    return field


def _condition(op: str, arg: Any) -> Callable[[list[Any]], bool]:
    """One operator with its argument, as a test of the values a path reaches."""
    if op in _NEGATIONS:
        positive = _condition(_NEGATIONS[op], arg)
        return lambda values: not positive(values)
    if op == "$exists":
        return lambda values: any(value is not _MISSING for value in values) == arg
    if op == "$eq":
        one = _equality(arg)
    elif op == "$in":
        # Plain strings by one set lookup (strings compare only with strings); the rest each.
        strings = frozenset(choice for choice in arg if type(choice) is str)
        choices = [_equality(choice) for choice in arg if type(choice) is not str]

        def one(value: Any) -> bool:
            if isinstance(value, str) and value in strings:
                return True
            return any(choice(value) for choice in choices)

    elif op == "$glob":
        one = _glob(arg)
    else:
        one = _comparison(arg, _COMPARISONS[op])

    def any_value(values: list[Any]) -> bool:
        for value in values:  # noqa: SIM110 — as in `every`
            if one(value):
                return True
        return False

    return any_value


def _glob(pattern: str) -> Check:
    """A wildcard pattern matched in memory by the regular expression MongoDB is given
    (`_glob_regex`, with Python's spelling of the end of the text): one translation, so the
    two cannot disagree."""
    compiled = re.compile(_glob_regex(pattern).replace("\\z", "\\Z"), re.DOTALL)
    return lambda value: isinstance(value, str) and compiled.match(value) is not None


def _equality(arg: Any) -> Check:
    if isinstance(arg, _Pattern):
        return _glob(arg.text)
    if arg is None:
        return lambda value: value is None or value is _MISSING
    return _comparison(arg, operator.eq)


def _comparison(arg: Any, compare: Callable[[Any, Any], bool]) -> Check:
    """MongoDB compares only within one kind of value: numbers, strings, booleans, dates, ids."""
    kind = _kind(arg)
    if kind is datetime:

        def dates(value: Any) -> bool:
            if _value_kind(value) is not datetime:
                return False
            moment = value if value.tzinfo else value.replace(tzinfo=UTC)
            return compare(_milliseconds(moment), arg)

        return dates
    return lambda value: _value_kind(value) is kind and compare(value, arg)


_KINDS_BY_TYPE: dict[type, type] = {
    bool: bool,
    int: float,
    float: float,
    str: str,
    datetime: datetime,
    ObjectId: ObjectId,
}


def _value_kind(value: Any) -> type | None:
    """`_kind`, by one lookup for the exact types PyMongo decodes."""
    kind = _KINDS_BY_TYPE.get(type(value))
    return kind if kind is not None else _kind(value)


def _values(doc: dict[str, Any], path: Sequence[str]) -> Iterator[Any]:
    """The values a path reaches in a document, as MongoDB's matcher walks it: a field holding
    an array yields the array and each element; a path continuing into an array goes into each
    element that is a document and, for a numeric segment, into the element at that index."""
    value: Any = doc
    for i, segment in enumerate(path):
        if isinstance(value, list):
            yield from _array_values(value, path[i:])
            return
        if not isinstance(value, dict) or segment not in value:
            yield _MISSING
            return
        value = value[segment]
    yield value
    if isinstance(value, list):
        yield from value


def _array_values(array: list[Any], path: Sequence[str]) -> Iterator[Any]:
    head, rest = path[0], path[1:]
    for index, element in enumerate(array):
        at_index = head == str(index)
        if isinstance(element, dict):
            yield from _values(element, path)
            if at_index:
                yield from _values(element, rest) if rest else (element,)
        elif at_index:
            if not rest:
                yield element
            elif isinstance(element, list):
                yield from _array_values(element, rest)


def _kind(value: Any) -> type | None:
    """The kind of value MongoDB compares within; ints and floats are one kind, numbers."""
    if isinstance(value, bool):
        return bool
    if isinstance(value, int | float):
        return float
    return next((kind for kind in (str, datetime, ObjectId) if isinstance(value, kind)), None)
