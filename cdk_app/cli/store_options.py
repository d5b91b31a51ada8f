"""Where a command finds MongoDB: ``--mongo-uri``, else the ``MONGODB_URI`` environment variable
(the dev server's URI, or Atlas), and ``--database``; and the short, checked connection every
command makes."""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pymongo
import pymongo.errors

from cdk_app.errors import EXIT_USAGE, CommandError
from runtime import contracts
from runtime.store.connection import cached_client
from runtime.store.mongo import MongoStore
from runtime.store.settings import StoreSettings

MONGODB_URI_VARIABLE = contracts.MONGODB_URI

SERVER_SELECTION_SECONDS = 3.0
"""How long to wait for an unreachable MongoDB before saying so."""


@dataclass(frozen=True)
class MongoAddress:
    """A connection string and where it came from, for messages."""

    uri: str
    origin: str
    """``--mongo-uri`` or ``MONGODB_URI``."""


def add_store_arguments(parser: argparse.ArgumentParser, fallback: str | None = None) -> None:
    """``--mongo-uri`` and ``--database``; ``fallback`` says what happens when neither
    ``--mongo-uri`` nor ``MONGODB_URI`` is given (None: the command needs one)."""
    otherwise = f", else {fallback}" if fallback else ""
    parser.add_argument(
        "--mongo-uri",
        metavar="URI",
        help=f"MongoDB connection string (default: ${MONGODB_URI_VARIABLE}{otherwise})",
    )
    parser.add_argument(
        "--database", default=StoreSettings().database, help=f"default: {StoreSettings().database}"
    )


def given_address(args: argparse.Namespace, environ: Mapping[str, str] = os.environ) -> MongoAddress | None:
    """``--mongo-uri``, else ``MONGODB_URI``, else None."""
    if args.mongo_uri is not None:
        return MongoAddress(args.mongo_uri, "--mongo-uri")
    from_environment = environ.get(MONGODB_URI_VARIABLE)
    return MongoAddress(from_environment, MONGODB_URI_VARIABLE) if from_environment else None


def open_store(args: argparse.Namespace) -> MongoStore:
    """The store a command that reads or writes runs works on."""
    address = given_address(args)
    if address is None:
        raise CommandError(
            f"no MongoDB given: pass --mongo-uri URI or set {MONGODB_URI_VARIABLE}", EXIT_USAGE
        )
    return connect(address, args.database)


def redacted(uri: str) -> str:
    return re.sub(r"//[^@/]*@", "//***@", uri)


def connect(address: MongoAddress, database: str) -> MongoStore:
    """A MongoStore on ``address``, after checking the server answers (a short wait, not
    pymongo's 30 s)."""
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
        return MongoStore(cached_client(uri), StoreSettings(database=database))
    except pymongo.errors.InvalidName as exc:
        raise CommandError(f"invalid --database {database!r}: {exc}", EXIT_USAGE) from exc
