"""Issue 31, item 3: the local stand-in for Lambda's timeout reads an attempt's ``started`` only
once the attempt may have run past its timeout. It looks at a running run once a second, and a
fan-out holds a hundred attempts in flight: reading each one's at every look cost a local run
two commands per item. What it reports stays what Lambda would stop."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pymongo
import pytest
from pymongo import monitoring

from cdk_app.local.atlas_events import envelope
from cdk_app.local.runner import LocalRunner
from cdk_app.local.timeouts import TimeoutWatch
from runtime.clock import time_from, utcnow
from runtime.documents.run import StatusEvent
from runtime.service.orchestrator import Orchestrator
from runtime.service.runs import start_run
from runtime.statuses import StatusName
from runtime.store.mongo import MongoStore
from runtime.store.settings import StoreSettings
from tests.engine_harness import RecordingDispatcher, workflow

TIMEOUT = 60
SPEC = workflow("wf_watch", {"p": {"slow": {"timeout": TIMEOUT}}})


class StatusReads(monitoring.CommandListener):
    """How many ``find`` commands a client sent to ``statuses``."""

    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name == "find" and event.command.get("find") == "statuses":
            with self._lock:
                self.count += 1

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass

    def take(self) -> int:
        with self._lock:
            taken, self.count = self.count, 0
        return taken


class _Quiet:
    def status(self, event: Any) -> None:
        return None

    def notification(self, subject: str, message: str) -> None:
        return None


@pytest.fixture
def watched(mongo_uri: str, store_settings: StoreSettings) -> Iterator[tuple[MongoStore, StatusReads]]:
    reads = StatusReads()
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
        mongo_uri, tz_aware=True, event_listeners=[reads]
    )
    store = MongoStore(client, store_settings)
    store.ensure_indexes()
    yield store, reads
    client.close()


@pytest.fixture
def watch(watched: tuple[MongoStore, StatusReads]) -> Iterator[TimeoutWatch]:
    """The watch of a local run, reporting to its stand-in for Lambda."""
    runner = LocalRunner(watched[0], SPEC, {"slow": lambda event, context: None}, _Quiet())
    yield TimeoutWatch(watched[0], runner.cloud)
    runner.cloud.close()


def _dispatch(store: MongoStore, run_id: str, at: datetime | None = None) -> None:
    """The orchestrator handles the run's start (``at``: then): ``slow``'s first attempt is in
    flight, claimed then."""
    started = store.find_status(run_id, None, None, StatusName.WORKFLOW_STARTED, 0)
    assert started is not None
    dispatcher = RecordingDispatcher()
    when = at or utcnow()
    with time_from(lambda: when):
        Orchestrator(store, dispatcher).handle(envelope(started, store.settings.database, "statuses"))
    assert [event.job for event in dispatcher.drain()] == ["slow"]


def _claim(store: MongoStore, run_id: str, date: datetime) -> None:
    """The job wrapper's ``started`` of that attempt, recorded at ``date``."""
    claim = StatusEvent(
        run_id=run_id,
        workflow="wf_watch",
        status=StatusName.STARTED,
        phase="p",
        job="slow",
        attempt=1,
        request_id="request-1",
    )
    assert store.insert_status(claim.to_document(date))


def test_an_attempt_dispatched_after_a_look_is_not_read_until_its_timeout_may_have_passed(
    watched: tuple[MongoStore, StatusReads], watch: TimeoutWatch
) -> None:
    store, reads = watched
    run_id = start_run(store, SPEC).run_id
    first_look = utcnow()
    assert watch.check(run_id, first_look) == 0  # nothing in flight yet
    _dispatch(store, run_id)
    _claim(store, run_id, utcnow())
    reads.take()

    for seconds in (1, 2, 30, TIMEOUT):
        assert watch.check(run_id, first_look + timedelta(seconds=seconds)) == 0
    assert reads.take() == 0, "it started after the first look: it cannot have timed out yet"

    assert watch.check(run_id, first_look + timedelta(seconds=TIMEOUT + 5)) == 1
    assert reads.take() >= 1


def test_an_attempt_in_flight_at_the_first_look_is_read_only_past_its_claims_timeout(
    watched: tuple[MongoStore, StatusReads], watch: TimeoutWatch
) -> None:
    store, reads = watched
    run_id = start_run(store, SPEC).run_id
    claimed = utcnow() - timedelta(seconds=10)
    _dispatch(store, run_id, claimed)
    _claim(store, run_id, claimed)
    reads.take()

    for seconds in (11, 12, 20, TIMEOUT):
        assert watch.check(run_id, claimed + timedelta(seconds=seconds)) == 0
    assert reads.take() == 0, "claimed less than its timeout ago: it cannot have timed out"

    assert watch.check(run_id, claimed + timedelta(seconds=TIMEOUT + 2)) == 1
    assert watch.check(run_id, claimed + timedelta(seconds=TIMEOUT + 3)) == 0, "reported once"


def test_an_attempt_not_started_at_a_look_is_read_again_only_a_timeout_after_it(
    watched: tuple[MongoStore, StatusReads], watch: TimeoutWatch
) -> None:
    store, reads = watched
    run_id = start_run(store, SPEC).run_id
    dispatched = utcnow() - timedelta(seconds=TIMEOUT + 2)
    _dispatch(store, run_id, dispatched)
    reads.take()
    look = utcnow()
    assert watch.check(run_id, look) == 0
    assert reads.take() == 1, "claimed a timeout ago: its started is read (none yet)"
    _claim(store, run_id, look + timedelta(seconds=1))

    assert watch.check(run_id, look + timedelta(seconds=TIMEOUT)) == 0
    assert reads.take() == 0
    assert watch.check(run_id, look + timedelta(seconds=TIMEOUT + 1.5)) == 0, "started a second later"
    assert reads.take() == 1
    assert watch.check(run_id, look + timedelta(seconds=TIMEOUT + 3)) == 1


def test_an_attempt_whose_end_was_read_is_not_read_again_while_the_run_still_shows_it(
    watched: tuple[MongoStore, StatusReads], watch: TimeoutWatch
) -> None:
    """On a loaded machine the orchestrator may apply an end later than the attempt's timeout:
    reading the attempt's started and end at every look, for every such attempt, slowed the
    runner's loop (which delivers those ends) until a run of 1,000 jobs gave up."""
    store, reads = watched
    run_id = start_run(store, SPEC).run_id
    claimed = utcnow() - timedelta(seconds=TIMEOUT * 2)
    _dispatch(store, run_id, claimed)
    _claim(store, run_id, claimed)
    ended = StatusEvent(
        run_id=run_id, workflow="wf_watch", status=StatusName.SUCCESS, phase="p", job="slow", attempt=1
    )
    assert store.record_status(ended)
    reads.take()

    now = utcnow()
    assert watch.check(run_id, now) == 0
    assert reads.take() == 2, "its started, then its end"
    for seconds in (1, 2, 3):
        assert watch.check(run_id, now + timedelta(seconds=seconds)) == 0
    assert reads.take() == 0
