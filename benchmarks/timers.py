"""How late a timer fires after its due time: locally and in the cloud.

``timers`` runs each start a wait job (2 to 5 s), so their timers come due over a few seconds
while the runs are still being started. Locally ``fire_due_timers`` runs every
``LOCAL_POLL_SECONDS`` on a thread of its own from the first start on, as ``run`` and the dev
server call it. In the cloud one ``fire_timers_until`` call (what the reconciler runs each minute
when the timer schedule invokes it: it fires what is due, then sleeps until the next due time)
looks once every run has been started; their waits are longer by the time the local starts took,
so every timer exists at that look, as one does that is created before the minute's look. A
timer created after the look waits for the next minute's, up to 60 s: that case is the schedule's
period, not something to measure. The figure is, per timer, the ``timer_fired`` status's recorded
time minus the job's ``dueAt``.
"""

from __future__ import annotations

import math
import statistics
import threading
import time
from datetime import timedelta
from typing import Any

from benchmarks.orchestration import CountingDispatcher, Progress, new_client, scratch_databases
from cdk_app.local.atlas_events import envelope
from cdk_app.local.runner import RunOptions
from runtime.clock import as_utc, utcnow
from runtime.definition.model import Job, Phase, Workflow
from runtime.service.orchestrator import Orchestrator
from runtime.service.runs import start_run
from runtime.service.timers import fire_due_timers, fire_timers_until
from runtime.statuses import StatusName
from runtime.store.mongo import MongoStore
from runtime.store.settings import StoreSettings

WAITS = (2, 3, 4, 5)
LOCAL_POLL_SECONDS = RunOptions().timer_seconds


def _waiting_runs(store: MongoStore, timers: int, offset: int = 0) -> list[str]:
    """``timers`` runs, each with its wait job (``offset`` seconds longer) waiting for its timer."""
    orchestrator = Orchestrator(store, CountingDispatcher())
    settings = store.settings
    run_ids = []
    for index in range(timers):
        wait = offset + WAITS[index % len(WAITS)]
        definition = Workflow(
            name=f"timers_{wait}", phases=(Phase(name="p", jobs=(Job(name="pause", phase="p", wait=wait),)),)
        )
        run_id = start_run(store, definition).run_id
        started = store.find_status(run_id, None, None, StatusName.WORKFLOW_STARTED, 0)
        assert started is not None
        orchestrator.handle(envelope(started, settings.database, settings.statuses_collection))
        run_ids.append(run_id)
    return run_ids


def _lateness_ms(store: MongoStore, run_ids: list[str]) -> list[float]:
    late = []
    for run_id in run_ids:
        run = store.read_run(run_id)
        fired = store.read_status(run_id, "p", "pause", StatusName.TIMER_FIRED, 1)
        assert run is not None
        assert fired is not None, f"the timer of {run_id} did not fire"
        due = as_utc(run.jobs["pause"].due_at)
        recorded = as_utc(fired.date)
        assert due is not None
        assert recorded is not None
        late.append((recorded - due).total_seconds() * 1000)
    return late


def _summary(late: list[float]) -> dict[str, float]:
    ordered = sorted(late)
    return {
        "median": round(statistics.median(ordered), 1),
        "p95": round(ordered[int(0.95 * (len(ordered) - 1))], 1),
        "max": round(ordered[-1], 1),
        "min": round(ordered[0], 1),
    }


def timer_lateness(uri: str, timers: int, progress: Progress) -> dict[str, Any]:
    results: dict[str, Any] = {"timers_fired": timers}
    with scratch_databases(uri, "timers_local", "timers_cloud") as [local, cloud]:
        client = new_client(uri)
        try:
            store = MongoStore(client, StoreSettings(database=local))
            store.ensure_indexes()
            progress(f"timers (local): {timers} wait jobs of {WAITS[0]}-{WAITS[-1]} s, polled meanwhile")
            done = threading.Event()
            poller = threading.Thread(target=_poll, args=(store, done))
            poller.start()
            began = time.monotonic()
            try:
                run_ids = _waiting_runs(store, timers)
                setup = time.monotonic() - began
                time.sleep(max(WAITS) + 1)
            finally:
                done.set()
                poller.join()
            results["timer_lateness_local_ms"] = _summary(_lateness_ms(store, run_ids))
            progress(f"timers (local): late by {results['timer_lateness_local_ms']} ms")

            store = MongoStore(client, StoreSettings(database=cloud))
            store.ensure_indexes()
            offset = math.ceil(setup) + 1
            progress(f"timers (cloud): the same, {offset} s longer, one look once all exist")
            run_ids = _waiting_runs(store, timers, offset)
            fire_timers_until(store, None, utcnow() + timedelta(seconds=offset + max(WAITS) + 1))
            results["timer_lateness_cloud_ms"] = _summary(_lateness_ms(store, run_ids))
            progress(f"timers (cloud): late by {results['timer_lateness_cloud_ms']} ms")
        finally:
            client.close()
    return results


def _poll(store: MongoStore, done: threading.Event) -> None:
    while not done.wait(LOCAL_POLL_SECONDS):
        fire_due_timers(store, utcnow())
