"""IAM mode of the connection code (runtime/store/connection.py): the client options an IAM-mode
environment builds, the job database role's assumed credentials and their renewal. No server:
the clients are built without connecting, STS and Secrets Manager are stubbed."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from pymongo.errors import InvalidOperation

from runtime.clock import utcnow
from runtime.errors import StoreError
from runtime.store import connection
from runtime.store.connection import (
    AWS_AUTH_SOURCE,
    AWS_MECHANISM,
    CREDENTIALS_MARGIN,
    client_target,
    target_client,
)

CLUSTER = "mongodb://cluster0.example.net:27017/?tls=true"
ROLE = "arn:aws:iam::123456789012:role/Workflow-w-JobDatabaseRole"
IAM_ENV = {"MONGODB_AUTH": "MONGODB-AWS", "MONGODB_URI": CLUSTER}


def _client(service: str) -> Any:
    return boto3.client(service, region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="x")


@pytest.fixture(autouse=True)
def _fresh_caches(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(connection, "_assumed", {})
    monkeypatch.setattr(connection, "_clients", {})
    yield
    for client in connection._clients.values():
        client.close()


def _credentials(key: str, expires_in: timedelta) -> dict[str, Any]:
    return {
        "Credentials": {
            "AccessKeyId": key,
            "SecretAccessKey": f"secret-of-{key}",
            "SessionToken": f"token-of-{key}",
            "Expiration": utcnow() + expires_in,
        }
    }


def test_an_iam_environment_signs_in_with_mongodb_aws_and_reads_no_secret() -> None:
    secrets = _client("secretsmanager")
    with Stubber(secrets):  # no response queued: reading any secret would fail the test
        target = client_target(IAM_ENV | {"MONGODB_SECRET_ARN": "ignored"}, secrets)
    assert target.uri == CLUSTER
    assert dict(target.options) == {"authMechanism": AWS_MECHANISM, "authSource": AWS_AUTH_SOURCE}

    client = target_client(target)
    credentials = client.options.pool_options._credentials
    assert credentials is not None
    assert (credentials.mechanism, credentials.source, credentials.username) == (
        "MONGODB-AWS",
        "$external",
        None,
    )


def test_a_job_signs_in_as_the_job_database_role_it_assumes() -> None:
    sts = _client("sts")
    with Stubber(sts) as stub:
        stub.add_response(
            "assume_role",
            _credentials("AKIAJOBDATABASE01", timedelta(hours=1)),
            {"RoleArn": ROLE, "RoleSessionName": "workflows-database"},
        )
        target = client_target(IAM_ENV | {"MONGODB_ROLE_ARN": ROLE}, sts_client=sts)
        again = client_target(IAM_ENV | {"MONGODB_ROLE_ARN": ROLE}, sts_client=sts)  # cached: no call
        stub.assert_no_pending_responses()
    assert again == target
    credentials = target_client(target).options.pool_options._credentials
    assert credentials is not None
    assert credentials.mechanism == "MONGODB-AWS"
    assert (credentials.username, credentials.password) == (
        "AKIAJOBDATABASE01",
        "secret-of-AKIAJOBDATABASE01",
    )
    assert credentials.mechanism_properties.aws_session_token == "token-of-AKIAJOBDATABASE01"


def test_credentials_near_their_expiry_are_renewed_and_the_old_client_is_closed() -> None:
    sts = _client("sts")
    env = IAM_ENV | {"MONGODB_ROLE_ARN": ROLE}
    with Stubber(sts) as stub:
        stub.add_response(
            "assume_role", _credentials("AKIAOLDCREDENTIAL", CREDENTIALS_MARGIN - timedelta(seconds=1))
        )
        stub.add_response("assume_role", _credentials("AKIANEWCREDENTIAL", timedelta(hours=1)))
        old = target_client(client_target(env, sts_client=sts))
        new = target_client(client_target(env, sts_client=sts))
        stub.assert_no_pending_responses()
    assert new is not old
    new_credentials = new.options.pool_options._credentials
    assert new_credentials is not None
    assert new_credentials.username == "AKIANEWCREDENTIAL"
    assert list(connection._clients.values()) == [new]
    with pytest.raises(InvalidOperation, match="after close"):
        old.admin.command("ping")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        pytest.param({"MONGODB_AUTH": "MONGODB-AWS"}, "needs MONGODB_URI", id="no-address"),
        pytest.param(
            {"MONGODB_AUTH": "MONGODB-AWS", "MONGODB_URI": "mongodb+srv://user:pw@cluster0.example.net"},
            "carries a user name or password",
            id="password-in-address",
        ),
        pytest.param(
            {"MONGODB_AUTH": "SCRAM-SHA-256", "MONGODB_URI": CLUSTER}, "must be MONGODB-AWS", id="other"
        ),
    ],
)
def test_a_bad_iam_environment_is_a_store_error_that_never_shows_a_password(
    env: dict[str, str], message: str
) -> None:
    with pytest.raises(StoreError, match=message) as raised:
        client_target(env)
    assert "pw" not in str(raised.value)


def test_a_role_that_cannot_be_assumed_is_a_store_error_naming_it() -> None:
    sts = _client("sts")
    with Stubber(sts) as stub:
        stub.add_client_error("assume_role", "AccessDenied", "not allowed")
        with pytest.raises(StoreError, match=f"could not assume the database role {ROLE}"):
            client_target(IAM_ENV | {"MONGODB_ROLE_ARN": ROLE}, sts_client=sts)


def test_the_job_handler_reads_the_secret_once_per_process_and_renews_a_database_role_per_invocation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from runtime.handlers import job as job_handler

    calls: list[dict[str, str]] = []

    def fake_store(environ: Any, *args: Any, **options: Any) -> str:
        calls.append(options)
        return "store"

    monkeypatch.setattr(job_handler, "store_from_env", fake_store)
    monkeypatch.setattr(
        job_handler, "run_attempt", lambda *args, **kwargs: type("R", (), {"outcome": "x", "error": None})
    )
    monkeypatch.setattr(job_handler, "_state", {})
    monkeypatch.delenv("MONGODB_ROLE_ARN", raising=False)
    for _ in range(3):
        job_handler.handler({}, None)
    # The job wrapper's store: it reads through its workflow's views alone.
    assert calls == [{"max_pool_size": job_handler.STORE_CONNECTIONS, "job": True}]

    monkeypatch.setenv("MONGODB_ROLE_ARN", ROLE)
    for _ in range(2):
        job_handler.handler({}, None)
    assert len(calls) == 3
