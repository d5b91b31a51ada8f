"""Callback tokens: what an outside system is given to complete one attempt of a callback job
(``runtime.service.callbacks``). Standard library only.

A token names its attempt (workflow, run, job, attempt) in the clear and proves itself by a MAC of that
attempt under the control plane's secret key (``runtime.documents.signatures``, made by the
``secrets`` module): nothing about it is stored, nobody without the key can make one, and one
attempt's token says nothing about another's. The job's code gets its attempt's token with its
dispatch; operators, who hold the key, can show the token of a job that waits without code. A
token is refused once its attempt is no longer the job's current, waiting one.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from dataclasses import dataclass

from runtime.documents.signatures import StatusKeys

TOKEN_PREFIX = "cb1"
"""The version of the token's shape, its first part."""

CALLBACK_TOKEN = "callback_token"
"""The field of a callback job's event (``runtime.job.JobEvent``) that holds its attempt's token."""


@dataclass(frozen=True)
class CallbackAttempt:
    """The attempt a token names."""

    workflow: str
    """Its run's workflow: where a client that goes through the starters sends the completion."""
    run_id: str
    job: str
    attempt: int


def callback_token(keys: StatusKeys, workflow: str, run_id: str, job: str, attempt: int) -> str:
    """The token of the attempt: ``cb1.<attempt, base64url JSON>.<MAC, base64url>``."""
    named = CallbackAttempt(workflow=workflow, run_id=run_id, job=job, attempt=attempt)
    return f"{TOKEN_PREFIX}.{_encode(_identity(named))}.{_encode(_mac(keys, named))}"


def token_attempt(token: object) -> CallbackAttempt:
    """The attempt ``token`` names; ``ValueError`` says why it is no token (its MAC unchecked)."""
    if not isinstance(token, str):
        raise ValueError(f"a callback token is a string, got {type(token).__name__}")
    parts = token.strip().split(".")
    if len(parts) != 3 or parts[0] != TOKEN_PREFIX:
        raise ValueError("not a callback token: it has the shape cb1.<attempt>.<signature>")
    try:
        named = json.loads(_decode(parts[1]))
    except (ValueError, binascii.Error):
        raise ValueError("not a callback token: its attempt part does not decode") from None
    if (
        not isinstance(named, list)
        or len(named) != 4
        or not all(isinstance(part, str) for part in named[:3])
        or isinstance(named[3], bool)
        or not isinstance(named[3], int)
    ):
        raise ValueError("not a callback token: its attempt part is not [workflow, run, job, attempt]")
    return CallbackAttempt(workflow=named[0], run_id=named[1], job=named[2], attempt=named[3])


def is_authentic(keys: StatusKeys, token: str) -> bool:
    """Whether ``token`` was made with ``keys`` for the attempt it names."""
    try:
        named = token_attempt(token)
        given = _decode(token.strip().split(".")[2])
    except (ValueError, binascii.Error):
        return False
    return hmac.compare_digest(_mac(keys, named), given)


def _identity(named: CallbackAttempt) -> bytes:
    return json.dumps(
        [named.workflow, named.run_id, named.job, named.attempt], separators=(",", ":")
    ).encode()


def _mac(keys: StatusKeys, named: CallbackAttempt) -> bytes:
    return hmac.new(keys.secret, b"callback:" + _identity(named), hashlib.sha256).digest()


def _encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
