"""One exception tree for the whole project."""

from __future__ import annotations


class WorkflowError(Exception):
    """Base of every error this project raises on purpose."""


class SpecError(WorkflowError):
    """A workflow definition is invalid. ``problems`` holds every finding, one line each:
    ``<file>: <json path>: <what is wrong and what would be right>``."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class RunError(WorkflowError):
    """A run-time request cannot be carried out (unknown run, conflicting start, ...)."""


class StoreError(WorkflowError):
    """MongoDB could not do what the engine asked; wraps the driver's exception."""


class EventError(WorkflowError):
    """An incoming event is malformed: logged with what was wrong, then dropped."""
