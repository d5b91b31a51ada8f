"""What one move of a job's queue (``runtime.service.job_limits.promote``) costs on the wire, on
the real MongoDB server: the queue is read in batches of as many tickets as the limit document
says are free, its head read uses the queue's index, and a take with room is a write the server
finds by the limit document's ``_id``. The commands are counted by a listener on the store's own
client; what the server examined comes from its ``explain``."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pymongo
import pytest
from pymongo import monitoring

from runtime.definition.model_limits import AttemptLimits, JobConcurrency, RateLimit
from runtime.documents import job_limits as doc
from runtime.documents.events import JobEvent
from runtime.service.job_limits import promote, send, ticket_of
from runtime.service.timers import fire_due_timers
from runtime.store.mongo import MongoStore
from runtime.store.settings import StoreSettings
from tests.engine_harness import workflow
from tests.job_limits_harness import Clock, Runs, clock

__all__ = ["clock"]  # the fixture this module shares


class SlotsCommands(monitoring.CommandListener):
    """Every command the client sends to ``slots``, as sent."""

    def __init__(self) -> None:
        self.commands: list[tuple[str, dict[str, Any]]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command.get(event.command_name) == "slots":
            self.commands.append((event.command_name, dict(event.command)))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        return None

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        return None

    def queue_reads(self) -> int:
        """Finds of a queue's waiting tickets (what ``head`` sends)."""
        return sum(
            1
            for name, command in self.commands
            if name == "find" and command.get("filter", {}).get(doc.STATE) == doc.WAITING
        )


@pytest.fixture
def listener() -> SlotsCommands:
    return SlotsCommands()


@pytest.fixture
def store(mongo_uri: str, store_settings: StoreSettings, listener: SlotsCommands) -> Iterator[MongoStore]:
    client: pymongo.MongoClient[dict] = pymongo.MongoClient(mongo_uri, event_listeners=[listener])
    store = MongoStore(client, store_settings)
    store.ensure_indexes()
    yield store
    client.close()


@pytest.fixture
def runs_of(store: MongoStore) -> Iterator[Any]:
    made: list[Runs] = []

    def make(limit: int) -> Runs:
        definition = workflow(
            f"jobq_{uuid.uuid4().hex[:8]}",
            {"p": {"charge": {"rate_limit": RateLimit(limit=limit, period=1)}}},
        )
        runs = Runs(store, definition)
        made.append(runs)
        return runs

    yield make
    for runs in made:
        runs.attempts.close()


def test_one_move_of_a_queue_with_five_free_places_reads_the_queue_once(
    store: MongoStore, runs_of: Any, clock: Clock, listener: SlotsCommands
) -> None:
    runs = runs_of(5)
    ids = [runs.start() for _ in range(10)]
    while runs.step():
        pass
    while runs.attempts.finish(runs.rng):
        runs.step()
    assert len(runs.dispatcher.history) == 5  # the first window is full: five wait

    clock.now += timedelta(seconds=1)
    listener.commands.clear()
    fire_due_timers(store, clock.now, runs.definition.name, runs.orchestrator().invoke)

    dispatched = [event.run_id for event in runs.dispatcher.drain()]
    assert sorted(dispatched) == sorted(ids[5:])
    assert listener.queue_reads() == 1


def test_a_take_with_room_is_found_by_the_limit_document_id(
    store: MongoStore, runs_of: Any, clock: Clock, listener: SlotsCommands
) -> None:
    """SecantusDB's write planner finds a document by its ``_id`` only when the filter has no
    operator at its top level (a ``$and`` there makes it scan every document of ``slots``)."""
    runs = runs_of(5)
    runs.start()
    while runs.step():
        pass  # the limit document is made, one of five places taken in this window
    listener.commands.clear()
    for _ in range(3):
        runs.start()
    while runs.step():
        pass

    takes = [
        update["q"]
        for name, command in listener.commands
        if name == "update"
        for update in command["updates"]
        if str(update["q"].get("_id", "")).startswith('["job"') and "$addToSet" in update["u"]
    ]
    assert len(runs.dispatcher.history) == 4
    assert len(takes) == 3
    assert all(not key.startswith("$") for query in takes for key in query)


FIVE_A_SECOND: dict[str, Any] = {
    "concurrency": None,
    "rate_limit": {"limit": 5, "period": 1},
    "priority": 0,
    "round": 0,
}
"""The stored limits of a job with ``rate_limit: {limit: 5, period: 1}``."""


def _waiting_tickets(store: MongoStore, count: int, now: datetime) -> list[str]:
    """``count`` waiting tickets of items of ``charge`` (workflow ``w``, key null), in order."""
    tickets = [doc.ticket_id("run", "charge", 0, index, 1) for index in range(count)]
    for ticket in tickets:
        store.job_limits().ticket(ticket, "w", "charge", "null", "run", {"payload": "{}"}, FIVE_A_SECOND, now)
    return tickets


def test_the_queue_head_read_examines_only_the_queue_s_waiting_tickets(store: MongoStore) -> None:
    tickets = store.job_limits()
    now = datetime.now(UTC)
    for ticket in _waiting_tickets(store, 40, now)[4:]:  # ended long ago: its ticket stays, released
        tickets.release(None, ticket, now)
    slots = store.database[store.settings.slots_collection]

    plan = slots.find(doc.waiting_query(doc.limit_id("w", "charge", "null"))).sort(doc.QUEUE_ORDER).explain()

    assert plan["executionStats"]["nReturned"] == 4
    assert plan["executionStats"]["totalDocsExamined"] <= 4


class StaleReads:
    """The store, whose first read of a queue's head lets ``meanwhile`` run before it returns:
    another move of the queue between this one's read and its takes."""

    def __init__(self, store: MongoStore, meanwhile: Any) -> None:
        self._store, self.meanwhile = store, meanwhile

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def job_limits(self) -> Any:
        tickets = self._store.job_limits()
        outer = self

        class Tickets:
            def __getattr__(self, name: str) -> Any:
                return getattr(tickets, name)

            def head(self, limit: str, count: int) -> list[dict[str, Any]]:
                batch = tickets.head(limit, count)
                meanwhile, outer.meanwhile = outer.meanwhile, None
                if meanwhile is not None:
                    meanwhile()
                return batch

        return Tickets()


def test_a_ticket_granted_and_ended_by_another_move_after_this_one_read_it_holds_no_place(
    store: MongoStore,
) -> None:
    limits = AttemptLimits(concurrency=JobConcurrency(limit=2))
    events = [
        JobEvent(run_id=f"run{n}", workflow="w", phase="p", job="charge", attempt=1, limits=limits)
        for n in range(3)
    ]
    sent: list[str] = []
    for event in events:
        send(store, event, lambda event: sent.append(event.run_id))
    assert sent == ["run0", "run1"]  # run2 waits
    tickets = store.job_limits()
    limit = doc.limit_id("w", "charge", "null")
    tickets.release(limit, ticket_of(events[1], 0), datetime.now(UTC))  # run1 ended: a place is free

    def another_move() -> None:
        """run2 is granted by another move, and its attempt ends at once."""
        promote(store, limit, lambda event: sent.append(event.run_id), limits)
        tickets.release(limit, ticket_of(events[2], 0), datetime.now(UTC))

    promote(StaleReads(store, another_move), limit, lambda event: sent.append(event.run_id), limits)

    assert sent == ["run0", "run1", "run2"]
    held = tickets.read_limit(limit)
    assert held is not None
    assert held[doc.IN_FLIGHT] == [ticket_of(events[0], 0)]


def test_the_sweep_s_look_for_due_queues_examines_only_the_due_limit_documents(store: MongoStore) -> None:
    tickets = store.job_limits()
    now = datetime.now(UTC)
    _waiting_tickets(store, 30, now)
    tickets.wake_at(doc.limit_id("w", "charge", "null"), now, "w", "charge", "null", FIVE_A_SECOND)
    slots = store.database[store.settings.slots_collection]

    plan = slots.find(doc.due_query(now, "w")).explain()

    assert plan["executionStats"]["nReturned"] == 1
    assert plan["executionStats"]["totalDocsExamined"] <= 1


def test_the_queue_index_that_kind_led_is_dropped_by_ensure_indexes(store: MongoStore) -> None:
    old_keys = [(doc.KIND, 1), (doc.LIMIT_ID, 1), (doc.STATE, 1), (doc.PRIORITY, -1), (doc.ARRIVAL, 1)]
    slots = store.job_limits().slots
    slots.create_index(old_keys, name=doc.OLD_QUEUE_INDEX)

    store.ensure_indexes()
    store.ensure_indexes()  # again: nothing left to drop

    names = set(slots.index_information())
    assert doc.OLD_QUEUE_INDEX not in names
    assert {doc.QUEUE_INDEX_NAME, doc.WAKE_INDEX_NAME} <= names
