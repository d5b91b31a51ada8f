"""The keys of a job that calls an existing Lambda function instead of running code:
``invoke`` (the function's ARN or name, with an optional ``:version`` or ``:alias``),
``payload`` (a JMESPath over ``{input, results, item, index}``; without it the function gets the
job's event) and ``local`` (the stand-in that runs in its place on this machine)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import jmespath

from runtime.definition.draft import DraftJob
from runtime.definition.job_code import check_job_code
from runtime.definition.report import Report

FUNCTION_NAME = r"[A-Za-z0-9_-]{1,64}"
QUALIFIER = r"(:(\$LATEST|[A-Za-z0-9_-]{1,128}))?"
FUNCTION = re.compile(
    rf"^(arn:aws[a-z-]*:lambda:[a-z0-9-]+:\d{{12}}:function:{FUNCTION_NAME}{QUALIFIER}|{FUNCTION_NAME}{QUALIFIER})$"
)
"""What Lambda's ``FunctionName`` takes, with a qualifier: an ARN, or a name in the stack's
account and region (a partial ARN ``123456789012:function:name`` is not accepted: give the ARN)."""

EXCLUSIVE = ("code", "wait", "approval", "call")


def read_invoke(job: DraftJob, own: dict[str, Any], report: Report, base_dir: Path) -> dict[str, Any]:
    """The ``Job`` fields ``invoke``, ``payload`` and ``local`` set, with their problems reported."""
    function = own.get("invoke")
    for key in ("payload", "local"):
        if key in own and function is None and not (key == "local" and "call" in own):
            report.add(
                (*job.path, key),
                f"'{key}' goes with 'invoke' (a job that calls an existing function)"
                + (" or 'call'" if key == "local" else ""),
            )
    if not isinstance(function, str):
        return {}
    settings: dict[str, Any] = {"invoke": function}
    if not FUNCTION.match(function):
        report.add(
            (*job.path, "invoke"),
            f"{function!r} is not a Lambda function ARN (arn:aws:lambda:REGION:ACCOUNT:function:NAME) or "
            "name, with an optional :version or :alias",
        )
    for key in EXCLUSIVE:
        if key in own:
            report.add(
                (*job.path, key), f"a job that invokes a function runs no '{key}': remove '{key}' or 'invoke'"
            )
    payload = own.get("payload")
    if isinstance(payload, str):
        try:
            jmespath.compile(payload)
            settings["payload"] = payload
        except (jmespath.exceptions.JMESPathError, RecursionError) as exc:
            report.add((*job.path, "payload"), f"invalid JMESPath {payload!r}: {str(exc).splitlines()[0]}")
    local = own.get("local")
    if isinstance(local, str) and local:
        settings["local"] = check_job_code(local, (*job.path, "local"), report, base_dir)
    else:
        report.warn(
            (*job.path, "invoke"),
            f"job {job.name!r} invokes {function} and has no 'local' stand-in: `run` and the dev server "
            "cannot run it on this machine (give 'local: <a .py with handler(event, context)>')",
        )
    return settings
