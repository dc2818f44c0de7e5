"""Turning pydantic's validation errors into one message a member can act on."""

from __future__ import annotations

from pydantic import BaseModel, ValidationError

from gpu_service.errors import InvalidRequest


def describe(error: ValidationError) -> str:
    """One line per bad field, each naming the field and what it accepts."""
    lines = []
    for problem in error.errors(include_url=False):
        field = ".".join(str(part) for part in problem["loc"]) or "request"
        message = problem["msg"].removeprefix("Value error, ")
        lines.append(f"`{field}`: {message} (got {problem.get('input')!r})")
    return "\n".join(lines)


def build(model: type[BaseModel], **fields) -> BaseModel:
    """Construct a contract object or raise InvalidRequest that names every bad field."""
    try:
        return model(**fields)
    except ValidationError as error:
        raise InvalidRequest(describe(error)) from None
