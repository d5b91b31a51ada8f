"""The short, checked connection every command makes to MongoDB (the dev server, or Atlas): a
connection string and where it came from, for messages, and a store once the server answers."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

import pymongo
import pymongo.errors

from cdk_app.errors import EXIT_USAGE, CommandError
from runtime import contracts
from runtime.errors import StoreError
from runtime.store.connection import cached_client
from runtime.store.mongo import MongoStore
from runtime.store.settings import StoreSettings
from runtime.store.status_keys import local_keys, operator_keys

MONGODB_URI_VARIABLE = contracts.MONGODB_URI


SERVER_SELECTION_SECONDS = 3.0
"""How long to wait for an unreachable MongoDB before saying so."""


@dataclass(frozen=True)
class MongoAddress:
    """A connection string and where it came from, for messages."""

    uri: str
    origin: str
    """``--mongo-uri`` or ``MONGODB_URI``."""


def redacted(uri: str) -> str:
    return re.sub(r"//[^@/]*@", "//***@", uri)


def connect(address: MongoAddress, database: str, *, control_plane: bool = False) -> MongoStore:
    """A MongoStore on ``address``, after checking the server answers (a short wait, not
    pymongo's 30 s). It signs what it records with the status key (docs/architecture.md,
    "Trust"): a local ``control_plane``'s own (the dev server's, ``run``'s), made on first use;
    otherwise the operator's (``runtime.store.status_keys.operator_keys``), if there is one."""
    uri, origin = address.uri, address.origin
    try:
        probe: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
            uri, serverSelectionTimeoutMS=int(SERVER_SELECTION_SECONDS * 1000)
        )
    except (pymongo.errors.ConfigurationError, ValueError) as exc:
        raise CommandError(f"invalid {origin} {redacted(uri)!r}: {exc}", EXIT_USAGE) from exc
    try:
        probe.admin.command("ping")
    except pymongo.errors.PyMongoError as exc:
        reason = str(exc).split(", Timeout:")[0]
        where = "" if origin == "--mongo-uri" else f" (from {origin})"
        raise CommandError(f"cannot reach MongoDB at {redacted(uri)}{where}: {reason}") from exc
    finally:
        probe.close()
    try:
        store = MongoStore(cached_client(uri), StoreSettings(database=database))
    except pymongo.errors.InvalidName as exc:
        raise CommandError(f"invalid --database {database!r}: {exc}", EXIT_USAGE) from exc
    try:
        keys = local_keys(store) if control_plane else operator_keys(store, os.environ)
    except StoreError as exc:
        raise CommandError(str(exc)) from exc
    return store.with_keys(keys)
