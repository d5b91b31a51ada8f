"""A driver for the tests of a job's limits across runs (``concurrency``, ``rate_limit``): many
runs of one workflow on the real MongoDB server, their statuses delivered to the real orchestrator
(duplicated, shuffled, crashing when asked), and each dispatched attempt run through the real job
wrapper in a thread of its own whose handler holds until the test lets it end, so attempts
overlap in the statuses log as they would on Lambda. The limits are checked from that log."""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cdk_app.local.atlas_events import envelope
from cdk_app.local.faults import CrashingStore, CrashPlan, InjectedCrash
from runtime.clock import time_from
from runtime.definition.model import Workflow
from runtime.service.job_attempt import run_attempt
from runtime.service.orchestrator import Orchestrator
from runtime.service.runs import start_run
from runtime.statuses import ORCHESTRATOR_STATUSES
from runtime.store.mongo import MongoStore
from tests.engine_harness import RecordingDispatcher

TERMINAL = ("success", "failed", "not_run")
HOLD_SECONDS = 30

START = datetime(2026, 12, 7, 12, 0, 0, 100_000, tzinfo=UTC)
"""Where the tests' virtual clock starts: a tenth of a second into a rate window."""


class Clock:
    """The virtual time the tests move by hand (``clock.now``)."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Iterator[Clock]:
    clock = Clock()
    with time_from(clock):
        yield clock


def attempts_in_flight(store: MongoStore, run_ids: Iterable[str], job: str) -> int:
    """The most attempts of ``job`` in flight at once, from the statuses log: each attempt from
    its ``started`` to its end (an end and a start at the same instant: the end first)."""
    edges: list[tuple[Any, int]] = []
    for run_id in run_ids:
        for status in store.run_statuses(run_id):
            if status.get("job") != job:
                continue
            if status["status"] == "started":
                edges.append((status["date"], 1))
            elif status["status"] in TERMINAL and status["status"] != "not_run":
                edges.append((status["date"], -1))
    depth = deepest = 0
    for _, step in sorted(edges):
        depth += step
        deepest = max(deepest, depth)
    return deepest


def starts_per_window(store: MongoStore, run_ids: Iterable[str], job: str, period: float) -> dict[int, int]:
    """Attempts of ``job`` started in each window of ``period`` seconds, from the statuses log."""
    counts: dict[int, int] = {}
    for run_id in run_ids:
        for status in store.run_statuses(run_id):
            if status.get("job") == job and status["status"] == "started":
                window = int(status["date"].timestamp() // period)
                counts[window] = counts.get(window, 0) + 1
    return counts


class Attempts:
    """Attempts running in threads through the job wrapper, each held until ``finish``."""

    def __init__(
        self, store: MongoStore, hold: str, fail: Callable[[dict[str, Any]], bool] = lambda event: False
    ) -> None:
        self.store = store
        self.hold = hold
        """The job whose attempts are held; the others end at once."""
        self.fail = fail
        self.gates: dict[tuple[Any, ...], threading.Event] = {}
        self.entered: dict[tuple[Any, ...], threading.Event] = {}
        self.held: list[tuple[Any, ...]] = []
        self.runner: dict[tuple[Any, ...], threading.Thread] = {}
        self.threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    @staticmethod
    def name(event: dict[str, Any]) -> tuple[Any, ...]:
        return (event["run_id"], event["job"], event.get("index"), event["attempt"])

    def _handler(self, event: dict[str, Any], context: Any) -> Any:
        name = self.name(event)
        if event["job"] != self.hold:
            return {"ready": True}
        with self._lock:
            self.held.append(name)
            self.runner[name] = threading.current_thread()
        self.entered[name].set()
        if not self.gates[name].wait(HOLD_SECONDS):
            raise AssertionError(f"attempt {name} was never let go")
        if self.fail(event):
            raise RuntimeError("the payment API said no")
        return {"charged": event.get("item")}

    def start(self, payload: dict[str, Any]) -> None:
        name = self.name(payload)
        self.gates.setdefault(name, threading.Event())
        entered = self.entered.setdefault(name, threading.Event())
        thread = threading.Thread(
            target=run_attempt, args=(self.store, self._handler, payload, None, uuid.uuid4().hex), daemon=True
        )
        thread.start()
        self.threads.append(thread)
        deadline = time.monotonic() + HOLD_SECONDS
        while not entered.is_set() and thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.002)

    def finish(self, rng: random.Random) -> bool:
        """Let one held attempt end (at random), and wait until its end is recorded; False when
        none is held."""
        with self._lock:
            if not self.held:
                return False
            name = self.held.pop(rng.randrange(len(self.held)))
        self.gates[name].set()
        self.runner[name].join(HOLD_SECONDS)
        return True

    def close(self) -> None:
        for gate in self.gates.values():
            gate.set()
        for thread in self.threads:
            thread.join(HOLD_SECONDS)


class Runs:
    """Every run of one workflow, delivered together (see the module's docstring)."""

    def __init__(
        self,
        store: MongoStore,
        definition: Workflow,
        *,
        duplicate: int = 1,
        shuffle: bool = False,
        seed: int = 0,
        crash_plan: Callable[[], CrashPlan] | None = None,
        check: Callable[[], None] = lambda: None,
        fail: Callable[[dict[str, Any]], bool] = lambda event: False,
        hold: str = "charge",
    ) -> None:
        self.store, self.definition = store, definition
        self.dispatcher = RecordingDispatcher()
        self.attempts = Attempts(store, hold, fail)
        self.duplicate, self.shuffle, self.rng = duplicate, shuffle, random.Random(seed)
        self.crash_plan, self.check = crash_plan, check
        self.crashes = 0
        self.run_ids: list[str] = []
        self.seen: set[Any] = set()

    def start(self, run_input: Any = None) -> str:
        run_id = start_run(self.store, self.definition, input=run_input).run_id
        self.run_ids.append(run_id)
        return run_id

    def orchestrator(self, store: Any = None) -> Orchestrator:
        return Orchestrator(store or self.store, self.dispatcher, redispatch_after=timedelta(0))

    def deliver(self, event: dict[str, Any]) -> None:
        plan = None if self.crash_plan is None else self.crash_plan()
        try:
            self.orchestrator(None if plan is None else CrashingStore(self.store, plan)).handle(event)
        except InjectedCrash:
            self.crashes += 1
            self.orchestrator().handle(event)  # Lambda's retry
        self.check()

    def events(self) -> list[dict[str, Any]]:
        settings = self.store.settings
        fresh = [
            status
            for run_id in self.run_ids
            for status in self.store.run_statuses(run_id)
            if status["_id"] not in self.seen
        ]
        self.seen.update(status["_id"] for status in fresh)
        return [
            envelope(status, settings.database, settings.statuses_collection)
            for status in fresh
            if status["status"] in ORCHESTRATOR_STATUSES
        ]

    def step(self) -> bool:
        """Deliver what is new and start what was dispatched; False when there was nothing."""
        events = self.events() * self.duplicate
        jobs = self.dispatcher.drain() * self.duplicate
        if self.shuffle:
            self.rng.shuffle(events)
            self.rng.shuffle(jobs)
        for event in events:
            self.deliver(event)
        for job in jobs:
            self.attempts.start(job.to_payload())
            self.check()
        return bool(events or jobs)

    def settle(self, max_rounds: int = 5000, between: Callable[[], None] = lambda: None) -> None:
        """Deliver and run until nothing is left: when nothing is new, one held attempt ends."""
        for _ in range(max_rounds):
            if self.step():
                continue
            between()
            if self.step():
                continue
            if not self.attempts.finish(self.rng):
                return
        raise AssertionError("the runs did not settle")

    def states(self) -> dict[str, str]:
        return {run_id: self.store.load_run(run_id)["status"] for run_id in self.run_ids}  # type: ignore[index]
