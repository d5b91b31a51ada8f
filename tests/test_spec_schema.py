"""The JSON Schema and the loader in lockstep: the same keys, the same defaults, the same events;
and every key the loader knows changes what it produces (or is declared to be ignored)."""

from __future__ import annotations

import copy
import dataclasses
import json
import re
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from runtime.definition.loader import (
    IGNORED_KEYS,
    SCHEMA_PATH,
    SPEC_KEYS,
    name_pattern,
    workflow_from_document,
)
from runtime.definition.model import Job, Notify, RetryPolicy, Workflow
from runtime.errors import SpecError
from runtime.statuses import NOTIFY_EVENTS

SCHEMA: dict[str, Any] = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
DEFS: dict[str, Any] = SCHEMA["$defs"]


def test_the_schema_is_a_valid_draft_2020_12_schema() -> None:
    Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_the_loader_knows_exactly_the_keys_the_schema_declares() -> None:
    schema_keys = {
        kind: set(definition["properties"]) for kind, definition in DEFS.items() if "properties" in definition
    }
    loader_keys = {kind: set(keys) for kind, keys in SPEC_KEYS.items()}
    assert loader_keys == schema_keys


def test_every_mapping_of_the_schema_rejects_unknown_keys() -> None:
    assert all(DEFS[kind].get("additionalProperties") is False for kind in SPEC_KEYS)


def test_ignored_keys_are_known_keys() -> None:
    assert all(IGNORED_KEYS[kind] <= SPEC_KEYS[kind] for kind in IGNORED_KEYS)


def test_schema_defaults_are_the_models_defaults() -> None:
    job_defaults = {item.name: item.default for item in dataclasses.fields(Job)}
    for setting in ("memory", "timeout"):
        assert DEFS[setting]["default"] == job_defaults[setting]
    policy = RetryPolicy()
    assert DEFS["retries"]["default"] == policy.max
    for setting in ("max", "delay", "backoff", "max_delay", "jitter"):
        assert DEFS["retry"]["properties"][setting]["default"] == getattr(policy, setting)
    assert tuple(DEFS["notify"]["properties"]["on"]["default"]) == Notify().on


def test_notify_events_are_the_models_events() -> None:
    assert tuple(DEFS["notify"]["properties"]["on"]["items"]["enum"]) == NOTIFY_EVENTS


def test_names_cannot_break_a_mongodb_field_path() -> None:
    pattern = name_pattern()
    assert pattern == DEFS["name"]["pattern"]
    assert re.fullmatch(pattern, "catch_fish")
    assert not any(re.fullmatch(pattern, bad) for bad in ("a.b", "$set", "", "1a", "a-b"))


# --- Every known key makes a difference ----------------------------------------------------------

SPEC_BASE: dict[str, Any] = {
    "workflow": "probe",
    "defaults": {},
    "phases": {"p": {"jobs": {"a": {}, "b": {}}}, "q": {"jobs": {"c": {}}}},
    "notify": {},
    "schedule": "rate(1 day)",
    "schedule_overlap": "allow",
    "concurrency": {"limit": 2},
}
PERMISSION_BASE: dict[str, Any] = copy.deepcopy(SPEC_BASE)
PERMISSION_BASE["phases"]["p"]["jobs"]["b"]["permissions"] = [
    {"actions": ["s3:GetObject"], "resources": ["arn:aws:s3:::probe/*"]}
]
RETRY_BASE: dict[str, Any] = copy.deepcopy(SPEC_BASE)
RETRY_BASE["phases"]["p"]["jobs"]["b"]["retry"] = {"max": 1}
APPROVAL_BASE: dict[str, Any] = copy.deepcopy(SPEC_BASE)
APPROVAL_BASE["phases"]["p"]["jobs"]["b"]["approval"] = {"timeout": 60}
EVENT_BASE: dict[str, Any] = copy.deepcopy(SPEC_BASE)
EVENT_BASE["phases"]["p"]["jobs"]["b"]["event"] = {"name": "paid", "timeout": 60}
CALLBACK_BASE: dict[str, Any] = copy.deepcopy(SPEC_BASE)
CALLBACK_BASE["phases"]["p"]["jobs"]["b"]["callback"] = {"timeout": 60}
WAIT_BASE: dict[str, Any] = copy.deepcopy(SPEC_BASE)
WAIT_BASE["phases"]["p"]["jobs"]["b"]["wait"] = {"until": "input.at"}
HTTP_BASE: dict[str, Any] = copy.deepcopy(SPEC_BASE)
HTTP_BASE["phases"]["p"]["jobs"]["b"]["http"] = {"url": "https://api.example/x"}
CALL_BASE: dict[str, Any] = copy.deepcopy(SPEC_BASE)
CALL_BASE["phases"]["p"]["jobs"]["b"]["call"] = {
    "service": "sns",
    "action": "publish",
    "resource": "arn:aws:sns:eu-west-1:123456789012:t",
}
CHILD_BASE: dict[str, Any] = copy.deepcopy(SPEC_BASE)
CHILD_BASE["phases"]["p"]["jobs"]["b"]["workflow"] = {"name": "shipping"}
LIMITS_BASE: dict[str, Any] = copy.deepcopy(SPEC_BASE)
LIMITS_BASE["phases"]["p"]["jobs"]["b"] |= {"concurrency": {"limit": 2}, "rate_limit": {"limit": 3}}
SEED_BASE: dict[str, Any] = {
    "purposeId": "probe",
    "phases": {
        "p": {"steps": {"p": {"jobs": ["a"]}, "a": {"jobs": ["b"]}}, "waitFor": ["a", "b"], "next": "q"},
        "q": {"steps": {"qStart": {"jobs": ["c"]}}, "waitFor": ["c"], "next": "end"},
    },
}
ALARMS_BASE: dict[str, Any] = {**SPEC_BASE, "alarms": {"failure_rate": 0.5, "duration_p99": 60}}
TRACING_BASE: dict[str, Any] = {**SPEC_BASE, "tracing": {"exporter": "otlp", "endpoint": "https://a.example"}}
WHERE: dict[str, tuple[dict[str, Any], tuple[str | int, ...]]] = {
    "spec": (SPEC_BASE, ()),
    "defaults": (SPEC_BASE, ("defaults",)),
    "phase": (SPEC_BASE, ("phases", "p")),
    "job": (SPEC_BASE, ("phases", "p", "jobs", "b")),
    "notify": (SPEC_BASE, ("notify",)),
    "alarms": (ALARMS_BASE, ("alarms",)),
    "tracing": (TRACING_BASE, ("tracing",)),
    "concurrency": (SPEC_BASE, ("concurrency",)),
    "permission": (PERMISSION_BASE, ("phases", "p", "jobs", "b", "permissions", 0)),
    "retry": (RETRY_BASE, ("phases", "p", "jobs", "b", "retry")),
    "approval": (APPROVAL_BASE, ("phases", "p", "jobs", "b", "approval")),
    "event": (EVENT_BASE, ("phases", "p", "jobs", "b", "event")),
    "callback": (CALLBACK_BASE, ("phases", "p", "jobs", "b", "callback")),
    "wait": (WAIT_BASE, ("phases", "p", "jobs", "b", "wait")),
    "http": (HTTP_BASE, ("phases", "p", "jobs", "b", "http")),
    "call": (CALL_BASE, ("phases", "p", "jobs", "b", "call")),
    "child_workflow": (CHILD_BASE, ("phases", "p", "jobs", "b", "workflow")),
    "job_concurrency": (LIMITS_BASE, ("phases", "p", "jobs", "b", "concurrency")),
    "rate_limit": (LIMITS_BASE, ("phases", "p", "jobs", "b", "rate_limit")),
    "seed": (SEED_BASE, ()),
    "seed_phase": (SEED_BASE, ("phases", "p")),
    "seed_step": (SEED_BASE, ("phases", "p", "steps", "p")),
}
"""Which base document and which mapping in it each kind of key is tried on."""

CHANGES: dict[tuple[str, str], object] = {
    ("spec", "$schema"): "./workflow.schema.json",
    ("spec", "workflow"): "other",
    ("spec", "description"): "Probe.",
    ("spec", "defaults"): {"memory": 512},
    ("spec", "phases"): {"p": {"jobs": {"a": {}}}},
    ("spec", "notify"): {"email": ["ops@example.com"]},
    ("spec", "schedule"): "rate(2 days)",
    ("spec", "schedule_input"): {"mode": "full"},
    ("spec", "schedule_timezone"): "Europe/Berlin",
    ("spec", "schedule_overlap"): "buffer_one",
    ("spec", "retention_days"): 30,
    ("spec", "shared"): "jobs/shared",
    ("spec", "timeout"): 3600,
    ("spec", "alarms"): {"failure_rate": 0.05},
    ("alarms", "failure_rate"): 0.05,
    ("alarms", "duration_p99"): 600,
    ("spec", "tracing"): {"exporter": "xray"},
    ("tracing", "exporter"): "xray",
    ("tracing", "endpoint"): "http://localhost:4318",
    ("spec", "concurrency"): {"limit": 3},
    ("spec", "priority"): "input.urgency",
    ("spec", "on_limit"): "skip",
    ("spec", "delivery"): "economy",
    ("concurrency", "limit"): 5,
    ("concurrency", "key"): "input.tenant",
    ("defaults", "retry"): {"delay": 5},
    ("job", "retry"): {"max": 4},
    ("job", "wait"): 30,
    ("job", "approval"): {"timeout": 60},
    ("retry", "max"): 4,
    ("retry", "delay"): 5,
    ("retry", "backoff"): 3,
    ("retry", "max_delay"): 60,
    ("retry", "jitter"): "none",
    ("retry", "on"): ["ConnectionError"],
    ("job", "event"): {"name": "paid", "timeout": 60},
    ("event", "name"): "settled",
    ("event", "match"): "event.order_id == input.order_id",
    ("event", "timeout"): 120,
    ("event", "retention"): 60,
    ("job", "callback"): {"timeout": 60},
    ("callback", "timeout"): 120,
    ("approval", "timeout"): 120,
    ("approval", "message"): "Ship it?",
    ("wait", "until"): "input.send_at",
    ("spec", "on_failure"): {"page": {}},
    ("spec", "on_exit"): {"report": {}},
    ("spec", "input_schema"): {"type": "object"},
    ("defaults", "memory"): 512,
    ("defaults", "timeout"): 30,
    ("defaults", "retries"): 0,
    ("defaults", "env"): {"STAGE": "test"},
    ("defaults", "results"): "earlier",
    ("phase", "next"): "q",
    ("phase", "jobs"): {"z": {}},
    ("job", "after"): ["a"],
    ("job", "join"): "any",
    ("job", "depends"): "jobs.a.state == 'failed'",
    ("job", "max_duration"): 60,
    ("job", "allow_failure"): True,
    ("job", "invoke"): "arn:aws:lambda:eu-west-1:123456789012:function:billing",
    ("job", "payload"): "input",
    ("job", "local"): "jobs/fake.py",
    ("job", "http"): {"url": "https://api.example/y"},
    ("job", "call"): {
        "service": "sqs",
        "action": "send_message",
        "resource": "arn:aws:sqs:eu-west-1:123456789012:q",
    },
    ("call", "service"): "events",
    ("call", "action"): "send_message",
    ("call", "resource"): "arn:aws:sns:eu-west-1:123456789012:other",
    ("call", "params"): "{Message: 'x'}",
    ("job", "workflow"): {"name": "billing"},
    ("child_workflow", "name"): "billing",
    ("child_workflow", "input"): "{order: input.order_id}",
    ("spec", "output"): "results.b",
    ("http", "url"): "https://api.example/z",
    ("http", "method"): "DELETE",
    ("http", "headers"): {"Accept": "application/json"},
    ("http", "body"): "input",
    ("http", "secret"): "partner-key",
    ("http", "secret_header"): "X-Api-Key",
    ("http", "timeout"): 5,
    ("job", "results"): "earlier",
    ("job", "fails_run"): True,
    ("job", "code"): "jobs/extract_orders.py",
    ("job", "memory"): 1024,
    ("job", "timeout"): 5,
    ("job", "retries"): 7,
    ("job", "env"): {"STAGE": "test"},
    ("job", "when"): "input.fast",
    ("job", "for_each"): "input.files",
    ("job", "max_concurrency"): 5,
    ("job", "tolerated_failures"): "5%",
    ("job", "concurrency"): {"limit": 2},
    ("job", "rate_limit"): {"limit": 20, "period": 1},
    ("job_concurrency", "limit"): 4,
    ("job_concurrency", "key"): "input.tenant",
    ("rate_limit", "limit"): 7,
    ("rate_limit", "period"): 60,
    ("rate_limit", "key"): "input.tenant",
    ("job", "permissions"): [{"actions": ["s3:GetObject"], "resources": ["arn:aws:s3:::probe/*"]}],
    ("permission", "actions"): ["s3:PutObject"],
    ("permission", "resources"): ["arn:aws:s3:::other/*"],
    ("notify", "on"): ["failed"],
    ("notify", "email"): ["ops@example.com"],
    ("notify", "slack_webhook_secret"): "team/slack",
    ("seed", "$schema"): "./workflow.schema.json",
    ("seed", "id"): 7,
    ("seed", "purposeId"): "other",
    ("seed", "currentPhase"): "q",
    ("seed", "phases"): {"p": {"steps": {"p": {"jobs": ["a"]}}, "waitFor": ["a"], "next": "end"}},
    ("seed_phase", "steps"): {"p": {"jobs": ["a", "b"]}},
    ("seed_phase", "waitFor"): ["a"],
    ("seed_phase", "next"): "end",
    ("seed_phase", "finished"): ["a"],
    ("seed_step", "jobs"): ["b"],
}
"""A schema-valid value for every known key that differs from the base document."""


def _changed(kind: str, key: str) -> dict[str, Any]:
    base, where = WHERE[kind]
    document = copy.deepcopy(base)
    target: Any = document
    for part in where:
        target = target[part]
    target[key] = CHANGES[(kind, key)]
    return document


def _compile(document: dict[str, Any]) -> Workflow | SpecError:
    try:
        return workflow_from_document(document, base_dir=SCHEMA_PATH.parent)
    except SpecError as error:
        return error


def _all_known_keys() -> list[tuple[str, str]]:
    return sorted((kind, key) for kind, keys in SPEC_KEYS.items() for key in keys)


def test_every_known_key_has_a_probe_value_that_the_schema_accepts() -> None:
    assert sorted(CHANGES) == _all_known_keys()
    validator = Draft202012Validator(SCHEMA)
    assert [key for key in CHANGES if list(validator.iter_errors(_changed(*key)))] == []


@pytest.mark.parametrize(("kind", "key"), _all_known_keys(), ids=lambda part: str(part))
def test_the_loader_reads_every_known_key(kind: str, key: str) -> None:
    """Setting a key either changes the Workflow or makes the loader object to the (schema-valid)
    document; ignored keys do neither."""
    base = _compile(WHERE[kind][0])
    assert isinstance(base, Workflow)
    result = _compile(_changed(kind, key))
    if key in IGNORED_KEYS.get(kind, ()):
        assert result == base
    else:
        assert result != base


@pytest.mark.parametrize(
    ("job", "message"),
    [
        (
            {"http": {"url": "https://example.com", "timeout": 0}},
            "0 is out of range: must be above 0 and at most 900",
        ),
        ({"retries": -1}, "-1 is out of range: must be between 0 and 10"),
    ],
)
def test_a_number_out_of_range_says_its_bounds_as_the_schema_states_them(
    job: dict[str, Any], message: str
) -> None:
    """Found while adding ``alarms``: a bound given only as ``exclusiveMinimum`` fell through to
    jsonschema's own message ("0 is less than or equal to the minimum of 0")."""
    document = {"workflow": "w", "phases": {"p": {"jobs": {"a": job}}}}
    with pytest.raises(SpecError) as raised:
        workflow_from_document(document)
    text = str(raised.value)
    assert message in text
    assert "less than or equal to the minimum" not in text
