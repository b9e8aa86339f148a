"""Field types shared by the pydantic input models of every entity module, and the one place
that turns a pydantic failure into BAD_USER_INPUT."""

from typing import Annotated, Any, TypeVar

from bson import ObjectId
from bson.errors import InvalidId
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    StringConstraints,
    ValidationError,
    model_validator,
)
from pydantic.alias_generators import to_camel

from resolvers.errors import BadUserInput


def _printable(value: str) -> str:
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValueError("must not contain control characters")
    return value


Name = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=100),
    AfterValidator(_printable),
]
Description = Annotated[str, StringConstraints(max_length=2000)]


class Input(BaseModel):
    """Base of every mutation input: camelCase as on the wire, unknown fields refused."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, alias_generator=to_camel, validate_by_name=True
    )


M = TypeVar("M", bound=BaseModel)


class Changes(Input):
    """Base of partial updates: unset fields stay as they are, and at least one must be set."""

    @model_validator(mode="after")
    def _something_to_change(self) -> "Changes":
        if not self.model_dump(exclude_none=True):
            fields = ", ".join(
                field.alias or name for name, field in type(self).model_fields.items()
            )
            raise ValueError(f"give at least one of {fields}")
        return self


def parse(model: type[M], data: dict[str, Any], within: str | None = None) -> M:
    """`data` as `model`; BAD_USER_INPUT naming each bad field (as `within.field` when `data`
    is the value of the input's field `within`)."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise BadUserInput.from_validation(exc, within) from exc


def object_id(value: str, field: str = "id") -> ObjectId:
    try:
        return ObjectId(value)
    except (InvalidId, TypeError) as exc:
        raise BadUserInput(f"{field} is not a valid id: {value!r}", field=field) from exc
