"""The MongoDB adapter of the ``SentEvents`` port: events kept for event jobs that start waiting
after they were sent (``runtime.documents.sent_events``). Driver failures become ``StoreError``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo.collection import Collection
from pymongo.errors import DuplicateKeyError, PyMongoError

from runtime.documents.sent_events import (
    EXPIRY_INDEX,
    KEPT_INDEX,
    SENT_AT,
    SentEvent,
    kept_query,
    sent_event_filter,
)
from runtime.errors import StoreError

Document = dict[str, Any]

KEPT_READ_MAX = 1000
"""Kept events one wait looks through at most, oldest first."""


class MongoSentEvents:
    def __init__(self, events: Collection[Document]) -> None:
        self.events = events

    def ensure_indexes(self) -> None:
        try:
            for name, (keys, options) in (("kept_events", KEPT_INDEX), ("expire_events", EXPIRY_INDEX)):
                self.events.create_index(keys, name=name, **options)
        except PyMongoError as exc:
            raise StoreError(f"could not create the indexes of {self.events.name}: {exc}") from exc

    def keep(self, event: SentEvent) -> SentEvent:
        """Keep ``event``; the event kept before under the same id when there is one (a send
        repeated), so that what is delivered is what was kept."""
        try:
            self.events.insert_one(event.to_document())
            return event
        except DuplicateKeyError:
            pass
        except PyMongoError as exc:
            raise StoreError(f"could not keep event {event.event_id!r}: {exc}") from exc
        try:
            document = self.events.find_one(sent_event_filter(event.workflow, event.event_id))
        except PyMongoError as exc:
            raise StoreError(f"could not read event {event.event_id!r}: {exc}") from exc
        return event if document is None else SentEvent.from_document(document)

    def kept(self, workflow: str, name: str, run_id: str, sent_since: datetime) -> list[SentEvent]:
        """The events of ``name`` kept for the run, sent since ``sent_since``, oldest first."""
        try:
            documents = self.events.find(kept_query(workflow, name, run_id, sent_since))
            return [SentEvent.from_document(d) for d in documents.sort(SENT_AT, 1).limit(KEPT_READ_MAX)]
        except PyMongoError as exc:
            raise StoreError(f"could not read the kept events {name!r} of {workflow}: {exc}") from exc
