"""The ``events`` collection: events sent to a workflow (or one of its runs) with ``send-event``,
kept so that an event job that starts waiting after the event was sent still gets it (within its
``retention``). One document per event, ``_id`` the workflow and the sender's event id, so a send
repeated with the same id keeps nothing more. Delivery itself is a status of the waiting attempt
(``event_received``); this document is only what is kept for attempts that wait later.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from runtime.documents import ID

Document = dict[str, Any]

WORKFLOW, NAME, RUN_ID, PAYLOAD, SENT_AT, EXPIRE_AT = (
    "workflow",
    "name",
    "runId",
    "payload",
    "sentAt",
    "expireAt",
)
EVENT_ID = "eventId"

KEPT_AT_MOST = timedelta(days=30)
"""How long an event is kept: the longest ``retention`` a spec may give (the schema's maximum).
Each job counts only the events sent within its own retention before it started waiting."""

Index = tuple[list[tuple[str, int]], dict[str, Any]]
KEPT_INDEX: Index = ([(WORKFLOW, 1), (NAME, 1), (SENT_AT, 1)], {})
EXPIRY_INDEX: Index = ([(EXPIRE_AT, 1)], {"expireAfterSeconds": 0})


@dataclass(frozen=True, kw_only=True)
class SentEvent:
    """One event as sent: to every run of ``workflow`` that waits for ``name``, or to one run."""

    workflow: str
    name: str
    event_id: str
    payload: Any
    sent_at: datetime
    run_id: str | None = None
    """The one run the event is for; None: any run of the workflow."""

    def to_document(self) -> Document:
        return {
            ID: f"{self.workflow}/{self.event_id}",
            WORKFLOW: self.workflow,
            NAME: self.name,
            EVENT_ID: self.event_id,
            PAYLOAD: self.payload,
            SENT_AT: self.sent_at,
            EXPIRE_AT: self.sent_at + KEPT_AT_MOST,
            **({} if self.run_id is None else {RUN_ID: self.run_id}),
        }

    @classmethod
    def from_document(cls, document: Document) -> SentEvent:
        return cls(
            workflow=document[WORKFLOW],
            name=document[NAME],
            event_id=document[EVENT_ID],
            payload=document.get(PAYLOAD),
            sent_at=document[SENT_AT],
            run_id=document.get(RUN_ID),
        )


def sent_event_filter(workflow: str, event_id: str) -> Document:
    return {ID: f"{workflow}/{event_id}"}


def kept_query(workflow: str, name: str, run_id: str, sent_since: datetime) -> Document:
    """The events of ``name`` kept for run ``run_id`` of ``workflow`` sent since ``sent_since``:
    those sent to the workflow, and those sent to that run."""
    return {
        WORKFLOW: workflow,
        NAME: name,
        SENT_AT: {"$gte": sent_since},
        "$or": [{RUN_ID: {"$exists": False}}, {RUN_ID: run_id}],
    }
