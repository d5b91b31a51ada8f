"""Test a workflow in your own pytest suite, with time skipped (docs/testing.md).

    from cdk_app.testkit import raises, returns, sequence

    def test_billing_retries_then_succeeds(workflow_test):
        billing = workflow_test(
            "workflows/billing.yaml",
            fakes={"charge": sequence(raises(ConnectionError("down")), returns({"charged": 12}))},
        )
        billing.start({"customer": "c-1"})
        billing.run_until_idle()  # the retry's one-hour delay passes at once
        billing.assert_run("succeeded", jobs={"charge": "succeeded"})

The engine, its decisions, the orchestrator, the job wrapper and the MongoDB store are the real
ones, on a real server (the embedded one the tests start, or ``MONGODB_URI``), each test in a
database of its own. Only three things differ from a deployed run: the hops (the Atlas trigger,
EventBridge, Lambda's invoke) are calls in one thread, in order unless ``Faults`` say otherwise;
the jobs you give a fake run the fake instead of their code (the others run their code,
in-process, with their ``env``); and the time is a virtual clock that moves only when the test
says so (``advance``) or when nothing else can happen (``run_until_idle``), so a one-day
``wait``, an hour of retry backoff and a two-day approval timeout take milliseconds.

Use it through the ``workflow_test`` fixture (``pytest_plugins = ["cdk_app.testkit"]`` in your
``conftest.py``) or open a ``WorkflowTest`` yourself on a connection string.
"""

from __future__ import annotations

import contextlib
import difflib
import os
import random
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import pymongo
import pytest

from cdk_app.local.atlas_events import envelope
from cdk_app.local.cloud import workflow_rules
from cdk_app.local.faults import CrashingDispatcher, CrashingStore, InjectedCrash, NoCrash, RandomCrash
from cdk_app.local.jobs import context_for, load_job_handler
from cdk_app.testkit_fakes import fake_handler, raises, returns, sequence
from runtime import clock, contracts
from runtime.client import Client
from runtime.clock import as_utc
from runtime.definition.loader import check_specs, load_workflow
from runtime.definition.model import Workflow
from runtime.definition.report import did_you_mean
from runtime.documents.children import ChildStart
from runtime.documents.events import JobEvent
from runtime.documents.signatures import StatusKeys
from runtime.engine.timers import pending_timers
from runtime.errors import RunError
from runtime.service.children import child_failed, parent_attempt, record_output, start_child
from runtime.service.fan_out import FanOutContexts
from runtime.service.job_attempt import run_attempt
from runtime.service.operations import HistoryEntry
from runtime.service.orchestrator import Orchestrator
from runtime.service.run_view import RunReport
from runtime.service.runs import start_run
from runtime.service.timers import fire_due_timers
from runtime.statuses import JobState, RunState, StatusName
from runtime.store.mongo import MongoStore
from runtime.store.settings import StoreSettings

if TYPE_CHECKING:
    from moto.events.utils import EventMessageType

__all__ = [
    "Faults",
    "RunReport",
    "WorkflowTest",
    "raises",
    "returns",
    "sequence",
    "workflow_test",
]

MAX_ROUNDS = 10_000
"""Deliveries and invocations one settling may take before the kit says the run does not settle."""

IDLE_HORIZON = timedelta(days=400)
"""How far ``run_until_idle`` skips at most: past a year of waits, something waits for ever."""


# -- child workflows ---------------------------------------------------------------------------


def _job_name(tested: Workflow, workflow: Workflow, job: str) -> str:
    """How ``fakes``, ``calls`` and ``executions`` name a job: one of a child workflow as
    ``<workflow>.<job>``."""
    return job if workflow.name == tested.name else f"{workflow.name}.{job}"


def _with_children(
    tested: Workflow, spec: str | Path | Workflow, children: Mapping[str, str | Path | Workflow], fakes: Any
) -> dict[str, Workflow]:
    """The tested workflow and each workflow it runs as a child, directly or through its
    children, by name: from ``children``, else from the specs beside ``spec``. A child workflow
    job with a fake needs no spec of its child."""
    given: dict[str, Workflow] = {}
    for name, value in children.items():
        loaded = value if isinstance(value, Workflow) else load_workflow(Path(value))
        if loaded.name != name:
            raise ValueError(f"children[{name!r}] is the spec of workflow {loaded.name!r}, not of {name!r}")
        given[name] = loaded
    workflows = {tested.name: tested}
    beside: dict[str, Workflow] | None = None
    pending = [(tested, job) for job in tested.jobs()]
    while pending:
        caller, job = pending.pop()
        called = job.child_workflow
        if called is None or called.name in workflows or _job_name(tested, caller, job.name) in fakes:
            continue
        if called.name not in given:
            beside = _specs_beside(spec) if beside is None else beside
            if called.name not in beside:
                raise ValueError(
                    f"job {job.name!r} of workflow {caller.name!r} runs child workflow {called.name!r}, "
                    "whose spec is neither in children= nor beside the spec: give it, or fake the job"
                )
            given[called.name] = beside[called.name]
        workflows[called.name] = given[called.name]
        pending += [(given[called.name], child_job) for child_job in given[called.name].jobs()]
    return workflows


def _specs_beside(spec: str | Path | Workflow) -> dict[str, Workflow]:
    """The workflows of the specs in ``spec``'s folder that load without a problem."""
    if isinstance(spec, Workflow):
        return {}
    return {workflow.name: workflow for workflow in check_specs([Path(spec).parent]).workflows}


# -- what a run looks like ---------------------------------------------------------------------


def _states(report: RunReport) -> dict[str, str]:
    return {job.name: job.status for job in report.jobs}


def _describe(report: RunReport) -> str:
    """One line per job: what an assertion that failed prints."""
    error = f" ({report.error.splitlines()[0]})" if report.error else ""
    lines = [f"run {report.run_id}: {report.status}{error}"]
    for job in report.jobs:
        detail = f", {job.error.splitlines()[0]}" if job.error else ""
        lines.append(f"  {job.name}: {job.status}, attempt {job.attempts}{detail}")
    return "\n".join(lines)


# -- the environment ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Faults:
    """At-least-once delivery as in the cloud, reproducibly from ``seed``: every status event and
    job invocation delivered ``duplicate`` times, in shuffled order with ``reorder``, and each
    orchestrator handling crashing with probability ``crash`` (then delivered again, as Lambda
    retries it). Your jobs should give the same outcome under any of them."""

    duplicate: int = 1
    reorder: bool = False
    crash: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.duplicate < 1:
            raise ValueError(f"duplicate={self.duplicate}: every event is delivered at least once (>= 1)")
        if not 0.0 <= self.crash < 1.0:
            raise ValueError(f"crash={self.crash}: a probability from 0 up to (not including) 1")


@dataclass
class WorkflowTest:
    """One workflow under test, on a database of its own that ``close`` drops.

    ``spec``: the spec's path (or a loaded ``Workflow``); ``fakes``: job name -> what runs instead
    of its code (a value it returns, an exception it raises, a function of the event, or a
    ``sequence`` of these by attempt); ``start_time``: where the virtual clock starts (now).

    A job that runs a child workflow runs it for real, from ``children`` (workflow name -> its
    spec's path or ``Workflow``) or the spec of that name beside ``spec``; a job of a child
    workflow is named ``<workflow>.<job>`` in ``fakes`` and ``executions``. A fake for the child
    workflow job itself stands for the child run: what it returns is the child's output, what it
    raises fails the attempt as a failed child does."""

    spec: str | Path | Workflow
    mongodb_uri: str
    fakes: Mapping[str, Any] = field(default_factory=dict)
    faults: Faults = field(default_factory=Faults)
    start_time: datetime | None = None
    database: str | None = None
    children: Mapping[str, str | Path | Workflow] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.definition = self.spec if isinstance(self.spec, Workflow) else load_workflow(Path(self.spec))
        self._workflows = _with_children(self.definition, self.spec, self.children, self.fakes)
        jobs = {
            _job_name(self.definition, workflow, job.name): (workflow, job)
            for workflow in self._workflows.values()
            for job in workflow.jobs()
        }
        names = list(jobs)
        for name in self.fakes:
            if name not in names:
                raise ValueError(
                    f"fakes name job {name!r}, which workflow {self.definition.name!r} does not have"
                    f"{did_you_mean(name, names)}"
                )
        self._handlers = {
            name: fake_handler(self.fakes[name])
            if name in self.fakes
            else load_job_handler(workflow.name, job)
            for name, (workflow, job) in jobs.items()
        }
        self._envs = {name: dict(job.env) for name, (_, job) in jobs.items()}
        start = self.start_time or clock.utcnow()
        # MongoDB keeps milliseconds: a clock finer than that would see stored times move back.
        self._now = start.astimezone(UTC).replace(microsecond=start.microsecond // 1000 * 1000)
        self._client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
            self.mongodb_uri, tz_aware=True
        )
        settings = StoreSettings(database=self.database or f"testkit_{uuid.uuid4().hex[:12]}")
        self._store = MongoStore(self._client, settings, keys=StatusKeys.generate())
        self._job_store = self._store.with_keys(None)
        self.client = Client.on_store(self._store)
        """The runs of this test, as ``runtime.client.Client`` reads and operates them."""
        self._store.ensure_indexes()
        self._rules = [
            rule
            for workflow in self._workflows.values()
            for rule in workflow_rules(workflow, settings)
            if rule.target == "orchestrator"
        ]
        self._rng = random.Random(self.faults.seed)
        self._contexts = FanOutContexts()
        self._queue: list[JobEvent] = []
        self._starts: list[ChildStart] = []
        self._seen: set[Any] = set()
        self.calls: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
        """Every event each job's code (or fake) was called with, in order."""
        self.run_id: str | None = None
        """The run the verbs act on when they are given none: the last one started."""
        self._runs: list[str] = []

    # -- the clock --

    @property
    def now(self) -> datetime:
        """The virtual time."""
        return self._now

    @contextlib.contextmanager
    def _virtual_time(self) -> Iterator[None]:
        with clock.time_from(lambda: self._now):
            yield

    # -- runs --

    def start(self, input: Any = None, run_id: str | None = None) -> RunReport:
        """Start a run and let it go as far as it goes without time passing."""
        with self._virtual_time():
            started = start_run(self._store, self.definition, run_id=run_id, input=input)
            self.run_id = started.run_id
            if started.run_id not in self._runs:
                self._runs.append(started.run_id)
            self._settle()
        return self.get(started.run_id)

    def get(self, run_id: str | None = None) -> RunReport:
        """The run as ``Client.get`` reads it (``status --json``'s object), with the outputs kept
        by reference loaded, so ``job(name).output`` is what the job returned."""
        report = self.client.get(self._which(run_id))
        outputs = self._store.items().outputs
        jobs = tuple(
            replace(job, output=outputs.load(job.output_ref))
            if job.output_ref is not None and job.status == JobState.SUCCEEDED
            else job
            for job in report.jobs
        )
        return replace(report, jobs=jobs)

    def history(self, run_id: str | None = None) -> list[HistoryEntry]:
        return self.client.history(self._which(run_id))

    def advance(
        self, *, days: float = 0, hours: float = 0, minutes: float = 0, seconds: float = 0
    ) -> RunReport:
        """Move the clock on by that much, firing every timer due on the way when it is due (a
        retry after its delay, a wait, an approval's timeout, the deadline), in order."""
        step = timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
        if step < timedelta(0):
            raise ValueError("the clock only moves forward")
        until = self._now + step
        self._skip_until(until, stop_at_approvals=False)
        with self._virtual_time():
            self._now = max(self._now, until)
            self._fire_and_settle()
        return self.get()

    def run_until_idle(self, *, let_approvals_time_out: bool = False) -> RunReport:
        """Let the run go on, skipping to each next timer, until it ended or waits for something
        only the test can give: an answer to an approval (unless ``let_approvals_time_out``), or
        nothing at all (a year of waiting without an end)."""
        self._skip_until(self._now + IDLE_HORIZON, stop_at_approvals=not let_approvals_time_out)
        return self.get()

    def approve(self, job: str, output: Any = None, run_id: str | None = None) -> RunReport:
        return self._operate(lambda run: self.client.approve(run, job, output), run_id)

    def reject(self, job: str, reason: str | None = None, run_id: str | None = None) -> RunReport:
        return self._operate(lambda run: self.client.reject(run, job, reason), run_id)

    def cancel(self, reason: str | None = None, run_id: str | None = None) -> RunReport:
        return self._operate(lambda run: self.client.cancel(run, reason), run_id)

    def redrive(self, run_id: str | None = None) -> RunReport:
        return self._operate(lambda run: self.client.redrive(run), run_id)

    def executions(self, job: str) -> int:
        """How many times ``job``'s code (or fake) ran, every item and attempt counted (a child
        workflow's job: ``<workflow>.<job>``)."""
        return len(self.calls[job])

    # -- assertions --

    def assert_run(
        self, status: str, jobs: Mapping[str, str] | None = None, run_id: str | None = None
    ) -> None:
        """The run has ``status`` and each job named in ``jobs`` its state; else an
        ``AssertionError`` with the run described and a diff of the job states."""
        report = self.get(run_id)
        states = _states(report)
        for name in jobs or {}:
            if name not in states:
                raise AssertionError(
                    f"run {report.run_id} has no job {name!r}{did_you_mean(name, list(states))}"
                )
        wanted = states | dict(jobs or {})
        if report.status == status and states == wanted:
            return
        expected = [f"run: {status}", *(f"{name}: {state}" for name, state in wanted.items())]
        actual = [f"run: {report.status}", *(f"{name}: {state}" for name, state in states.items())]
        diff = "\n".join(difflib.unified_diff(expected, actual, "expected", "actual", lineterm=""))
        raise AssertionError(f"the run is not as expected:\n{diff}\n\n{_describe(report)}")

    def close(self) -> None:
        """Drop the test's database."""
        self._client.drop_database(self._store.settings.database)
        self._client.close()

    # -- the hops --

    def _which(self, run_id: str | None) -> str:
        chosen = run_id or self.run_id
        if chosen is None:
            raise RunError("no run started yet: call start() first")
        return chosen

    def _operate(self, operation: Callable[[str], object], run_id: str | None) -> RunReport:
        target = self._which(run_id)
        with self._virtual_time():
            operation(target)
            self._settle()
        return self.get(target)

    def _skip_until(self, until: datetime, *, stop_at_approvals: bool) -> None:
        """Fire each next timer due by ``until`` at its time, settling after each, while a run
        goes on (and, with ``stop_at_approvals``, none waits for an answer)."""
        with self._virtual_time():
            self._settle()
            while (due := self._next_timer(stop_at_approvals)) is not None and due <= until:
                self._now = max(self._now, due)
                self._fire_and_settle()

    def _next_timer(self, stop_at_approvals: bool) -> datetime | None:
        timers: list[datetime] = []
        running = False
        for run_id in self._runs:
            run = self._store.read_run(run_id)
            if run is None or run.state != RunState.RUNNING:
                continue
            running = True
            if stop_at_approvals and any(
                record.state == JobState.WAITING and run.definition.job(name).approval is not None
                for name, record in run.jobs.items()
            ):
                return None
            timers += [due for due, _ in pending_timers(run)]
        # A job's rate limit: its waiting attempts go when the next window starts.
        for workflow in self._workflows:
            queue = self._store.job_limits().next_wake(workflow)
            if running and queue is not None:
                timers.append(as_utc(queue) or queue)
        return min(timers, default=None)

    def _orchestrator(self, store: Any, dispatcher: Any) -> Orchestrator:
        return Orchestrator(
            store=store,
            dispatcher=dispatcher,
            redispatch_after=timedelta(0),
            contexts=self._contexts,
            children=self,
        )

    def _fire_and_settle(self) -> None:
        invoke = self._orchestrator(self._store, _Queue(self._queue)).invoke
        for workflow in self._workflows:
            fire_due_timers(self._store, self._now, workflow, invoke)
        self._settle()

    def _settle(self) -> None:
        """Deliver every status not delivered yet to the rules, and run every job they dispatch,
        until nothing more comes."""
        for _ in range(MAX_ROUNDS):
            fresh = [
                status
                for run_id in self._runs
                for status in self._store.run_statuses(run_id)
                if status["_id"] not in self._seen
            ]
            self._seen.update(status["_id"] for status in fresh)
            events = [event for status in fresh if (event := self._routed(status))] * self.faults.duplicate
            jobs, self._queue = self._queue * self.faults.duplicate, []
            starts, self._starts = self._starts * self.faults.duplicate, []
            if not events and not jobs and not starts:
                return
            if self.faults.reorder:
                self._rng.shuffle(events)
                self._rng.shuffle(jobs)
                self._rng.shuffle(starts)
            for event in events:
                self._orchestrate(event)
            for job in jobs:
                self._invoke(job)
            for start in starts:
                self._start_child(start)
        raise AssertionError(f"the run did not settle in {MAX_ROUNDS:,} deliveries")

    def _routed(self, status: dict[str, Any]) -> dict[str, Any] | None:
        """The trigger's event for an inserted status, when the orchestrator's rule takes it."""
        settings = self._store.settings
        event = envelope(status, settings.database, settings.statuses_collection)
        message = cast("EventMessageType", event)
        return event if any(rule.pattern.matches_event(message) for rule in self._rules) else None

    def _orchestrate(self, event: dict[str, Any]) -> None:
        plan = RandomCrash(self._rng, self.faults.crash) if self.faults.crash else NoCrash()
        dispatcher = _Queue(self._queue)
        try:
            self._orchestrator(CrashingStore(self._store, plan), CrashingDispatcher(dispatcher, plan)).handle(
                event
            )
        except InjectedCrash:
            # Lambda retries the handling; here at once.
            self._orchestrator(self._store, dispatcher).handle(event)

    def _invoke(self, event: JobEvent) -> None:
        request_id = uuid.uuid4().hex
        workflow = self._workflows[event.workflow]
        name = _job_name(self.definition, workflow, event.job)
        handler = self._handlers[name]

        def called(payload: dict[str, Any], context: Any) -> Any:
            self.calls[name].append(payload)
            with _environment(self._envs[name]):
                return handler(payload, context)

        run_attempt(
            self._job_store,
            called,
            event.to_payload(),
            context_for(workflow.name, workflow.job(event.job), request_id),
            request_id,
        )

    # -- child workflows --

    def start_child(self, request: ChildStart) -> None:
        """The orchestrator's ``ChildStarter`` port: the starter's invoke, queued for the
        settling loop as a job's is."""
        self._starts.append(request)

    def _start_child(self, request: ChildStart) -> None:
        parent = request.parent
        name = _job_name(self.definition, self._workflows[parent.workflow], parent.job)
        if name in self.fakes:
            self._fake_child(name, request)
            return
        try:
            start_child(self._store, self._workflows[request.workflow], request)
        except RunError:
            return  # refused for good: start_child recorded the attempt's failure
        if request.run_id not in self._runs:
            self._runs.append(request.run_id)

    def _fake_child(self, name: str, request: ChildStart) -> None:
        """The fake of a child workflow job stands for its child run: the attempt starts, then
        succeeds with what the fake returns (kept by reference when large, as a child's output
        is) or fails as a failed child does. Once per attempt, however often it is started."""
        parent = request.parent
        started = replace(parent_attempt(parent, StatusName.STARTED), request_id=request.run_id)
        if not self._store.record_status(started):
            return
        payload = {"workflow": request.workflow, "input": request.input, "attempt": parent.attempt}
        self.calls[name].append(payload)
        try:
            output = self._handlers[name](payload, None)
        except Exception as exc:
            error = child_failed(request.run_id, request.workflow, f"failed: {type(exc).__name__}: {exc}")
            self._store.record_status(replace(parent_attempt(parent, StatusName.FAILED), error=error))
            return
        record_output(self._store, parent, request.run_id, output)


class _Queue:
    """The dispatcher: Lambda's async invoke, queued for the settling loop."""

    def __init__(self, queue: list[JobEvent]) -> None:
        self.queue = queue

    def dispatch(self, event: JobEvent) -> None:
        self.queue.append(event)


@contextlib.contextmanager
def _environment(env: Mapping[str, str]) -> Iterator[None]:
    """The job's ``env`` while its code runs (one job at a time: the kit runs in one thread)."""
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


# -- the pytest plugin -------------------------------------------------------------------------


@pytest.fixture(scope="session")
def workflow_test_server() -> Iterator[str]:
    """The MongoDB server the tests' workflows run on: ``MONGODB_URI``, or an embedded one."""
    uri = os.environ.get(contracts.MONGODB_URI)
    if uri:
        yield uri
        return
    from cdk_app.local.embedded_mongo import mongodb_uri

    with mongodb_uri() as started:
        yield started


@pytest.fixture
def workflow_test(workflow_test_server: str) -> Iterator[Callable[..., WorkflowTest]]:
    """Open a ``WorkflowTest`` (same arguments, without ``mongodb_uri``); closed after the test."""
    opened: list[WorkflowTest] = []

    def open_test(spec: str | Path | Workflow, **options: Any) -> WorkflowTest:
        test = WorkflowTest(spec, workflow_test_server, **options)
        opened.append(test)
        return test

    yield open_test
    for test in opened:
        test.close()
