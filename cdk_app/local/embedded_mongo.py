"""A real MongoDB server on this machine: SecantusDB (a MongoDB wire-protocol server from PyPI)
started as its own process on a free port. The local runner uses it when no ``--mongo-uri`` is
given, the dev server keeps its data in a folder with it, and the tests share one per session."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pymongo
import pymongo.errors

from runtime import contracts

STARTUP_SECONDS = 60.0
STOP_GRACE_SECONDS = 5.0
"""How long a stopping server is given to close its files after SIGTERM before it is killed: a
loaded machine must not make Ctrl-C wait for it."""


IN_MEMORY = ":memory:"
"""SecantusDB's storage path for a throw-away database, removed when the server stops."""

_running: set[subprocess.Popen[bytes]] = set()
"""The servers this process started and has not stopped (``kill_servers``)."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _server_command(port: int, storage: str) -> list[str]:
    launcher = Path(sys.executable).with_name("secantusd-py")
    executable = str(launcher) if launcher.exists() else shutil.which("secantusd-py")
    if executable is None:
        raise RuntimeError("secantusd-py is not installed: run `make setup`")
    return [executable, "--storage-path", storage, "--host", "127.0.0.1", "--port", str(port)]


def wait_for_ping(uri: str, process: subprocess.Popen[bytes] | None, deadline: float) -> None:
    """Block until the server at ``uri`` answers ``ping``; fail early if the process died."""
    client: pymongo.MongoClient[dict] = pymongo.MongoClient(uri, serverSelectionTimeoutMS=500)
    try:
        while True:
            if process is not None and process.poll() is not None:
                raise RuntimeError(f"the MongoDB server exited early with code {process.returncode}")
            try:
                client.admin.command("ping")
                return
            except pymongo.errors.PyMongoError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
    finally:
        client.close()


def plans_reads_through_views(client: pymongo.MongoClient[Any]) -> bool:
    """False for the embedded server: it answers a read through a view by scanning the whole
    collection under it (only the view's own ``$match`` reaches its planner), so a job's point
    reads would grow with every status and item recorded (benchmarks/README.md, "Fan-out")."""
    return "secantusVersion" not in client.admin.command("buildInfo")


class EmbeddedMongo:
    """A SecantusDB server process; ``uri`` is where it listens. With a ``storage_path`` the data
    lives in that folder and a later server on the same folder finds it intact; without one it is
    in memory and gone when the server stops."""

    def __init__(
        self,
        storage_path: Path | None = None,
        port: int | None = None,
        *,
        auth: bool = False,
        test_commands: bool = False,
    ) -> None:
        """``auth``: every command but the handshake needs a user signed in (SCRAM), whose roles
        the server enforces; users are made on the same folder without it first. ``test_commands``:
        mongod's test-only commands (``configureFailPoint``), for tests that make the server
        answer as a real one would in a case it cannot reach by itself."""
        port = port or free_port()
        self.uri = f"mongodb://127.0.0.1:{port}/?directConnection=true&retryWrites=false"
        storage = IN_MEMORY if storage_path is None else str(storage_path)
        flags = [*(["--auth"] if auth else []), *(["--enable-test-commands"] if test_commands else [])]
        self.process = subprocess.Popen(
            [*_server_command(port, storage), *flags], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        _running.add(self.process)
        try:
            wait_for_ping(self.uri, self.process, time.monotonic() + STARTUP_SECONDS)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """SIGTERM, and SIGKILL after ``STOP_GRACE_SECONDS``."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        _running.discard(self.process)


def kill_servers() -> None:
    """Kill every server this process started and has not stopped: the CLI's last resort when
    a Ctrl-C's shutdown takes too long (``cdk_app.cli.interrupt``)."""
    for process in list(_running):
        if process.poll() is None:
            process.kill()


@contextmanager
def mongodb_uri(environ: Mapping[str, str] = os.environ) -> Iterator[str]:
    """``MONGODB_URI`` when it is set (a real mongod or Atlas), else an embedded server that lives
    as long as the ``with`` block: what the tests and the benchmarks run against."""
    external = environ.get(contracts.MONGODB_URI)
    if external:
        yield external
        return
    server = EmbeddedMongo()
    try:
        yield server.uri
    finally:
        server.stop()
