"""The orchestrator's peak memory while it handles one success whose dependent's ``when`` reads
the job's output kept by reference.

The orchestrator and the reconciler run in 256 MB Lambdas. A ``when`` (or ``for_each``) reads
the outputs it names as values, so the orchestrator loads them (``runtime.store.outputs``); JSON
grows as Python objects (up to about 30 times its text for an array of small objects). Each
measurement is one handling in a fresh Python process of its own (``ru_maxrss``, the process's
high-water mark, read after the imports and the connection, then after the handling), so nothing
else the bench did counts; the MongoDB server is another process and does not count either.

The orchestrator loads at most ``limits.OUTPUT_READ_MAX_BYTES`` of outputs in one decision and
checks the size before it loads; before it did, a ``when`` over a 20 MB output took it to 219 MB
and one over the largest output a job may return (64 MB) to 578 MB.

Shapes of the output: ``rows`` (an array of small objects with a number and a short string
each, a realistic listing) and ``objects`` (an array of empty objects, the most memory per byte
of JSON), both under ``{"ok": true, ...}``; the ``when`` is ``results.big.ok``.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from datetime import timedelta
from typing import Any

from benchmarks.orchestration import CountingDispatcher, Progress, new_client, scratch_databases
from runtime import limits
from runtime.definition.loader import workflow_from_document
from runtime.documents.leases import lease_id
from runtime.documents.run import StatusEvent
from runtime.service.orchestrator import Orchestrator
from runtime.service.runs import start_run
from runtime.statuses import StatusName
from runtime.store.mongo import MongoStore
from runtime.store.settings import StoreSettings

SPEC = {
    "workflow": "output_reads",
    "phases": {"p": {"jobs": {"big": {}, "use": {"after": ["big"], "when": "results.big.ok"}}}},
}
RUN_ID = "reads"
MIB = 1024 * 1024


def output_of(size: int, shape: str) -> dict[str, Any]:
    """An output of about ``size`` bytes of JSON (a little under), of ``shape``."""
    if shape == "objects":
        return {"ok": True, "rows": [{}] * max(0, (size - 32) // 4)}
    row = '{"id": 1000000, "name": "row-1000000"}, '
    count = max(0, (size - 32) // len(row))
    return {"ok": True, "rows": [{"id": 1_000_000 + i, "name": f"row-{1_000_000 + i}"} for i in range(count)]}


def prepare(store: MongoStore, size: int, shape: str) -> tuple[str, int]:
    """A run whose job ``big`` is dispatched and has stored its output: the output's reference
    and its size as JSON."""
    definition = workflow_from_document(SPEC)
    start_run(store, definition, run_id=RUN_ID)
    orchestrator = Orchestrator(store=store, dispatcher=CountingDispatcher(), redispatch_after=timedelta(0))
    orchestrator.apply(
        StatusEvent(run_id=RUN_ID, workflow=definition.name, status=StatusName.WORKFLOW_STARTED)
    )
    output = output_of(size, shape)
    stored = limits.json_bytes(output)
    ref = store.items().outputs.store(lease_id(RUN_ID, "big", 1), output, definition.name)
    return ref, stored


def handling_peak(uri: str, database: str, ref: str) -> dict[str, Any]:
    """Handle the ``success`` of ``big`` (its output at ``ref``) in a fresh process: the process's
    memory before and at its peak, and the outcome."""
    payload = json.dumps({"uri": uri, "database": database, "ref": ref})
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.output_reads"],
        input=payload,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the handling process failed ({done.returncode}): {done.stderr[-2000:]}")
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(f"{field}:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak() -> int:
    """The process's resident memory now (KiB), from which its peak is measured again. Linux keeps
    ``ru_maxrss`` across ``exec`` (the parent's peak would show), so the peak is the memory map's
    own (``VmHWM``), reset here (``clear_refs``); elsewhere ``ru_maxrss``."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as clear:
            clear.write("5")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return _status_kib("VmRSS") or 0


def _peak() -> int:
    """The process's peak resident memory (KiB) since ``_reset_peak``."""
    return _status_kib("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _child() -> None:
    """One handling, in this process: reads the event from stdin, prints the figures."""
    request = json.loads(sys.stdin.read())
    store = MongoStore(new_client(request["uri"]), StoreSettings(database=request["database"]))
    run = store.read_run(RUN_ID)  # warm: what a Lambda that handled events before has imported
    assert run is not None
    event = StatusEvent(
        run_id=RUN_ID,
        workflow=run.workflow,
        status=StatusName.SUCCESS,
        phase="p",
        job="big",
        attempt=1,
        output_ref=request["ref"],
    )
    before = _reset_peak()
    outcome = Orchestrator(store=store, dispatcher=CountingDispatcher(), redispatch_after=timedelta(0)).apply(
        event
    )
    peak = _peak()
    after = store.read_run(RUN_ID)
    assert after is not None
    use = after.jobs["use"]
    print(
        json.dumps(
            {
                "rss_before_mib": round(before / 1024, 1),
                "rss_peak_mib": round(peak / 1024, 1),
                "growth_mib": round((peak - before) / 1024, 1),
                "action": outcome.action,
                "run": str(after.state),
                "use": str(use.state),
                "error": after.error,
            }
        )
    )


def measure(uri: str, size: int, shape: str) -> dict[str, Any]:
    with scratch_databases(uri, "output_reads") as (database,):
        client = new_client(uri)
        try:
            store = MongoStore(client, StoreSettings(database=database))
            store.ensure_indexes()
            ref, stored = prepare(store, size, shape)
        finally:
            client.close()
        figures = handling_peak(uri, database, ref)
    return {"output_bytes": stored, "shape": shape, **figures}


def output_read_memory(
    uri: str, progress: Progress, sizes: tuple[tuple[str, int, str], ...] | None = None
) -> dict[str, Any]:
    """The peak of one handling for each (name, size, shape): by default a ``when`` over an output
    just within what a ``when`` may read (``limits.OUTPUT_READ_MAX_BYTES``: it is loaded), of both
    shapes, and over the largest output a job may return (``limits.OUTPUT_MAX_BYTES``: refused
    before it is loaded)."""
    cases = sizes or (
        ("at_read_limit_rows", limits.OUTPUT_READ_MAX_BYTES, "rows"),
        ("at_read_limit_objects", limits.OUTPUT_READ_MAX_BYTES, "objects"),
        ("largest_output_rows", limits.OUTPUT_MAX_BYTES, "rows"),
    )
    figures: dict[str, Any] = {}
    for name, size, shape in cases:
        progress(f"orchestrator memory: a when over a {size / MIB:.0f} MB output ({shape})")
        figures[name] = measure(uri, size, shape)
    peak = max(figure["rss_peak_mib"] for figure in figures.values())
    return {"output_read_memory": figures, "output_read_peak_mib": peak}


if __name__ == "__main__":
    _child()
