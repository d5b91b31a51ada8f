"""A job's limits across runs (the spec's job ``concurrency`` and ``rate_limit``): the IR and
how a spec's job reads into it. Its key is a JMESPath over what the attempt's event carries
(``input``, ``results``, and for a ``for_each`` item its ``item`` and ``index``), checked like
any other expression: it compiles and reads nothing else. The limits are applied where an
attempt is dispatched (``runtime.service.job_limits``)."""

from __future__ import annotations

from typing import Any

from runtime.definition.draft import DraftJob, known_fields
from runtime.definition.expressions import compiled, root_fields
from runtime.definition.model_limits import JobConcurrency, RateLimit
from runtime.definition.report import Report, show

KEY_ROOTS = ("input", "results", "item", "index")
"""What a job limit's ``key`` reads: the attempt's event."""

__all__ = ["KEY_ROOTS", "JobConcurrency", "RateLimit", "read_job_limits"]


def read_job_limits(job: DraftJob, own: dict[str, Any], report: Report) -> dict[str, Any]:
    """The ``Job`` settings ``concurrency`` and ``rate_limit`` as written; the schema reports
    wrong types and ranges."""
    settings: dict[str, Any] = {}
    concurrency = known_fields(own.get("concurrency"), "job_concurrency")
    if _count(concurrency.get("limit")):
        key = _key(job, "concurrency", concurrency.get("key"), report)
        settings["concurrency"] = JobConcurrency(limit=concurrency["limit"], key=key)
    rate = known_fields(own.get("rate_limit"), "rate_limit")
    period = rate.get("period", 1)
    if _count(rate.get("limit")) and isinstance(period, int | float) and not isinstance(period, bool):
        key = _key(job, "rate_limit", rate.get("key"), report)
        if period > 0:
            settings["rate_limit"] = RateLimit(limit=rate["limit"], period=float(period), key=key)
    both = settings.get("concurrency"), settings.get("rate_limit")
    if both[0] is not None and both[1] is not None and both[0].key != both[1].key:
        report.add(
            (*job.path, "rate_limit", "key"),
            f"job {job.name!r} has a concurrency key {show(both[0].key)} and a rate_limit key "
            f"{show(both[1].key)}: both limits of a job queue its attempts by one key; give them the same",
        )
    return settings


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _key(job: DraftJob, name: str, key: Any, report: Report) -> str | None:
    """The key as written, reported when it reads something an attempt's event does not carry."""
    if not isinstance(key, str) or not key:
        return None
    path = (*job.path, name, "key")
    parsed = compiled(path, key, report)
    if parsed is None:
        return None
    for root, _ in root_fields(parsed):
        if root not in KEY_ROOTS:
            report.add(
                path,
                f"{show(key)} reads {root!r}, but a job's {name} key is worked out when an attempt is "
                f"dispatched and sees only {', '.join(map(repr, KEY_ROOTS))} (did you mean 'input.{root}'?)",
            )
    return key
