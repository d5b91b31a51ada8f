"""The notifier's claim documents, in ``notifications``: one per status document it reports, so
that a status is announced once however often its event is delivered. A sibling of
``runtime.documents.run``, which owns the status documents these claims are keyed by."""

from __future__ import annotations

from runtime.documents.run import INDEX, STATUS_KEY, Document, StatusEvent

NOTIFICATION_STATE, CLAIMED_AT, SENT_AT = "state", "claimedAt", "sentAt"


def status_identity(event: StatusEvent) -> Document:
    """The ``STATUS_KEY`` fields of ``event`` but the item's index (items are not notified): the
    same for every delivery of one status document, so it keys the notifier's claim on it."""
    values = (event.run_id, event.phase, event.job, event.status.value, event.attempt)
    return dict(zip([key for key in STATUS_KEY if key != INDEX], values, strict=True))
