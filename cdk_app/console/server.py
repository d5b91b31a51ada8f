"""Serving the console: uvicorn on a thread of its own (the dev server keeps its main thread for
delivery), and the ``console`` command that serves it against any database.

It listens on 127.0.0.1 unless told otherwise: a console shows run inputs and outputs, and with
``--allow-actions`` it changes runs, so it is not for the network by default.
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import uvicorn
from rich.console import Console
from rich.markup import escape

from cdk_app.cli.store_options import add_store_arguments, open_store
from cdk_app.console.app import LAYOUT_LIBRARY, console_app
from cdk_app.errors import EXIT_OK, EXIT_USAGE, CommandError
from runtime.store.mongo import MongoStore

if TYPE_CHECKING:
    from cdk_app.cli.main import Subparsers

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
STARTUP_SECONDS = 10.0


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


def _listening_socket(host: str, port: int) -> socket.socket:
    try:
        sock = socket.create_server((host, port))
    except OSError as exc:
        raise CommandError(f"the console cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    return sock


@contextlib.contextmanager
def serving_console(store: MongoStore, host: str, port: int, allow_actions: bool) -> Iterator[str]:
    """The console over ``store`` on ``host:port`` for the block's duration; yields its URL."""
    if not 0 <= port < 65536:
        raise CommandError(f"the console's port must be 0 to 65535, got {port}", EXIT_USAGE)
    if not LAYOUT_LIBRARY.is_file():
        raise CommandError(f"{LAYOUT_LIBRARY} is missing: run make setup (npm ci) first")
    sock = _listening_socket(host, port)
    bound = sock.getsockname()[1]
    url = f"http://{host}:{bound}/"
    app = console_app(store, allow_actions=allow_actions, hosts=[host, "127.0.0.1", "localhost"])
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="console", daemon=True)
    thread.start()
    deadline = time.monotonic() + STARTUP_SECONDS
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=STARTUP_SECONDS)
        sock.close()


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
    store = open_store(args)
    say = Console(stderr=True, highlight=False)
    stop = threading.Event()
    with serving_console(store, args.host, args.port, args.allow_actions) as url:
        print(url, flush=True)
        mode = "actions allowed" if args.allow_actions else "read-only"
        say.print(f"console on [bold]{escape(url)}[/] ({mode}); Ctrl-C stops it")
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait()
    return EXIT_OK
