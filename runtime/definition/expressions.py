"""JMESPath expressions in a spec (``when``, ``for_each``): they compile, read only what they
can see, and which jobs' results they read."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

import jmespath
import jmespath.exceptions
from jmespath.lexer import Lexer

from runtime.definition.draft import DraftJob
from runtime.definition.report import JsonPath, Report, name_list, show

WHEN_ROOTS = ("input", "results", "failures")
"""What a ``when`` condition can read at its top level (``failures``: the errors of the jobs in
its ``after`` that failed); an exit handler's also reads ``run`` (``{status, error,
failures}``)."""


NULL_MEANS = {
    "when": ", so the job would always be skipped",
    "for_each": ", which is not an array, so the job would always fail",
    "wait": ", which is not a time, so the run would always fail",
}
"""What an expression that is always null does, by the key that holds it."""


def check_expression(job: DraftJob, key: str, condition: str, reads: list[str], report: Report) -> None:
    """A ``when`` or ``for_each`` (``key``) of ``job``: it compiles, reads only ``input`` and
    ``results``, does not negate before it reads; the jobs it reads under ``results`` go to
    ``reads``, checked once the phase order is known."""
    path = (*job.path, key)
    parsed = compiled(path, condition, report, NULL_MEANS[key])
    if parsed is None:
        return
    roots = WHEN_ROOTS if key == "when" else WHEN_ROOTS[:2]
    if key == "when" and job.path[:1] == ("on_exit",):
        roots = (*roots, "run")  # how the run ends, as an exit handler's event says it
    for root, member in root_fields(parsed):
        if root not in roots:
            hint = f" (did you mean 'input.{root}'?)"
            report.add(
                path,
                f"{show(condition)} reads {root!r}, but {key!r} sees only {name_list(roots)}{hint}",
            )
        elif root in ("results", "failures") and member is not None and member not in reads:
            # Which jobs it may read depends on the phase order: checked with the jobs.
            reads.append(member)


def top_level_fields(parsed: Mapping[str, Any]) -> set[str]:
    """The names an expression's parse tree reads at its top level (an event job's ``match``)."""
    return {root for root, _ in root_fields(parsed)}


def compiled(path: JsonPath, expression: str, report: Report, null_means: str = "") -> Any | None:
    """``expression``'s parse tree, or None when it does not compile (reported at ``path``, the
    column given). One that negates before it reads a field is reported too, its tree returned;
    ``null_means``: what that null would do, said after it."""
    try:
        parsed = jmespath.compile(expression).parsed
    except (jmespath.exceptions.JMESPathError, RecursionError) as exc:
        if getattr(exc, "token_type", None) == "NUMBER":
            report.add(path, _bare_number_message(expression))
            return None
        summary = (str(exc).splitlines() or [type(exc).__name__])[0].rstrip(":")
        position = getattr(exc, "lex_position", None)
        at = f" at column {position + 1}" if isinstance(position, int) else ""
        report.add(path, f"invalid JMESPath {show(expression)}: {summary}{at}")
        return None
    if _negates_then_reads(parsed):
        report.add(
            path,
            f"{show(expression)} negates before it reads a field: JMESPath reads '!a.b' as '(!a).b', "
            f"which is always null{null_means}; write '!(a.b)'",
        )
    return parsed


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


def root_fields(node: Mapping[str, Any]) -> Iterator[tuple[str, str | None]]:
    """Top-level names a condition reads, with the name read under each (``results.<job>``)."""
    children = node.get("children", [])
    if node.get("type") == "field":
        yield str(node.get("value")), None
    elif node.get("type") in _SAME_CONTEXT:
        for child in children:
            yield from root_fields(child)
    elif node.get("type") in _CHAINS and children:
        first = children[0]
        if (
            node["type"] == "subexpression"
            and first.get("type") == "field"
            and children[1].get("type") == "field"
        ):
            yield str(first.get("value")), str(children[1].get("value"))
        else:
            yield from root_fields(first)
