"""Job code in processes of its own, as Lambda runs it in execution environments of its own.

Each job function (a workflow's job, or a dev server snapshot's) gets worker processes that load
its code once, with the job's ``env`` over this machine's environment, and then serve one
invocation at a time, as a warm Lambda environment does; parallel invocations get parallel
workers. Workers are forked from a ``forkserver`` that has the runtime imported already, so a new
one is ready in milliseconds. The attempt's wrapper (``run_attempt``: lease, reports, fault
injection) stays in the runner's process; only the user's handler crosses over.

What Lambda does to an invocation, the pool does to its worker:

- past the job's ``timeout`` the worker is killed, and the invocation fails with Lambda's
  ``Task timed out`` (``FunctionDied``, which Lambda's on-failure destination reports);
- a handler that raises a ``BaseException`` that is not an ``Exception`` (``KeyboardInterrupt``,
  ``SystemExit``), or a process that exits or crashes, takes the function down without a report,
  as it takes a Lambda runtime down: ``FunctionDied``, and the worker is replaced;
- an ``Exception`` is the attempt's failure, described where it was raised (``HandlerFailed``).

Whatever the job writes to ``sys.stdout`` or ``sys.stderr`` (``print``, logging) is relayed to
the runner's ``sys.stderr``, so ``run --json`` keeps stdout for its one object.
"""

from __future__ import annotations

import atexit
import contextlib
import io
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, partial
from multiprocessing import forkserver, resource_tracker
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from cdk_app.local.jobs import FunctionDied, LocalContext, context_for, load_handler
from cdk_app.local.stand_ins import stand_in_job, without_code
from runtime import contracts
from runtime.definition.model import Job, Workflow
from runtime.errors import RunError
from runtime.handlers.job import stub_handler
from runtime.service.job_attempt import HandlerFailed, UserHandler, describe

INIT_SECONDS = 10.0
"""How long a worker may take to import the job's code: Lambda's limit on a function's init
phase, which the job's ``timeout`` does not include."""
IDLE_SECONDS = 300.0
"""A worker idle for this long is stopped, as Lambda reclaims idle environments (the dev server
runs for hours, through many versions of the code)."""
LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"
STDOUT, STDERR = 1, 2

Message = tuple[Any, ...]


def python_difference() -> str | None:
    """What to warn about when this Python is not the one the job functions run on in Lambda."""
    local = f"{sys.version_info.major}.{sys.version_info.minor}"
    deployed = contracts.LAMBDA_PYTHON_VERSION
    if local == deployed:
        return None
    return f"jobs run on this machine's Python {local}; their Lambda functions run Python {deployed}"


@dataclass(frozen=True, kw_only=True)
class JobCode:
    """One job function's code and settings, as a worker needs them (picklable: it crosses to
    the worker); workers are kept per ``JobCode``."""

    workflow: str
    job: str
    code: str
    """The job's ``.py`` file, or its folder with ``handler.py``."""
    shared: str | None
    """The spec's ``shared`` folder (or a snapshot's copy), first on the worker's ``sys.path``."""
    env: tuple[tuple[str, str], ...]

    @classmethod
    def of(cls, workflow: str, job: Job, shared: Path | str | None) -> JobCode:
        assert job.code is not None, f"job {job.name!r} has no code to run in a process"
        return cls(
            workflow=workflow,
            job=job.name,
            code=str(job.code),
            shared=None if shared is None else str(shared),
            env=tuple(sorted(job.env.items())),
        )


class _Relay(io.TextIOBase):
    """A worker's ``sys.stdout`` and ``sys.stderr``: each write goes to the runner."""

    def __init__(self, send: Callable[[Message], None]) -> None:
        self._send = send

    encoding = "utf-8"  # what code printing non-ASCII text asks a stream for

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if text:
            self._send(("output", text))
        return len(text)


def _serve(code: JobCode, environment: dict[str, str], connection: Connection) -> None:
    """A worker's life: load the job's code once, then run one invocation per request until the
    runner closes the connection. A ``BaseException`` out of the handler ends the worker."""
    # Ctrl-C reaches every process of the terminal's group: it is the CLI's to handle, and the
    # CLI stops its workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ.clear()
    os.environ.update(environment)
    os.dup2(STDERR, STDOUT)  # what writes to the file descriptor, bypassing sys.stdout, too
    sending = threading.Lock()

    def send(message: Message) -> None:
        with sending:
            connection.send(message)

    sys.stdout = sys.stderr = _Relay(send)
    logging.basicConfig(level=logging.WARNING, format=LOG_FORMAT, force=True)
    if code.shared is not None:
        sys.path.insert(0, code.shared)
    try:
        handler = load_handler(code.workflow, code.job, Path(code.code))
    except RunError as exc:
        send(("load_failed", str(exc)))
        return
    send(("ready",))
    while True:
        try:
            payload, context = connection.recv()
        except EOFError:
            return
        try:
            output = handler(payload, context)
        except Exception as exc:  # the user's code may raise anything: the attempt's failure
            send(("raised", describe(exc)))
            continue
        except BaseException as exc:  # takes the function down, as it would a Lambda runtime
            send(("died", type(exc).__name__, str(exc)))
            return
        try:
            send(("returned", output))
        except Exception as exc:  # an output that cannot even be pickled is no JSON value either
            send(("raised", describe(TypeError(f"the job's output is not JSON: {exc}"))))


class _Worker:
    def __init__(self, context: multiprocessing.context.ForkServerContext, code: JobCode) -> None:
        self.code = code
        self.connection, child_end = context.Pipe()
        environment = {**os.environ, **dict(code.env)}
        self.process = context.Process(
            target=_serve, args=(code, environment, child_end), name=f"job {code.workflow}/{code.job}"
        )
        self.process.start()
        child_end.close()
        self.idle_since = time.monotonic()

    def receive(self, deadline: float) -> Message:
        """The worker's next answer, relaying its output meanwhile; ``TimeoutError`` at
        ``deadline``, ``EOFError`` when the worker ended."""
        while True:
            if not self.connection.poll(max(0.0, deadline - time.monotonic())):
                raise TimeoutError
            message: Message = self.connection.recv()
            if message[0] != "output":
                return message
            sys.stderr.write(message[1])

    def stop(self) -> None:
        """Kill the worker; the pool and the thread waiting on it may both stop it."""
        with contextlib.suppress(OSError, ValueError):
            self.process.kill()
            self.process.join(5)
        with contextlib.suppress(OSError):
            self.connection.close()


@cache
def _stop_servers_at_exit() -> None:
    atexit.register(_stop_servers)


def _stop_servers() -> None:
    """The fork server and multiprocessing's resource tracker end with this process, but once it
    has ended nobody reaps them (a container's init may not): they are stopped and reaped before
    it ends, through the hooks CPython's own tests use (without them, they end unreaped)."""
    for server in (
        getattr(forkserver, "_forkserver", None),
        getattr(resource_tracker, "_resource_tracker", None),
    ):
        stop = getattr(server, "_stop", None)
        if callable(stop):
            with contextlib.suppress(OSError):
                stop()


class JobProcesses:
    """The worker processes of every job function, started as invocations need them."""

    def __init__(self) -> None:
        _stop_servers_at_exit()
        self._context = multiprocessing.get_context("forkserver")
        # Imported once in the fork server, not in each worker (no effect once it runs).
        self._context.set_forkserver_preload([__name__])
        self._idle: dict[JobCode, list[_Worker]] = {}
        self._busy: set[_Worker] = set()
        self._lock = threading.Lock()
        self._closed = False

    def __enter__(self) -> JobProcesses:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def handler(self, workflow: str, job: Job, shared: Path | str | None) -> UserHandler:
        """What invoking the job's function runs: its code in one of its workers (the generated
        stub, which reads nothing, in this process when the job has no code; an ``invoke`` job's
        call of its stand-in, which runs in workers of its own)."""
        # An http job's request is sent from here; an invoke or call job's stand-in runs in workers.
        handler = without_code(
            job, lambda stand_in: self.handler(workflow, stand_in, shared), partial(context_for, workflow)
        )
        if handler is not None:
            return handler
        if job.code is None:
            return stub_handler
        return partial(self.call, JobCode.of(workflow, job, shared))

    def warm(self, workflow: Workflow) -> dict[str, UserHandler]:
        """Every job's handler, its code loaded in a worker before the run starts, so broken code
        stops the run before anything was recorded (``RunError``)."""
        handlers = {}
        for job in workflow.jobs():
            handlers[job.name] = self.handler(workflow.name, job, workflow.shared)
            runs = job if job.invoke is None and job.call is None else stand_in_job(job)
            if runs is not None and runs.code is not None:
                code = JobCode.of(workflow.name, runs, workflow.shared)
                try:
                    self._give_back(self._take(code))
                except HandlerFailed as exc:
                    raise RunError(exc.description.removeprefix(f"{RunError.__name__}: ")) from None
        return handlers

    def call(self, code: JobCode, payload: dict[str, Any], context: LocalContext) -> Any:
        """One invocation of the job function ``code``, within the job's timeout."""
        worker = self._take(code)
        # From the handler's start: the wrapper's reads and writes before it are not its time.
        deadline = time.monotonic() + context.timeout
        try:
            worker.connection.send((payload, context))
            answer = worker.receive(deadline)
        except TimeoutError:
            self._retire(worker)
            raise FunctionDied(
                TimeoutError.__name__, f"Task timed out after {context.timeout}.00 seconds"
            ) from None
        except (EOFError, OSError):
            self._retire(worker)
            self._stopped_if_closed()
            raise FunctionDied(
                "Runtime.ExitError",
                f"the job's process exited (code {worker.process.exitcode}) without an answer",
            ) from None
        if answer[0] == "died":
            self._retire(worker)
            raise FunctionDied(answer[1], answer[2])
        self._give_back(worker)
        if answer[0] == "raised":
            raise HandlerFailed(answer[1])
        return answer[1]

    def _take(self, code: JobCode) -> _Worker:
        """An idle worker of ``code``, or a new one once it has loaded the code; ``HandlerFailed``
        when the code does not load."""
        with self._lock:
            worker = None if self._closed else self._idle_worker(code)
        if worker is not None:
            return worker
        self._stopped_if_closed()
        worker = _Worker(self._context, code)
        with self._lock:
            self._busy.add(worker)
            closed = self._closed
        if closed:
            worker.stop()
            self._stopped_if_closed()
        try:
            answer = worker.receive(time.monotonic() + INIT_SECONDS)
        except TimeoutError:
            self._retire(worker)
            raise HandlerFailed(
                f"{RunError.__name__}: {code.code}: job {code.job!r}: its code did not load within "
                f"{INIT_SECONDS:g}s"
            ) from None
        except (EOFError, OSError):
            self._retire(worker)
            self._stopped_if_closed()
            raise HandlerFailed(
                f"{RunError.__name__}: {code.code}: job {code.job!r}: its process exited "
                f"(code {worker.process.exitcode}) while loading its code"
            ) from None
        if answer[0] == "load_failed":
            self._retire(worker)
            raise HandlerFailed(f"{RunError.__name__}: {answer[1]}")
        return worker

    def _idle_worker(self, code: JobCode) -> _Worker | None:
        """An idle worker of ``code`` still alive, now busy (called holding the lock)."""
        idle = self._idle.get(code, [])
        while idle:
            worker = idle.pop()
            if worker.process.is_alive():
                self._busy.add(worker)
                return worker
            worker.stop()
        return None

    def _give_back(self, worker: _Worker) -> None:
        now = time.monotonic()
        with self._lock:
            self._busy.discard(worker)
            if self._closed:
                stale = [worker]
            else:
                worker.idle_since = now
                self._idle.setdefault(worker.code, []).append(worker)
                stale = [
                    idle
                    for workers in self._idle.values()
                    for idle in workers
                    if now - idle.idle_since > IDLE_SECONDS
                ]
                for code, workers in list(self._idle.items()):
                    self._idle[code] = [idle for idle in workers if idle not in stale]
        for old in stale:
            old.stop()

    def _retire(self, worker: _Worker) -> None:
        with self._lock:
            self._busy.discard(worker)
        worker.stop()

    def _stopped_if_closed(self) -> None:
        """Once the pool is closed (the run or the server stopped) an invocation reports nothing
        more, as nothing is left to hear it: its thread waits for the process to end."""
        if self._closed:
            threading.Event().wait()

    def close(self) -> None:
        """Stop every worker, busy or not."""
        with self._lock:
            self._closed = True
            workers = [worker for idle in self._idle.values() for worker in idle] + list(self._busy)
            self._idle.clear()
            self._busy.clear()
        for worker in workers:
            worker.stop()
