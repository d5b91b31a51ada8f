"""What an ``http`` job runs in place of code: one HTTP request, whose answer is the job's output
(docs/spec.md, "Jobs that call an existing function or service").

The job wrapper leases, reports and retries it as it does code. A 2xx answer's body is the
output, parsed when it is JSON (else its text); any other status fails the attempt with an error
the retry policy can name: ``HttpTooManyRequests`` (429), ``HttpServerError`` (5xx),
``HttpClientError`` (the rest), ``HttpTimeout`` (no answer in time) and ``HttpConnectionError``
(the server could not be reached). Retrying 429 and 5xx only is ``retry.on: [HttpTooManyRequests,
HttpServerError]``."""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Callable
from typing import Any

import jmespath

from runtime.definition.model import HttpRequest
from runtime.definition.services import URL_PARTS
from runtime.ports import HttpClient, HttpResponse
from runtime.service.job_attempt import UserHandler

SHOWN_BODY = 500
"""Characters of a failed answer's body kept in the attempt's error."""


class HttpError(Exception):
    """An answer (or its absence) that fails the attempt."""


class HttpTooManyRequests(HttpError):
    """429: the server asks for fewer requests."""


class HttpServerError(HttpError):
    """5xx: the server failed."""


class HttpClientError(HttpError):
    """Any other status outside 2xx: the request is wrong, so a retry sends it wrong again."""


class HttpTimeout(HttpError):
    """No answer within the request's ``timeout``."""


class HttpConnectionError(HttpError):
    """The server could not be reached (no such host, refused, TLS)."""


def _data(event: dict[str, Any]) -> dict[str, Any]:
    return {name: event.get(name) for name in ("input", "results", "item", "index")}


def request_url(template: str, data: dict[str, Any]) -> str:
    """``template`` with each ``{expression}`` replaced by its value, URL-encoded."""

    def value(match: Any) -> str:
        found = jmespath.search(match.group(1), data)
        text = found if isinstance(found, str) else json.dumps(found)
        return urllib.parse.quote(text, safe="")

    return URL_PARTS.sub(value, template)


def output_of(answer: HttpResponse) -> Any:
    """A 2xx answer as the job's output: its JSON, or its text (None when empty)."""
    text = answer.body.decode("utf-8", errors="replace")
    if not text.strip():
        return None
    try:
        return json.loads(text)
    except ValueError:
        if "json" in answer.content_type.lower():
            raise HttpServerError(f"the answer says it is JSON and is not: {text[:SHOWN_BODY]!r}") from None
        return text


def failure(answer: HttpResponse, method: str, url: str) -> HttpError:
    kind = (
        HttpTooManyRequests
        if answer.status == 429
        else HttpServerError
        if answer.status >= 500
        else HttpClientError
    )
    body = answer.body.decode("utf-8", errors="replace")[:SHOWN_BODY]
    return kind(f"{method} {url} answered {answer.status}: {body}")


def http_handler(client: HttpClient, request: HttpRequest, secret_of: Callable[[str], str]) -> UserHandler:
    """The handler of an ``http`` job sending ``request``; ``secret_of`` reads a secret's string."""

    def send(event: dict[str, Any], context: Any) -> Any:
        data = _data(event)
        url = request_url(request.url, data)
        headers = dict(request.headers)
        body = None
        if request.body is not None:
            body = json.dumps(jmespath.search(request.body, data)).encode()
            headers.setdefault("Content-Type", "application/json")
        if request.secret is not None:
            headers[request.secret_header] = secret_of(request.secret)
        timeout = request.timeout
        remaining = getattr(context, "get_remaining_time_in_millis", None)
        if callable(remaining):
            # Leave the wrapper a second to report, within the function's own timeout.
            timeout = max(1.0, min(timeout, remaining() / 1000 - 1))
        try:
            answer = client.send(request.method, url, headers, body, timeout)
        except TimeoutError as exc:
            raise HttpTimeout(f"{request.method} {url}: {exc}") from None
        except OSError as exc:
            raise HttpConnectionError(f"{request.method} {url}: {exc}") from None
        if not 200 <= answer.status < 300:
            raise failure(answer, request.method, url)
        return output_of(answer)

    return send
