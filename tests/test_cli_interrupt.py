"""Ctrl-C at the CLI, as a user presses it: ``run`` in a process of its own, interrupted while its
job runs, must exit 130 with its embedded MongoDB server stopped, within a bound a loaded machine
meets, whatever the shutdown would wait for."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cdk_app.cli.interrupt import FORCED_EXIT_SECONDS
from cdk_app.local.embedded_mongo import STOP_GRACE_SECONDS, EmbeddedMongo

REPO = Path(__file__).resolve().parent.parent
SPECS = REPO / "tests" / "specs" / "runner"


def _children(pid: int) -> list[int]:
    listing = subprocess.run(
        ["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True, check=False
    )
    return [int(line) for line in listing.stdout.split()]


STARTUP_LIMIT = 120.0
"""Seconds a loaded CI machine may take to start ``run`` and its server and reach the job."""
EXIT_LIMIT = FORCED_EXIT_SECONDS + 20
"""Seconds from Ctrl-C to the process's end: the CLI's own bound, and room for a loaded machine."""


def _interrupted_run(
    tmp_path: Path, spec: Path, running: str
) -> tuple[subprocess.Popen[str], list[int], str, float]:
    """``run SPEC`` on its embedded server, Ctrl-C once the job ``running`` runs; the process, the
    server's pid, stderr and the seconds from the Ctrl-C to the process's end."""
    stderr_file = tmp_path / "run.err"
    with stderr_file.open("w", encoding="utf-8") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "cdk_app", "run", str(spec)]
            + ["--input", json.dumps({"release": str(tmp_path / "never")})],
            cwd=REPO,
            # Without --mongo-uri or MONGODB_URI, `run` starts the embedded server this test stops.
            env={name: value for name, value in os.environ.items() if name != "MONGODB_URI"},
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            text=True,
        )
    try:
        deadline = time.monotonic() + STARTUP_LIMIT
        started = re.compile(rf"▸ {running}\s+running")
        while not started.search(stderr_file.read_text(encoding="utf-8")):
            assert time.monotonic() < deadline, (
                f"{running} did not start: {stderr_file.read_text(encoding='utf-8')}"
            )
            assert process.poll() is None, stderr_file.read_text(encoding="utf-8")
            time.sleep(0.1)
        servers = _children(process.pid)
        assert servers, "the embedded MongoDB server is not running"
        interrupted = time.monotonic()
        process.send_signal(signal.SIGINT)
        process.wait(timeout=EXIT_LIMIT + 30)
        took = time.monotonic() - interrupted
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return process, servers, stderr_file.read_text(encoding="utf-8"), took


def test_ctrl_c_stops_the_embedded_server_and_exits_130(tmp_path: Path) -> None:
    process, servers, stderr, took = _interrupted_run(tmp_path, SPECS / "blocking.yaml", "stuck")

    assert process.returncode == 130, stderr
    assert took < EXIT_LIMIT
    assert "interrupted" in stderr
    assert "Traceback" not in stderr
    for pid in servers:
        with pytest.raises(ProcessLookupError, match="No such process"):
            os.kill(pid, 0)


def test_ctrl_c_ends_the_run_of_a_job_that_left_a_thread_running(tmp_path: Path) -> None:
    """The job leaves a thread running that an interpreter would join at exit for ten minutes: it
    is in the job's worker process, which the run stops with the server."""
    spec = REPO / "tests" / "specs" / "cli" / "leaves_a_thread.yaml"

    process, servers, stderr, took = _interrupted_run(tmp_path, spec, "leaves")

    assert process.returncode == 130, stderr
    assert took < EXIT_LIMIT
    for pid in servers:
        with pytest.raises(ProcessLookupError, match="No such process"):
            os.kill(pid, 0)


def test_ctrl_c_ends_the_process_in_bounded_time_whatever_its_shutdown_waits_for() -> None:
    """A thread of the CLI's own process the interpreter would join at exit for ten minutes."""
    blocks = (
        "import sys, threading, time\n"
        "from cdk_app.cli.interrupt import bound_interrupts\n"
        "bound_interrupts('cli')\n"
        "threading.Thread(target=time.sleep, args=(600,)).start()\n"
        "print('ready', flush=True)\n"
        "try:\n"
        "    time.sleep(600)\n"
        "except KeyboardInterrupt:\n"
        "    sys.exit(130)\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", blocks], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "ready"
    began = time.monotonic()
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=EXIT_LIMIT + 30)
    took = time.monotonic() - began

    assert process.returncode == 130, stderr
    assert FORCED_EXIT_SECONDS <= took < EXIT_LIMIT
    assert f"took longer than {FORCED_EXIT_SECONDS:g} s: stopped at once" in stderr


def test_a_server_that_ignores_sigterm_is_killed_after_a_short_grace() -> None:
    ignores = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    ignores += "print(flush=True); time.sleep(120)"
    server = EmbeddedMongo.__new__(EmbeddedMongo)
    server.process = subprocess.Popen([sys.executable, "-c", ignores], stdout=subprocess.PIPE)
    try:
        assert server.process.stdout is not None
        server.process.stdout.readline()  # SIGTERM is ignored from here on
        began = time.monotonic()
        server.stop()
        took = time.monotonic() - began
    finally:
        server.process.kill()
        server.process.wait()

    assert server.process.returncode == -signal.SIGKILL
    assert STOP_GRACE_SECONDS <= took < 7, "a Ctrl-C must not wait 10 s for a server that does not stop"
