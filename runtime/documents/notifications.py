"""The notifier's claim documents, in ``notifications``: one per status document it reports, so
that a status is announced once however often its event is delivered. A sibling of
``runtime.documents.run``, which owns the status documents these claims are keyed by."""

from __future__ import annotations

from datetime import datetime, timedelta

from runtime.documents import ID
from runtime.documents.run import INDEX, REQUEST_ID, SLOT, STATUS_KEY, Document, StatusEvent
from runtime.statuses import NotificationState

NOTIFICATION_STATE, CLAIMED_AT, SENT_AT = "state", "claimedAt", "sentAt"


def status_identity(event: StatusEvent) -> Document:
    """The ``STATUS_KEY`` fields of ``event`` but the item's index (items are not notified): the
    same for every delivery of one status document, so it keys the notifier's claim on it."""
    values = (event.run_id, event.phase, event.job, event.status.value, event.attempt)
    return dict(zip([key for key in STATUS_KEY if key not in (INDEX, SLOT)], values, strict=True))


def claim_filter(event: StatusEvent) -> Document:
    """Selects the claim on ``event``'s status document."""
    return {ID: status_identity(event)}


def sending_claim(request_id: str, now: datetime) -> Document:
    """The fields of a claim that request ``request_id`` is sending now."""
    return {NOTIFICATION_STATE: NotificationState.SENDING.value, REQUEST_ID: request_id, CLAIMED_AT: now}


def new_claim(event: StatusEvent, request_id: str, now: datetime) -> Document:
    return claim_filter(event) | sending_claim(request_id, now)


def stale_claim(
    event: StatusEvent, request_id: str, now: datetime, retry_after: timedelta, lease: timedelta
) -> Document:
    """Selects a claim on ``event`` still ``sending`` that this request made ``retry_after`` ago
    (Lambda's retry of a handling that died) or anyone made ``lease`` ago."""
    return claim_filter(event) | {
        NOTIFICATION_STATE: NotificationState.SENDING.value,
        "$or": [
            {REQUEST_ID: request_id, CLAIMED_AT: {"$lte": now - retry_after}},
            {CLAIMED_AT: {"$lte": now - lease}},
        ],
    }


def own_claim(event: StatusEvent, request_id: str) -> Document:
    """Selects the claim on ``event`` that request ``request_id`` is still sending."""
    return claim_filter(event) | {NOTIFICATION_STATE: NotificationState.SENDING.value, REQUEST_ID: request_id}


def claim_sent(now: datetime) -> Document:
    return {NOTIFICATION_STATE: NotificationState.SENT.value, SENT_AT: now}
