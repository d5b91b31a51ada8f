"""The canonical spec (``workflow:``, ``phases.<p>.jobs.<j>``): defaults merged into each job,
environment names, ``notify``, and the analysis of ``when`` conditions (JMESPath)."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import jmespath
import jmespath.exceptions
from jmespath.lexer import Lexer

from runtime import contracts
from runtime.definition.draft import Draft, DraftJob, DraftPhase, Ref, known_fields, mapping, name_refs
from runtime.definition.input_schema import read_input_schema
from runtime.definition.job_code import check_job_code
from runtime.definition.model import HANDLERS_PHASE, JOINS, Notify
from runtime.definition.permissions import read_permissions
from runtime.definition.report import JsonPath, Report, name_list, show
from runtime.definition.schema import is_name
from runtime.definition.timing import job_time_settings, retry_policy

LAMBDA_RESERVED_ENV = frozenset(
    {
        "_HANDLER",
        "_X_AMZN_TRACE_ID",
        "AWS_ACCESS_KEY",
        "AWS_ACCESS_KEY_ID",
        "AWS_DEFAULT_REGION",
        "AWS_EXECUTION_ENV",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
        "AWS_LAMBDA_FUNCTION_NAME",
        "AWS_LAMBDA_FUNCTION_VERSION",
        "AWS_LAMBDA_INITIALIZATION_TYPE",
        "AWS_LAMBDA_LOG_GROUP_NAME",
        "AWS_LAMBDA_LOG_STREAM_NAME",
        "AWS_LAMBDA_RUNTIME_API",
        "AWS_REGION",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "LAMBDA_RUNTIME_DIR",
        "LAMBDA_TASK_ROOT",
    }
)
"""Environment names Lambda reserves (docs/architecture.md)."""

RESERVED_ENV = LAMBDA_RESERVED_ENV | contracts.ENVIRONMENT_NAMES
"""Names a spec's ``env`` may not set: Lambda's, and every one our functions read."""

WHEN_ROOTS = ("input", "results")
"""What a ``when`` condition can read at its top level."""


def read_spec(document: dict[str, Any], report: Report, base_dir: Path) -> Draft:
    spec = known_fields(document, "spec")
    name = spec.get("workflow") if isinstance(spec.get("workflow"), str) else None
    defaults = known_fields(spec.get("defaults"), "defaults")
    _check_env(defaults.get("env"), ("defaults", "env"), report)
    retry_policy(defaults, ("defaults",), report)
    phases: list[DraftPhase] = []
    for phase_name, raw_phase in mapping(spec.get("phases")).items():
        phase_path: JsonPath = ("phases", phase_name)
        phase_fields = known_fields(raw_phase, "phase")
        written_next = phase_fields.get("next")
        phase = DraftPhase(
            phase_name,
            phase_path,
            next=Ref(written_next, (*phase_path, "next")) if is_name(written_next) else None,
        )
        phase.jobs = _read_jobs(phase_fields.get("jobs"), (*phase_path, "jobs"), defaults, report, base_dir)
        phases.append(phase)
    handlers = None
    if "on_failure" in spec:
        handlers = DraftPhase(HANDLERS_PHASE, ("on_failure",))
        handlers.jobs = _read_jobs(spec["on_failure"], ("on_failure",), defaults, report, base_dir)
    settings: dict[str, Any] = {
        key: spec[key] for key in ("description", "schedule", "timeout", "retention_days") if key in spec
    }
    if "schedule_input" in spec:
        settings["schedule_input"] = spec["schedule_input"]
    if "input_schema" in spec:
        settings["input_schema"] = read_input_schema(spec["input_schema"], report, base_dir)
    if "notify" in spec:
        settings["notify"] = Notify(**_notify_settings(spec["notify"]))
    return Draft(name, phases, settings, handlers)


def _read_jobs(
    raw_jobs: object, path: JsonPath, defaults: dict[str, Any], report: Report, base_dir: Path
) -> list[DraftJob]:
    jobs: list[DraftJob] = []
    for job_name, raw_job in mapping(raw_jobs).items():
        job_path: JsonPath = (*path, job_name)
        job_fields = known_fields(raw_job, "job")
        job = DraftJob(job_name, job_path, after=name_refs(job_fields.get("after"), (*job_path, "after")))
        job.settings = _job_settings(job, defaults, job_fields, report, base_dir)
        jobs.append(job)
    return jobs


def _job_settings(
    job: DraftJob, defaults: dict[str, Any], own: dict[str, Any], report: Report, base_dir: Path
) -> dict[str, Any]:
    settings = {key: value for key, value in {**defaults, **own}.items() if key in ("memory", "timeout")}
    settings |= job_time_settings(job, defaults, own, report)
    settings["env"] = {**mapping(defaults.get("env")), **mapping(own.get("env"))}
    _check_env(own.get("env"), (*job.path, "env"), report)
    if own.get("join") in JOINS:
        settings["join"] = own["join"]
    if isinstance(own.get("allow_failure"), bool):
        settings["allow_failure"] = own["allow_failure"]
    if isinstance(own.get("when"), str):
        settings["when"] = own["when"]
        _check_when(job, own["when"], report)
    if "permissions" in own:
        settings["permissions"] = read_permissions(own["permissions"], (*job.path, "permissions"), report)
    if isinstance(own.get("code"), str) and own["code"]:
        settings["code"] = check_job_code(own["code"], (*job.path, "code"), report, base_dir)
    return settings


def _check_env(raw_env: object, path: JsonPath, report: Report) -> None:
    for key in mapping(raw_env):
        if key in RESERVED_ENV:
            report.add(
                (*path, key),
                f"environment variable {key!r} is set by Lambda or the job wrapper; pick another name",
            )


def _check_when(job: DraftJob, condition: str, report: Report) -> None:
    path = (*job.path, "when")
    try:
        parsed = jmespath.compile(condition).parsed
    except (jmespath.exceptions.JMESPathError, RecursionError) as exc:
        if getattr(exc, "token_type", None) == "NUMBER":
            report.add(path, _bare_number_message(condition))
            return
        summary = (str(exc).splitlines() or [type(exc).__name__])[0].rstrip(":")
        position = getattr(exc, "lex_position", None)
        at = f" at column {position + 1}" if isinstance(position, int) else ""
        report.add(path, f"invalid JMESPath {show(condition)}: {summary}{at}")
        return
    if _negates_then_reads(parsed):
        report.add(
            path,
            f"{show(condition)} negates before it reads a field: JMESPath reads '!a.b' as '(!a).b', "
            "which is always null, so the job would always be skipped; write '!(a.b)'",
        )
    for root, member in _root_fields(parsed):
        if root not in WHEN_ROOTS:
            hint = f" (did you mean 'input.{root}'?)"
            report.add(
                path,
                f"{show(condition)} reads {root!r}, but a condition sees only {name_list(WHEN_ROOTS)}{hint}",
            )
        elif root == "results" and member is not None and member not in job.when_reads:
            # Which jobs it may read depends on the phase order: checked with the jobs.
            job.when_reads.append(member)


def _bare_number_message(condition: str) -> str:
    """JMESPath has no number syntax outside an index: ``score > 0.8`` must be ``score > `0.8```
    (a JSON literal). Shows the condition with every bare number quoted, when that parses."""
    rule = "a number in JMESPath is a JSON literal in backticks"
    corrected = _with_quoted_numbers(condition)
    try:
        jmespath.compile(corrected)
    except (jmespath.exceptions.JMESPathError, RecursionError):
        return f"invalid JMESPath {show(condition)}: {rule}, e.g. `0.8`"
    return f"invalid JMESPath {show(condition)}: {rule}; write {corrected!r}"


_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?")
_OPENERS = {"lbracket": "index", "filter": "filter", "lbrace": "hash", "lparen": "group"}
_CLOSERS = frozenset({"rbracket", "rbrace", "rparen"})


def _with_quoted_numbers(condition: str) -> str:
    """Backticks around every number that is not an index or slice bound (``a[0]``, ``a[1:2]``)."""
    spans: list[tuple[int, int]] = []
    open_brackets: list[str] = []
    previous = ""
    try:
        for token in Lexer().tokenize(condition):
            kind, start = token["type"], token["start"]
            if kind in _OPENERS:
                open_brackets.append(_OPENERS[kind])
            elif kind in _CLOSERS and open_brackets:
                open_brackets.pop()
            elif kind == "number" and not (spans and start < spans[-1][1]):
                in_index = open_brackets[-1:] == ["index"] and previous in ("lbracket", "colon")
                number = _NUMBER.match(condition, start)
                if number and not in_index:
                    spans.append(number.span())
            previous = kind
    except jmespath.exceptions.LexerError:
        return condition
    for start, end in reversed(spans):
        condition = f"{condition[:start]}`{condition[start:end]}`{condition[end:]}"
    return condition


_SAME_CONTEXT = frozenset(
    {
        "comparator",
        "or_expression",
        "and_expression",
        "not_expression",
        "function_expression",
        "multi_select_list",
        "multi_select_dict",
        "key_val_pair",
        "flatten",
    }
)
"""JMESPath nodes whose children all read the same value the node does."""

_CHAINS = frozenset(
    {"subexpression", "index_expression", "projection", "value_projection", "filter_projection", "pipe"}
)
"""Nodes whose first child reads the node's value and the rest read what that produced."""


def _negates_then_reads(node: Mapping[str, Any]) -> bool:
    """A chain whose first link is a negation: ``!results.x.ok`` reads ``x`` of a boolean."""
    children = node.get("children", [])
    if node.get("type") in _CHAINS and children and children[0].get("type") == "not_expression":
        return True
    return any(_negates_then_reads(child) for child in children if isinstance(child, Mapping))


def _root_fields(node: Mapping[str, Any]) -> Iterator[tuple[str, str | None]]:
    """Top-level names a condition reads, with the name read under each (``results.<job>``)."""
    children = node.get("children", [])
    if node.get("type") == "field":
        yield str(node.get("value")), None
    elif node.get("type") in _SAME_CONTEXT:
        for child in children:
            yield from _root_fields(child)
    elif node.get("type") in _CHAINS and children:
        first = children[0]
        if (
            node["type"] == "subexpression"
            and first.get("type") == "field"
            and children[1].get("type") == "field"
        ):
            yield str(first.get("value")), str(children[1].get("value"))
        else:
            yield from _root_fields(first)


def _notify_settings(raw: object) -> dict[str, Any]:
    notify = known_fields(raw, "notify")
    settings: dict[str, Any] = {}
    for key in ("on", "email"):
        if isinstance(notify.get(key), list):
            settings[key] = tuple(item for item in notify[key] if isinstance(item, str))
    if isinstance(notify.get("slack_webhook_secret"), str):
        settings["slack_webhook_secret"] = notify["slack_webhook_secret"]
    return settings
