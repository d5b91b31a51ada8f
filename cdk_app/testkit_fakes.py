"""The test kit's fakes (``cdk_app.testkit``, docs/testing.md): what runs instead of a job's code,
given in ``WorkflowTest(fakes={...})``: a value it returns, an exception it raises, a function
of the event, or a ``sequence`` of these by attempt."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from runtime.service.job_attempt import UserHandler


@dataclass(frozen=True)
class Returns:
    value: Any


@dataclass(frozen=True)
class Raises:
    error: BaseException | type[BaseException]


@dataclass(frozen=True)
class Sequence:
    steps: tuple[Any, ...]


def returns(value: Any) -> Returns:
    """A fake that returns ``value`` (say it so for a list, which alone reads as a ``sequence``)."""
    return Returns(value)


def raises(error: BaseException | type[BaseException]) -> Raises:
    """A fake that raises ``error``: the attempt fails with its type and message, as in Lambda."""
    return Raises(error)


def sequence(*steps: Any) -> Sequence:
    """A fake per attempt: the first step for attempt 1, the second for attempt 2, ...; the last
    step for every attempt after (each item of a ``for_each`` job counts its own attempts)."""
    if not steps:
        raise ValueError("sequence() needs at least one step")
    return Sequence(steps)


def fake_handler(fake: Any) -> UserHandler:
    """A handler from a fake: a value it returns, an exception it raises, a function of the
    event, or a ``sequence`` of these by attempt."""

    def handler(event: dict[str, Any], context: Any) -> Any:
        step = fake
        if isinstance(step, list | tuple):
            step = sequence(*step)
        if isinstance(step, Sequence):
            step = step.steps[min(int(event.get("attempt") or 1), len(step.steps)) - 1]
        return _play(step, event)

    return handler


def _play(step: Any, event: dict[str, Any]) -> Any:
    if isinstance(step, Raises):
        raise step.error
    if isinstance(step, BaseException) or (isinstance(step, type) and issubclass(step, BaseException)):
        raise step
    if isinstance(step, Returns):
        return step.value
    if isinstance(step, Sequence | list | tuple):
        raise TypeError("a sequence's steps are values, exceptions or functions, not sequences")
    if callable(step):
        return step(event)
    return step


__all__ = ["Raises", "Returns", "Sequence", "fake_handler", "raises", "returns", "sequence"]
