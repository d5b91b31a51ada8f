"""The ``HttpClient`` port's adapter: one request with the standard library's ``urllib`` (the
Lambda runtime and this machine both have it; no dependency to bundle), every status answered
as a response for the job to judge, redirects followed as ``urllib`` does."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request
from collections.abc import Mapping

from runtime.ports import HttpResponse


class UrllibClient:
    def send(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes | None, timeout: float
    ) -> HttpResponse:
        request = urllib.request.Request(url, data=body, headers=dict(headers), method=method)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310 - the spec's own URL
                return HttpResponse(answer.status, answer.headers.get("Content-Type", ""), answer.read())
        except urllib.error.HTTPError as error:
            return HttpResponse(error.code, error.headers.get("Content-Type", ""), error.read())
        except TimeoutError as exc:
            raise TimeoutError(f"no answer from {url} within {timeout:g} s") from exc
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, TimeoutError | socket.timeout):
                raise TimeoutError(f"no answer from {url} within {timeout:g} s") from exc
            raise OSError(f"could not reach {url}: {exc.reason}") from exc
