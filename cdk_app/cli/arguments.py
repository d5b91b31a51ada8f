"""The arguments several commands share: ``--mongo-uri`` (else the ``MONGODB_URI`` environment
variable: the dev server's URI, or Atlas) with ``--database``, and the console's ``--host`` and
port; and ``Subparsers``, what every ``add_<command>`` function receives.

Every module of this package imports at its top only what building the parser needs: ``--help``
and a command's arguments must not import pymongo, rich, boto3 or the web server (start-up would
take the best part of a second, ``tests/test_cli_usability.py``). What a command runs on is
imported in the function that runs it.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

from cdk_app.console import DEFAULT_HOST
from cdk_app.errors import EXIT_USAGE, CommandError
from runtime.contracts import MONGODB_URI as MONGODB_URI_VARIABLE
from runtime.store.settings import StoreSettings

if TYPE_CHECKING:
    from runtime.client import Client

if TYPE_CHECKING:
    from cdk_app.connect import MongoAddress
    from runtime.store.mongo import MongoStore


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
    from cdk_app.connect import MongoAddress

    if args.mongo_uri is not None:
        return MongoAddress(args.mongo_uri, "--mongo-uri")
    from_environment = environ.get(MONGODB_URI_VARIABLE)
    return MongoAddress(from_environment, MONGODB_URI_VARIABLE) if from_environment else None


def open_store(args: argparse.Namespace) -> MongoStore:
    """The store a command that reads or writes runs works on."""
    from cdk_app.connect import connect

    address = given_address(args)
    if address is None:
        raise CommandError(
            f"no MongoDB given: pass --mongo-uri URI or set {MONGODB_URI_VARIABLE}", EXIT_USAGE
        )
    return connect(address, args.database)


def open_client(
    args: argparse.Namespace, workflows_dir: Path | None = None, store: MongoStore | None = None
) -> Client:
    """The ``runtime.client.Client`` the commands that start, read and operate runs go through,
    on ``store``, else the store ``open_store`` opens (``workflows_dir``: the specs a ``redrive
    --upgrade`` moves a run to)."""
    from runtime.client import Client

    opened = open_store(args) if store is None else store
    return Client.on_store(opened, workflows_dir=workflows_dir or Path("workflows"))


def add_console_arguments(parser: argparse.ArgumentParser, port_flag: str, default_port: int | None) -> None:
    """``--host``, the port flag and ``--allow-actions``: the same for ``console`` and ``dev``."""
    parser.add_argument(
        "--host", default=DEFAULT_HOST, help=f"where the console listens (default: {DEFAULT_HOST})"
    )
    shown = "no console" if default_port is None else str(default_port)
    parser.add_argument(
        port_flag,
        type=int,
        default=default_port,
        metavar="PORT",
        help=f"the console's port (default: {shown}; 0: any free port)",
    )
    parser.add_argument(
        "--allow-actions",
        action="store_true",
        help="let the console cancel, redrive, approve and reject (default: read-only)",
    )


Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def json_argument(flag: str, text: str | None) -> Any:
    """The JSON value of ``flag`` (None when it was not given); a usage error saying where the
    text stops being JSON."""
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CommandError(
            f"{flag} is not JSON: {exc.msg} at column {exc.colno} of {text!r}", EXIT_USAGE
        ) from exc
