"""Callback tokens: what an outside system is given to complete one attempt of a callback job
(``runtime.service.callbacks``). Standard library only.

A token names its attempt (run, job, attempt) in the clear and proves itself by a MAC of that
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

    run_id: str
    job: str
    attempt: int


def callback_token(keys: StatusKeys, run_id: str, job: str, attempt: int) -> str:
    """The token of the attempt: ``cb1.<attempt, base64url JSON>.<MAC, base64url>``."""
    named = _encode(json.dumps([run_id, job, attempt], separators=(",", ":")).encode())
    return f"{TOKEN_PREFIX}.{named}.{_encode(_mac(keys, run_id, job, attempt))}"


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
        or len(named) != 3
        or not all(isinstance(part, str) for part in named[:2])
        or isinstance(named[2], bool)
        or not isinstance(named[2], int)
    ):
        raise ValueError("not a callback token: its attempt part is not [run, job, attempt]")
    return CallbackAttempt(run_id=named[0], job=named[1], attempt=named[2])


def is_authentic(keys: StatusKeys, token: str) -> bool:
    """Whether ``token`` was made with ``keys`` for the attempt it names."""
    try:
        named = token_attempt(token)
        given = _decode(token.strip().split(".")[2])
    except (ValueError, binascii.Error):
        return False
    return hmac.compare_digest(_mac(keys, named.run_id, named.job, named.attempt), given)


def _mac(keys: StatusKeys, run_id: str, job: str, attempt: int) -> bytes:
    identity = json.dumps(["callback", run_id, job, attempt]).encode()
    return hmac.new(keys.secret, identity, hashlib.sha256).digest()


def _encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
