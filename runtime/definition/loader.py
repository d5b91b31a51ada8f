"""Build-time spec loading: file -> document -> JSON Schema -> semantic checks -> the IR.

Every stage collects problems instead of stopping at the first, and ``SpecError`` carries all of
them, each as ``<file>: <json path>: <what is wrong and what would be right>``. No input, however
broken, escapes as anything but ``SpecError``.

This module reads YAML and checks JSON Schema, so only build-time code imports it; the Lambda
handlers get the compiled ``Workflow`` (``Workflow.to_document``), never the YAML.
"""

from __future__ import annotations

import difflib
import functools
import json
import math
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeGuard

import jmespath
import jmespath.exceptions
import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from runtime.definition.model import FUNCTION_NAME_MAX, Job, Notify, Phase, Workflow, job_function_name
from runtime.errors import SpecError

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "workflows" / "workflow.schema.json"
"""The one JSON Schema: editors read it, stage one of the loader checks against it."""

SPEC_SUFFIXES = (".yaml", ".yml", ".json")
"""What counts as a spec when a folder is loaded (``*.schema.json`` excluded)."""

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
            }
        ),
        "defaults": frozenset({"memory", "timeout", "retries", "env"}),
        "phase": frozenset({"next", "jobs"}),
        "job": frozenset({"after", "code", "memory", "timeout", "retries", "env", "when"}),
        "notify": frozenset({"on", "email", "slack_webhook_secret"}),
        "seed": frozenset({"$schema", "id", "purposeId", "currentPhase", "phases"}),
        "seed_phase": frozenset({"steps", "waitFor", "next", "finished"}),
        "seed_step": frozenset({"jobs"}),
    }
)
"""Every key the loader understands, per kind of mapping (named like the schema's ``$defs``). The
loader reads spec mappings only through ``_fields``, which sees nothing outside this table; a test
holds it equal to the schema."""

IGNORED_KEYS: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        "spec": frozenset({"$schema"}),
        "seed": frozenset({"$schema", "id", "currentPhase"}),
        "seed_phase": frozenset({"finished"}),
    }
)
"""Keys accepted but without effect: the editor's schema link and the seed's run state."""

SEED_END = "end"
"""What a seed phase's ``next`` says when the run ends after it."""

RESERVED_ENV = frozenset(
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
        "JOB_HANDLER",
        "MONGODB_SECRET_ARN",
        "MONGODB_URI",
        "MONGODB_DATABASE",
        "RUNS_COLLECTION",
        "STATUSES_COLLECTION",
    }
)
"""Environment names Lambda reserves or the job wrapper sets itself (docs/architecture.md)."""

WHEN_ROOTS = ("input", "results")
"""What a ``when`` condition can read at its top level."""

MAX_DEPTH = 64
"""Deeper documents are rejected: no spec needs it, and it keeps every walk bounded."""

MAX_NODES = 100_000
"""YAML aliases can expand a small file into a huge tree (billion laughs); stop counting here."""

_YAML_STR = "tag:yaml.org,2002:str"
_YAML_SCALARS = frozenset(
    {
        _YAML_STR,
        "tag:yaml.org,2002:int",
        "tag:yaml.org,2002:float",
        "tag:yaml.org,2002:bool",
        "tag:yaml.org,2002:null",
    }
)
_YAML_MAP = "tag:yaml.org,2002:map"
_YAML_SEQ = "tag:yaml.org,2002:seq"
_YAML_MERGE = "tag:yaml.org,2002:merge"

PathPart = str | int
JsonPath = tuple[PathPart, ...]


def _json_path(parts: Iterable[PathPart]) -> str:
    """``$.phases.thinking.jobs.go_home.after[0]``; keys that are not plain names are quoted
    (``$.phases['a.b']``), which jsonschema's own ``json_path`` does not do."""
    text = "$"
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", part):
            text += f".{part}"
        else:
            text += "['" + part.replace("\\", "\\\\").replace("'", "\\'") + "']"
    return text


def _show(value: object) -> str:
    """A value as the user wrote it, short enough for one line."""
    text = repr(value) if isinstance(value, str) else json.dumps(value, default=repr)
    return text if len(text) <= 60 else text[:57] + "..."


def _did_you_mean(word: str, candidates: Iterable[str]) -> str:
    matches = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean '{matches[0]}'?)" if matches else ""


def _names(values: Iterable[str]) -> str:
    return "[" + ", ".join(values) + "]"


class _Report:
    """The problems of one file, each tied to a JSON path and, for YAML, the line it is on."""

    def __init__(self, display: str) -> None:
        self.display = display
        self.lines: dict[JsonPath, int] = {}
        self.problems: list[str] = []

    def add(self, path: JsonPath, message: str, line: int | None = None) -> None:
        """``line`` defaults to where the nearest enclosing key of ``path`` is written."""
        if line is None:
            line = next(
                (self.lines[path[:n]] for n in range(len(path), -1, -1) if path[:n] in self.lines), None
            )
        where = f" (line {line})" if line is not None else ""
        self.problems.append(f"{self.display}: {_json_path(path)}: {message}{where}")

    def add_at(self, mark: yaml.Mark | None, message: str) -> None:
        """For problems found before there is a document to point into."""
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "$"
        self.problems.append(f"{self.display}: {where}: {message}")


# --- Reading files -------------------------------------------------------------------------


class _SpecYamlLoader(yaml.SafeLoader):
    """YAML with JSON's idea of scalars. YAML 1.1 reads ``on``/``off``/``yes``/``no``/``y``/``n``
    as booleans, so ``notify: {on: [failed]}`` would silently become ``{True: [...]}``; no spec
    key takes a boolean, so only ``true``/``false`` are (YAML 1.2). Dates stay strings, keeping
    every document JSON data (``schedule_input`` is sent as JSON)."""


_SpecYamlLoader.yaml_implicit_resolvers = {
    first: [
        (tag, regexp)
        for tag, regexp in resolvers
        if tag not in ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:timestamp")
    ]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_SpecYamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


class _YamlTree:
    """Builds the document from composed YAML nodes instead of PyYAML's constructor, which keeps
    the last of two equal keys silently and turns keys like ``1`` or ``null`` into non-strings.
    Walking the nodes gives every problem its JSON path and its line."""

    def __init__(self, loader: _SpecYamlLoader, report: _Report) -> None:
        self.loader = loader
        self.report = report
        self.nodes_left = MAX_NODES

    def build(self, node: yaml.Node, path: JsonPath, open_nodes: frozenset[int]) -> object:
        self.nodes_left -= 1
        if self.nodes_left < 0:
            if self.nodes_left == -1:
                self.report.add(path, f"the document expands to more than {MAX_NODES} values")
            return None
        if len(path) > MAX_DEPTH:
            self.report.add(path, f"nested deeper than {MAX_DEPTH} levels; a spec is a few levels deep")
            return None
        if id(node) in open_nodes:
            self.report.add(path, "a YAML alias refers to a mapping or list that contains it: not a tree")
            return None
        inner = open_nodes | {id(node)}
        if isinstance(node, yaml.MappingNode) and node.tag == _YAML_MAP:
            return self._mapping(node, path, inner)
        if isinstance(node, yaml.SequenceNode) and node.tag == _YAML_SEQ:
            return [self.build(item, (*path, index), inner) for index, item in enumerate(node.value)]
        if isinstance(node, yaml.ScalarNode) and node.tag in _YAML_SCALARS:
            try:
                return self.loader.construct_object(node)
            except (ValueError, yaml.YAMLError) as exc:
                self.report.add(path, f"cannot read {_show(node.value)} as {node.tag}: {exc}")
                return None
        self.report.add(
            path, f"unsupported YAML tag {node.tag!r}: a spec holds only mappings, lists and scalars"
        )
        return None

    def _mapping(self, node: yaml.MappingNode, path: JsonPath, open_nodes: frozenset[int]) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        own: dict[str, Any] = {}
        first_line: dict[str, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _YAML_MERGE:
                merged.update(self._merge_sources(value_node, path, open_nodes))
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                self.report.add(path, "a key must be a plain name, not a mapping or list")
                continue
            key = str(key_node.value)
            line = key_node.start_mark.line + 1
            if key in first_line:
                self.report.add(
                    (*path, key),
                    f"duplicate key {key!r} (first at line {first_line[key]}): YAML would keep only the "
                    "last one; rename one or merge them",
                    line,
                )
                continue
            first_line[key] = line
            self.report.lines[(*path, key)] = line
            own[key] = self.build(value_node, (*path, key), open_nodes)
        return {**merged, **own}

    def _merge_sources(self, node: yaml.Node, path: JsonPath, open_nodes: frozenset[int]) -> dict[str, Any]:
        """``<<: *base`` or ``<<: [*a, *b]``: earlier sources win, the mapping's own keys win over all."""
        sources = node.value if isinstance(node, yaml.SequenceNode) else [node]
        merged: dict[str, Any] = {}
        for source in reversed(sources):
            value = self.build(source, path, open_nodes)
            if isinstance(value, dict):
                merged.update(value)
            else:
                self.report.add(path, "a YAML merge key ('<<') must refer to a mapping")
        return merged


def _read_yaml(text: str, report: _Report) -> object:
    loader: _SpecYamlLoader | None = None
    try:
        loader = _SpecYamlLoader(text)
        node = loader.get_single_node()
        if node is None:
            report.add_at(None, "empty file: a spec is a mapping with at least 'workflow' and 'phases'")
            return None
        report.lines[()] = node.start_mark.line + 1
        return _YamlTree(loader, report).build(node, (), frozenset())
    except yaml.MarkedYAMLError as exc:
        detail = f"{exc.context}, {exc.problem}" if exc.context else str(exc.problem)
        report.add_at(exc.problem_mark, f"invalid YAML: {detail}")
    except yaml.YAMLError as exc:
        report.add_at(None, f"invalid YAML: {exc}")
    except RecursionError:
        report.add_at(None, "invalid YAML: nested too deeply; a spec is a few levels deep")
    finally:
        if loader is not None:
            loader.dispose()
    return None


class _JsonPairs(list[tuple[str, Any]]):
    """A JSON object before duplicate keys are checked (``json`` keeps the last one silently)."""


def _read_json(text: str, report: _Report) -> object:
    if not text.strip():
        report.add_at(None, "empty file: a spec is a mapping with at least 'workflow' and 'phases'")
        return None
    try:
        raw = json.loads(text, object_pairs_hook=_JsonPairs)
    except json.JSONDecodeError as exc:
        report.problems.append(
            f"{report.display}: line {exc.lineno}, column {exc.colno}: invalid JSON: {exc.msg}"
        )
        return None
    except RecursionError:
        report.add_at(None, "invalid JSON: nested too deeply; a spec is a few levels deep")
        return None
    return _json_tree(raw, (), report)


def _json_tree(value: object, path: JsonPath, report: _Report) -> object:
    if len(path) > MAX_DEPTH:
        report.add(path, f"nested deeper than {MAX_DEPTH} levels; a spec is a few levels deep")
        return None
    if isinstance(value, _JsonPairs):
        result: dict[str, Any] = {}
        for key, item in value:
            if key in result:
                report.add(
                    (*path, key), f"duplicate key {key!r}: JSON parsers keep only one; rename or merge them"
                )
                continue
            result[key] = _json_tree(item, (*path, key), report)
        return result
    if isinstance(value, list):
        return [_json_tree(item, (*path, index), report) for index, item in enumerate(value)]
    return value


def _check_json_data(value: object, path: JsonPath, report: _Report, open_ids: frozenset[int]) -> None:
    """Documents handed in directly may hold anything; the stages below need JSON data."""
    if len(path) > MAX_DEPTH:
        report.add(path, f"nested deeper than {MAX_DEPTH} levels; a spec is a few levels deep")
    elif isinstance(value, dict | list) and id(value) in open_ids:
        report.add(path, "the document contains itself: not a tree")
    elif isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str):
                _check_json_data(item, (*path, key), report, open_ids | {id(value)})
            else:
                report.add(path, f"key {_show(key)} is {_kind(key)}; keys must be strings")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_json_data(item, (*path, index), report, open_ids | {id(value)})
    elif isinstance(value, float) and not math.isfinite(value):
        report.add(path, f"{value} is not a finite number")
    elif value is not None and not isinstance(value, str | int | float | bool):
        report.add(path, f"{_kind(value)} is not JSON data")


# --- Stage one: JSON Schema ----------------------------------------------------------------


@functools.cache
def _schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    return schema


@functools.cache
def _validator() -> Draft202012Validator:
    return Draft202012Validator(_schema())


def _defs() -> dict[str, Any]:
    defs: dict[str, Any] = _schema()["$defs"]
    return defs


def name_pattern() -> str:
    """The pattern of phase and job names (letters, digits, '_'), as the schema states it."""
    return str(_defs()["name"]["pattern"])


def _is_name(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and re.fullmatch(name_pattern(), value) is not None


def _kind(value: object) -> str:
    """How the user would call a value's type."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return {
        str: "a string",
        int: "an integer",
        float: "a number",
        list: "a list",
        dict: "a mapping",
    }.get(type(value), f"a Python {type(value).__name__}")


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


def _schema_problems(document: object, report: _Report) -> None:
    for error in _validator().iter_errors(document):
        for path, message in _translate(error):
            report.add(path, message)


def _translate(error: ValidationError) -> Iterator[tuple[JsonPath, str]]:
    """jsonschema's messages dump whole instances; these say what is wrong and what is right."""
    path: JsonPath = tuple(error.absolute_path)
    schema = error.schema if isinstance(error.schema, dict) else {}
    value = error.instance
    kind = error.validator
    rule: Any = error.validator_value
    parent = path
    if "propertyNames" in error.absolute_schema_path and isinstance(value, str):
        path = (*path, value)
    if kind == "additionalProperties" and isinstance(value, dict):
        allowed = sorted(schema.get("properties", {}))
        for key in value:
            if key not in allowed:
                yield (
                    (*path, key),
                    f"unknown key {key!r}{_did_you_mean(key, allowed)}; allowed here: {', '.join(allowed)}",
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
        yield path, f"expected {wanted}, got {_kind(value)} {_show(value)}{hint}"
    elif kind in ("minimum", "maximum"):
        about = f" ({schema['description'].rstrip('.')})" if "description" in schema else ""
        low, high = schema.get("minimum"), schema.get("maximum")
        yield path, f"{_show(value)} is out of range: must be between {low} and {high}{about}"
    elif kind == "enum":
        choices = [str(choice) for choice in rule]
        yield (
            path,
            f"unknown value {_show(value)}{_did_you_mean(str(value), choices)}; "
            f"expected one of: {', '.join(choices)}",
        )
    elif kind == "pattern" and isinstance(value, str):
        if "patternErrorMessage" in schema:
            yield path, f"invalid value {_show(value)}: {schema['patternErrorMessage']}"
        else:
            yield path, _bad_name_message(_name_kind(parent), value)
    elif kind == "maxLength" and isinstance(value, str):
        yield path, f"{_show(value)} is {len(value)} characters long; the limit is {rule}"
    elif kind == "minLength":
        yield path, "must not be empty"
    elif kind == "minProperties":
        yield path, _empty_message(path)
    elif kind == "uniqueItems" and isinstance(value, list):
        twice = sorted({_show(item) for index, item in enumerate(value) if item in value[:index]})
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


# --- Stage two: semantic checks on a format-neutral draft ----------------------------------


@dataclass
class _Ref:
    """A name as written somewhere, for messages that point at that place."""

    name: str
    path: JsonPath


@dataclass
class _DraftJob:
    name: str
    path: JsonPath
    after: list[_Ref] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    """``Job`` fields beyond name/phase/after; only what the spec sets (the model has defaults)."""


@dataclass
class _DraftPhase:
    name: str
    path: JsonPath
    jobs: list[_DraftJob] = field(default_factory=list)
    next: _Ref | None = None
    """The phase written in ``next``; ``None`` means the one declared after (or the end)."""
    ends: bool = False
    """The seed's ``next: end``."""


@dataclass
class _Draft:
    name: str | None
    phases: list[_DraftPhase]
    settings: dict[str, Any] = field(default_factory=dict)
    """``Workflow`` fields beyond name/phases."""


def _fields(raw: object, kind: str) -> dict[str, Any]:
    """The keys of ``raw`` the loader understands for mappings of ``kind``: it reads spec
    mappings only through here, so ``SPEC_KEYS`` is exactly what it can see."""
    if not isinstance(raw, dict):
        return {}
    return {key: raw[key] for key in SPEC_KEYS[kind] if key in raw}


def _mapping(raw: object) -> dict[str, Any]:
    return raw if isinstance(raw, dict) else {}


def _name_refs(raw: object, path: JsonPath) -> list[_Ref]:
    """The well-formed names of a list; the schema reports the others."""
    if not isinstance(raw, list):
        return []
    return [_Ref(item, (*path, index)) for index, item in enumerate(raw) if _is_name(item)]


def _successors(draft: _Draft) -> dict[str, _Ref | None]:
    following: dict[str, _Ref | None] = {}
    for index, phase in enumerate(draft.phases):
        if phase.next is not None or phase.ends:
            following[phase.name] = phase.next
        elif index + 1 < len(draft.phases):
            following[phase.name] = _Ref(draft.phases[index + 1].name, phase.path)
        else:
            following[phase.name] = None
    return following


def _check_phase_chain(draft: _Draft, report: _Report) -> list[str]:
    """Unknown ``next`` names, loops and unreachable phases; returns the run order."""
    names = [phase.name for phase in draft.phases]
    following = _successors(draft)
    dangling = False
    for phase in draft.phases:
        if phase.next is not None and phase.next.name not in names:
            dangling = True
            report.add(
                phase.next.path,
                f"unknown phase {phase.next.name!r}{_did_you_mean(phase.next.name, names)}; "
                f"phases: {_names(names)}",
            )
    if dangling or not names:
        return names
    order: list[str] = []
    current: str | None = names[0]
    while current is not None and current not in order:
        order.append(current)
        step = following[current]
        if step is not None and step.name in order:
            loop = [*order[order.index(step.name) :], step.name]
            implicit = draft.phases[names.index(current)].next is None
            how = f" ({current!r} has no 'next', so the next one declared follows)" if implicit else ""
            report.add(step.path, f"phases loop: {' -> '.join(loop)}{how}; the last phase must end the run")
            break
        current = step.name if step is not None else None
    for phase in draft.phases:
        if phase.name not in order:
            report.add(
                phase.path,
                f"phase {phase.name!r} is unreachable: the run goes {' -> '.join(order)} and never gets "
                "there; name it in a 'next' or remove it",
            )
    return order


def _check_jobs(draft: _Draft, report: _Report) -> None:
    owner: dict[str, _DraftPhase] = {}
    for phase in draft.phases:
        for job in phase.jobs:
            if job.name in owner:
                report.add(
                    job.path,
                    f"job {job.name!r} is also defined in phase {owner[job.name].name!r}; job names must be "
                    "unique in a workflow (each names a Lambda function)",
                )
            else:
                owner[job.name] = phase
            if draft.name is not None and _is_name(job.name):
                function = job_function_name(draft.name, job.name)
                if len(function) > FUNCTION_NAME_MAX:
                    room = FUNCTION_NAME_MAX - len(job_function_name(draft.name, ""))
                    report.add(
                        job.path,
                        f"job function name {function!r} is {len(function)} characters long; AWS Lambda "
                        f"allows {FUNCTION_NAME_MAX}: shorten the job name to {room} characters or fewer",
                    )
    order = [phase.name for phase in draft.phases]
    for phase in draft.phases:
        local = [job.name for job in phase.jobs]
        for job in phase.jobs:
            for ref in job.after:
                if ref.name == job.name:
                    report.add(ref.path, f"job {job.name!r} waits for itself, so it can never start")
                elif ref.name in local:
                    continue
                elif ref.name in owner:
                    other = owner[ref.name].name
                    when = "earlier" if order.index(other) < order.index(phase.name) else "later"
                    report.add(
                        ref.path,
                        f"job {ref.name!r} belongs to the {when} phase {other!r}; a job can wait only for "
                        f"jobs of its own phase {phase.name!r} (phases run one after the other)",
                    )
                else:
                    report.add(
                        ref.path,
                        f"unknown job {ref.name!r}{_did_you_mean(ref.name, local)}; "
                        f"jobs of phase {phase.name!r}: {_names(local)}",
                    )
        for cycle in _cycles(phase):
            report.add(
                cycle[0].path,
                "jobs wait for each other in a cycle: "
                + " after ".join([*(ref.waiter for ref in cycle), cycle[0].waiter])
                + "; none of them can ever start",
            )


@dataclass
class _Wait:
    """One ``after`` entry seen from the job that waits."""

    waiter: str
    on: str
    path: JsonPath


def _cycles(phase: _DraftPhase) -> list[list[_Wait]]:
    """One cycle per knot of jobs that wait for each other, each as the ``after`` entries that
    close it. Iterative (Kahn's algorithm), so a long chain of jobs cannot exhaust the stack."""
    waits = {
        job.name: [_Wait(job.name, ref.name, ref.path) for ref in job.after if ref.name != job.name]
        for job in phase.jobs
    }
    stuck = set(waits)
    cycles: list[list[_Wait]] = []
    while True:
        progress = True
        while progress:
            free = {name for name in stuck if not any(wait.on in stuck for wait in waits[name])}
            stuck -= free
            progress = bool(free)
        if not stuck:
            return cycles
        name = next(job.name for job in phase.jobs if job.name in stuck)
        walk: list[_Wait] = []
        while name not in [wait.waiter for wait in walk]:
            wait = next(wait for wait in waits[name] if wait.on in stuck)
            walk.append(wait)
            name = wait.on
        cycle = walk[[wait.waiter for wait in walk].index(name) :]
        cycles.append(cycle)
        stuck -= {wait.waiter for wait in cycle}


# --- The canonical spec ----------------------------------------------------------------------


def _read_spec(document: dict[str, Any], report: _Report, base_dir: Path) -> _Draft:
    spec = _fields(document, "spec")
    name = spec.get("workflow") if isinstance(spec.get("workflow"), str) else None
    defaults = _fields(spec.get("defaults"), "defaults")
    _check_env(defaults.get("env"), ("defaults", "env"), report)
    phases: list[_DraftPhase] = []
    for phase_name, raw_phase in _mapping(spec.get("phases")).items():
        phase_path: JsonPath = ("phases", phase_name)
        phase_fields = _fields(raw_phase, "phase")
        written_next = phase_fields.get("next")
        phase = _DraftPhase(
            phase_name,
            phase_path,
            next=_Ref(written_next, (*phase_path, "next")) if _is_name(written_next) else None,
        )
        for job_name, raw_job in _mapping(phase_fields.get("jobs")).items():
            job_path: JsonPath = (*phase_path, "jobs", job_name)
            job_fields = _fields(raw_job, "job")
            job = _DraftJob(
                job_name, job_path, after=_name_refs(job_fields.get("after"), (*job_path, "after"))
            )
            job.settings = _job_settings(job, defaults, job_fields, report, base_dir)
            phase.jobs.append(job)
        phases.append(phase)
    settings: dict[str, Any] = {key: spec[key] for key in ("description", "schedule") if key in spec}
    if "schedule_input" in spec:
        settings["schedule_input"] = spec["schedule_input"]
    if "notify" in spec:
        settings["notify"] = Notify(**_notify_settings(spec["notify"]))
    return _Draft(name, phases, settings)


def _job_settings(
    job: _DraftJob, defaults: dict[str, Any], own: dict[str, Any], report: _Report, base_dir: Path
) -> dict[str, Any]:
    settings = {
        key: value for key, value in {**defaults, **own}.items() if key in ("memory", "timeout", "retries")
    }
    settings["env"] = {**_mapping(defaults.get("env")), **_mapping(own.get("env"))}
    _check_env(own.get("env"), (*job.path, "env"), report)
    if isinstance(own.get("when"), str):
        settings["when"] = own["when"]
        _check_when(job, own["when"], report)
    if isinstance(own.get("code"), str) and own["code"]:
        settings["code"] = _resolve_code(own["code"], (*job.path, "code"), report, base_dir)
    return settings


def _check_env(raw_env: object, path: JsonPath, report: _Report) -> None:
    for key in _mapping(raw_env):
        if key in RESERVED_ENV:
            report.add(
                (*path, key),
                f"environment variable {key!r} is set by Lambda or the job wrapper; pick another name",
            )


def _check_when(job: _DraftJob, condition: str, report: _Report) -> None:
    path = (*job.path, "when")
    try:
        parsed = jmespath.compile(condition).parsed
    except (jmespath.exceptions.JMESPathError, RecursionError) as exc:
        summary = (str(exc).splitlines() or [type(exc).__name__])[0].rstrip(":")
        position = getattr(exc, "lex_position", None)
        at = f" at column {position + 1}" if isinstance(position, int) else ""
        report.add(path, f"invalid JMESPath {_show(condition)}: {summary}{at}")
        return
    if _negates_then_reads(parsed):
        report.add(
            path,
            f"{_show(condition)} negates before it reads a field: JMESPath reads '!a.b' as '(!a).b', "
            "which is always null, so the job would always be skipped; write '!(a.b)'",
        )
    visible = [ref.name for ref in job.after]
    for root, member in _root_fields(parsed):
        if root not in WHEN_ROOTS:
            hint = f" (did you mean 'input.{root}'?)"
            report.add(
                path,
                f"{_show(condition)} reads {root!r}, but a condition sees only {_names(WHEN_ROOTS)}{hint}",
            )
        elif root == "results" and member is not None and member not in visible:
            report.add(
                path,
                f"{_show(condition)} reads results.{member}, but job {job.name!r} gets only the results "
                f"of its 'after' jobs {_names(visible)}",
            )


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


def _resolve_code(code: str, path: JsonPath, report: _Report, base_dir: Path) -> str:
    target = (base_dir / code).resolve()
    if target.is_dir():
        if not (target / "handler.py").is_file():
            report.add(path, f"code folder {code!r} has no handler.py (looked in {target.as_posix()})")
        if (target / "runtime").exists():
            report.add(path, f"code folder {code!r} contains 'runtime', which would hide the bundled runtime")
    elif target.is_file():
        if target.suffix != ".py":
            report.add(
                path, f"code {code!r} is not a Python file: name a .py file or a folder with handler.py"
            )
        elif not target.stem.isidentifier() or target.stem == "runtime":
            # The file is imported as a module named after it, next to the bundled `runtime` package.
            report.add(
                path, f"code {code!r} cannot be imported as a module: name it like a Python identifier"
            )
    else:
        siblings = [entry.name for entry in target.parent.iterdir()] if target.parent.is_dir() else []
        hint = _did_you_mean(target.name, siblings)
        report.add(path, f"code {code!r} does not exist (looked for {target.as_posix()}){hint}")
    return target.as_posix()


def _notify_settings(raw: object) -> dict[str, Any]:
    notify = _fields(raw, "notify")
    settings: dict[str, Any] = {}
    for key in ("on", "email"):
        if isinstance(notify.get(key), list):
            settings[key] = tuple(item for item in notify[key] if isinstance(item, str))
    if isinstance(notify.get("slack_webhook_secret"), str):
        settings["slack_webhook_secret"] = notify["slack_webhook_secret"]
    return settings


# --- The seed's state-machine object -----------------------------------------------------------


def _seed_workflow_id(purpose_id: str) -> str:
    """The seed names workflows like ``catch-the-fish``; ours are ``catch_the_fish``."""
    return re.sub(r"[-\s]+", "_", purpose_id.strip().lower())


def _entry_step(phase: str, first: bool) -> str:
    """The seed starts a run with a ``success`` of a job named after the first phase, and each
    later phase with one named ``<phase>Start``."""
    return phase if first else f"{phase}Start"


def _read_seed(document: dict[str, Any], report: _Report) -> _Draft:
    seed = _fields(document, "seed")
    name = _seed_name(seed.get("purposeId"), report)
    raw_phases = _mapping(seed.get("phases"))
    started = {
        phase_name: _started_jobs(phase_name, _fields(raw, "seed_phase"))
        for phase_name, raw in raw_phases.items()
    }
    owner = {job: phase_name for phase_name, jobs in started.items() for job in jobs}
    phases = []
    for index, (phase_name, raw_phase) in enumerate(raw_phases.items()):
        path: JsonPath = ("phases", phase_name)
        fields = _fields(raw_phase, "seed_phase")
        written_next = fields.get("next")
        phase = _DraftPhase(phase_name, path, ends=written_next == SEED_END)
        if _is_name(written_next) and written_next != SEED_END:
            phase.next = _Ref(written_next, (*path, "next"))
        if phase_name == SEED_END:
            report.add(
                path, f"a phase cannot be named {SEED_END!r}: the seed's 'next' uses it to end the run"
            )
        entry = _entry_step(phase_name, index == 0)
        jobs = started[phase_name]
        phase.jobs = [_DraftJob(job, where) for job, where in jobs.items()]
        by_name = {job.name: job for job in phase.jobs}
        _check_seed_steps(phase, entry, _mapping(fields.get("steps")), by_name, owner, report)
        _check_wait_for(path, fields.get("waitFor"), list(jobs), report)
        phases.append(phase)
    return _Draft(name, phases)


def _seed_name(purpose_id: object, report: _Report) -> str | None:
    if not isinstance(purpose_id, str) or not purpose_id:
        return None
    name = _seed_workflow_id(purpose_id)
    rule = _defs()["spec"]["properties"]["workflow"]
    if not re.fullmatch(rule["pattern"], name) or len(name) > rule["maxLength"]:
        report.add(
            ("purposeId",),
            f"purposeId {purpose_id!r} cannot become a workflow id: {name!r} is not "
            f"{rule['pattern']} with at most {rule['maxLength']} characters",
        )
        return None
    return name


def _started_jobs(phase: str, fields: dict[str, Any]) -> dict[str, JsonPath]:
    """The jobs a phase runs: every name some step starts, where it is first written."""
    jobs: dict[str, JsonPath] = {}
    for trigger, raw_step in _mapping(fields.get("steps")).items():
        step_path: JsonPath = ("phases", phase, "steps", trigger, "jobs")
        for ref in _name_refs(_fields(raw_step, "seed_step").get("jobs"), step_path):
            jobs.setdefault(ref.name, ref.path)
    return jobs


def _check_seed_steps(
    phase: _DraftPhase,
    entry: str,
    steps: dict[str, Any],
    jobs: dict[str, _DraftJob],
    owner: dict[str, str],
    report: _Report,
) -> None:
    """Turns "step T starts J" into "J runs after T", and checks each step's key."""
    other_style = phase.name if entry != phase.name else f"{phase.name}Start"
    if entry not in steps:
        if other_style in steps and other_style not in jobs:
            which = (
                "the first phase's entry step is keyed by its name"
                if entry == phase.name
                else ("a later phase's entry step is keyed '<phase>Start'")
            )
            report.add(
                (*phase.path, "steps", other_style), f"entry step {other_style!r} must be {entry!r}: {which}"
            )
        else:
            report.add(
                (*phase.path, "steps"),
                f"phase {phase.name!r} has no entry step {entry!r}: no job would start",
            )
    if entry in jobs:
        report.add(jobs[entry].path, f"job {entry!r} has the name of the phase's entry step; rename it")
    roots: set[str] = set()
    for trigger, raw_step in steps.items():
        step_path: JsonPath = (*phase.path, "steps", trigger)
        started = _name_refs(_fields(raw_step, "seed_step").get("jobs"), (*step_path, "jobs"))
        if trigger == entry:
            roots.update(ref.name for ref in started)
        elif trigger == other_style and trigger not in jobs:
            continue
        elif trigger in jobs:
            for ref in started:
                jobs[ref.name].after.append(_Ref(trigger, step_path))
        elif trigger in owner:
            report.add(
                step_path,
                f"step {trigger!r} is a job of phase {owner[trigger]!r}; a step can follow only a job of "
                f"its own phase {phase.name!r} or the entry step {entry!r}",
            )
        elif _is_name(trigger):
            candidates = [entry, *jobs]
            report.add(
                step_path,
                f"step {trigger!r} is neither the entry step {entry!r} nor a job that phase "
                f"{phase.name!r} starts{_did_you_mean(trigger, candidates)}",
            )
    for name in sorted(roots):
        if jobs[name].after:
            report.add(
                jobs[name].after[0].path,
                f"job {name!r} is started by the entry step {entry!r} and also after "
                f"{_names(ref.name for ref in jobs[name].after)}; list it in one place",
            )


def _check_wait_for(path: JsonPath, wait_for: object, started: list[str], report: _Report) -> None:
    if not isinstance(wait_for, list) or not all(isinstance(item, str) for item in wait_for):
        return
    unfinished = [job for job in started if job not in wait_for]
    never = [job for job in wait_for if job not in started]
    if unfinished or never:
        reasons = []
        if unfinished:
            reasons.append(f"{_names(unfinished)} run but are not waited for")
        if never:
            reasons.append(f"{_names(never)} are waited for but no step starts them")
        report.add(
            (*path, "waitFor"),
            f"waitFor {_names(wait_for)} disagrees with the jobs the steps start {_names(started)}: "
            + "; ".join(reasons),
        )


# --- Assembling the IR ---------------------------------------------------------------------------


def _build(draft: _Draft, order: list[str], source: str | None, in_run_order: bool) -> Workflow:
    """``in_run_order`` (the seed) lists phases as they run with no explicit ``next``; a spec keeps
    its declaration order and its ``next`` as written."""
    by_name = {phase.name: phase for phase in draft.phases}
    drafts = [by_name[name] for name in order] if in_run_order else draft.phases
    phases = tuple(
        Phase(
            name=phase.name,
            next=None if in_run_order or phase.next is None else phase.next.name,
            jobs=tuple(
                Job(
                    name=job.name,
                    phase=phase.name,
                    after=tuple(ref.name for ref in job.after),
                    **job.settings,
                )
                for job in phase.jobs
            ),
        )
        for phase in drafts
    )
    assert draft.name is not None  # a draft without problems has its name
    return Workflow(name=draft.name, phases=phases, source=source, **draft.settings)


def _compile(document: object, report: _Report, base_dir: Path, source: str | None) -> Workflow | None:
    _check_json_data(document, (), report, frozenset())
    if report.problems:
        return None
    if not isinstance(document, dict):
        report.add((), f"the top level must be a mapping with 'workflow' and 'phases', got {_kind(document)}")
        return None
    _schema_problems(document, report)
    is_seed = "purposeId" in document
    draft = _read_seed(document, report) if is_seed else _read_spec(document, report, base_dir)
    _check_jobs(draft, report)
    order = _check_phase_chain(draft, report)
    if report.problems:
        return None
    return _build(draft, order, source, in_run_order=is_seed)


def workflow_from_document(
    document: object, *, source: str = "<document>", base_dir: Path | None = None
) -> Workflow:
    """Compile an already-parsed spec (or seed object); ``source`` names it in messages and
    ``code`` paths resolve against ``base_dir`` (default: the current folder)."""
    report = _Report(source)
    workflow = _compile(document, report, (base_dir or Path.cwd()).resolve(), None)
    if workflow is None:
        raise SpecError(report.problems)
    return workflow


def _load(path: Path) -> tuple[Workflow | None, list[str]]:
    report = _Report(str(path))
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        report.add_at(None, f"not UTF-8 text (byte {exc.start}): save the spec as UTF-8")
        return None, report.problems
    except OSError as exc:
        report.add_at(None, f"cannot read: {exc.strerror or exc}")
        return None, report.problems
    document = _read_json(text, report) if path.suffix == ".json" else _read_yaml(text, report)
    if report.problems:
        return None, report.problems
    resolved = path.resolve()
    return _compile(document, report, resolved.parent, resolved.as_posix()), report.problems


def load_workflow(path: str | PathLike[str]) -> Workflow:
    """Load one spec file (YAML, JSON, or the seed's state-machine object in either)."""
    workflow, problems = _load(Path(path))
    if workflow is None:
        raise SpecError(problems)
    return workflow


def spec_files(paths: Sequence[str | PathLike[str]]) -> list[Path]:
    """Expand folders to the spec files directly in them, sorted; the schema is not a spec."""
    files: list[Path] = []
    problems: list[str] = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            found = sorted(
                entry
                for entry in path.iterdir()
                if entry.is_file()
                and entry.suffix in SPEC_SUFFIXES
                and not entry.name.endswith(".schema.json")
            )
            if not found:
                problems.append(
                    f"{path}: $: no spec files ({', '.join('*' + s for s in SPEC_SUFFIXES)}) in this folder"
                )
            files.extend(found)
        elif path.exists():
            files.append(path)
        else:
            problems.append(f"{path}: $: no such file or folder")
    if problems:
        raise SpecError(problems)
    return files


def load_workflows(paths: Sequence[str | PathLike[str]]) -> list[Workflow]:
    """Load every spec under ``paths`` (files or folders); one ``SpecError`` lists the problems of
    all files, including two files that define the same workflow id (their stacks would clash)."""
    workflows: list[Workflow] = []
    problems: list[str] = []
    defined_in: dict[str, Path] = {}
    for path in spec_files(paths):
        workflow, found = _load(path)
        problems.extend(found)
        if workflow is None:
            continue
        if workflow.name in defined_in:
            problems.append(
                f"{path}: $.workflow: workflow id {workflow.name!r} is also used by "
                f"{defined_in[workflow.name]}; each workflow needs its own id"
            )
        defined_in.setdefault(workflow.name, path)
        workflows.append(workflow)
    if problems:
        raise SpecError(problems)
    return workflows
