"""The CLI's ``console`` command: the run console in the browser, over any database."""

from __future__ import annotations

import argparse
import contextlib
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from cdk_app.cli.arguments import Subparsers, add_console_arguments, add_store_arguments, open_store
from cdk_app.console import DEFAULT_PORT
from cdk_app.errors import EXIT_OK
from cdk_app.project import workflows_dir

if TYPE_CHECKING:
    from runtime.service.operations import OperationReceipt
    from runtime.store.mongo import MongoStore


def add_console(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "console",
        help="the run console in the browser, on any database",
        description="Serve the run console (runs, each run's graph, timeline and history, live) for "
        "the database given, print its URL and serve until Ctrl-C. Read-only unless --allow-actions.",
    )
    add_store_arguments(parser)
    add_console_arguments(parser, "--port", DEFAULT_PORT)
    parser.set_defaults(run=_console, prog=parser.prog)


def _console(args: argparse.Namespace) -> int:
    from rich.markup import escape

    from cdk_app.console.server import serving_console
    from cdk_app.terminal.output import console
    from runtime.client import Client

    store = open_store(args)
    say = console(stderr=True)
    stop = threading.Event()
    folder = Path(workflows_dir())

    def upgrade(store: MongoStore, run_id: str) -> OperationReceipt:
        """The upgrade button: to the specs of the project's workflows folder."""
        return Client.on_store(store, workflows_dir=folder).redrive(run_id, upgrade=True)

    with serving_console(store, args.host, args.port, args.allow_actions, upgrade) as url:
        print(url, flush=True)
        mode = "actions allowed" if args.allow_actions else "read-only"
        say.print(f"console on [bold]{escape(url)}[/] ({mode}); Ctrl-C stops it")
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait()
    return EXIT_OK
