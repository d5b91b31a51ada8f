"""The canonical spec (``workflow:``, ``phases.<p>.jobs.<j>``): defaults merged into each job,
environment names, ``notify``; expressions are analysed in ``expressions``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runtime import contracts, limits
from runtime.definition.call import read_call
from runtime.definition.callback import read_callback
from runtime.definition.children import read_child_workflow, read_output
from runtime.definition.depends import read_depends
from runtime.definition.draft import Draft, DraftJob, DraftPhase, Ref, known_fields, mapping, name_refs
from runtime.definition.event_wait import read_event
from runtime.definition.expressions import check_expression
from runtime.definition.flow import read_flow
from runtime.definition.for_each import read_for_each
from runtime.definition.http import read_http
from runtime.definition.input_schema import read_input_schema
from runtime.definition.invoke import read_invoke
from runtime.definition.job_code import check_job_code, check_shared_folder
from runtime.definition.job_limits import read_job_limits
from runtime.definition.model import (
    DELIVERY_MODES,
    EXIT_PHASE,
    HANDLERS_PHASE,
    JOINS,
    RESULTS,
    TRACE_EXPORTERS,
    Alarms,
    Notify,
    Tracing,
)
from runtime.definition.permissions import read_permissions
from runtime.definition.report import JsonPath, Report
from runtime.definition.schema import is_name
from runtime.definition.timing import check_time_zone, job_time_settings, retry_policy

LAMBDA_RESERVED_ENV = frozenset(
    {
        "_HANDLER",
        "_X_AMZN_TRACE_ID",
        "AWS_ACCESS_KEY",
        "AWS_ACCESS_KEY_ID",
        "AWS_DEFAULT_REGION",
        "AWS_EXECUTION_ENV",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
        "AWS_LAMBDA_FUNCTION_NAME",
        "AWS_LAMBDA_FUNCTION_VERSION",
        "AWS_LAMBDA_INITIALIZATION_TYPE",
        "AWS_LAMBDA_LOG_GROUP_NAME",
        "AWS_LAMBDA_LOG_STREAM_NAME",
        "AWS_LAMBDA_RUNTIME_API",
        "AWS_REGION",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "LAMBDA_RUNTIME_DIR",
        "LAMBDA_TASK_ROOT",
    }
)
"""Environment names Lambda reserves (docs/architecture.md)."""

RESERVED_ENV = LAMBDA_RESERVED_ENV | contracts.ENVIRONMENT_NAMES
"""Names a spec's ``env`` may not set: Lambda's, and every one our functions read."""


def read_spec(document: dict[str, Any], report: Report, base_dir: Path) -> Draft:
    spec = known_fields(document, "spec")
    name = spec.get("workflow") if isinstance(spec.get("workflow"), str) else None
    defaults = known_fields(spec.get("defaults"), "defaults")
    _check_env(defaults.get("env"), ("defaults", "env"), report)
    retry_policy(defaults, ("defaults",), report)
    shared = (
        check_shared_folder(spec["shared"], report, base_dir) if isinstance(spec.get("shared"), str) else None
    )
    code = _Code(base_dir, shared)
    phases: list[DraftPhase] = []
    for phase_name, raw_phase in mapping(spec.get("phases")).items():
        phase_path: JsonPath = ("phases", phase_name)
        phase_fields = known_fields(raw_phase, "phase")
        written_next = phase_fields.get("next")
        phase = DraftPhase(
            phase_name,
            phase_path,
            next=Ref(written_next, (*phase_path, "next")) if is_name(written_next) else None,
        )
        phase.jobs = _read_jobs(phase_fields.get("jobs"), (*phase_path, "jobs"), defaults, report, code)
        phases.append(phase)
    handlers = None
    if "on_failure" in spec:
        handlers = DraftPhase(HANDLERS_PHASE, ("on_failure",))
        handlers.jobs = _read_jobs(spec["on_failure"], ("on_failure",), defaults, report, code)
    exit_handlers = None
    if "on_exit" in spec:
        exit_handlers = DraftPhase(EXIT_PHASE, ("on_exit",))
        exit_handlers.jobs = _read_jobs(spec["on_exit"], ("on_exit",), defaults, report, code)
    settings: dict[str, Any] = {
        key: spec[key] for key in ("description", "schedule", "timeout", "retention_days") if key in spec
    }
    if "schedule_input" in spec:
        settings["schedule_input"] = spec["schedule_input"]
    if isinstance(spec.get("schedule_timezone"), str):
        settings["schedule_timezone"] = check_time_zone(spec["schedule_timezone"], report)
    if "input_schema" in spec:
        settings["input_schema"] = read_input_schema(spec["input_schema"], report, base_dir)
    if "notify" in spec:
        settings["notify"] = Notify(**_notify_settings(spec["notify"]))
    if "alarms" in spec:
        settings["alarms"] = _alarms(spec["alarms"])
    if "tracing" in spec:
        settings["tracing"] = _tracing(spec["tracing"], report)
    if shared is not None:
        settings["shared"] = shared.as_posix()
    if spec.get("delivery") in DELIVERY_MODES:
        settings["delivery"] = spec["delivery"]
    settings |= read_flow(spec, report)
    settings |= read_output(spec, report)
    return Draft(name, phases, settings, handlers, exit_handlers)


@dataclass(frozen=True)
class _Code:
    """Where ``code`` paths resolve, and the ``shared`` folder (resolved) when the spec has one."""

    base_dir: Path
    shared: Path | None


def _read_jobs(
    raw_jobs: object, path: JsonPath, defaults: dict[str, Any], report: Report, code: _Code
) -> list[DraftJob]:
    jobs: list[DraftJob] = []
    for job_name, raw_job in mapping(raw_jobs).items():
        job_path: JsonPath = (*path, job_name)
        job_fields = known_fields(raw_job, "job")
        job = DraftJob(job_name, job_path, after=name_refs(job_fields.get("after"), (*job_path, "after")))
        job.settings = _job_settings(job, defaults, job_fields, report, code)
        jobs.append(job)
    return jobs


def _job_settings(
    job: DraftJob, defaults: dict[str, Any], own: dict[str, Any], report: Report, code: _Code
) -> dict[str, Any]:
    settings = {key: value for key, value in {**defaults, **own}.items() if key in ("memory", "timeout")}
    settings |= job_time_settings(job, defaults, own, report)
    settings["env"] = {**mapping(defaults.get("env")), **mapping(own.get("env"))}
    _check_env(own.get("env"), (*job.path, "env"), report)
    _check_env_size(job, settings["env"], report)
    if own.get("join") in JOINS:
        settings["join"] = own["join"]
    if {**defaults, **own}.get("results") in RESULTS:
        settings["results"] = {**defaults, **own}["results"]
    settings |= read_depends(job, own, report)
    if isinstance(own.get("max_duration"), int) and not isinstance(own["max_duration"], bool):
        settings["max_duration"] = own["max_duration"]
    if own.get("fails_run") is True:
        settings["fails_run"] = True
    if isinstance(own.get("allow_failure"), bool):
        settings["allow_failure"] = own["allow_failure"]
    elif isinstance(own.get("allow_failure"), list):
        settings["allow_failure"] = tuple(str(name) for name in own["allow_failure"])
    if isinstance(own.get("when"), str):
        settings["when"] = own["when"]
        check_expression(job, "when", own["when"], job.when_reads, report)
    settings |= read_for_each(job, own, report)
    settings |= read_job_limits(job, own, report)
    settings |= read_invoke(job, own, report, code.base_dir)
    settings |= read_http(job, own, report)
    settings |= read_event(job, own, report)
    settings |= read_callback(job, own, report)
    settings |= read_call(job, own, report, code.base_dir)
    settings |= read_child_workflow(job, own, report)
    if "permissions" in own:
        settings["permissions"] = read_permissions(own["permissions"], (*job.path, "permissions"), report)
    if isinstance(own.get("code"), str) and own["code"]:
        settings["code"] = check_job_code(
            own["code"], (*job.path, "code"), report, code.base_dir, code.shared
        )
    return settings


def _check_env(raw_env: object, path: JsonPath, report: Report) -> None:
    for key in mapping(raw_env):
        if key in RESERVED_ENV:
            report.add(
                (*path, key),
                f"environment variable {key!r} is set by Lambda or the job wrapper; pick another name",
            )


def _check_env_size(job: DraftJob, env: dict[str, Any], report: Report) -> None:
    """Lambda refuses a function whose environment is over 4 KB, and only at deploy time: the
    job's ``env`` must leave room for what the deploy adds (``limits.DEPLOYED_ENVIRONMENT_BYTES``)."""
    size = limits.environment_bytes({str(key): str(value) for key, value in env.items()})
    if size > limits.JOB_ENV_MAX_BYTES:
        report.add(
            (*job.path, "env"),
            f"job {job.name!r} has {size:,} bytes of environment (keys and values, with defaults.env): "
            f"Lambda allows {limits.LAMBDA_ENVIRONMENT_BYTES:,} per function, of which the deploy takes "
            f"up to {limits.DEPLOYED_ENVIRONMENT_BYTES:,} (the store's settings, JOB_HANDLER), so at most "
            f"{limits.JOB_ENV_MAX_BYTES:,} here; keep large values in a file of the job's code, or in "
            "its input",
        )


def _alarms(raw: object) -> Alarms:
    """The thresholds the schema let through (it has checked their ranges); ``bool`` is not a
    number here, though Python says it is an ``int``."""
    fields = known_fields(raw, "alarms")
    rate, p99 = fields.get("failure_rate"), fields.get("duration_p99")
    return Alarms(
        failure_rate=float(rate) if isinstance(rate, int | float) and not isinstance(rate, bool) else None,
        duration_p99=p99 if isinstance(p99, int) and not isinstance(p99, bool) else None,
    )


def _tracing(raw: object, report: Report) -> Tracing | None:
    """The exporter the schema let through, with the endpoint only ``otlp`` takes (X-Ray's
    collector listens on the function's own ``localhost``)."""
    fields = known_fields(raw, "tracing")
    exporter, endpoint = fields.get("exporter"), fields.get("endpoint")
    if exporter not in TRACE_EXPORTERS or not isinstance(endpoint, str | None):
        return None  # the schema has said why
    if exporter == "otlp" and endpoint is None:
        report.add(
            ("tracing",),
            "exporter otlp needs endpoint: the base URL of the OTLP/HTTP receiver the spans go to "
            "(e.g. https://collector.example.com:4318)",
        )
        return None
    if exporter != "otlp" and endpoint is not None:
        report.add(
            ("tracing", "endpoint"),
            f"endpoint only applies with exporter otlp; {exporter} takes none"
            + (" (the collector layer listens on localhost)" if exporter == "xray" else ""),
        )
        return None
    return Tracing(exporter=str(exporter), endpoint=endpoint)


def _notify_settings(raw: object) -> dict[str, Any]:
    notify = known_fields(raw, "notify")
    settings: dict[str, Any] = {}
    for key in ("on", "email"):
        if isinstance(notify.get(key), list):
            settings[key] = tuple(item for item in notify[key] if isinstance(item, str))
    if isinstance(notify.get("slack_webhook_secret"), str):
        settings["slack_webhook_secret"] = notify["slack_webhook_secret"]
    return settings
