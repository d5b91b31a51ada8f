"""The ``StatusHandoff`` port's AWS adapter (``delivery: fast``): the job function invokes the
orchestrator asynchronously (``InvocationType=Event``) with the id of the report it has just
recorded, so the orchestrator applies it without waiting for the Atlas trigger and EventBridge.

The call is bounded and never retried by the SDK: Lambda answers an asynchronous invocation once
it has queued the event (the orchestrator's work is not waited for), and a slow or failed call
costs the job at most ``HANDOFF_TIMEOUT_SECONDS`` per try, the trigger delivering the report
anyway."""

from __future__ import annotations

import json
from typing import Any

from runtime.documents.envelopes import handoff_payload
from runtime.ports import HandoffFailed

HANDOFF_TIMEOUT_SECONDS = 2
"""Connecting to Lambda and its answer, each at most this long: an asynchronous invocation is
answered once queued, in tens of milliseconds."""

ACCEPTED = 202
"""Lambda's answer to an asynchronous invocation it has queued."""


def handoff_client(region: str | None = None) -> Any:
    """A Lambda client that waits a bounded time and makes one try: the trigger is the retry."""
    import boto3
    from botocore.config import Config

    config = Config(
        connect_timeout=HANDOFF_TIMEOUT_SECONDS,
        read_timeout=HANDOFF_TIMEOUT_SECONDS,
        retries={"total_max_attempts": 1},
    )
    return boto3.client("lambda", region_name=region, config=config)


class LambdaHandoff:
    """Hands a recorded status's id to the orchestrator function ``function``."""

    def __init__(self, lambda_client: Any, function: str) -> None:
        self.client = lambda_client
        self.function = function

    def hand_off(self, status_id: str) -> None:
        try:
            response = self.client.invoke(
                FunctionName=self.function,
                InvocationType="Event",
                Payload=json.dumps(handoff_payload(status_id)).encode(),
            )
        except Exception as exc:  # botocore's ClientError, timeouts and connection errors alike
            raise HandoffFailed(f"could not invoke {self.function} with status {status_id!r}: {exc}") from exc
        if response.get("StatusCode") != ACCEPTED:
            raise HandoffFailed(f"invoking {self.function} returned status {response.get('StatusCode')}")
