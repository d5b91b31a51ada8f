"""One workflow run on this machine, through the deployed system's own parts.

The runner plays what surrounds the handlers in the cloud: the Atlas trigger (a change stream on
``statuses``, opened before the run starts so nothing is missed, each insert wrapped in the Atlas
EventBridge envelope), EventBridge (the rules' own patterns, matched by moto's implementation of
EventBridge pattern matching) and Lambda (the orchestrator, notifier and job wrapper called on
thread pools, concurrently, each invocation with its own request id).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol, cast

from cdk_app.local.atlas_events import envelope
from cdk_app.local.delivery import Bus, DaemonPool, FaultSettings
from cdk_app.local.faults import CrashingClaims, CrashingDispatcher, CrashingStore, CrashPlan
from cdk_app.local.jobs import JOB_INVOCATION_TRIES, context_for, on_failure_record
from cdk_app.local.report import RunReport, summarize
from runtime import limits
from runtime.definition.model import Workflow, job_function_name
from runtime.documents import RUN_ENDS, RUN_ID, Document, JobState, StatusEvent, status_from_document
from runtime.errors import EventError
from runtime.events import JobEvent
from runtime.handlers.job import LeaseSettings, UserHandler, run_attempt
from runtime.handlers.notifier import NotifierService
from runtime.handlers.orchestrator import Orchestrator
from runtime.patterns import notifier_pattern, orchestrator_pattern
from runtime.ports import REFUSALS, InvocationRefused
from runtime.runs import start_run
from runtime.store import MongoStore

if TYPE_CHECKING:
    from moto.events.models import EventPattern
    from moto.events.utils import EventMessageType

log = logging.getLogger(__name__)

LOCAL_LEASES = LeaseSettings(poll_every=timedelta(milliseconds=20))
"""Leases as in Lambda, but a duplicate invocation looks for the attempt's end more often: job
threads are few here, and a waiting one holds one."""


class RunObserver(Protocol):
    """Hears what happens, in the order the trigger sees it (progress display, tests)."""

    def status(self, event: StatusEvent) -> None:
        """A status was inserted into ``statuses``."""

    def notification(self, subject: str, message: str) -> None:
        """The notifier published a message."""


@dataclass(frozen=True, kw_only=True)
class RunOptions:
    faults: FaultSettings = field(default_factory=FaultSettings)
    timeout: float = 300.0
    """Seconds without a new status after which the runner gives up on the run."""
    handler_threads: int = 4
    """Concurrent orchestrator and notifier invocations (EventBridge delivers concurrently)."""
    job_threads: int = 32
    """Concurrent job invocations: the jobs of a phase run at the same time, as on Lambda."""
    poll_seconds: float = 0.05
    """How long one wait on the change stream lasts before the runner looks at the clock."""


class LocalNotifier:
    """The notifier's port locally: hands each message to the observer, under the crash plan
    of the handling that publishes it."""

    def __init__(self, observer: RunObserver, plan: CrashPlan) -> None:
        self.observer = observer
        self.plan = plan

    def publish(self, subject: str, message: str) -> None:
        self.plan.check("before publishing")
        self.observer.notification(subject, message)
        self.plan.check("after publishing")


def _event_pattern(pattern: dict[str, Any]) -> EventPattern:
    # Imported here: moto takes half a second to import, which every other CLI command would pay.
    from moto.events.models import EventPattern

    return EventPattern.load(json.dumps(pattern))


@dataclass(frozen=True, kw_only=True)
class Rule:
    """An EventBridge rule: the synthesized pattern and the target it invokes."""

    target: str
    pattern: EventPattern
    handle: Callable[[dict[str, Any], CrashPlan, str], None]


class LocalRunner:
    def __init__(
        self,
        store: MongoStore,
        workflow: Workflow,
        handlers: Mapping[str, UserHandler],
        observer: RunObserver,
        options: RunOptions | None = None,
    ) -> None:
        self.store = store
        self.workflow = workflow
        self.handlers = handlers
        self.observer = observer
        self.options = options or RunOptions()
        self.executions: Counter[str] = Counter()
        self._executions_lock = threading.Lock()
        self._bus = Bus(
            self.options.faults,
            {
                "orchestrator": DaemonPool("orchestrator", self.options.handler_threads),
                "notifier": DaemonPool("notifier", self.options.handler_threads),
                "job": DaemonPool("job", self.options.job_threads),
            },
        )
        collection = store.settings.statuses_collection
        self._rules = [
            Rule(
                target="orchestrator",
                pattern=_event_pattern(orchestrator_pattern(workflow.name, collection)),
                handle=self._orchestrate,
            )
        ]
        if workflow.notify.on:  # no notify events, no notifier rule (EventBridge refuses `[]`)
            self._rules.append(
                Rule(
                    target="notifier",
                    pattern=_event_pattern(notifier_pattern(workflow.name, workflow.notify.on, collection)),
                    handle=self._notify,
                )
            )

    def run(self, run_input: Any = None) -> RunReport:
        """Start a run, deliver everything it causes until it ends and nothing is in flight,
        and report it. Gives up after ``timeout`` seconds without a new status."""
        self.store.ensure_indexes()
        try:
            with self.store.statuses.watch(
                [{"$match": {"operationType": "insert"}}],
                max_await_time_ms=int(self.options.poll_seconds * 1000),
            ) as stream:
                run_id = start_run(self.store, self.workflow, input=run_input).run_id
                gave_up = self._follow(stream, run_id)
        finally:
            self._bus.close()
        report = summarize(self.store, run_id, self.executions, self._bus.counters.as_dict(), gave_up)
        assert report is not None, "the run document disappeared during the run"
        return report

    def _follow(self, stream: Any, run_id: str) -> str | None:
        """Route each status of the run until it has ended and gone quiet; why it gave up, or
        None when the run ended."""
        seen = 0
        ended = False
        last_progress = time.monotonic()
        while True:
            change = stream.try_next()
            if change is not None:
                document = change["fullDocument"]
                if document.get(RUN_ID) != run_id:
                    continue
                seen += 1
                last_progress = time.monotonic()
                try:
                    status = status_from_document(document)
                except EventError as exc:
                    # The trigger forwards it all the same; the handlers drop it, saying why.
                    log.warning("a malformed status in run %s: %s", run_id, exc)
                    self._route(document, str(document.get("_id")))
                    continue
                self._route(
                    document, "/".join(map(str, (status.status, status.phase, status.job, status.attempt)))
                )
                self.observer.status(status)
                ended = ended or status.status in RUN_ENDS.values()
                continue
            if self._bus.undeliverable:
                return "; ".join(self._bus.undeliverable)
            # Quiet means nothing in flight and every status of the run seen: a failed run's
            # parallel jobs still finish, as they would on Lambda, and their reports count.
            if ended and self._bus.idle() and seen == self.store.count_statuses(run_id):
                return None
            if time.monotonic() - last_progress > self.options.timeout:
                return self._waiting_message(run_id)

    def _waiting_message(self, run_id: str) -> str:
        run = self.store.read_run(run_id)
        waiting = [
            f"{name} (attempt {job.attempt})"
            for name, job in (run.jobs.items() if run is not None else ())
            if job.state == JobState.DISPATCHED
        ]
        quiet = f"no new status for {self.options.timeout:g}s"
        if not waiting:
            return f"{quiet}, and no job is running: the run is stuck"
        return f"{quiet}; still waiting for {', '.join(waiting)}"

    def _route(self, document: Document, identity: str) -> None:
        """Send an inserted status document to every rule it matches; ``identity`` names it. An
        event EventBridge would refuse for its size goes nowhere, as in the cloud, and the run
        ends saying so instead of waiting."""
        event = envelope(document, self.store.settings.database, self.store.settings.statuses_collection)
        size = limits.json_bytes(event)
        if size > limits.EVENTBRIDGE_ENTRY_BYTES:
            self._bus.undeliverable.append(
                f"the status {identity} is {size:,} bytes as an EventBridge event, which takes at most "
                f"{limits.EVENTBRIDGE_ENTRY_BYTES:,}"
            )
            return
        for rule in self._rules:
            if rule.pattern.matches_event(cast("EventMessageType", event)):
                self._bus.send(rule.target, f"{rule.target}:{identity}", partial(rule.handle, event), True)

    def _orchestrate(self, event: dict[str, Any], plan: CrashPlan, request_id: str) -> None:
        Orchestrator(
            store=CrashingStore(self.store, plan),
            dispatcher=CrashingDispatcher(self, plan),
            # The bus redelivers a crashed handling at once, not a minute later as Lambda does.
            redispatch_after=timedelta(0),
        ).handle(event)

    def _notify(self, event: dict[str, Any], plan: CrashPlan, request_id: str) -> None:
        NotifierService(
            notifiers=[LocalNotifier(self.observer, plan)],
            store=self.store,
            claims=CrashingClaims(self.store, plan),
            # A redelivery with the same request id is the bus retrying this crashed handling.
            retry_after=timedelta(0),
        ).handle(event, request_id)

    def dispatch(self, event: JobEvent) -> None:
        """The orchestrator's Dispatcher port: an asynchronous invoke of the job's function, with
        Lambda's payload limit, its tries and its on-failure destination (the orchestrator)."""
        if limits.json_bytes(event.to_payload()) > limits.LAMBDA_ASYNC_PAYLOAD_BYTES:
            name = job_function_name(self.workflow.name, event.job)
            raise InvocationRefused(REFUSALS["RequestEntityTooLargeException"].format(name=name, error=""))
        self._bus.send(
            "job",
            f"job:{event.job}/{event.attempt}",
            partial(self._invoke_job, event),
            True,
            tries=JOB_INVOCATION_TRIES,
            on_give_up=partial(self._job_gave_up, event),
        )

    def _invoke_job(self, event: JobEvent, plan: CrashPlan, request_id: str) -> None:
        context = context_for(self.workflow.name, self.workflow.job(event.job), request_id)
        run_attempt(
            CrashingStore(self.store, plan),
            partial(self._enter_handler, event.job),
            event.to_payload(),
            context,
            request_id,
            LOCAL_LEASES,
        )

    def _job_gave_up(self, event: JobEvent, request_id: str, error: BaseException) -> None:
        """What Lambda sends the job's on-failure destination after its last try."""
        record = on_failure_record(event, request_id, error)
        identity = f"orchestrator:on-failure/{event.job}/{event.attempt}"
        if limits.json_bytes(record) > limits.LAMBDA_ASYNC_PAYLOAD_BYTES:
            self._bus.undeliverable.append(f"the on-failure record of {identity} is larger than Lambda takes")
            return
        self._bus.send("orchestrator", identity, partial(self._orchestrate, record), True)

    def _enter_handler(self, job: str, payload: dict[str, Any], context: Any) -> Any:
        """Counts each entry into the user's code: with every fault, one per attempt."""
        with self._executions_lock:
            self.executions[job] += 1
        return self.handlers[job](payload, context)
