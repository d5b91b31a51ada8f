"""Where the store connects: the connection string (``MONGODB_URI`` locally, Secrets Manager in
Lambda) and one client per process, reused across invocations as Lambda reuses the process."""

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

_clients: dict[str, pymongo.MongoClient[Document]] = {}
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


def cached_client(uri: str) -> pymongo.MongoClient[Document]:
    """Lambda reuses the process between invocations: so does the connection pool."""
    with _clients_lock:
        client = _clients.get(uri)
        if client is None:
            client = pymongo.MongoClient(uri, tz_aware=True, appname="mongo-lambda-workflows")
            _clients[uri] = client
        return client


def store_from_env(environ: Mapping[str, str] = os.environ, secrets_client: Any | None = None) -> MongoStore:
    """The store a Lambda handler uses; indexes are ensured once per process."""
    settings = StoreSettings.from_env(environ)
    uri = read_connection_string(environ, secrets_client)
    store = MongoStore(cached_client(uri), settings, function_keys(environ, secrets_client))
    marker = (uri, settings.database, settings.statuses_collection)
    if marker not in _indexed:
        store.ensure_indexes()
        _indexed.add(marker)
    return store
