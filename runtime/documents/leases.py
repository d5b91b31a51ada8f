"""The job wrapper's leases, one document per job attempt in ``leases``: which invocation may
run the attempt's code (docs/architecture.md, "Invariants", 3). Standard library only."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from runtime.documents import ID, WORKFLOW
from runtime.documents.run import Document, attempt_id

OWNER, TOKEN, EXPIRES_AT = "owner", "token", "expiresAt"


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


def lease_filter(lease: str, token: str | None = None) -> Document:
    """Selects one lease (while ``token`` holds it)."""
    return {ID: lease} | ({} if token is None else {TOKEN: token})


def lease_renewed(expires_at: datetime) -> Document:
    return {EXPIRES_AT: expires_at}
