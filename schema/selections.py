"""What a query selects under a field, so that reads skip the document fields nobody asked for.

An annotation can carry a polygon of thousands of points or a frame per video frame; a list of
labels should not pay for reading them. A type maps each of its GraphQL fields to the document
fields it is built from; a field missing from that map (one added later, say) makes the read
take every field, which is always correct.
"""

from collections.abc import Iterable, Mapping

import strawberry
from strawberry.types.nodes import SelectedField, Selection

ALWAYS = ("__typename",)
"""Fields answered without the document."""


def _names(selections: Iterable[Selection]) -> Iterable[str]:
    """The field names of a selection set, fragments and inline fragments flattened
    (@skip and @include are ignored: reading a field that is not needed is harmless)."""
    for selection in selections:
        if isinstance(selection, SelectedField):
            yield selection.name
        else:
            yield from _names(selection.selections)


def projection(
    info: strawberry.Info, document_fields: Mapping[str, tuple[str, ...]], *required: str
) -> tuple[str, ...] | None:
    """The document fields the current field's selection needs, with `required` ones (sorted,
    a hashable key), or None when every field must be read."""
    wanted = set(required)
    for field in info.selected_fields:
        for name in _names(field.selections):
            if name in ALWAYS:
                continue
            needs = document_fields.get(name)
            if needs is None:
                return None
            wanted.update(needs)
    return tuple(sorted(wanted))
