"""Turning pydantic's validation errors into sentences a member can act on.

Each bad field becomes one line that names it and says what it accepts ("`count` can be 1 to 4"), built
from the field's own constraints. What the member typed is never echoed: a too-long text is described by
its length, and pydantic's own wording ("Input should be ...") never reaches anyone.
"""

from __future__ import annotations

from typing import Any

import annotated_types
from pydantic import BaseModel, ValidationError

from gpu_service.errors import InvalidRequest

# What a field with a `pattern` accepts, in words; a field missing here gets a generic sentence.
PATTERN_WORDS = {
    "subject": "may use a-z, 0-9, _ and -, up to 32 characters",
    "job_id": "may use A-Z, a-z, 0-9, _ and -, up to 64 characters",
}
# Fields whose range reads better spelled out than as "can be A to B".
RANGE_WORDS = {"seed": "must be a whole number from {low} to {high}"}
_RANGE_ERRORS = ("greater_than_equal", "less_than_equal", "greater_than", "less_than")
_VALUE_ERROR_SHOWN = 120  # our own validators' messages, clipped so no long input rides along


def describe(error: ValidationError, model: type[BaseModel] | None = None) -> str:
    """One line per bad field, each naming the field and what it accepts."""
    return "\n".join(_sentence(problem, model) for problem in error.errors(include_url=False))


def build(model: type[BaseModel], **fields) -> BaseModel:
    """Construct a contract object or raise InvalidRequest that names every bad field."""
    try:
        return model(**fields)
    except ValidationError as error:
        raise InvalidRequest(describe(error, model)) from None


def _sentence(problem: dict[str, Any], model: type[BaseModel] | None) -> str:
    name = str(problem["loc"][0])[:40] if problem["loc"] else ""
    field = f"`{name}`" if name else "The request"
    kind, context = problem["type"], problem.get("ctx") or {}
    low, high = _bounds(model, name)
    if kind == "string_too_long":
        return f"Your {field} is {_count(problem.get('input'))} characters; the limit is {context['max_length']:,}."
    if kind == "string_too_short":
        return f"{field} can't be empty." if context.get("min_length") == 1 else \
            f"{field} needs at least {context['min_length']:,} characters."
    if kind == "bytes_too_long":
        return f"Your {field} is {_count(problem.get('input'))} bytes; the limit is {context['max_length']:,}."
    if kind == "too_short":
        return f"{field} needs at least {context.get('min_length', 1)} item(s)."
    if kind == "too_long":
        return f"{field} can have at most {context.get('max_length')} item(s)."
    if kind == "string_pattern_mismatch":
        return f"{field} {PATTERN_WORDS.get(name, 'is not in a form this command accepts')}."
    if kind in _RANGE_ERRORS or kind.startswith(("int_", "float_")):
        return _range_sentence(name, field, kind, low, high)
    return _other_sentence(problem, field, kind)


def _range_sentence(name: str, field: str, kind: str, low: Any, high: Any) -> str:
    whole = "whole number" if kind.startswith("int_") else "number"
    strict = isinstance(low, _Bound) or isinstance(high, _Bound)
    if low is not None and high is not None and not strict:
        template = RANGE_WORDS.get(name, "can be {low} to {high}")
        if kind.startswith(("int_", "float_")) and name not in RANGE_WORDS:
            template = f"must be a {whole} from {{low}} to {{high}}"
        return f"{field} {template.format(low=_number(low), high=_number(high))}."
    limits = [_lower_words(low)] if low is not None else []
    limits += [_upper_words(high)] if high is not None else []
    return f"{field} must be {' and '.join(limits)}." if limits else f"{field} must be a {whole}."


def _other_sentence(problem: dict[str, Any], field: str, kind: str) -> str:
    if kind == "missing":
        return f"{field} is required."
    if kind == "extra_forbidden":
        return f"{field} is not an option here."
    if kind in ("string_type", "string_unicode"):
        return f"{field} must be text."
    if kind == "bool_parsing" or kind == "bool_type":
        return f"{field} must be true or false."
    if kind == "literal_error":
        return f"{field} must be {problem['ctx']['expected']}."
    if kind == "value_error":
        message = str(problem["msg"]).removeprefix("Value error, ")
        message = message if len(message) <= _VALUE_ERROR_SHOWN else message[: _VALUE_ERROR_SHOWN - 1] + "…"
        name = field.strip("`")
        if message.startswith(f"{name} "):
            return f"{field}{message.removeprefix(name)}."
        return f"{field}: {message}."
    return f"{field} is not valid here."


class _Bound:
    def __init__(self, value: Any, strict: bool) -> None:
        self.value, self.strict = value, strict


def _bounds(model: type[BaseModel] | None, name: str) -> tuple[Any, Any]:
    """The field's lower and upper limits as declared (a strict one as a `_Bound`), or None."""
    info = model.model_fields.get(name) if model is not None and name else None
    low = high = None
    for rule in info.metadata if info is not None else ():
        if isinstance(rule, annotated_types.Ge):
            low = rule.ge
        elif isinstance(rule, annotated_types.Gt):
            low = _Bound(rule.gt, strict=True)
        elif isinstance(rule, annotated_types.Le):
            high = rule.le
        elif isinstance(rule, annotated_types.Lt):
            high = _Bound(rule.lt, strict=True)
    return low, high


def _lower_words(low: Any) -> str:
    return f"more than {_number(low)}" if isinstance(low, _Bound) else f"at least {_number(low)}"


def _upper_words(high: Any) -> str:
    return f"less than {_number(high)}" if isinstance(high, _Bound) else f"at most {_number(high)}"


def _number(value: Any) -> str:
    if isinstance(value, _Bound):
        return _number(value.value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def _count(value: Any) -> str:
    return f"{len(value):,}" if isinstance(value, (str, bytes, bytearray)) else "too many"
