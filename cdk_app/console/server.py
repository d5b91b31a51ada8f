"""Serving the console: uvicorn on a thread of its own (the dev server keeps its main thread for
delivery), and the ``console`` command that serves it against any database.

It listens on 127.0.0.1 unless told otherwise: a console shows run inputs and outputs, and with
``--allow-actions`` it changes runs, so it is not for the network by default.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import uvicorn

from cdk_app.console.app import LAYOUT_LIBRARY, Operation, console_app
from cdk_app.console.prometheus import Registry
from cdk_app.errors import EXIT_USAGE, CommandError
from runtime.store.mongo import MongoStore

if TYPE_CHECKING:
    pass

STARTUP_SECONDS = 10.0


def _listening_socket(host: str, port: int) -> socket.socket:
    try:
        sock = socket.create_server((host, port))
    except OSError as exc:
        raise CommandError(f"the console cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    return sock


@contextlib.contextmanager
def serving_console(
    store: MongoStore,
    host: str,
    port: int,
    allow_actions: bool,
    upgrade: Operation | None = None,
    metrics: Registry | None = None,
) -> Iterator[str]:
    """The console over ``store`` on ``host:port`` for the block's duration; yields its URL.
    ``upgrade``: the upgrading redrive its button asks for (None: no such button); ``metrics``:
    what its ``/metrics`` serves (None: no such page)."""
    if not 0 <= port < 65536:
        raise CommandError(f"the console's port must be 0 to 65535, got {port}", EXIT_USAGE)
    if not LAYOUT_LIBRARY.is_file():
        raise CommandError(f"{LAYOUT_LIBRARY} is missing: run make setup (npm ci) first")
    sock = _listening_socket(host, port)
    bound = sock.getsockname()[1]
    url = f"http://{host}:{bound}/"
    app = console_app(
        store,
        allow_actions=allow_actions,
        hosts=[host, "127.0.0.1", "localhost"],
        upgrade=upgrade,
        metrics=metrics,
    )
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
