"""Where the store connects and as whom, and one client per process, reused across invocations
as Lambda reuses the process.

Three ways (docs/deploy.md, "Database access"): ``MONGODB_URI`` alone (local runs and tests);
IAM mode, ``MONGODB_AUTH=MONGODB-AWS`` with ``MONGODB_URI`` the cluster's address without
credentials, signing in as the function's own role or, with ``MONGODB_ROLE_ARN``, as a role it
assumes (the job functions' job database role); password mode, the Secrets Manager secret named
by ``MONGODB_SECRET_ARN``.

A Lambda process handles one invocation at a time, and a warm one keeps its connections while it
waits for the next: each function's pool is sized for the threads that use the store at once
(``store_from_env``'s ``max_pool_size``), opens nothing ahead (``minPoolSize=0``) and closes what
sat idle (``maxIdleTimeMS``). Atlas counts every one of them against the cluster's limit
(docs/deploy.md, "Connections and the Atlas tier").
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import pymongo

from runtime import contracts
from runtime.clock import as_utc, utcnow
from runtime.documents.run import Document
from runtime.errors import StoreError
from runtime.store.mongo import MongoStore
from runtime.store.secrets import read_secret
from runtime.store.settings import StoreSettings
from runtime.store.status_keys import function_keys

MAX_IDLE_MS = 60_000
"""A pooled connection idle this long is closed instead of reused (pymongo checks when the pool
is next used): a process woken after a quiet minute does not keep a connection per past burst."""

AWS_MECHANISM = contracts.MONGODB_AWS_MECHANISM
AWS_AUTH_SOURCE = contracts.MONGODB_AWS_AUTH_SOURCE

CREDENTIALS_MARGIN = timedelta(minutes=20)
"""Assumed credentials are renewed once they have less than this left: longer than a job
function's longest timeout (15 minutes), so a connection opened during an invocation always
signs in with credentials that are still valid."""

ASSUMED_ROLE_SESSION = "workflows-database"

_clients: dict[tuple[str, int | None, tuple[tuple[str, Any], ...]], pymongo.MongoClient[Document]] = {}
_clients_lock = threading.Lock()
_indexed: set[tuple[str, str, str, str]] = set()
_assumed: dict[str, tuple[dict[str, Any], datetime]] = {}
"""Role ARN -> the client options carrying its assumed credentials, and when those expire."""


@dataclass(frozen=True)
class ClientTarget:
    """What a ``MongoClient`` is built from: the connection string and the options beyond it."""

    uri: str
    options: Mapping[str, Any] = field(default_factory=dict)
    """Authentication options (IAM mode); empty when the URI says everything."""
    role_arn: str | None = None
    """The role whose assumed credentials are in ``options``, if any."""


def client_target(
    environ: Mapping[str, str], secrets_client: Any | None = None, sts_client: Any | None = None
) -> ClientTarget:
    """Where and as whom the functions connect, from their environment (see the module's doc)."""
    mechanism = environ.get(contracts.MONGODB_AUTH)
    if not mechanism:
        return ClientTarget(read_connection_string(environ, secrets_client))
    if mechanism != AWS_MECHANISM:
        raise StoreError(f"{contracts.MONGODB_AUTH} must be {AWS_MECHANISM} or unset, not {mechanism!r}")
    uri = environ.get(contracts.MONGODB_URI, "")
    if not uri.startswith(("mongodb://", "mongodb+srv://")):
        raise StoreError(
            f"{contracts.MONGODB_AUTH}={AWS_MECHANISM} needs {contracts.MONGODB_URI}, the cluster's "
            "mongodb+srv:// address without credentials"
        )
    if "@" in urlsplit(uri).netloc:
        raise StoreError(
            f"{contracts.MONGODB_URI} carries a user name or password; with {AWS_MECHANISM} the "
            "function signs in with its AWS credentials, so give the address alone"
        )
    options: dict[str, Any] = {"authMechanism": AWS_MECHANISM, "authSource": AWS_AUTH_SOURCE}
    role_arn = environ.get(contracts.MONGODB_ROLE_ARN)
    if role_arn:
        options |= _assumed_credentials(role_arn, sts_client)
    return ClientTarget(uri, options, role_arn or None)


def _assumed_credentials(role_arn: str, sts_client: Any | None) -> dict[str, Any]:
    """The role's credentials as client options, assumed again once they near their expiry."""
    cached = _assumed.get(role_arn)
    if cached is not None and cached[1] - utcnow() > CREDENTIALS_MARGIN:
        return cached[0]
    if sts_client is None:
        import boto3  # the Lambda runtime ships boto3

        sts_client = boto3.client("sts")
    try:
        credentials = sts_client.assume_role(RoleArn=role_arn, RoleSessionName=ASSUMED_ROLE_SESSION)[
            "Credentials"
        ]
    except Exception as exc:  # botocore raises many unrelated types; all mean the same here
        raise StoreError(f"could not assume the database role {role_arn}: {exc}") from exc
    options = {
        "username": credentials["AccessKeyId"],
        "password": credentials["SecretAccessKey"],
        "authMechanismProperties": {"AWS_SESSION_TOKEN": credentials["SessionToken"]},
    }
    expiration: datetime = credentials["Expiration"]
    _assumed[role_arn] = (options, as_utc(expiration) or expiration)
    return options


def read_connection_string(environ: Mapping[str, str], secrets_client: Any | None = None) -> str:
    """``MONGODB_URI`` (local runs) or the Secrets Manager secret named by
    ``MONGODB_SECRET_ARN``, whose string is the URI or JSON with a ``uri`` key."""
    uri = environ.get(contracts.MONGODB_URI)
    if uri:
        return uri
    arn = environ.get(contracts.MONGODB_SECRET_ARN)
    if not arn:
        raise StoreError("no MongoDB connection configured: set MONGODB_SECRET_ARN (or MONGODB_URI locally)")
    text = read_secret(arn, "the MongoDB secret", secrets_client).strip()
    if text.startswith("{"):
        try:
            text = json.loads(text)["uri"]
        except (ValueError, KeyError, TypeError) as exc:
            raise StoreError(f"the MongoDB secret {arn} is JSON without a 'uri' string") from exc
    if not text.startswith(("mongodb://", "mongodb+srv://")):
        raise StoreError(f"the MongoDB secret {arn} does not hold a mongodb:// connection string")
    return str(text)


def cached_client(
    uri: str, max_pool_size: int | None = None, options: Mapping[str, Any] | None = None
) -> pymongo.MongoClient[Document]:
    """Lambda reuses the process between invocations: so does the connection pool. A function
    gives ``max_pool_size``; local tools (CLI, console) keep pymongo's default pool. ``options``:
    the authentication options of IAM mode."""
    key = (uri, max_pool_size, tuple(sorted((name, repr(value)) for name, value in (options or {}).items())))
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            pool = {} if max_pool_size is None else function_pool(max_pool_size)
            client = pymongo.MongoClient(
                uri, tz_aware=True, appname="mongo-lambda-workflows", **pool, **dict(options or {})
            )
            _clients[key] = client
        return client


def function_pool(max_pool_size: int) -> dict[str, Any]:
    """pymongo's pool options for a function whose ``max_pool_size`` threads use the store at once."""
    if max_pool_size < 1:
        raise ValueError(f"a pool needs at least one connection, got {max_pool_size}")
    return {"maxPoolSize": max_pool_size, "minPoolSize": 0, "maxIdleTimeMS": MAX_IDLE_MS}


def target_client(target: ClientTarget, max_pool_size: int | None = None) -> pymongo.MongoClient[Document]:
    """The client for ``target``. A client whose assumed credentials were renewed is closed: a
    function runs one invocation at a time, and the one that used it has ended."""
    client = cached_client(target.uri, max_pool_size, target.options)
    if target.role_arn is not None:
        with _clients_lock:
            for key, other in list(_clients.items()):
                if other is not client and key[0] == target.uri:
                    del _clients[key]
                    other.close()
    return client


def store_from_env(
    environ: Mapping[str, str] = os.environ,
    secrets_client: Any | None = None,
    *,
    max_pool_size: int,
    create_indexes: bool = False,
    workflow: str | None = None,
    sts_client: Any | None = None,
    keyed: bool = False,
    job: bool = False,
) -> MongoStore:
    """The store a Lambda handler uses, with at most ``max_pool_size`` connections. Cheap to call
    per invocation: the client is cached, and assumed credentials are renewed only as they near
    their expiry.

    Only the starter and the reconciler pass ``create_indexes`` (once per process): a run exists
    only once the starter created it, on a process that ensured the indexes first (or the CLI,
    the console or ``runtime.client``, which ensure them too), and the reconciler's schedule
    brings a deploy's new indexes within one period even while no run starts. Every other
    function's cold start costs no round trip for them, and needs no right to create them.

    ``workflow``: with ``create_indexes``, that workflow's read views are made too (the
    starter's and the reconciler's own workflow), so its jobs find them.

    ``keyed``: the function checks the signature of the statuses it acts on (docs/architecture.md,
    "Trust"), so it refuses to start without the status key: it fails closed.

    ``job``: the job wrapper's store, which reads only through the views of its workflow
    (``WORKFLOW_NAME``; ``runtime.documents.views``): it refuses to start without one."""
    settings = StoreSettings.from_env(environ)
    target = client_target(environ, secrets_client, sts_client)
    keys = function_keys(environ, secrets_client)
    if keyed and keys is None:
        raise StoreError(
            f"{contracts.STATUS_KEY_SECRET_ARN} is not set: this function applies or reports only "
            "statuses it can authenticate, and has no key to check them with"
        )
    own_workflow = environ.get(contracts.WORKFLOW_NAME) if job else None
    if job and not own_workflow:
        raise StoreError(
            f"{contracts.WORKFLOW_NAME} is not set: a job function reads only its own workflow's "
            "documents, and does not know which workflow that is"
        )
    # Password mode's one readWrite user may not bypass validation, so no validator is set there
    # (nor could it keep job code out: every function holds that same user).
    password_mode = not environ.get(contracts.MONGODB_AUTH) and not environ.get(contracts.MONGODB_URI)
    store = MongoStore(
        target_client(target, max_pool_size),
        settings,
        keys,
        own_workflow,
        bypass_validation=not password_mode,
    )
    marker = (target.uri, settings.database, settings.statuses_collection, workflow or "")
    if create_indexes and marker not in _indexed:
        store.ensure_indexes()
        if workflow is not None:
            store.ensure_views(workflow)
        _indexed.add(marker)
    return store
