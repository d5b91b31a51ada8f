"""One exception tree for the whole project, and the ``Problem`` values its input errors carry."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum


class WorkflowError(Exception):
    """Base of every error this project raises on purpose."""


class Severity(StrEnum):
    """An error makes the input unusable; a warning is worth a look but stops nothing."""

    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True)
class Problem:
    """One finding about the input, as a value tools can sort, filter and point at; ``str()``
    is the line the CLI prints: ``<source>: <json path>: <what is wrong and what would be
    right> (line N)``."""

    source: str
    """The file as it was named (or ``context`` for CDK context)."""
    path: str | None
    """A JSON path into the document (``$.phases.p.jobs.j``); ``None`` when the problem is in the
    text itself (``line`` and ``column`` then say where) or about the source as a whole."""
    message: str
    line: int | None = None
    """The line the problem is on, in ``source``, when known."""
    column: int | None = None
    """Only for problems in the text (``path`` is ``None``)."""
    severity: Severity = Severity.ERROR

    def __str__(self) -> str:
        marker = "warning: " if self.severity is Severity.WARNING else ""
        if self.path is not None:
            where = f" (line {self.line})" if self.line is not None else ""
            return f"{self.source}: {self.path}: {marker}{self.message}{where}"
        if self.line is not None:
            column = f", column {self.column}" if self.column is not None else ""
            return f"{self.source}: line {self.line}{column}: {marker}{self.message}"
        return f"{self.source}: {marker}{self.message}"


class ProblemsError(WorkflowError):
    """Input that cannot be used; ``problems`` holds every finding, not just the first, and the
    message is their lines."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(problem) for problem in self.problems))


class SpecError(ProblemsError):
    """A workflow definition is invalid."""


class RunError(WorkflowError):
    """A run-time request cannot be carried out (unknown run, conflicting start, ...)."""


class RunNotFound(RunError):
    """No run has that id (in this database, or of this workflow)."""


class OperationRefused(RunError):
    """An operation the run cannot take now (cancel an ended run, redrive a running one, answer
    a job that does not wait for an answer): refused before anything was recorded."""


class StoreError(WorkflowError):
    """MongoDB could not do what the engine asked; wraps the driver's exception."""


class StoreUnavailable(StoreError):
    """The runs cannot be reached: no MongoDB given, the server does not answer, or the starter
    function cannot be invoked."""


class DocumentRejected(StoreError):
    """MongoDB refused a document for what it is (too large, nested too deeply, not valid BSON):
    writing it again can never succeed, so it must not be retried."""


class OutputTooLarge(WorkflowError):
    """An output kept by reference is larger than what may be loaded of it (a budget the caller
    set); raised before it is loaded."""

    def __init__(self, ref: str, size: int, budget: int, at_least: bool = False) -> None:
        self.ref = ref
        self.size = size
        """Its size as JSON: exact, or, with ``at_least``, what was summed of it before the
        budget ran out (a fan-out's items, summed one by one)."""
        self.at_least = at_least
        super().__init__(f"{ref} is {self.shown_size} bytes of JSON, past {budget:,}")

    @property
    def shown_size(self) -> str:
        """Its size as a message says it: ``20,971,502``, or ``at least 4,194,400``."""
        return f"at least {self.size:,}" if self.at_least else f"{self.size:,}"


class EventError(WorkflowError):
    """An incoming event is malformed: logged with what was wrong, then dropped."""
