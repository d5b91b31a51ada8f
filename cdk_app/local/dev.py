"""``python -m cdk_app dev``: the cloud in one process, for as long as it runs.

An embedded MongoDB server that keeps its data in a folder (or the MongoDB given), a change stream
on ``statuses`` in place of the Atlas trigger, the rules of every workflow in the spec folder
(reloaded when a file in it changes, as a deploy would), the real handlers on thread pools
(``LocalCloud``), job code in processes of its own, one set per version of the code a run is
pinned to (``cdk_app.local.processes``), and the reconciler, which on start-up
and then periodically completes runs nothing was delivering for. While it runs, ``start``,
``status``, ``runs``, ``history``, ``cancel`` and ``redrive`` against its URI behave as they do
against a deployed stack. With ``--console-port`` it serves the run console too.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from types import FrameType

from rich.console import Console
from rich.markup import escape

from cdk_app.errors import CommandError
from cdk_app.local import DEFAULT_DATA_DIR
from cdk_app.local.cloud import CloudOptions, LocalCloud, Rule, workflow_rules
from cdk_app.local.delivery import FaultSettings
from cdk_app.local.embedded_mongo import EmbeddedMongo, free_port
from cdk_app.local.processes import JobProcesses
from cdk_app.local.schedules import ScheduleClock
from cdk_app.local.snapshots import CodeSnapshots
from cdk_app.local.timeouts import GRACE as TIMEOUT_GRACE
from cdk_app.local.timeouts import TimeoutWatch
from cdk_app.local.versions import PinnedFunctions
from cdk_app.terminal.timeline import STATUS_STYLES, attempt_label, first_line
from runtime.clock import utcnow
from runtime.definition.loader import check_specs
from runtime.definition.model import Workflow
from runtime.documents import ID
from runtime.documents.run import RUN_ID, WORKFLOW, Document, StatusEvent, status_from_document
from runtime.errors import EventError
from runtime.service.approvals import approval_commands
from runtime.service.callbacks import awaited_token, complete_command
from runtime.service.events import send_event_command
from runtime.service.reconciler import RUNS_PER_PASS, Reconciler
from runtime.service.timers import fire_due_timers
from runtime.statuses import StatusName
from runtime.store.mongo import MongoStore
from runtime.store.settings import StoreSettings

log = logging.getLogger(__name__)

DATABASE_FOLDER = "db"
SNAPSHOTS_FOLDER = "code"
"""Under the data folder: the job code runs are pinned to."""
PORT_FILE = "port"
"""The port of the last server on a data folder: the next one listens there too, so the URI
people exported keeps working across restarts."""


@dataclass(frozen=True, kw_only=True)
class DevOptions:
    reload_seconds: float = 1.0
    """How often the spec folder is looked at for changes."""
    timer_seconds: float = 0.25
    """How often due timers are fired (a timer fires within this of its time)."""
    repair_seconds: float = 2.0
    """How often the reconciler and the timeout check run."""
    stale_after: timedelta = timedelta(seconds=5)
    """A running run not written for this long is checked by the reconciler."""
    poll_seconds: float = 0.05
    """How long one wait on the change stream lasts before the server looks at the clock."""
    handler_threads: int = 4
    job_threads: int = 32
    snapshots: Path = Path(DEFAULT_DATA_DIR) / SNAPSHOTS_FOLDER
    """Where the job code runs are pinned to is kept (``cdk_app.local.snapshots``)."""


class FolderDeployment:
    """The specs of a folder as deployed stacks: each workflow's rules and job functions. It loads
    the folder again when a file in it changes; a spec with problems keeps its last good version
    (as a failed deploy leaves the stack as it was) and the problems are reported once."""

    def __init__(self, folder: Path, store: StoreSettings, say: Callable[[str], None]) -> None:
        self.folder = folder
        self.store = store
        self.say = say
        self.workflows: dict[str, Workflow] = {}
        self._rules: tuple[Rule, ...] = ()
        self._signature: tuple[tuple[str, int, int], ...] | None = None

    def _files(self) -> tuple[tuple[str, int, int], ...]:
        found = []
        for path in sorted(self.folder.rglob("*")):
            with contextlib.suppress(OSError):  # a file removed while we look
                if path.is_file() and "__pycache__" not in path.parts:
                    stat = path.stat()
                    found.append((str(path), stat.st_mtime_ns, stat.st_size))
        return tuple(found)

    def refresh(self) -> bool:
        """Load the folder again if a file in it changed; True when it did."""
        signature = self._files()
        if signature == self._signature:
            return False
        first = self._signature is None
        self._signature = signature
        check = check_specs([self.folder])
        for problem in check.problems:
            self.say(f"[red]{escape(str(problem))}[/]")
        loaded: dict[str, Workflow] = {}
        for workflow in check.workflows:
            loaded.setdefault(workflow.name, workflow)
        if check.problems:
            # Keep what was deployed for the specs that no longer load.
            loaded = {**self.workflows, **loaded}
        self.workflows = loaded
        self._rules = tuple(
            rule for workflow in loaded.values() for rule in workflow_rules(workflow, self.store)
        )
        names = ", ".join(sorted(loaded)) or "none"
        self.say(
            f"workflows in {escape(str(self.folder))}: {escape(names)}" + ("" if first else " (reloaded)")
        )
        return True

    def rules(self) -> Sequence[Rule]:
        return self._rules


class StatusLines:
    """A RunObserver printing one compact line per status, and one per notification."""

    def __init__(self, console: Console, store: MongoStore | None = None) -> None:
        self.console = console
        self.store = store
        """Where the tokens of callback jobs that wait without code are made (with its key)."""

    def status(self, event: StatusEvent) -> None:
        when = f"{(event.date or datetime.now()).astimezone():%H:%M:%S.%f}"[:-3]
        style = STATUS_STYLES.get(event.status, "")
        parts = [
            f"[dim]{when}[/]",
            escape(f"{event.workflow}/{event.run_id}"),
            escape("/".join(part for part in (event.phase, event.job) if part)),
            f"[{style}]{event.status}[/]" if style else str(event.status),
            attempt_label(event.job, event.status, event.attempt),
        ]
        detail = first_line(event.error or event.reason)
        if detail:
            parts.append(f"[dim]{escape(detail)}[/]")
        self.console.print(
            " ".join(part for part in parts if part), no_wrap=True, overflow="ellipsis", highlight=False
        )
        if event.status == StatusName.APPROVAL_REQUESTED and event.job is not None:
            for command in approval_commands(event.run_id, event.job):
                self.console.print(f"  [magenta]{escape(command)}[/]", highlight=False, soft_wrap=True)
        if event.status == StatusName.EVENT_AWAITED and event.reason is not None:
            command = send_event_command(event.workflow, event.reason, event.run_id)
            self.console.print(f"  [magenta]{escape(command)}[/]", highlight=False, soft_wrap=True)
        if event.status == StatusName.CALLBACK_AWAITED and self.store is not None:
            token = awaited_token(self.store, event)
            if token is not None:
                command = complete_command(token)
                self.console.print(f"  [magenta]{escape(command)}[/]", highlight=False, soft_wrap=True)

    def notification(self, subject: str, message: str) -> None:
        self.console.print(f"[magenta]✉[/] [dim]{escape(subject)}[/]", highlight=False)


class DevServer:
    """Delivers every status of the store to the handlers of the deployed workflows until
    ``stop`` is set."""

    def __init__(
        self, store: MongoStore, deployment: FolderDeployment, console: Console, options: DevOptions
    ) -> None:
        self.store = store
        self.deployment = deployment
        self.console = console
        self.options = options
        self.lines = StatusLines(console, store)
        self.processes = JobProcesses()
        self.cloud = LocalCloud(
            store,
            self.lines,
            CloudOptions(
                faults=FaultSettings(),
                handler_threads=options.handler_threads,
                job_threads=options.job_threads,
            ),
            rules=deployment.rules,
            job_functions=PinnedFunctions(
                store, lambda: deployment.workflows, CodeSnapshots(options.snapshots), self.processes
            ).job_function,
            workflows=lambda: deployment.workflows,
        )
        self.reconciler = Reconciler(
            store,
            self.cloud,
            stale_after=options.stale_after,
            # Locally an invocation starts at once, and there is no retry window to wait out.
            lost_invocation_after=lambda job: timedelta(seconds=job.timeout),
            children=self.cloud,
        )
        self.timeouts = TimeoutWatch(
            store, self.cloud, lambda line: console.print(f"[yellow]{escape(line)}[/]")
        )
        self._undeployed: set[str] = set()
        self.schedules = ScheduleClock(store, lambda line: console.print(f"[yellow]{escape(line)}[/]"))

    def serve(self, stop: threading.Event) -> None:
        self.store.ensure_indexes()
        self.deployment.refresh()
        try:
            with self.store.statuses.watch(
                [{"$match": {"operationType": "insert"}}],
                max_await_time_ms=int(self.options.poll_seconds * 1000),
            ) as stream:
                # The stream is open, so what happens from here on is delivered; what happened
                # while nothing was delivering is the reconciler's. Every run still running was
                # left behind, however recently it was written: it is checked now.
                self.repair(utcnow() + self.options.stale_after)
                next_reload = next_repair = next_timers = time.monotonic()
                while not stop.is_set():
                    change = stream.try_next()
                    if change is not None:
                        self._deliver(change["fullDocument"])
                    if time.monotonic() >= next_reload:
                        self.deployment.refresh()
                        next_reload = time.monotonic() + self.options.reload_seconds
                    if time.monotonic() >= next_timers:
                        fire_due_timers(self.store, utcnow(), None, self.reconciler.invoke)
                        self.schedules.tick(self.deployment.workflows, utcnow())
                        next_timers = time.monotonic() + self.options.timer_seconds
                    if time.monotonic() >= next_repair:
                        self.repair()
                        next_repair = time.monotonic() + self.options.repair_seconds
        finally:
            self.cloud.close()
            self.processes.close()

    def repair(self, reconciler_now: datetime | None = None) -> None:
        """A reconciler pass, then Lambda's timeout on attempts that ran past theirs."""
        report = self.reconciler.reconcile_pass(reconciler_now)
        for run_id in report.repaired_runs:
            self.console.print(f"[yellow]reconciler repaired run {escape(run_id)}[/]")
        now = utcnow()
        for run_id in self.store.stale_runs(now - TIMEOUT_GRACE, RUNS_PER_PASS):
            self.timeouts.check(run_id, now)

    def _deliver(self, document: Document) -> None:
        try:
            status = status_from_document(document)
        except EventError as exc:
            # The trigger forwards it all the same; the handlers drop it, saying why.
            log.warning("a malformed status in run %s: %s", document.get(RUN_ID), exc)
            self.cloud.route(document, str(document.get(ID)))
            return
        self.lines.status(status)
        workflow = document.get(WORKFLOW)
        if workflow not in self.deployment.workflows and workflow not in self._undeployed:
            self._undeployed.add(str(workflow))
            folder = escape(str(self.deployment.folder))
            self.console.print(
                f"[yellow]workflow {escape(str(workflow))!r} is not in {folder}: "
                "its statuses are not delivered[/]"
            )
        self.cloud.route(
            document, "/".join(map(str, (status.status, status.phase, status.job, status.attempt)))
        )


# --- the command -----------------------------------------------------------------------------------


def port_for(data: Path) -> int:
    """The port the last server on ``data`` listened on, if it is free; else a new one."""
    with contextlib.suppress(OSError, ValueError):
        port = int((data / PORT_FILE).read_text(encoding="utf-8").strip())
        with socket.socket() as probe:
            # As servers bind: a port the last server left in TIME_WAIT is free to listen on.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(("127.0.0.1", port))
        return port
    return free_port()


@contextlib.contextmanager
def embedded_server(data: Path, console: Console) -> Iterator[EmbeddedMongo]:
    data.mkdir(parents=True, exist_ok=True)
    port = port_for(data)
    with console.status(f"starting the embedded MongoDB server on {data}"):
        try:
            server = EmbeddedMongo(storage_path=data / DATABASE_FOLDER, port=port)
        except RuntimeError as exc:
            raise CommandError(
                f"could not start MongoDB on {data}: {exc} (is another dev server using it?)"
            ) from exc
    (data / PORT_FILE).write_text(f"{port}\n", encoding="utf-8")
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def stopped_by_sigterm(stop: threading.Event) -> Iterator[None]:
    """SIGTERM (what service managers and ``kill`` send) stops the server as Ctrl-C does."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signals reach the main thread only
        return

    def handle(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = signal.signal(signal.SIGTERM, handle)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
