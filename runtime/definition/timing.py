"""The time keys of a spec: ``retry`` (and its short form ``retries``), ``wait`` and
``approval`` jobs, and the run deadline ``timeout``. The schema checks each value's shape; this
module merges a job's policy over the defaults and reports what the schema cannot see."""

from __future__ import annotations

import zoneinfo
from typing import Any

from runtime.definition.draft import DraftJob, known_fields, mapping
from runtime.definition.expressions import check_expression
from runtime.definition.model import Approval, RetryPolicy
from runtime.definition.report import JsonPath, Report, did_you_mean

NO_CODE_KINDS = ("wait", "approval")
"""Job keys that make a job the engine completes itself, without a function."""


def retry_policy(settings: dict[str, Any], path: JsonPath, report: Report | None) -> RetryPolicy | None:
    """The policy one mapping (``defaults`` or a job) writes: ``retry``, or ``retries: N`` as
    ``retry: {max: N}``; None when it writes neither. Both at once is an error (reported to
    ``report``; the defaults are checked once, not for every job)."""
    if "retry" in settings and "retries" in settings:
        if report is None:
            return None
        report.add(
            (*path, "retries"),
            "give either 'retries' (the short form) or 'retry', not both: "
            f"'retries: {settings['retries']}' is 'retry: {{max: {settings['retries']}}}'",
        )
        return None
    if isinstance(settings.get("retries"), int) and not isinstance(settings["retries"], bool):
        return RetryPolicy(max=settings["retries"])
    if "retry" in settings:
        written = known_fields(settings["retry"], "retry")
        if not all(_fits(name, value) for name, value in written.items()):
            return None  # the schema reports the value
        return RetryPolicy(**{**written, "on": tuple(written.get("on", ()))})
    return None


def _fits(name: str, value: object) -> bool:
    if name == "on":
        return isinstance(value, list) and all(isinstance(item, str) for item in value)
    if name == "jitter":
        return isinstance(value, str)
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def job_time_settings(
    job: DraftJob, defaults: dict[str, Any], own: dict[str, Any], report: Report
) -> dict[str, Any]:
    """The ``Job`` fields the time keys set: ``retry`` (the job's own policy, else the
    defaults'), ``wait`` or ``approval``."""
    settings: dict[str, Any] = {}
    kinds = [kind for kind in NO_CODE_KINDS if kind in own]
    if len(kinds) > 1:
        report.add((*job.path, kinds[1]), "a job is either a wait job or an approval job, not both")
    for kind in kinds:
        if "code" in own:
            report.add(
                (*job.path, "code"),
                f"a job with '{kind}' runs no code (the engine completes it): remove 'code' or '{kind}'",
            )
        for key in ("retry", "retries"):
            if key in own:
                report.add(
                    (*job.path, key),
                    f"a job with '{kind}' is never retried: remove '{key}'",
                )
    if isinstance(own.get("wait"), int) and not isinstance(own["wait"], bool):
        settings["wait"] = own["wait"]
    until = known_fields(own.get("wait"), "wait").get("until") if isinstance(own.get("wait"), dict) else None
    if isinstance(until, str) and until:
        settings["wait_until"] = until
        check_expression(job, "wait", until, job.wait_reads, report)
    approval = known_fields(own.get("approval"), "approval")
    if isinstance(approval.get("timeout"), int) and not isinstance(approval["timeout"], bool):
        message = approval.get("message")
        settings["approval"] = Approval(
            timeout=approval["timeout"], message=message if isinstance(message, str) else ""
        )
    if kinds:
        settings["retry"] = RetryPolicy(max=0)
        return settings
    policy = retry_policy(own, job.path, report)
    if policy is None and not ("retry" in own or "retries" in own):
        policy = retry_policy(mapping(defaults), ("defaults",), None)
    if policy is not None:
        settings["retry"] = policy
    return settings


def check_time_zone(name: str, report: Report) -> str | None:
    """``schedule_timezone``: an IANA time zone name, as EventBridge Scheduler and ``zoneinfo``
    take it. None (with the reason in ``report``) when it is not one."""
    zones = zoneinfo.available_timezones()
    if name in zones:
        return name
    report.add(
        ("schedule_timezone",),
        f"{name!r} is not an IANA time zone name{did_you_mean(name, zones)}, e.g. 'Europe/Berlin' or 'UTC'",
    )
    return None
