"""The W3C trace context of a run, derived from its ids: every component (the orchestrator, a job
wrapper, the console, a user's service given the run id) computes the same trace and span ids
without reading or writing anything (docs/observability.md).

A run is one trace; its spans are the run, one per phase, and one per job attempt (an item of a
``for_each`` job has attempts of its own). The ids are hashes of the run id and the span's place
in the run, so they are stable across processes and deliveries; attempts count up across
redrives, so an attempt's span is unique in its run.
"""

from __future__ import annotations

import hashlib

TRACEPARENT = "traceparent"
"""The job event's field holding the attempt's W3C ``traceparent``."""


def _digest(*parts: str) -> bytes:
    return hashlib.sha256("\x1f".join(parts).encode()).digest()


def trace_id(run_id: str) -> str:
    """The run's trace id: 32 hex digits (128 bits), never all zero."""
    value = _digest("trace", run_id)[:16].hex()
    return value if int(value, 16) else "1".rjust(32, "0")


def _span_id(*parts: str) -> str:
    value = _digest("span", *parts)[:8].hex()
    return value if int(value, 16) else "1".rjust(16, "0")


def run_span_id(run_id: str) -> str:
    """The run's own span: the root of its trace."""
    return _span_id(run_id)


def phase_span_id(run_id: str, phase: str) -> str:
    """A phase's span, under the run's."""
    return _span_id(run_id, "phase", phase)


def attempt_span_id(run_id: str, job: str, attempt: int, index: int | None = None) -> str:
    """An attempt's span, under its phase's (an item's attempt: ``index`` set)."""
    return _span_id(run_id, "job", job, "" if index is None else str(index), str(attempt))


def traceparent(trace: str, span: str) -> str:
    """A W3C ``traceparent`` header value, sampled."""
    return f"00-{trace}-{span}-01"


def attempt_traceparent(run_id: str, job: str, attempt: int, index: int | None = None) -> str:
    """The ``traceparent`` of one attempt: what the job event carries."""
    return traceparent(trace_id(run_id), attempt_span_id(run_id, job, attempt, index))
