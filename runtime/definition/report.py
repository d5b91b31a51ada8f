"""Where a problem is (JSON paths, lines) and how values read in messages; every stage of the
loader writes into one ``Report`` per file."""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable

import yaml

from runtime.errors import Problem, Severity

PathPart = str | int
JsonPath = tuple[PathPart, ...]


def json_path(parts: Iterable[PathPart]) -> str:
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


def show(value: object) -> str:
    """A value as the user wrote it, short enough for one line."""
    text = repr(value) if isinstance(value, str) else json.dumps(value, default=repr)
    return text if len(text) <= 60 else text[:57] + "..."


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    matches = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean '{matches[0]}'?)" if matches else ""


def name_list(values: Iterable[str]) -> str:
    return "[" + ", ".join(values) + "]"


def kind_of(value: object) -> str:
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


class Report:
    """The problems of one file, each tied to a JSON path and, for YAML, the line it is on.
    Warnings are kept apart: they never stop the file from loading."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.lines: dict[JsonPath, int] = {}
        self.problems: list[Problem] = []
        self.warnings: list[Problem] = []

    def line_of(self, path: JsonPath) -> int | None:
        """Where the nearest enclosing key of ``path`` is written."""
        return next((self.lines[path[:n]] for n in range(len(path), -1, -1) if path[:n] in self.lines), None)

    def add(self, path: JsonPath, message: str, line: int | None = None) -> None:
        """``line`` defaults to where the nearest enclosing key of ``path`` is written."""
        self.problems.append(
            Problem(self.source, json_path(path), message, self.line_of(path) if line is None else line)
        )

    def warn(self, path: JsonPath, message: str) -> None:
        self.warnings.append(
            Problem(self.source, json_path(path), message, self.line_of(path), severity=Severity.WARNING)
        )

    def add_at(self, mark: yaml.Mark | None, message: str) -> None:
        """For problems found before there is a document to point into."""
        if mark is None:
            self.problems.append(Problem(self.source, "$", message))
        else:
            self.add_in_text(mark.line + 1, mark.column + 1, message)

    def add_in_text(self, line: int, column: int, message: str) -> None:
        self.problems.append(Problem(self.source, None, message, line, column))
