"""``runtime.patterns`` (EventBridge JSON) as CDK's ``EventPattern``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aws_cdk import aws_events as events

_EVENT_PATTERN_FIELDS = {
    "account": "account",
    "detail": "detail",
    "detail-type": "detail_type",
    "id": "id",
    "region": "region",
    "resources": "resources",
    "source": "source",
    "time": "time",
    "version": "version",
}


def event_pattern(pattern: Mapping[str, Any]) -> events.EventPattern:
    """``runtime.patterns`` speaks EventBridge JSON; ``EventPattern`` wants keyword arguments."""
    unknown = set(pattern) - set(_EVENT_PATTERN_FIELDS)
    if unknown:
        raise ValueError(f"event pattern fields {sorted(unknown)} have no EventPattern equivalent")
    return events.EventPattern(
        **{_EVENT_PATTERN_FIELDS[key]: _top_level_values(value) for key, value in pattern.items()}
    )


def _top_level_values(value: Any) -> Any:
    """A top-level field takes a list of strings: ``[{"prefix": p}]`` becomes ``Match.prefix(p)``,
    which synthesizes to that same JSON."""
    if (
        isinstance(value, list)
        and len(value) == 1
        and isinstance(value[0], dict)
        and set(value[0]) == {"prefix"}
    ):
        return events.Match.prefix(value[0]["prefix"])
    return value
