"""Reading a spec file into a document: YAML with JSON's scalars, JSON, duplicate keys, the line
of every key, and limits that keep hostile input (deep nesting, alias bombs) bounded."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from runtime.definition.report import JsonPath, Report, kind_of, show

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

    def __init__(self, loader: _SpecYamlLoader, report: Report) -> None:
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
                self.report.add(path, f"cannot read {show(node.value)} as {node.tag}: {exc}")
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


def read_yaml(text: str, report: Report) -> object:
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


def read_json(text: str, report: Report) -> object:
    if not text.strip():
        report.add_at(None, "empty file: a spec is a mapping with at least 'workflow' and 'phases'")
        return None
    try:
        raw = json.loads(text, object_pairs_hook=_JsonPairs)
    except json.JSONDecodeError as exc:
        report.add_in_text(exc.lineno, exc.colno, f"invalid JSON: {exc.msg}")
        return None
    except RecursionError:
        report.add_at(None, "invalid JSON: nested too deeply; a spec is a few levels deep")
        return None
    return _json_tree(raw, (), report)


def _json_tree(value: object, path: JsonPath, report: Report) -> object:
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


def check_json_data(value: object, path: JsonPath, report: Report, open_ids: frozenset[int]) -> None:
    """Documents handed in directly may hold anything; the stages below need JSON data."""
    if len(path) > MAX_DEPTH:
        report.add(path, f"nested deeper than {MAX_DEPTH} levels; a spec is a few levels deep")
    elif isinstance(value, dict | list) and id(value) in open_ids:
        report.add(path, "the document contains itself: not a tree")
    elif isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str):
                check_json_data(item, (*path, key), report, open_ids | {id(value)})
            else:
                report.add(path, f"key {show(key)} is {kind_of(key)}; keys must be strings")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            check_json_data(item, (*path, index), report, open_ids | {id(value)})
    elif isinstance(value, float) and not math.isfinite(value):
        report.add(path, f"{value} is not a finite number")
    elif value is not None and not isinstance(value, str | int | float | bool):
        report.add(path, f"{kind_of(value)} is not JSON data")


@dataclass(frozen=True)
class SourceFile:
    """A file read into a document, with the report its later stages add to."""

    path: Path
    document: object
    """``None`` when the report has problems."""
    report: Report


def read_spec_file(path: Path) -> SourceFile:
    """Reads ``path`` as JSON (by its suffix) or YAML; every problem is in the report."""
    report = Report(str(path))
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        report.add_at(None, f"not UTF-8 text (byte {exc.start}): save the spec as UTF-8")
        return SourceFile(path, None, report)
    except OSError as exc:
        report.add_at(None, f"cannot read: {exc.strerror or exc}")
        return SourceFile(path, None, report)
    document = read_json(text, report) if path.suffix == ".json" else read_yaml(text, report)
    return SourceFile(path, None if report.problems else document, report)
