"""Who wrote a status: the signature every ``statuses`` document carries, and the keys behind it
(docs/architecture.md, "Trust"). Standard library only.

The control plane holds one secret key (``StatusKeys``). Each job attempt gets its own key with
its dispatch, derived from that secret and the attempt's identity (run, job, attempt, item), so
the key of one attempt signs nothing but that attempt's reports, and job code never sees the
secret. Operators and system functions sign with the secret itself. A status is authentic when
its signature checks out for its signer and that signer may write it: an attempt's key only the
attempt's own ``started``, ``success``, ``failed`` and ``not_run``; the control key anything.

The signature covers the document as it is recorded, minus its ``_id`` and date, in a canonical
JSON form that survives the Atlas trigger's JSON (which prints whole doubles as integers), so a
document reads the same to the orchestrator as to the writer that signed it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from runtime.documents import ID
from runtime.statuses import ATTEMPT_STATUSES, StatusName

Signer = Literal["attempt", "control"]
ATTEMPT: Signer = "attempt"
CONTROL: Signer = "control"

AUTH, BY, MAC, SLOT = "auth", "by", "mac", "slot"
"""The ``auth`` field of a status document: ``{by: attempt|control, mac: <hex>}``."""

KEY_BYTES = 32

_SLOT_LENGTH = 20


@dataclass(frozen=True)
class Signature:
    by: Signer
    mac: str

    def to_document(self) -> dict[str, str]:
        return {BY: self.by, MAC: self.mac}


def signature_from_document(value: object) -> Signature | None:
    """The ``auth`` field as recorded; None when it is missing or not a signature's shape (such a
    status is then unsigned, and rejected where signatures are checked)."""
    if not isinstance(value, Mapping):
        return None
    by, mac = value.get(BY), value.get(MAC)
    if by not in (ATTEMPT, CONTROL) or not isinstance(mac, str):
        return None
    return Signature(by=by, mac=mac)


@dataclass(frozen=True, repr=False)
class StatusKeys:
    """The control plane's secret key. Never in an environment variable of a deployed function,
    never in a job's event; ``repr`` does not show it."""

    secret: bytes

    def __post_init__(self) -> None:
        if len(self.secret) < KEY_BYTES:
            raise ValueError(f"a status signing key has at least {KEY_BYTES} bytes, got {len(self.secret)}")

    def __repr__(self) -> str:
        return "StatusKeys(<secret>)"

    @classmethod
    def generate(cls) -> StatusKeys:
        return cls(secrets.token_bytes(KEY_BYTES))

    @classmethod
    def from_text(cls, text: str, where: str) -> StatusKeys:
        """A key written as hex (as ``generate`` and the deployed secret hold it)."""
        try:
            return cls(bytes.fromhex(text.strip()))
        except ValueError as exc:
            raise ValueError(
                f"{where}: not a status signing key of {KEY_BYTES * 2} or more hex digits"
            ) from exc

    def to_text(self) -> str:
        return self.secret.hex()

    def attempt_key(self, run_id: str, job: str, attempt: int, index: int | None) -> str:
        """The key handed to one attempt with its dispatch (hex)."""
        identity = json.dumps(["attempt", run_id, job, attempt, index]).encode()
        return hmac.new(self.secret, identity, hashlib.sha256).hexdigest()


def is_attempt_key(
    keys: StatusKeys, run_id: str, job: str, attempt: int, index: int | None, given: str | None
) -> bool:
    """Whether ``given`` is the key that attempt was dispatched with: a record of its invocation
    (Lambda's on-failure record carries the event it was invoked with) proves itself by it."""
    return given is not None and hmac.compare_digest(keys.attempt_key(run_id, job, attempt, index), given)


def attempt_slot(attempt_key: str) -> str:
    """The part of an attempt's ids (its terminal report's, its lease's) that only holders of its
    key can name, so no other writer can take them first."""
    return hmac.new(bytes.fromhex(attempt_key), b"slot", hashlib.sha256).hexdigest()[:_SLOT_LENGTH]


def renewal_mac(attempt_key: str, lease_id: str, token: str, expires_ms: int) -> str:
    """The MAC of a lease's renewal (``runtime.documents.leases``) by its attempt's key: only the
    attempt's invocations, and the control plane, can extend its lease."""
    message = json.dumps(["renewal", lease_id, token, expires_ms]).encode()
    return hmac.new(bytes.fromhex(attempt_key), message, hashlib.sha256).hexdigest()


def renewal_mac_matches(attempt_key: str, lease_id: str, token: str, expires_ms: int, given: str) -> bool:
    return hmac.compare_digest(renewal_mac(attempt_key, lease_id, token, expires_ms), given)


def canonical(document: Mapping[str, Any]) -> bytes:
    """The bytes a status document's signature covers."""
    content = {key: value for key, value in document.items() if key not in (ID, AUTH, "date")}
    return json.dumps(_normal(content), sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def _normal(value: Any) -> Any:
    # The trigger's JSON is JavaScript's: a double that holds a whole number prints as an integer.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, Mapping):
        return {str(key): _normal(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_normal(item) for item in value]
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat() if value.tzinfo else value.isoformat()
    return value


def mac(key: bytes, document: Mapping[str, Any]) -> str:
    return hmac.new(key, canonical(document), hashlib.sha256).hexdigest()


def sign_with_attempt_key(attempt_key: str, document: Mapping[str, Any]) -> Signature:
    return Signature(by=ATTEMPT, mac=mac(bytes.fromhex(attempt_key), document))


def sign_with_control_key(keys: StatusKeys, document: Mapping[str, Any]) -> Signature:
    return Signature(by=CONTROL, mac=mac(keys.secret, document))


def rejection(
    keys: StatusKeys,
    document: Mapping[str, Any],
    signature: Signature | None,
    status: StatusName,
    attempt_of: tuple[str, str, int, int | None] | None,
) -> str | None:
    """Why a status document is not authentic, or None when it is. ``attempt_of`` is the attempt
    the document reports on (run, job, attempt, item), None for a status of the whole run."""
    if signature is None:
        return "it is not signed"
    if signature.by == CONTROL:
        expected = mac(keys.secret, document)
    elif status not in ATTEMPT_STATUSES or attempt_of is None:
        return f"a job attempt's key may not sign '{status}'"
    else:
        expected = mac(bytes.fromhex(keys.attempt_key(*attempt_of)), document)
    if not hmac.compare_digest(expected, signature.mac):
        return f"its {signature.by} signature does not match its content"
    return None


LOCAL_KEYS_COLLECTION = "status_keys"
"""Where a local control plane (the dev server, ``run``) keeps its key, for the CLI and console
on the same database. Never read by a deployed function: those read the key's secret."""
LOCAL_KEY_ID, KEY = "local", "key"


def local_key_document(keys: StatusKeys) -> dict[str, str]:
    return {ID: LOCAL_KEY_ID, KEY: keys.to_text()}


def local_key_filter() -> dict[str, str]:
    return {ID: LOCAL_KEY_ID}


def keys_from_local_document(document: Mapping[str, Any] | None) -> StatusKeys | None:
    if document is None or not isinstance(document.get(KEY), str):
        return None
    return StatusKeys.from_text(document[KEY], f"{LOCAL_KEYS_COLLECTION} document {LOCAL_KEY_ID!r}")
