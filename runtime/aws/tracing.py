"""OpenTelemetry traces of runs: the span of each job attempt around the user's code, and, when
a run ends, the spans of the run and its phases. Optional: without the ``opentelemetry`` packages
(the Lambda layer does not bundle them) every function here does nothing, and it imports them
only on first use, so no handler loads them at import.

The ids come from ``runtime.documents.traces``. An attempt's span is a child of its phase's,
which is a child of the run's; the orchestrator writes those two at the run's end, with their
derived ids, so the tree joins up whichever process writes which span. A tracer provider made by
``configure`` (the OTLP exporter from the environment, or a test's exporter) draws those ids;
under a provider of someone else's (e.g. an auto-instrumentation layer's) the attempt's span gets
an id of that provider's choosing, still under its phase, and the user's spans still nest in it.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import random
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from runtime.documents import traces

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Span

INSTRUMENTATION = "mongo-lambda-workflows"
SERVICE_NAME = "workflows"

OTLP_ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
"""OpenTelemetry's own variables: when one is set, ``configure_from_env`` exports over OTLP."""

_preset: contextvars.ContextVar[tuple[int | None, int | None]] = contextvars.ContextVar(
    "workflow_span_ids", default=(None, None)
)
_state: dict[str, Any] = {}


def _api() -> Any:
    """``opentelemetry.trace``, or None when it is not installed."""
    if "api" not in _state:
        try:
            from opentelemetry import trace as api
        except ImportError:
            _state["api"] = None
        else:
            _state["api"] = api
    return _state["api"]


def available() -> bool:
    return _api() is not None


def _derived_ids() -> Any:
    """An ``IdGenerator`` that gives the ids ``_with_ids`` preset, and random ones otherwise."""
    from opentelemetry.sdk.trace.id_generator import IdGenerator

    class DerivedIds(IdGenerator):
        def generate_span_id(self) -> int:
            trace, span = _preset.get()
            if span is not None:
                _preset.set((trace, None))
                return span
            return random.getrandbits(64) or 1

        def generate_trace_id(self) -> int:
            trace, span = _preset.get()
            if trace is not None:
                _preset.set((None, span))
                return trace
            return random.getrandbits(128) or 1

    return DerivedIds()


def configure(exporter: SpanExporter | None = None, *, batch: bool = False) -> TracerProvider:
    """Install a tracer provider that draws the runs' derived ids, exporting to ``exporter``
    (each span as it ends, or in batches), as the global one; once installed, a later call adds
    its exporter to it (OpenTelemetry sets the global provider once per process). Needs
    ``opentelemetry-sdk``."""
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    provider: TracerProvider | None = _state.get("provider")
    if provider is None:
        provider = TracerProvider(
            id_generator=_derived_ids(),
            resource=Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", SERVICE_NAME)}),
        )
        # Refused (with a warning) when another provider is global already: this one still
        # writes the runs' spans (``_tracer``), the user's go to the global one.
        trace.set_tracer_provider(provider)
        _state["provider"] = provider
    if exporter is not None:
        processor = BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter)
        provider.add_span_processor(processor)
    return provider


def configure_from_env(environ: Mapping[str, str]) -> bool:
    """Export over OTLP (HTTP) when OpenTelemetry's endpoint variable is set and the optional
    packages are installed; True when it did. Spans are batched and flushed at the end of each
    invocation (``flush``), as Lambda freezes the process between invocations."""
    if "provider" in _state or not any(environ.get(name) for name in OTLP_ENDPOINT_VARIABLES):
        return "provider" in _state
    try:
        # The traced layer's (constructs/tracing.py); absent from the plain layer.
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError:
        return False
    configure(OTLPSpanExporter(), batch=True)
    return True


def flush() -> None:
    """Export what the provider ``configure`` installed still holds."""
    provider = _state.get("provider")
    if provider is not None:
        provider.force_flush()


@contextlib.contextmanager
def _with_ids(trace_id: str | None, span_id: str) -> Iterator[None]:
    token = _preset.set((None if trace_id is None else int(trace_id, 16), int(span_id, 16)))
    try:
        yield
    finally:
        _preset.reset(token)


def _parent(api: Any, trace_id: str, span_id: str) -> Any:
    """The context of a span written elsewhere (the phase's, the run's), as a remote parent."""
    parent = api.SpanContext(
        trace_id=int(trace_id, 16),
        span_id=int(span_id, 16),
        is_remote=True,
        trace_flags=api.TraceFlags(api.TraceFlags.SAMPLED),
    )
    return api.set_span_in_context(api.NonRecordingSpan(parent))


def _tracer(api: Any) -> Any:
    """The tracer of the provider ``configure`` installed (its ids are the derived ones), even
    when another provider is the global one; else the global provider's."""
    provider = _state.get("provider")
    return api.get_tracer(INSTRUMENTATION) if provider is None else provider.get_tracer(INSTRUMENTATION)


def _empty_context() -> Any:
    from opentelemetry.context import Context

    return Context()


def _nanoseconds(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000_000)


@contextlib.contextmanager
def attempt_span(
    *, run_id: str, phase: str, job: str, attempt: int, index: int | None, attributes: Mapping[str, Any]
) -> Iterator[Span | None]:
    """The attempt's span, current while the block (the user's handler) runs, so spans the
    user's code starts nest under it; None without OpenTelemetry. The caller sets its outcome
    (``finish``)."""
    api = _api()
    if api is None:
        yield None
        return
    trace_id = traces.trace_id(run_id)
    parent = _parent(api, trace_id, traces.phase_span_id(run_id, phase))
    name = job if index is None else f"{job}[{index}]"
    with _with_ids(None, traces.attempt_span_id(run_id, job, attempt, index)):
        span = _tracer(api).start_span(name, context=parent, attributes=dict(attributes))
    with api.use_span(span, end_on_exit=True, record_exception=False, set_status_on_exception=False):
        yield span


def finish(span: Span | None, outcome: str, error: BaseException | None = None) -> None:
    """Set the attempt span's outcome and status (an error's, with the exception recorded)."""
    if span is None:
        return
    api = _api()
    span.set_attribute("workflow.outcome", outcome)
    if error is None:
        span.set_status(api.Status(api.StatusCode.OK))
        return
    span.record_exception(error)
    span.set_status(api.Status(api.StatusCode.ERROR, f"{type(error).__name__}: {error}"))


def write_span(
    *,
    run_id: str,
    span_id: str,
    parent_id: str | None,
    name: str,
    start: datetime,
    end: datetime,
    attributes: Mapping[str, Any],
    error: str | None = None,
    events: tuple[tuple[str, datetime, Mapping[str, Any]], ...] = (),
) -> None:
    """A span of the run written after the fact (the run's, a phase's), with its derived ids."""
    api = _api()
    if api is None:
        return
    trace_id = traces.trace_id(run_id)
    # A root span starts from an empty context, not from whatever span is current here.
    context = _empty_context() if parent_id is None else _parent(api, trace_id, parent_id)
    with _with_ids(trace_id if parent_id is None else None, span_id):
        span = _tracer(api).start_span(
            name, context=context, start_time=_nanoseconds(start), attributes=dict(attributes)
        )
    for event_name, moment, event_attributes in events:
        span.add_event(event_name, dict(event_attributes), timestamp=_nanoseconds(moment))
    if error is None:
        span.set_status(api.Status(api.StatusCode.OK))
    else:
        span.set_status(api.Status(api.StatusCode.ERROR, error))
    span.end(end_time=_nanoseconds(max(start, end)))


def current_trace_id() -> str | None:
    """The trace id of the current span (for a log line), when there is one."""
    api = _api()
    if api is None:
        return None
    context = api.get_current_span().get_span_context()
    return f"{context.trace_id:032x}" if context.is_valid else None
