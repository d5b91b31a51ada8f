"""Ctrl-C ends a command within ``FORCED_EXIT_SECONDS``, whatever its shutdown would wait for.

The first Ctrl-C raises ``KeyboardInterrupt`` as Python does: the command unwinds, its ``finally``
blocks stop the embedded MongoDB server (terminated, then killed after a grace:
``cdk_app.local.embedded_mongo``), and ``main`` prints ``interrupted`` and exits 130. Not all the
unwinding waits for is ours to bound: a thread the job code started and left running (the
interpreter joins every such thread at exit), pymongo's monitors (joined at exit), any wait
slowed by a loaded machine. So the Ctrl-C also starts a clock: if the process is still there
``FORCED_EXIT_SECONDS`` later, or at a second Ctrl-C, the embedded servers are killed and the
process exits 130 at once, saying so.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from types import FrameType

from cdk_app.errors import EXIT_INTERRUPTED

FORCED_EXIT_SECONDS = 10.0


def _force_exit(prog: str, why: str) -> None:
    # Imported here: a command that never started a server never loaded the module.
    from cdk_app.local.embedded_mongo import kill_servers

    kill_servers()
    # os.write, not print: the main thread may hold stderr's lock, and this must not wait for it.
    os.write(sys.stderr.fileno(), f"{prog}: interrupted ({why}: stopped at once)\n".encode())
    os._exit(EXIT_INTERRUPTED)


def bound_interrupts(prog: str) -> None:
    """From now on, Ctrl-C interrupts as usual, and a second one, or the shutdown taking longer
    than ``FORCED_EXIT_SECONDS``, ends the process. For the CLI's own process only
    (``cdk_app.__main__``): the clock bounds the interpreter's exit too."""
    interrupted = threading.Event()

    def handle(signum: int, frame: FrameType | None) -> None:
        if interrupted.is_set():
            _force_exit(prog, "a second Ctrl-C")
        interrupted.set()
        clock = threading.Timer(
            FORCED_EXIT_SECONDS,
            _force_exit,
            (prog, f"the shutdown took longer than {FORCED_EXIT_SECONDS:g} s"),
        )
        clock.daemon = True
        clock.start()
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, handle)
