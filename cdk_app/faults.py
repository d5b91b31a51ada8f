"""Fault injection for the engine: crashes at the points where a handler touches the world.

A handler is made to "crash" by raising ``InjectedCrash`` just before or just after one of its
writes or dispatches, which is where a real Lambda dying mid-way leaves MongoDB in a state the
redelivered event must cope with. Faults are never injected inside job code.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any, Protocol

from runtime.events import JobEvent
from runtime.ports import Dispatcher
from runtime.store import Store

WRITE_METHODS = ("record_job_success", "apply_transition", "insert_status")
"""Store methods that change MongoDB: a crash before or after each is a distinct case."""


class InjectedCrash(RuntimeError):
    """A crash injected on purpose; the caller redelivers the event, as Lambda would."""


class CrashPlan(Protocol):
    def check(self, point: str) -> None:
        """Raise ``InjectedCrash`` if the handler should die at ``point``."""


class CrashAtStep:
    """Die at the ``step``-th point (counting from 1) of the next handling, once."""

    def __init__(self, step: int) -> None:
        self.step = step
        self.seen = 0
        self.fired: str | None = None

    def check(self, point: str) -> None:
        self.seen += 1
        if self.fired is None and self.seen == self.step:
            self.fired = point
            raise InjectedCrash(f"injected crash {point}")


class RandomCrash:
    """Each point crashes with probability ``p`` (reproducible through ``rng``)."""

    def __init__(self, rng: random.Random, p: float) -> None:
        self.rng = rng
        self.p = p
        self.crashes = 0

    def check(self, point: str) -> None:
        if self.rng.random() < self.p:
            self.crashes += 1
            raise InjectedCrash(f"injected crash {point}")


class NoCrash:
    def check(self, point: str) -> None:
        return None


class CrashingStore:
    """A Store whose writes pass through a crash plan, before and after the real write."""

    def __init__(self, store: Store, plan: CrashPlan) -> None:
        self._store = store
        self.plan = plan

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._store, name)
        if name not in WRITE_METHODS:
            return attribute
        return self._wrap(name, attribute)

    def _wrap(self, name: str, write: Callable[..., Any]) -> Callable[..., Any]:
        def crashing_write(*args: Any, **kwargs: Any) -> Any:
            self.plan.check(f"before {name}")
            result = write(*args, **kwargs)
            self.plan.check(f"after {name}")
            return result

        return crashing_write


class CrashingDispatcher:
    """A Dispatcher that may die before or after each dispatch."""

    def __init__(self, dispatcher: Dispatcher, plan: CrashPlan) -> None:
        self._dispatcher = dispatcher
        self.plan = plan

    def dispatch(self, event: JobEvent) -> None:
        self.plan.check(f"before dispatching {event.job}#{event.attempt}")
        self._dispatcher.dispatch(event)
        self.plan.check(f"after dispatching {event.job}#{event.attempt}")
