"""A dataset's ontology: labels with colours, display names, children and attributes.

Labels form a tree; a child is addressed by its path (`vehicle.car`), as in Dataloop's
recipes. Names are unique among siblings, so every path names one label.
"""

import hashlib
from enum import StrEnum
from typing import Annotated, Any

from pydantic import Field, StringConstraints, model_validator

from resolvers.errors import BadUserInput, Conflict
from resolvers.inputs import Input, Name

MAX_LABEL_DEPTH = 5
MAX_LABELS = 5000

LabelName = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100, pattern=r"^[^.]+$")
]
Color = Annotated[str, StringConstraints(pattern=r"^#[0-9a-fA-F]{6}$")]


class AttributeType(StrEnum):
    CHECKBOX = "checkbox"
    RADIO = "radio"
    FREE_TEXT = "freeText"
    SLIDER = "slider"
    YES_NO = "yesNo"


class Attribute(Input):
    key: Name
    type: AttributeType
    values: list[Name] = Field(default_factory=list, max_length=200)
    required: bool = False

    @model_validator(mode="after")
    def _values_fit_the_type(self) -> "Attribute":
        choices = self.type in (AttributeType.CHECKBOX, AttributeType.RADIO)
        if choices and not self.values:
            raise ValueError(f"a {self.type} attribute needs values to choose from")
        if not choices and self.values:
            raise ValueError(f"a {self.type} attribute takes no values")
        return self


class Label(Input):
    name: LabelName
    color: Color | None = None
    display_label: Name | None = None
    children: list["Label"] = Field(default_factory=list)
    attributes: list[Attribute] = Field(default_factory=list, max_length=100)

    @model_validator(mode="after")
    def _unique_children(self) -> "Label":
        _ensure_unique([c.name for c in self.children], f"children of {self.name!r}")
        _ensure_unique([a.key for a in self.attributes], f"attributes of {self.name!r}")
        return self


class LabelChanges(Input):
    color: Color | None = None
    display_label: Name | None = None
    attributes: list[Attribute] | None = None


def _ensure_unique(names: list[str], where: str) -> None:
    seen = set()
    for name in names:
        if name in seen:
            raise ValueError(f"{name!r} appears twice among the {where}")
        seen.add(name)


def default_color(path: str) -> str:
    """A stable colour per label path, so unlabelled ontologies still render distinctly."""
    return "#" + hashlib.sha256(path.encode()).hexdigest()[:6]


def to_document(label: Label, parent: str = "", depth: int = 1) -> dict[str, Any]:
    path = f"{parent}.{label.name}" if parent else label.name
    if depth > MAX_LABEL_DEPTH:
        raise BadUserInput(f"Label {path!r} is nested deeper than {MAX_LABEL_DEPTH} levels")
    return {
        "name": label.name,
        "color": (label.color or default_color(path)).lower(),
        "displayLabel": label.display_label or label.name,
        "attributes": [a.model_dump(by_alias=True) for a in label.attributes],
        "children": [to_document(child, path, depth + 1) for child in label.children],
    }


def paths(labels: list[dict[str, Any]], parent: str = "") -> list[str]:
    out = []
    for label in labels:
        path = f"{parent}.{label['name']}" if parent else label["name"]
        out.append(path)
        out += paths(label["children"], path)
    return out


def add(labels: list[dict[str, Any]], new: list[Label]) -> list[dict[str, Any]]:
    """The ontology with `new` top-level labels added; a name already there is a CONFLICT."""
    existing = {label["name"] for label in labels}
    for label in new:
        if label.name in existing:
            raise Conflict(f"The dataset already has a label {label.name!r}", label=label.name)
        existing.add(label.name)
    merged = labels + [to_document(label) for label in new]
    if len(paths(merged)) > MAX_LABELS:
        raise BadUserInput(f"A dataset holds at most {MAX_LABELS} labels")
    return merged


def _locate(labels: list[dict[str, Any]], path: str) -> tuple[list[dict[str, Any]], int]:
    """The sibling list holding the label at `path`, and its index there."""
    siblings, found = labels, -1
    for depth, name in enumerate(path.split(".")):
        if depth:
            siblings = siblings[found]["children"]
        found = next((i for i, label in enumerate(siblings) if label["name"] == name), -1)
        if found < 0:
            raise BadUserInput(f"No label {path!r} in this dataset", label=path)
    return siblings, found


def update(labels: list[dict[str, Any]], path: str, changes: LabelChanges) -> list[dict[str, Any]]:
    siblings, index = _locate(labels, path)
    fields = changes.model_dump(exclude_none=True, by_alias=True)
    if "color" in fields:
        fields["color"] = fields["color"].lower()
    siblings[index] = {**siblings[index], **fields}
    return labels


def delete(labels: list[dict[str, Any]], label_paths: list[str]) -> list[dict[str, Any]]:
    """Remove labels (with their children); names not in the ontology are BAD_USER_INPUT."""
    for path in label_paths:
        siblings, index = _locate(labels, path)
        siblings.pop(index)
    return labels
