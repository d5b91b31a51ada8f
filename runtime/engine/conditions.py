"""A ``when`` evaluated strictly over the jobs' outputs: JMESPath reads a field an object does not
have as null, so a misspelled field (``results.classify.sensitve``) would skip a job silently.
Here reading a field that a job's output (or an object inside it) does not have is an error of
the run, naming the path and the fields the object has; ``get(object, 'field')`` reads a field
that may be missing (null when it is). A job that did not succeed has no entry in ``results``:
``results.<job>`` is null then, as before, so a ``join: any`` can test which one ran. ``input``
is read as JMESPath reads it. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jmespath
from jmespath import functions
from jmespath.visitor import Options, TreeInterpreter

SHOWN_FIELDS = 20
"""Fields of an object a missing field's error lists (then how many more)."""


class MissingField(Exception):
    """A ``when`` read a field an output does not have."""


class _Output(dict[str, Any]):
    """An object read from a job's output, and where: its missing fields are errors."""

    def __init__(self, value: Mapping[str, Any], path: str) -> None:
        super().__init__(value)
        self.path = path

    def field(self, name: str) -> Any:
        value = self[name]
        return _Output(value, f"{self.path}.{name}") if isinstance(value, dict) else value


# JMESPath's functions type a value by its class's name (``type(value).__name__``), not by
# ``isinstance``: under its own name an output would be of no JMESPath type at all.
_Output.__name__ = "dict"


class _Functions(functions.Functions):
    @functions.signature({"types": ["object", "null"]}, {"types": ["string"]})
    def _func_get(self, value: Any, name: str) -> Any:
        """``get(object, 'field')``: the field, or null when the object does not have it."""
        if isinstance(value, _Output):
            return value.field(name) if name in value else None
        return None if value is None else value.get(name)


class _StrictInterpreter(TreeInterpreter):
    def visit_field(self, node: dict[str, Any], value: Any) -> Any:
        name = node["value"]
        if not isinstance(value, _Output):
            return super().visit_field(node, value)
        if name not in value:
            fields = sorted(value)
            shown = ", ".join(fields[:SHOWN_FIELDS]) + (", ..." if len(fields) > SHOWN_FIELDS else "")
            has = f"its fields: {shown}" if fields else "it has no fields"
            raise MissingField(
                f"{value.path} has no field {name!r} ({has}); "
                f"write get({value.path}, '{name}') for a field that may be missing"
            )
        return value.field(name)


_OPTIONS = Options(custom_functions=_Functions())


def evaluate(
    expression: str,
    run_input: Any,
    results: Mapping[str, Any],
    failures: Mapping[str, Any] | None = None,
    outcome: Mapping[str, Any] | None = None,
) -> Any:
    """``expression`` against ``{"input", "results", "failures", "run"}``, reading the outputs
    strictly (``failures``: the failed ``after`` jobs' errors; ``run``: an exit handler's run
    outcome; both read as JMESPath reads them). Raises
    ``MissingField``, and whatever JMESPath raises for an expression it cannot evaluate."""
    outputs = {
        name: _Output(value, f"results.{name}") if isinstance(value, dict) else value
        for name, value in results.items()
    }
    parsed = jmespath.compile(expression).parsed
    scope = {"input": run_input, "results": outputs, "failures": dict(failures or {}), "run": outcome}
    return _StrictInterpreter(_OPTIONS).visit(parsed, scope)
