"""The ``FunctionInvoker`` port's AWS adapter: an ``invoke`` job calls an existing Lambda function
synchronously (``RequestResponse``) and waits for its answer.

botocore must not retry the call (a retried invocation runs the function again, which the job's
retry policy decides, not the SDK) and must wait as long as the function may run (Lambda's 15
minutes, bounded by the job function's own timeout)."""

from __future__ import annotations

from typing import Any

from runtime.ports import Invocation, InvokeRefused

READ_TIMEOUT_SECONDS = 900
"""Lambda's longest run: the job function's own timeout ends the wait before this does."""


def invoke_client(region: str | None = None) -> Any:
    """A Lambda client that neither retries an invocation nor gives up on a long one."""
    import boto3
    from botocore.config import Config

    config = Config(read_timeout=READ_TIMEOUT_SECONDS, retries={"total_max_attempts": 1})
    return boto3.client("lambda", region_name=region, config=config)


class LambdaInvoker:
    def __init__(self, lambda_client: Any) -> None:
        self.client = lambda_client

    def invoke(self, function: str, payload: bytes) -> Invocation:
        try:
            response = self.client.invoke(
                FunctionName=function, InvocationType="RequestResponse", Payload=payload
            )
        except Exception as exc:  # botocore's ClientError and connection errors alike
            error = getattr(exc, "response", {}).get("Error", {})
            raise InvokeRefused(str(error.get("Code") or type(exc).__name__), str(exc)) from exc
        metadata = response.get("ResponseMetadata", {})
        return Invocation(
            payload=response["Payload"].read(),
            function_error=response.get("FunctionError"),
            request_id=metadata.get("RequestId"),
        )
