"""The CLI's ``dev`` command: the dev server (``cdk_app.local.dev``) on the embedded MongoDB server
or the one given, with the console beside it when asked."""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import threading
from pathlib import Path

from cdk_app.cli.arguments import Subparsers, add_console_arguments, add_store_arguments, given_address
from cdk_app.errors import EXIT_OK, EXIT_USAGE, CommandError
from cdk_app.local import DEFAULT_DATA_DIR
from cdk_app.project import workflows_dir


def add_dev(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "dev",
        help="a local dev server: MongoDB, the trigger, the rules and the handlers in one process",
        description="Start the embedded MongoDB server (its data kept under --data) or use the one "
        "given, print its URI, and deliver every status of every workflow in the spec folder through "
        "the real handlers until Ctrl-C or SIGTERM. start, status, runs, history, cancel and redrive "
        "against that URI behave as against a deployed stack.",
    )
    add_store_arguments(parser, fallback="the embedded server on --data")
    parser.add_argument(
        "--data",
        metavar="DIR",
        type=Path,
        help=f"where the embedded server keeps its data (default: {DEFAULT_DATA_DIR})",
    )
    parser.add_argument(
        "--workflows", metavar="DIR", type=Path, help="the spec folder (default: cdk.json's workflowsDir)"
    )
    add_console_arguments(parser, "--console-port", None)
    parser.set_defaults(run=_dev, prog=parser.prog)


def _dev(args: argparse.Namespace) -> int:
    from rich.markup import escape

    from cdk_app.connect import MongoAddress, connect
    from cdk_app.console.prometheus import Registry
    from cdk_app.console.server import serving_console
    from cdk_app.local.dev import (
        SNAPSHOTS_FOLDER,
        DevOptions,
        DevServer,
        FolderDeployment,
        embedded_server,
        stopped_by_sigterm,
    )
    from cdk_app.local.processes import python_difference
    from cdk_app.terminal.output import console as output_console
    from runtime.aws import metrics
    from runtime.client import Client

    if args.mongo_uri is not None and args.data is not None:
        raise CommandError(
            "--mongo-uri and --data exclude each other: --data is for the embedded server", EXIT_USAGE
        )
    folder = args.workflows if args.workflows is not None else Path(workflows_dir())
    if not folder.is_dir():
        raise CommandError(f"no such folder: {folder}", EXIT_USAGE)
    console = output_console(stderr=True, soft_wrap=True)
    logging.basicConfig(
        level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s"
    )
    address = None if args.data is not None else given_address(args)
    stop = threading.Event()
    with contextlib.ExitStack() as stack:
        stack.enter_context(stopped_by_sigterm(stop))
        if address is None:
            server = stack.enter_context(embedded_server(args.data or Path(DEFAULT_DATA_DIR), console))
            address = MongoAddress(server.uri, "the embedded server")
        store = connect(address, args.database, control_plane=True)
        print(address.uri, flush=True)
        console.print(
            f"dev server on [bold]{escape(address.uri)}[/] (database {escape(args.database)}); "
            "Ctrl-C stops it"
        )
        if (difference := python_difference()) is not None:
            console.print(f"warning: {difference}", style="yellow", markup=False)
        if args.console_port is not None:
            # The same records the functions print as EMF lines, added up for the console's /metrics.
            registry = Registry()
            metrics.add_sink(registry.record)
            stack.callback(metrics.remove_sink, registry.record)
            url = stack.enter_context(
                serving_console(
                    store,
                    args.host,
                    args.console_port,
                    args.allow_actions,
                    lambda store, run_id: Client.on_store(store, workflows_dir=folder).redrive(
                        run_id, upgrade=True
                    ),
                    metrics=registry,
                )
            )
            mode = "actions allowed" if args.allow_actions else "read-only"
            console.print(f"console on [bold]{escape(url)}[/] ({mode})")
        server_loop = DevServer(
            store,
            FolderDeployment(folder, store.settings, console.print),
            console,
            DevOptions(snapshots=(args.data or Path(DEFAULT_DATA_DIR)) / SNAPSHOTS_FOLDER),
        )
        # Job code prints: while it runs, stdout is stderr, so stdout holds the URI alone. Ctrl-C
        # is how a dev server ends, not an error.
        with contextlib.redirect_stdout(sys.stderr), contextlib.suppress(KeyboardInterrupt):
            server_loop.serve(stop)
        console.print("dev server stopped")
    return EXIT_OK
