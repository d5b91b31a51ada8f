"""The local runner fires due timers (and wakes the queues of jobs' rate limits, whose next
window has come) every ``timer_seconds`` while statuses keep arriving, not only when the change
stream has gone quiet: a rate-limited fan-out keeps it busy, and a sweep put off for seconds
lost whole windows of the limit."""

from __future__ import annotations

import time
from typing import Any

import pymongo
import pytest

import cdk_app.local.runner as runner_module
from cdk_app.local.runner import LocalRunner, RunOptions
from runtime.store.mongo import MongoStore
from runtime.store.settings import StoreSettings
from tests.engine_harness import workflow


class BusyStream:
    """A change stream on which another run's statuses arrive back to back for ``busy`` seconds."""

    def __init__(self, busy: float) -> None:
        self.until = time.monotonic() + busy

    def try_next(self) -> dict[str, Any] | None:
        if time.monotonic() < self.until:
            return {"fullDocument": {"_id": "x", "runId": "another-run"}}
        time.sleep(0.01)
        return None


class Quiet:
    def status(self, event: Any) -> None:
        return None

    def notification(self, subject: str, message: str) -> None:
        return None


def test_timers_fire_while_the_stream_stays_busy(
    mongo_client: pymongo.MongoClient[dict], store_settings: StoreSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = MongoStore(mongo_client, store_settings)
    sweeps: list[float] = []
    fire = runner_module.fire_due_timers

    def counted(*args: Any, **kwargs: Any) -> int:
        sweeps.append(time.monotonic())
        return fire(*args, **kwargs)

    monkeypatch.setattr(runner_module, "fire_due_timers", counted)
    runner = LocalRunner(
        store,
        workflow("wf_sweep", {"p": {"a": {}}}),
        {"a": lambda event, context: None},
        Quiet(),
        RunOptions(timer_seconds=0.25, timeout=1.5),
    )
    started = time.monotonic()
    try:
        runner._follow(BusyStream(busy=1.0), "a-run")
    finally:
        runner.cloud.close()

    during = [at for at in sweeps if at < started + 1.0]
    assert len(during) >= 2
