"""The retry policy's arithmetic: how long to wait before the next attempt, and whether a
failure's type is retried at all. Pure; the engine calls it while deciding on a failure.

Standard library only: the orchestrator imports it inside Lambda.
"""

from __future__ import annotations

import hashlib
import random
import re

from runtime.definition.model import RetryPolicy

LAMBDA_TIMEOUT = "Lambda.Timeout"
"""The error type of an attempt Lambda stopped at its timeout (reported to the on-failure
destination)."""
LAMBDA_ERROR = "Lambda.Error"
"""The error type of any other invocation Lambda gave up on."""

LAMBDA_GAVE_UP = "Lambda gave up on the invocation"
"""How the error of an on-failure record begins (``runtime.documents.envelopes.parse_failure_record``)."""

_TYPE_NAME = re.compile(r"^([A-Za-z_][A-Za-z0-9_.]*):")


def retry_delay(policy: RetryPolicy, failures: int, rng: random.Random) -> float:
    """Seconds to wait after the ``failures``-th failed attempt of a retry budget (from 1) before
    the next: ``min(max_delay, delay * backoff ** (failures - 1))``, or with full jitter a uniform
    draw between 0 and that."""
    ceiling = min(policy.max_delay, policy.delay * policy.backoff ** (failures - 1))
    return rng.uniform(0, ceiling) if policy.jitter == "full" else ceiling


def jitter_source(run_id: str, job: str, attempt: int) -> random.Random:
    """The random draws of one failed attempt, seeded by the attempt itself: a redelivered failure
    is decided again with the same delay, so the decision stays a function of its inputs."""
    seed = hashlib.sha256(f"{run_id}/{job}/{attempt}".encode()).digest()
    return random.Random(int.from_bytes(seed[:8], "big"))


def error_type(error: str) -> str:
    """The type name of a recorded failure: ``Lambda.Timeout`` or ``Lambda.Error`` for what Lambda
    reported, else the exception class name the job wrapper wrote before the first colon."""
    if error.startswith(LAMBDA_GAVE_UP):
        return LAMBDA_TIMEOUT if "timed out" in error.lower() else LAMBDA_ERROR
    match = _TYPE_NAME.match(error)
    return match.group(1) if match else "Error"


def is_retried(policy: RetryPolicy, error: str) -> bool:
    """Whether the policy's ``on`` covers the failure (an empty ``on`` covers every type)."""
    return not policy.on or error_type(error) in policy.on
