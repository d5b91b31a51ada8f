"""One workflow run on this machine, through the deployed system's own parts.

The runner plays the Atlas trigger (a change stream on ``statuses``, opened before the run starts
so nothing is missed, each insert handed to ``LocalCloud``, which wraps it in the Atlas EventBridge
envelope, routes it by the rules' own patterns and invokes the handlers as Lambda would) and
follows the run until it has ended and gone quiet.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from cdk_app.local import RUN_TIMEOUT_SECONDS
from cdk_app.local.cloud import (
    CloudOptions,
    JobFunction,
    LocalCloud,
    RunObserver,
    Ticking,
    invoked_job,
    workflow_rules,
)
from cdk_app.local.delivery import FaultSettings
from cdk_app.local.timeouts import TimeoutWatch
from runtime.clock import utcnow
from runtime.definition.model import Workflow
from runtime.documents import ID
from runtime.documents.children import is_run_or_child
from runtime.documents.run import RUN_ID, status_from_document
from runtime.errors import EventError
from runtime.service.job_attempt import UserHandler
from runtime.service.reconciler import Reconciler
from runtime.service.run_view import RunReport, summarize
from runtime.service.runs import start_run
from runtime.service.timers import fire_due_timers
from runtime.statuses import RUN_ENDS, JobState
from runtime.store.mongo import MongoStore

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class RunOptions:
    faults: FaultSettings = field(default_factory=FaultSettings)
    timeout: float = RUN_TIMEOUT_SECONDS
    """Seconds without a new status after which the runner gives up on the run."""
    handler_threads: int = 4
    """Concurrent orchestrator and notifier invocations (EventBridge delivers concurrently)."""
    job_threads: int = 32
    """Concurrent job invocations: the jobs of a phase run at the same time, as on Lambda."""
    poll_seconds: float = 0.05
    """How long one wait on the change stream lasts before the runner looks at the clock."""
    timer_seconds: float = 0.25
    """How often the run's due timers are fired (a timer fires within this of its time)."""
    tick_seconds: float = 5.0
    """How often live progress shows the jobs still running, with their elapsed time."""
    repair_seconds: float = 1.0
    """How often an unfinished run is checked for attempts past their timeout, and, when nothing
    is in flight and no status came for this long, reconciled from its statuses."""


class LocalRunner:
    def __init__(
        self,
        store: MongoStore,
        workflow: Workflow,
        handlers: Mapping[str, UserHandler],
        observer: RunObserver,
        options: RunOptions | None = None,
        children: Sequence[tuple[Workflow, Mapping[str, UserHandler]]] = (),
    ) -> None:
        """``children``: the workflows ``workflow`` runs as child runs, with their jobs'
        handlers, deployed beside it; their runs are followed with the run's."""
        self.store = store
        self.workflow = workflow
        self.observer = observer
        self.options = options or RunOptions()
        deployed = [(workflow, handlers), *children]
        rules = tuple(rule for each, _ in deployed for rule in workflow_rules(each, store.settings))
        functions = {
            (each.name, job.name): JobFunction(job=job, handler=by_job[job.name])
            for each, by_job in deployed
            for job in each.jobs()
        }
        workflows = {each.name: each for each, _ in deployed}
        self.cloud = LocalCloud(
            store,
            observer,
            CloudOptions(
                faults=self.options.faults,
                handler_threads=self.options.handler_threads,
                job_threads=self.options.job_threads,
            ),
            rules=lambda: rules,
            # The handlers were imported before the run: it runs that code whatever its files become.
            job_functions=lambda event: functions.get((event.workflow, event.job)),
            workflows=lambda: workflows,
        )

        self._timeouts = TimeoutWatch(store, self.cloud)
        self._reconciler = Reconciler(store, self.cloud, stale_after=timedelta(0), children=self.cloud)

    @property
    def executions(self) -> Mapping[str, int]:
        """Entries into each job's user code, by job name."""
        return self.cloud.executions

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
            self.cloud.close()
        report = summarize(self.store, run_id, self.executions, self.cloud.bus.counters.as_dict(), gave_up)
        assert report is not None, "the run document disappeared during the run"
        return report

    def _follow(self, stream: Any, run_id: str) -> str | None:
        """Route each status of the run until it has ended and gone quiet; why it gave up, or
        None when the run ended."""
        seen = 0
        ended = False
        last_progress = next_repair = next_timers = time.monotonic()
        next_tick = last_progress + self.options.tick_seconds
        while True:
            # Every pass, busy or not: statuses that keep arriving must not put the timers off.
            if not ended and time.monotonic() >= next_timers:
                for name in self.cloud.workflows():
                    fire_due_timers(self.store, utcnow(), name, self._reconciler.invoke)
                next_timers = time.monotonic() + self.options.timer_seconds
            change = stream.try_next()
            if change is not None:
                document = change["fullDocument"]
                if not is_run_or_child(str(document.get(RUN_ID)), run_id):
                    continue
                if document.get(RUN_ID) != run_id:  # a child run's: delivered, not shown
                    self.cloud.route(document, str(document.get(ID)))
                    last_progress = time.monotonic()
                    continue
                seen += 1
                last_progress = time.monotonic()
                try:
                    status = status_from_document(document)
                except EventError as exc:
                    # The trigger forwards it all the same; the handlers drop it, saying why.
                    log.warning("a malformed status in run %s: %s", run_id, exc)
                    self.cloud.route(document, str(document.get(ID)))
                    continue
                self.cloud.route(
                    document, "/".join(map(str, (status.status, status.phase, status.job, status.attempt)))
                )
                self.observer.status(status)
                ended = ended or status.status in RUN_ENDS.values()
                continue
            if self.cloud.bus.undeliverable:
                return "; ".join(self.cloud.bus.undeliverable)
            # Quiet means nothing in flight and every status of the run seen: a failed run's
            # parallel jobs still finish, as they would on Lambda, and their reports count.
            if ended and self.cloud.bus.idle() and seen == self.store.count_statuses(run_id):
                return None
            if ended:
                self._let_cancelled_jobs_go(run_id)
            if not ended and time.monotonic() >= next_tick and isinstance(self.observer, Ticking):
                self.observer.tick(utcnow())
                next_tick = time.monotonic() + self.options.tick_seconds
            if not ended and time.monotonic() >= next_repair:
                self._repair(run_id, quiet=time.monotonic() - last_progress >= self.options.repair_seconds)
                next_repair = time.monotonic() + self.options.repair_seconds
            if time.monotonic() - last_progress > self.options.timeout:
                return self._waiting_message(run_id)

    def _let_cancelled_jobs_go(self, run_id: str) -> None:
        """Attempts of jobs the run's end cancelled (its deadline, a cancel) change nothing
        whatever they report: the run is not followed until they end (a job's sleep would hold
        ``run`` for as long). Their threads go on, as Lambda would run the invocations out, and
        end with the process."""
        run = self.store.read_run(run_id)
        cancelled = {
            name
            for name, record in (run.jobs.items() if run is not None else ())
            if record.state == JobState.CANCELLED
        }
        if cancelled:
            self.cloud.bus.abandon_matching(lambda delivery: invoked_job(delivery) in cancelled)

    def _repair(self, run_id: str, quiet: bool) -> None:
        """A run must never wait forever: Lambda stops an attempt at its timeout, and a run with
        nothing in flight that went quiet is repaired from its statuses, as the deployed
        reconciler would."""
        self._timeouts.check(run_id)
        if quiet and self.cloud.bus.idle():
            self._reconciler.reconcile_run(run_id)

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
