"""The format-neutral draft both spec formats are read into before the IR is built, and the one
gate through which the readers see spec mappings (``SPEC_KEYS``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from runtime.definition.report import JsonPath
from runtime.definition.schema import is_name

SPEC_KEYS: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        "spec": frozenset(
            {
                "$schema",
                "workflow",
                "description",
                "defaults",
                "phases",
                "notify",
                "schedule",
                "schedule_input",
                "schedule_timezone",
                "schedule_overlap",
                "timeout",
                "retention_days",
                "on_failure",
                "on_exit",
                "input_schema",
                "shared",
                "alarms",
                "tracing",
                "concurrency",
                "priority",
                "on_limit",
                "delivery",
                "output",
            }
        ),
        "defaults": frozenset({"memory", "timeout", "retries", "retry", "env", "results"}),
        "phase": frozenset({"next", "jobs"}),
        "job": frozenset(
            {
                "after",
                "join",
                "depends",
                "allow_failure",
                "fails_run",
                "results",
                "code",
                "memory",
                "timeout",
                "retries",
                "retry",
                "max_duration",
                "wait",
                "approval",
                "event",
                "callback",
                "env",
                "when",
                "permissions",
                "for_each",
                "max_concurrency",
                "tolerated_failures",
                "invoke",
                "payload",
                "local",
                "http",
                "call",
                "workflow",
                "concurrency",
                "rate_limit",
            }
        ),
        "retry": frozenset({"max", "delay", "backoff", "max_delay", "jitter", "on"}),
        "approval": frozenset({"timeout", "message"}),
        "event": frozenset({"name", "match", "timeout", "retention"}),
        "callback": frozenset({"timeout"}),
        "http": frozenset({"url", "method", "headers", "body", "secret", "secret_header", "timeout"}),
        "call": frozenset({"service", "action", "resource", "params"}),
        "child_workflow": frozenset({"name", "input"}),
        "wait": frozenset({"until"}),
        "permission": frozenset({"actions", "resources"}),
        "notify": frozenset({"on", "email", "slack_webhook_secret"}),
        "alarms": frozenset({"failure_rate", "duration_p99"}),
        "tracing": frozenset({"exporter", "endpoint"}),
        "concurrency": frozenset({"limit", "key"}),
        "job_concurrency": frozenset({"limit", "key"}),
        "rate_limit": frozenset({"limit", "period", "key"}),
        "seed": frozenset({"$schema", "id", "purposeId", "currentPhase", "phases"}),
        "seed_phase": frozenset({"steps", "waitFor", "next", "finished"}),
        "seed_step": frozenset({"jobs"}),
    }
)
"""Every key the loader understands, per kind of mapping (named like the schema's ``$defs``). The
loader reads spec mappings only through ``known_fields``, which sees nothing outside this table; a test
holds it equal to the schema."""

IGNORED_KEYS: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        "spec": frozenset({"$schema"}),
        "seed": frozenset({"$schema", "id", "currentPhase"}),
        "seed_phase": frozenset({"finished"}),
    }
)
"""Keys accepted but without effect: the editor's schema link and the seed's run state."""


@dataclass
class Ref:
    """A name as written somewhere, for messages that point at that place."""

    name: str
    path: JsonPath


@dataclass
class DraftJob:
    name: str
    path: JsonPath
    after: list[Ref] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    """``Job`` fields beyond name/phase/after; only what the spec sets (the model has defaults)."""
    when_reads: list[str] = field(default_factory=list)
    """The jobs its ``when`` reads (``results.<job>``), checked once the phase order is known."""
    for_each_reads: list[str] = field(default_factory=list)
    """The same for its ``for_each``."""
    wait_reads: list[str] = field(default_factory=list)
    """The same for its ``wait: {until}``."""
    workflow_reads: list[str] = field(default_factory=list)
    """The same for its child workflow's ``input``."""
    depends_reads: list[str] = field(default_factory=list)
    """The jobs its ``depends`` reads (``jobs.<job>``), which must be in its ``after``."""


@dataclass
class DraftPhase:
    name: str
    path: JsonPath
    jobs: list[DraftJob] = field(default_factory=list)
    next: Ref | None = None
    """The phase written in ``next``; ``None`` means the one declared after (or the end)."""
    ends: bool = False
    """The seed's ``next: end``."""


@dataclass
class Draft:
    name: str | None
    phases: list[DraftPhase]
    settings: dict[str, Any] = field(default_factory=dict)
    handlers: DraftPhase | None = None
    """The ``on_failure`` jobs, as the phase they run in."""
    exit_handlers: DraftPhase | None = None
    """The ``on_exit`` jobs, as the phase they run in."""
    """``Workflow`` fields beyond name/phases."""


def known_fields(raw: object, kind: str) -> dict[str, Any]:
    """The keys of ``raw`` the loader understands for mappings of ``kind``: it reads spec
    mappings only through here, so ``SPEC_KEYS`` is exactly what it can see."""
    if not isinstance(raw, dict):
        return {}
    return {key: raw[key] for key in SPEC_KEYS[kind] if key in raw}


def mapping(raw: object) -> dict[str, Any]:
    return raw if isinstance(raw, dict) else {}


def name_refs(raw: object, path: JsonPath) -> list[Ref]:
    """The well-formed names of a list; the schema reports the others."""
    if not isinstance(raw, list):
        return []
    return [Ref(item, (*path, index)) for index, item in enumerate(raw) if is_name(item)]
