"""The ``call`` key of a job that calls an AWS service without code: ``service`` and ``action``
(one of ``CALLS``), ``resource`` (the queue, topic, event bus, function or state machine it
acts on, which is also all its role may act on) and ``params`` (a JMESPath over ``{input,
results, item, index}`` giving the call's other parameters)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jmespath

from runtime.definition.draft import DraftJob, known_fields
from runtime.definition.job_code import check_job_code
from runtime.definition.model import ServiceCall
from runtime.definition.report import Report
from runtime.definition.services import CALLS, SQS_URL

EXCLUSIVE = ("code", "wait", "approval", "invoke", "http")


def read_call(job: DraftJob, own: dict[str, Any], report: Report, base_dir: Path) -> dict[str, Any]:
    """The ``Job`` fields ``call`` (and its ``local`` stand-in) set, with their problems reported."""
    if "call" not in own:
        return {}
    path = (*job.path, "call")
    fields = known_fields(own["call"], "call")
    for key in EXCLUSIVE:
        if key in own:
            report.add(
                (*job.path, key), f"a job that calls a service runs no '{key}': remove '{key}' or 'call'"
            )
    service, action, resource = fields.get("service"), fields.get("action"), fields.get("resource")
    kind = CALLS.get((str(service), str(action)))
    if kind is None:
        known = ", ".join(f"{name} {verb}" for name, verb in CALLS)
        report.add(
            path, f"{service} {action} is not a call a job can make without code (it can make: {known})"
        )
        return {}
    if not isinstance(resource, str) or not resource:
        report.add(
            (*path, "resource"), f"'resource' names what {service} {action} acts on (its ARN, or a queue URL)"
        )
        return {}
    if kind.client == "sqs" and not (resource.startswith("arn:") or SQS_URL.match(resource)):
        report.add((*path, "resource"), f"{resource!r} is neither an SQS queue URL nor its ARN")
    params = fields.get("params")
    if isinstance(params, str):
        try:
            jmespath.compile(params)
        except (jmespath.exceptions.JMESPathError, RecursionError) as exc:
            report.add((*path, "params"), f"invalid JMESPath {params!r}: {str(exc).splitlines()[0]}")
    settings: dict[str, Any] = {
        "call": ServiceCall(
            service=str(service),
            action=str(action),
            resource=resource,
            params=params if isinstance(params, str) else None,
        )
    }
    local = own.get("local")
    if isinstance(local, str) and local:
        settings["local"] = check_job_code(local, (*job.path, "local"), report, base_dir)
    else:
        report.warn(
            path,
            f"job {job.name!r} calls {service} {action} and has no 'local' stand-in: `run` and the dev "
            "server cannot run it on this machine (give 'local: <a .py with handler(event, context)>')",
        )
    return settings
