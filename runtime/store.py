"""The MongoDB adapter: run documents in ``state-machines``, status events in ``statuses``.

Every write that the engine's invariants depend on is a single-document atomic operation whose
filter states what the writer read (docs/architecture.md, "Invariants", 1): a completion is recorded
only while the job is still dispatched at that attempt, a claim only while the claimed jobs are
still pending in the phase the writer saw. Driver failures are wrapped in ``StoreError``.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

import pymongo
from bson.errors import InvalidDocument
from pymongo import ReturnDocument
from pymongo.collection import Collection
from pymongo.errors import DuplicateKeyError, PyMongoError

from runtime.engine import DISPATCHED, SUCCEEDED
from runtime.errors import StoreError
from runtime.settings import StoreSettings

T = TypeVar("T")
Document = dict[str, Any]

STATUS_KEY = ("runId", "phase", "job", "status", "attempt")
"""The unique key of ``statuses``: repeating a report of the same attempt is a no-op."""

TERMINAL_JOB_STATUSES = ("success", "failed")


def utcnow() -> datetime:
    return datetime.now(UTC)


def success_changes(job: str, output: Any) -> Document:
    """What recording a job's success sets in its run document."""
    return {f"jobs.{job}.state": SUCCEEDED, f"jobs.{job}.output": output, f"jobs.{job}.finishedAt": utcnow()}


def status_document(
    run_id: str, workflow: str, phase: str | None, job: str | None, status: str, attempt: int, **fields: Any
) -> Document:
    """One report for ``statuses``; run-level reports have ``job=None`` and ``attempt=0``."""
    return {
        "runId": run_id,
        "workflow": workflow,
        "phase": phase,
        "job": job,
        "status": status,
        "attempt": attempt,
        "date": utcnow(),
        **fields,
    }


def _guard(action: str, call: Callable[[], T]) -> T:
    try:
        return call()
    except DuplicateKeyError:
        raise
    except (PyMongoError, InvalidDocument, OverflowError) as exc:
        raise StoreError(f"could not {action}: {exc}") from exc


class Store:
    """Run and status documents on one MongoDB database."""

    def __init__(self, client: pymongo.MongoClient[Document], settings: StoreSettings | None = None) -> None:
        self.settings = settings or StoreSettings()
        database = client[self.settings.database]
        self.runs: Collection[Document] = database[self.settings.runs_collection]
        self.statuses: Collection[Document] = database[self.settings.statuses_collection]

    def ensure_indexes(self) -> None:
        """Idempotent; creating an index that exists is a no-op on the server."""
        _guard(
            "create the statuses index",
            lambda: self.statuses.create_index(
                [(name, pymongo.ASCENDING) for name in STATUS_KEY], unique=True, name="one_report_per_attempt"
            ),
        )

    # -- runs --------------------------------------------------------------------------------

    def insert_run(self, document: Document) -> bool:
        """False when a run with this id exists already."""
        try:
            _guard("insert the run document", lambda: self.runs.insert_one(document))
        except DuplicateKeyError:
            return False
        return True

    def load_run(self, run_id: str) -> Document | None:
        return _guard(f"read run {run_id!r}", lambda: self.runs.find_one({"_id": run_id}))

    def record_job_success(self, run_id: str, job: str, attempt: int, output: Any) -> Document | None:
        """Record a completion while the job is still dispatched at ``attempt``; the run document
        after the write, or None when the completion was recorded before (or is stale)."""
        return _guard(
            f"record the success of {job!r} in run {run_id!r}",
            lambda: self.runs.find_one_and_update(
                {"_id": run_id, f"jobs.{job}.attempt": attempt, f"jobs.{job}.state": DISPATCHED},
                {"$set": {**success_changes(job, output), "updatedAt": utcnow()}, "$inc": {"version": 1}},
                return_document=ReturnDocument.AFTER,
            ),
        )

    def apply_transition(
        self, run_id: str, conditions: Mapping[str, Any], changes: Mapping[str, Any]
    ) -> bool:
        """Set ``changes`` only if every ``conditions`` field still has the value the engine
        read (``{"version": v}`` guards against any change at all); False when another writer got
        there first. Every write bumps the version."""
        result = _guard(
            f"update run {run_id!r}",
            lambda: self.runs.update_one(
                {"_id": run_id, **conditions},
                {"$set": {**changes, "updatedAt": utcnow()}, "$inc": {"version": 1}},
            ),
        )
        return result.matched_count == 1

    # -- statuses ----------------------------------------------------------------------------

    def insert_status(self, document: Document) -> bool:
        """Append a status event; False when the same report was recorded before."""
        try:
            _guard(
                f"record status {document.get('status')!r}", lambda: self.statuses.insert_one(dict(document))
            )
        except DuplicateKeyError:
            return False
        return True

    def find_status(
        self, run_id: str, phase: str | None, job: str | None, status: str, attempt: int
    ) -> Document | None:
        query = {"runId": run_id, "phase": phase, "job": job, "status": status, "attempt": attempt}
        return _guard("read a status", lambda: self.statuses.find_one(query))

    def terminal_status(self, run_id: str, phase: str, job: str, attempt: int) -> Document | None:
        """The ``success`` or ``failed`` report of one attempt, if any."""
        query = {
            "runId": run_id,
            "phase": phase,
            "job": job,
            "attempt": attempt,
            "status": {"$in": list(TERMINAL_JOB_STATUSES)},
        }
        return _guard("read a terminal status", lambda: self.statuses.find_one(query))

    def run_statuses(self, run_id: str) -> list[Document]:
        return _guard(
            f"read the statuses of run {run_id!r}",
            lambda: list(self.statuses.find({"runId": run_id}).sort("date", pymongo.ASCENDING)),
        )


# -- one client per process ------------------------------------------------------------------

_clients: dict[str, pymongo.MongoClient[Document]] = {}
_clients_lock = threading.Lock()
_indexed: set[tuple[str, str, str]] = set()


def read_connection_string(environ: Mapping[str, str], secrets_client: Any | None = None) -> str:
    """``MONGODB_URI`` (local runs) or the Secrets Manager secret named by
    ``MONGODB_SECRET_ARN``, whose string is the URI or JSON with a ``uri`` key."""
    uri = environ.get("MONGODB_URI")
    if uri:
        return uri
    arn = environ.get("MONGODB_SECRET_ARN")
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


def store_from_env(environ: Mapping[str, str] = os.environ, secrets_client: Any | None = None) -> Store:
    """The Store a Lambda handler uses; indexes are ensured once per process."""
    settings = StoreSettings.from_env(environ)
    uri = read_connection_string(environ, secrets_client)
    store = Store(cached_client(uri), settings)
    marker = (uri, settings.database, settings.statuses_collection)
    if marker not in _indexed:
        store.ensure_indexes()
        _indexed.add(marker)
    return store
