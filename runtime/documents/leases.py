"""The job wrapper's leases in ``leases``: which invocation may run a job attempt's code
(docs/architecture.md, "Invariants", 3). Standard library only.

A lease is one document, inserted by the invocation that claims the attempt, and renewed by
*inserting* renewals beside it, never by updating it: a job's database role may insert leases
but not update them, so no job's code can expire or extend another attempt's lease. A renewal
counts only when it names the lease's token and, where statuses are signed, carries a MAC by the
attempt's key (``runtime.documents.signatures.renewal_mac``), which only that attempt's
invocations and the control plane can make; the lease's expiry is the latest such renewal's."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from runtime.documents import ID, WORKFLOW
from runtime.documents.run import Document, attempt_id
from runtime.documents.signatures import renewal_mac, renewal_mac_matches

OWNER, TOKEN, EXPIRES_AT = "owner", "token", "expiresAt"
RENEWS, MAC = "renews", "mac"
"""A renewal's fields besides ``token``, ``expiresAt`` and ``workflow``: the lease it renews, and
its MAC."""


@dataclass(frozen=True, kw_only=True)
class Lease:
    """The claim of one job attempt (a document in ``leases``): the invocation that may run its
    code, for as long as it keeps renewing ``expires_at``. Never taken over: once it expires
    without a terminal report, the attempt is recorded failed."""

    lease_id: str
    owner: str
    """The Lambda request id of the invocation holding it."""
    token: str
    """Names that one invocation: a duplicate delivery may carry the same request id."""
    expires_at: datetime
    workflow: str
    """The run's workflow, by which its read view holds the lease (``runtime.documents.views``)."""

    def to_document(self) -> Document:
        return {
            ID: self.lease_id,
            OWNER: self.owner,
            TOKEN: self.token,
            EXPIRES_AT: self.expires_at,
            WORKFLOW: self.workflow,
        }


def lease_id(run_id: str, job: str, attempt: int, index: int | None = None, slot: str | None = None) -> str:
    """The lease of one attempt; with its ``slot`` when statuses are signed, so only a holder of
    the attempt's key can take it (``runtime.documents.signatures.attempt_slot``)."""
    held = attempt_id(run_id, job, attempt, index)
    return held if slot is None else f"{held}/{slot}"


def lease_from_document(document: Mapping[str, Any]) -> Lease:
    expires_at: datetime = document[EXPIRES_AT]
    return Lease(
        lease_id=document[ID],
        owner=document[OWNER],
        token=document[TOKEN],
        expires_at=expires_at if expires_at.tzinfo else expires_at.replace(tzinfo=UTC),
        workflow=document.get(WORKFLOW, ""),
    )


def lease_and_renewals(lease: str) -> Document:
    """Selects a lease and every renewal of it."""
    return {"$or": [{ID: lease}, {RENEWS: lease}]}


def lease_renewal(lease: Lease, attempt_key: str | None) -> Document:
    """The renewal of ``lease`` until its ``expires_at``, to insert; MAC'd with ``attempt_key``
    when the attempt has one. Its expiry is kept to the millisecond, as BSON keeps dates, so the
    MAC covers exactly what a reader reads back."""
    expires_at = _to_milliseconds(lease.expires_at)
    renewal: Document = {
        RENEWS: lease.lease_id,
        TOKEN: lease.token,
        EXPIRES_AT: expires_at,
        WORKFLOW: lease.workflow,
    }
    if attempt_key is not None:
        renewal[MAC] = renewal_mac(attempt_key, lease.lease_id, lease.token, _epoch_ms(expires_at))
    return renewal


def lease_from_documents(
    lease_id: str, documents: Iterable[Mapping[str, Any]], attempt_key: str | None
) -> Lease | None:
    """The lease ``lease_id`` as its documents hold it (``lease_and_renewals``), expiring at its
    latest authentic renewal: one for the lease's token and, with ``attempt_key``, MAC'd by it.
    Others (a renewal anyone could have inserted) are ignored. None when it was never taken."""
    documents = list(documents)
    held = next((document for document in documents if document.get(ID) == lease_id), None)
    if held is None:
        return None
    lease = lease_from_document(held)
    for renewal in documents:
        if renewal.get(RENEWS) != lease_id or renewal.get(TOKEN) != lease.token:
            continue
        expires_at = _utc(renewal.get(EXPIRES_AT))
        if expires_at is None or expires_at <= lease.expires_at:
            continue
        mac = renewal.get(MAC)
        if attempt_key is not None and not (
            isinstance(mac, str)
            and renewal_mac_matches(attempt_key, lease_id, lease.token, _epoch_ms(expires_at), mac)
        ):
            continue
        lease = replace(lease, expires_at=expires_at)
    return lease


def _utc(value: object) -> datetime | None:
    if not isinstance(value, datetime):
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _to_milliseconds(moment: datetime) -> datetime:
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def _epoch_ms(moment: datetime) -> int:
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return round(aware.timestamp() * 1000)
