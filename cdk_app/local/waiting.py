"""Waiting for a run to end, by reading its run document now and then: what ``status --wait``
does, against the dev server and against Atlas alike (no change stream, so no extra privilege)."""

from __future__ import annotations

import time

from runtime.documents import Run, RunState
from runtime.errors import RunError
from runtime.ports import RunStore

POLL_SECONDS = 0.5


def wait_for_end(
    store: RunStore, run_id: str, timeout: float | None, poll: float = POLL_SECONDS
) -> Run | None:
    """The run once it is no longer ``running``, or None when ``timeout`` seconds went by first
    (None: wait as long as it takes)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        run = store.read_run(run_id)
        if run is None:
            raise RunError(f"unknown run {run_id!r}")
        if run.state != RunState.RUNNING:
            return run
        if deadline is not None and time.monotonic() >= deadline:
            return None
        time.sleep(poll if deadline is None else max(0.0, min(poll, deadline - time.monotonic())))
