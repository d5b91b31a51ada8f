"""The MongoDB adapter of the ``JobLimitStore`` port: a job's limit documents and the tickets of
its attempts in ``slots`` (``runtime.documents.job_limits``). Each method is one MongoDB command
(``take``: one where the limit has room, or up to four when it has none, the rate window has moved
on, or the document is new); driver failures become ``StoreError``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo import ReturnDocument
from pymongo.collection import Collection
from pymongo.errors import DuplicateKeyError

from runtime.documents import ID
from runtime.documents import job_limits as doc
from runtime.errors import StoreError
from runtime.store.slots import _guard

Document = dict[str, Any]


class MongoJobLimits:
    """Limit documents and tickets on one collection (``slots``)."""

    def __init__(self, slots: Collection[Document]) -> None:
        self.slots = slots

    def ensure_indexes(self) -> None:
        if doc.OLD_QUEUE_INDEX in _guard("list the indexes of slots", self.slots.index_information):
            _guard("drop an old index", lambda: self.slots.drop_index(doc.OLD_QUEUE_INDEX))
        for name, (keys, options) in (
            (doc.QUEUE_INDEX_NAME, doc.QUEUE_INDEX),
            (doc.WAKE_INDEX_NAME, doc.WAKE_INDEX),
        ):
            self._create_index(name, keys, options)

    def _create_index(self, name: str, keys: list[tuple[str, int]], options: dict[str, Any]) -> None:
        _guard("create the job queue's indexes", lambda: self.slots.create_index(keys, name=name, **options))

    def ticket(
        self,
        ticket: str,
        workflow: str,
        job: str,
        key: str,
        run_id: str,
        event: Document,
        limits: Document,
        now: datetime,
    ) -> Document:
        """The attempt's ticket, made waiting when it had none."""
        update = doc.ticket_update(workflow, job, key, run_id, event, limits, now)
        document = _guard(
            "make a ticket",
            lambda: self.slots.find_one_and_update(
                {ID: ticket}, update, upsert=True, return_document=ReturnDocument.AFTER
            ),
        )
        assert document is not None  # upserted
        return document

    def read_ticket(self, ticket: str) -> Document | None:
        return _guard("read a ticket", lambda: self.slots.find_one({ID: ticket}))

    def head(self, limit: str, count: int) -> list[Document]:
        """The first ``count`` waiting tickets of the limit document, in the queue's order."""
        return _guard(
            "read the job queue",
            lambda: list(self.slots.find(doc.waiting_query(limit)).sort(doc.QUEUE_ORDER).limit(count)),
        )

    def count_waiting(self, limit: str) -> int:
        return _guard("count the job queue", lambda: self.slots.count_documents(doc.waiting_query(limit)))

    def take(self, limit: str, ticket: str, concurrency: int | None, rate: int | None, window: int) -> bool:
        """Whether ``ticket`` holds its place after this write (it took it, or held it already).
        The write for a document with room comes first (the usual case, a point write on the
        embedded server); ``doc.take``'s, which also makes the document and finds a place held
        already, only when it matched nothing."""
        for new_window in (False, True) if rate is not None else (False,):
            if self._take_with_room(doc.take_with_room(limit, ticket, concurrency, rate, window, new_window)):
                return True
        query, update = doc.take(limit, ticket, concurrency, rate, window, new_window=False)
        try:
            _guard("take a job's place", lambda: self.slots.update_one(query, update, upsert=True))
        except DuplicateKeyError:
            if rate is None:
                return False
            query, update = doc.take(limit, ticket, concurrency, rate, window, new_window=True)
            result = _guard("take a job's place", lambda: self.slots.update_one(query, update))
            return result.matched_count == 1
        return True

    def _take_with_room(self, write: tuple[Document, Document]) -> bool:
        query, update = write
        return _guard("take a job's place", lambda: self.slots.update_one(query, update)).matched_count == 1

    def grant(self, ticket: str, now: datetime) -> bool:
        query, update = doc.granted(ticket, now)
        return _guard("grant a ticket", lambda: self.slots.update_one(query, update)).matched_count == 1

    def release(self, limit: str | None, ticket: str, now: datetime) -> None:
        """The attempt ended: its ticket is released, then its place in flight given back (none
        for ``limit`` None: a job with a rate limit alone holds no place in flight)."""
        query, update = doc.released(ticket, now)
        _guard("release a ticket", lambda: self.slots.update_one(query, update))
        if limit is not None:
            _guard(
                "give a job's place back", lambda: self.slots.update_one({ID: limit}, doc.give_back(ticket))
            )

    def read_limit(self, limit: str) -> Document | None:
        return _guard("read a job's limit", lambda: self.slots.find_one({ID: limit}))

    def wake_at(self, limit: str, at: datetime, workflow: str, job: str, key: str, limits: Document) -> None:
        update = doc.wake_update(at, workflow, job, key, limits)
        _guard("set a job queue's wake", lambda: self.slots.update_one({ID: limit}, update, upsert=True))

    def due(self, now: datetime, workflow: str | None) -> list[Document]:
        """Limit documents whose queue is due to wake."""
        return _guard("read the due job queues", lambda: list(self.slots.find(doc.due_query(now, workflow))))

    def woken(self, limit: str, at: datetime) -> bool:
        query, update = doc.woken(limit, at)
        return (
            _guard("clear a job queue's wake", lambda: self.slots.update_one(query, update)).matched_count
            == 1
        )

    def next_wake(self, workflow: str | None) -> datetime | None:
        document = _guard(
            "read the next job queue wake",
            lambda: next(
                iter(self.slots.find(doc.next_wake_query(workflow)).sort(doc.WAKE_AT, 1).limit(1)), None
            ),
        )
        return None if document is None else document[doc.WAKE_AT]

    def waiting_of_run(self, run_id: str) -> list[Document]:
        """The run's waiting tickets, without their events."""
        return _guard(
            "read a run's tickets",
            lambda: list(self.slots.find(doc.run_waiting_query(run_id), {doc.EVENT: 0})),
        )

    def held_tickets(self, workflow: str | None) -> list[Document]:
        """Tickets waiting or granted (of ``workflow``), without their events."""
        return _guard(
            "read the tickets",
            lambda: list(self.slots.find(doc.held_tickets_query(workflow), {doc.EVENT: 0})),
        )


__all__ = ["MongoJobLimits", "StoreError"]
