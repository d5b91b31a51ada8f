"""A ``for_each`` job's keys in a spec: the expression (checked like a ``when``), and the
``max_concurrency`` and ``tolerated_failures`` that go with it (their shape and ranges are the
schema's; that they need ``for_each`` is checked here)."""

from __future__ import annotations

from typing import Any

from runtime.definition.draft import DraftJob
from runtime.definition.expressions import check_expression
from runtime.definition.model import EXIT_PHASE, HANDLERS_PHASE, Tolerance
from runtime.definition.report import Report


def read_for_each(job: DraftJob, own: dict[str, Any], report: Report) -> dict[str, Any]:
    """The ``Job`` settings of a fan-out job as written; problems go to ``report``."""
    if not isinstance(own.get("for_each"), str):
        for key in ("max_concurrency", "tolerated_failures"):
            if key in own:
                report.add(
                    (*job.path, key),
                    f"{key!r} has no effect without 'for_each': job {job.name!r} runs once; add a "
                    "for_each or remove it",
                )
        return {}
    if job.path[:1] in ((HANDLERS_PHASE,), (EXIT_PHASE,)):
        report.add(
            (*job.path, "for_each"),
            "a failure handler cannot fan out: it runs once for the failure; move the fan-out into a "
            "job of a phase"
            if job.path[:1] == (HANDLERS_PHASE,)
            else "an exit handler cannot fan out: it runs once for the run's end; move the fan-out into "
            "a job of a phase",
        )
        return {}
    check_expression(job, "for_each", own["for_each"], job.for_each_reads, report)
    settings: dict[str, Any] = {"for_each": own["for_each"]}
    if isinstance(own.get("max_concurrency"), int) and not isinstance(own["max_concurrency"], bool):
        settings["max_concurrency"] = own["max_concurrency"]
    tolerated = own.get("tolerated_failures")
    if isinstance(tolerated, (int, str)) and not isinstance(tolerated, bool):
        settings["tolerated_failures"] = tolerated
    elif isinstance(tolerated, dict) and tolerated and set(tolerated) <= {"count", "percent"}:
        settings["tolerated_failures"] = Tolerance(**tolerated)
    return settings
