"""Reading a Secrets Manager secret's string, as the functions do at a cold start."""

from __future__ import annotations

from typing import Any

from runtime.errors import StoreError


def read_secret(arn: str, what: str, secrets_client: Any | None = None) -> str:
    """The string of the secret ``arn`` (``what`` names it in the error)."""
    if secrets_client is None:
        import boto3  # the Lambda runtime ships boto3; imported here to keep local start-up light

        secrets_client = boto3.client("secretsmanager")
    try:
        return str(secrets_client.get_secret_value(SecretId=arn)["SecretString"])
    except Exception as exc:  # botocore raises many unrelated types; all mean the same here
        raise StoreError(f"could not read {what} {arn}: {exc}") from exc
