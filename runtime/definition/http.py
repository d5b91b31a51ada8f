"""The ``http`` key of a job that sends a request instead of running code: ``url`` (its
``{...}`` parts JMESPath over ``{input, results, item, index}``), ``method``, ``headers``,
``body`` (JMESPath), ``secret`` (a Secrets Manager secret sent as ``secret_header``) and
``timeout``."""

from __future__ import annotations

from typing import Any

import jmespath

from runtime.definition.draft import DraftJob, known_fields, mapping
from runtime.definition.model import HttpRequest
from runtime.definition.report import Report
from runtime.definition.services import URL_PARTS

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")

EXCLUSIVE = ("code", "wait", "approval", "invoke")


def read_http(job: DraftJob, own: dict[str, Any], report: Report) -> dict[str, Any]:
    """The ``Job`` field ``http`` sets, with its problems reported."""
    if "http" not in own:
        return {}
    path = (*job.path, "http")
    fields = known_fields(own["http"], "http")
    for key in EXCLUSIVE:
        if key in own:
            report.add(
                (*job.path, key),
                f"a job that sends an HTTP request runs no '{key}': remove '{key}' or 'http'",
            )
    url = fields.get("url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        report.add((*path, "url"), f"the url is an http:// or https:// address, got {url!r}")
        return {}
    for part in URL_PARTS.findall(url):
        _check_expression(part, (*path, "url"), report)
    method = str(fields.get("method", "POST" if "body" in fields else "GET")).upper()
    if method not in METHODS:
        report.add((*path, "method"), f"the method is one of {', '.join(METHODS)}, got {method!r}")
    body = fields.get("body")
    if isinstance(body, str):
        _check_expression(body, (*path, "body"), report)
    headers = {str(name): str(value) for name, value in mapping(fields.get("headers")).items()}
    secret_header = str(fields.get("secret_header", "Authorization"))
    timeout = fields.get("timeout", 30)
    if not isinstance(timeout, int | float) or isinstance(timeout, bool) or not 0 < timeout <= 900:
        report.add(
            (*path, "timeout"),
            f"the timeout is a number of seconds, above 0 and at most 900, got {timeout!r}",
        )
        timeout = 30
    secret = fields.get("secret")
    return {
        "http": HttpRequest(
            url=url,
            method=method,
            headers=headers,
            body=body if isinstance(body, str) else None,
            secret=secret if isinstance(secret, str) and secret else None,
            secret_header=secret_header,
            timeout=float(timeout),
        )
    }


def _check_expression(expression: str, path: tuple[str | int, ...], report: Report) -> None:
    try:
        jmespath.compile(expression)
    except (jmespath.exceptions.JMESPathError, RecursionError) as exc:
        report.add(path, f"invalid JMESPath {expression!r}: {str(exc).splitlines()[0]}")
