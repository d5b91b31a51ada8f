"""Stage one: the JSON Schema (the one editors use too), and messages that say what is wrong and
what would be right instead of jsonschema's dumps of whole instances."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeGuard

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from runtime.definition.report import JsonPath, Report, did_you_mean, kind_of, show

SCHEMA_PATH = Path(__file__).resolve().parent / "workflow.schema.json"
"""The one JSON Schema: editors read it, stage one of the loader checks against it."""


@functools.cache
def schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    return loaded


@functools.cache
def validator() -> Draft202012Validator:
    return Draft202012Validator(schema())


def defs() -> dict[str, Any]:
    found: dict[str, Any] = schema()["$defs"]
    return found


def name_pattern() -> str:
    """The pattern of phase and job names (letters, digits, '_'), as the schema states it."""
    return str(defs()["name"]["pattern"])


def is_name(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and re.fullmatch(name_pattern(), value) is not None


_SCHEMA_TYPES = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "array": "a list",
    "object": "a mapping",
    "null": "null",
}


def _bad_name_message(what: str, name: str) -> str:
    """Why ``name`` cannot name a phase or job, specific to the usual mistakes."""
    fix = re.sub(r"[^A-Za-z0-9_]+", "_", name).strip("_")
    suggestion = f"; e.g. '{fix}'" if fix and re.fullmatch(name_pattern(), fix) else ""
    if not name:
        return f"empty {what} name"
    if "." in name:
        return f"{what} name {name!r} contains '.', which MongoDB reads as a nested field path{suggestion}"
    if name.startswith("$"):
        return f"{what} name {name!r} starts with '$', which MongoDB reserves for operators{suggestion}"
    return (
        f"{what} name {name!r} must be letters, digits and '_', starting with a letter "
        f"({name_pattern()}){suggestion}"
    )


def _name_kind(parent: JsonPath) -> str:
    """Whether the name at ``parent`` (a mapping's keys or a list's items) names a phase, step or job."""
    container = next((part for part in reversed(parent) if isinstance(part, str)), "")
    return {"phases": "phase", "next": "phase", "steps": "step"}.get(container, "job")


def schema_problems(document: object, report: Report) -> None:
    """Each finding once: jsonschema reports every missing required key as its own error, and
    each of those names all of them."""
    seen: set[tuple[JsonPath, str]] = set()
    for error in validator().iter_errors(document):
        for path, message in _translate(error):
            if (path, message) not in seen:
                seen.add((path, message))
                report.add(path, message)


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _range(subschema: dict[str, Any]) -> str:
    """The bounds a number must keep, as the schema states them: inclusive, exclusive, or one side."""
    low, high = subschema.get("minimum"), subschema.get("maximum")
    if low is not None and high is not None:
        return f"between {low} and {high}"
    bounds = [
        f"{words} {subschema[key]}"
        for key, words in (
            ("minimum", "at least"),
            ("exclusiveMinimum", "above"),
            ("maximum", "at most"),
            ("exclusiveMaximum", "below"),
        )
        if key in subschema
    ]
    return " and ".join(bounds)


def _translate(error: ValidationError) -> Iterator[tuple[JsonPath, str]]:
    """jsonschema's messages dump whole instances; these say what is wrong and what is right."""
    path: JsonPath = tuple(error.absolute_path)
    subschema = error.schema if isinstance(error.schema, dict) else {}
    value = error.instance
    kind = error.validator
    rule: Any = error.validator_value
    parent = path
    if "propertyNames" in error.absolute_schema_path and isinstance(value, str):
        path = (*path, value)
    if kind == "anyOf" and error.context:
        # The branch of the value's own type says what is wrong with it; when no branch is of its
        # type, the type is.
        inside = [
            sub for sub in error.context if sub.validator != "type" or len(sub.absolute_path) > len(path)
        ]
        if inside:
            for sub in inside:
                yield from _translate(sub)
            return
        kinds = dict.fromkeys(str(name) for sub in error.context for name in _listed(sub.validator_value))
        wanted = " or ".join(_SCHEMA_TYPES.get(name, name) for name in kinds)
        yield path, f"expected {wanted}, got {kind_of(value)} {show(value)}"
        return
    if kind == "additionalProperties" and isinstance(value, dict):
        allowed = sorted(subschema.get("properties", {}))
        for key in value:
            if key not in allowed:
                yield (
                    (*path, key),
                    f"unknown key {key!r}{did_you_mean(key, allowed)}; allowed here: {', '.join(allowed)}",
                )
    elif kind == "required":
        missing = [key for key in rule if isinstance(value, dict) and key not in value]
        for key in missing:
            yield path, f"missing required key {key!r}"
    elif kind == "type":
        expected = (
            error.validator_value if isinstance(error.validator_value, list) else [error.validator_value]
        )
        wanted = " or ".join(_SCHEMA_TYPES.get(str(name), str(name)) for name in expected)
        hint = f" (write it as a list: [{value}])" if "array" in expected and isinstance(value, str) else ""
        hint = hint or (
            f" (quote it: '{value}')" if expected == ["string"] and isinstance(value, int) else ""
        )
        yield path, f"expected {wanted}, got {kind_of(value)} {show(value)}{hint}"
    elif kind in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        about = f" ({subschema['description'].rstrip('.')})" if "description" in subschema else ""
        yield path, f"{show(value)} is out of range: must be {_range(subschema)}{about}"
    elif kind == "enum":
        choices = [str(choice) for choice in rule]
        yield (
            path,
            f"unknown value {show(value)}{did_you_mean(str(value), choices)}; "
            f"expected one of: {', '.join(choices)}",
        )
    elif kind == "pattern" and isinstance(value, str):
        if "patternErrorMessage" in subschema:
            yield path, f"invalid value {show(value)}: {subschema['patternErrorMessage']}"
        else:
            yield path, _bad_name_message(_name_kind(parent), value)
    elif kind == "maxLength" and isinstance(value, str):
        yield path, f"{show(value)} is {len(value)} characters long; the limit is {rule}"
    elif kind in ("minLength", "minItems"):
        yield path, "must not be empty"
    elif kind == "maxItems" and isinstance(value, list):
        hint = (
            "; merge statements that share resources, or grant more in CDK"
            if path[-1:] == ("permissions",)
            else ""
        )
        yield path, f"{len(value)} entries; at most {rule} are allowed here{hint}"
    elif kind == "minProperties":
        yield path, _empty_message(path)
    elif kind == "uniqueItems" and isinstance(value, list):
        twice = sorted({show(item) for index, item in enumerate(value) if item in value[:index]})
        yield path, f"lists {', '.join(twice)} more than once"
    elif kind == "dependentRequired" and isinstance(value, dict):
        for key, needed in rule.items():
            for other in needed:
                if key in value and other not in value:
                    yield (*path, key), f"{key!r} has no effect without {other!r}"
    else:
        yield path, error.message


def _empty_message(path: JsonPath) -> str:
    last = path[-1] if path else ""
    if last == "phases":
        return "no phases: a workflow needs at least one phase with one job"
    if last == "jobs" and len(path) >= 2:
        return f"phase {path[-2]!r} has no jobs: a phase needs at least one"
    if last == "steps" and len(path) >= 2:
        return f"phase {path[-2]!r} has no steps: nothing would ever start"
    return "must not be empty"
