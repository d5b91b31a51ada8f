"""Where the store connects: the connection string (``MONGODB_URI`` locally, Secrets Manager in
Lambda) and one client per process, reused across invocations as Lambda reuses the process.

A Lambda process handles one invocation at a time, and a warm one keeps its connections while it
waits for the next: each function's pool is sized for the threads that use the store at once
(``store_from_env``'s ``max_pool_size``), opens nothing ahead (``minPoolSize=0``) and closes what
sat idle (``maxIdleTimeMS``). Atlas counts every one of them against the cluster's limit
(docs/deploy.md, "Connections and the Atlas tier")."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping
from typing import Any

import pymongo

from runtime import contracts
from runtime.documents.run import Document
from runtime.errors import StoreError
from runtime.store.mongo import MongoStore
from runtime.store.settings import StoreSettings
from runtime.store.status_keys import function_keys

MAX_IDLE_MS = 60_000
"""A pooled connection idle this long is closed instead of reused (pymongo checks when the pool
is next used): a process woken after a quiet minute does not keep a connection per past burst."""

_clients: dict[tuple[str, int | None], pymongo.MongoClient[Document]] = {}
_clients_lock = threading.Lock()
_indexed: set[tuple[str, str, str]] = set()


def read_connection_string(environ: Mapping[str, str], secrets_client: Any | None = None) -> str:
    """``MONGODB_URI`` (local runs) or the Secrets Manager secret named by
    ``MONGODB_SECRET_ARN``, whose string is the URI or JSON with a ``uri`` key."""
    uri = environ.get(contracts.MONGODB_URI)
    if uri:
        return uri
    arn = environ.get(contracts.MONGODB_SECRET_ARN)
    if not arn:
        raise StoreError("no MongoDB connection configured: set MONGODB_SECRET_ARN (or MONGODB_URI locally)")
    if secrets_client is None:
        import boto3  # the Lambda runtime ships boto3; imported here to keep local start-up light

        secrets_client = boto3.client("secretsmanager")
    try:
        secret = secrets_client.get_secret_value(SecretId=arn)["SecretString"]
    except Exception as exc:  # botocore raises many unrelated types; all mean the same here
        raise StoreError(f"could not read the MongoDB secret {arn}: {exc}") from exc
    text = secret.strip()
    if text.startswith("{"):
        try:
            text = json.loads(text)["uri"]
        except (ValueError, KeyError, TypeError) as exc:
            raise StoreError(f"the MongoDB secret {arn} is JSON without a 'uri' string") from exc
    if not text.startswith(("mongodb://", "mongodb+srv://")):
        raise StoreError(f"the MongoDB secret {arn} does not hold a mongodb:// connection string")
    return str(text)


def cached_client(uri: str, max_pool_size: int | None = None) -> pymongo.MongoClient[Document]:
    """Lambda reuses the process between invocations: so does the connection pool. A function
    gives ``max_pool_size``; local tools (CLI, console) keep pymongo's default pool."""
    with _clients_lock:
        client = _clients.get((uri, max_pool_size))
        if client is None:
            pool = {} if max_pool_size is None else function_pool(max_pool_size)
            client = pymongo.MongoClient(uri, tz_aware=True, appname="mongo-lambda-workflows", **pool)
            _clients[(uri, max_pool_size)] = client
        return client


def function_pool(max_pool_size: int) -> dict[str, Any]:
    """pymongo's pool options for a function whose ``max_pool_size`` threads use the store at once."""
    if max_pool_size < 1:
        raise ValueError(f"a pool needs at least one connection, got {max_pool_size}")
    return {"maxPoolSize": max_pool_size, "minPoolSize": 0, "maxIdleTimeMS": MAX_IDLE_MS}


def store_from_env(
    environ: Mapping[str, str] = os.environ,
    secrets_client: Any | None = None,
    *,
    max_pool_size: int,
    create_indexes: bool = False,
) -> MongoStore:
    """The store a Lambda handler uses, with at most ``max_pool_size`` connections.

    Only the starter and the reconciler pass ``create_indexes`` (once per process): a run exists
    only once the starter created it, on a process that ensured the indexes first (or the CLI,
    the console or ``runtime.client``, which ensure them too), and the reconciler's schedule
    brings a deploy's new indexes within one period even while no run starts. Every other
    function's cold start costs no round trip for them."""
    settings = StoreSettings.from_env(environ)
    uri = read_connection_string(environ, secrets_client)
    store = MongoStore(cached_client(uri, max_pool_size), settings, function_keys(environ, secrets_client))
    marker = (uri, settings.database, settings.statuses_collection)
    if create_indexes and marker not in _indexed:
        store.ensure_indexes()
        _indexed.add(marker)
    return store
