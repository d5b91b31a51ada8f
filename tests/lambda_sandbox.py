"""Running a synthesized function the way Lambda would: a clean interpreter (``python -I -S``,
no site-packages) whose path holds only the function's asset, its layer's ``python`` folder and
what the Lambda Python runtime ships (boto3 and its dependencies), and AWS APIs answered by a
local endpoint that records what the handler asked for."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import urllib.parse
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3

from runtime.documents.signatures import StatusKeys

LAMBDA_RUNTIME_PACKAGES = ("boto3", "botocore", "jmespath", "s3transfer", "dateutil", "urllib3", "six.py")
"""What the Lambda Python runtime puts on the path besides the standard library."""

BOOTSTRAP = """
import importlib, json, sys
sys.path[:0] = json.loads(sys.argv[1])
module, _, function = sys.argv[2].rpartition(".")
handler = getattr(importlib.import_module(module), function)
class Context:
    aws_request_id = sys.argv[3]
    function_name = sys.argv[4]
    invoked_function_arn = "arn:aws:lambda:us-east-1:111111111111:function:" + sys.argv[4]
result = handler(json.loads(sys.stdin.read()), Context())
outside = sorted(
    name for name, loaded in list(sys.modules.items())
    if getattr(loaded, "__file__", None) and not loaded.__file__.startswith(tuple(json.loads(sys.argv[5])))
)
print(json.dumps({"result": result, "outside": outside}))
"""
"""Imports the handler named like Lambda's ``Handler``, calls it once with stdin's event, and
reports the result and any module loaded from outside the allowed folders."""


LAMBDA_PYTHON = "LAMBDA_PYTHON"
"""Names an interpreter of the functions' Python version, where it is not on the path as
``python<version>``."""


def target_interpreter(version: str) -> tuple[str | None, str]:
    """An interpreter of ``version`` (the Lambda runtime's, ``3.14``), and where it was looked for.

    None of the package registries this project uses ships one: Debian 12 has Python 3.11, and
    ``uv python install`` and ``pbs-installer`` (on PyPI) download python-build-standalone from
    GitHub, not from PyPI."""
    looked = f"${LAMBDA_PYTHON}, python{version} on PATH"
    for candidate in (os.environ.get(LAMBDA_PYTHON), shutil.which(f"python{version}")):
        if not candidate:
            continue
        ran = subprocess.run(
            [candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            check=False,
        )
        if ran.returncode == 0 and ran.stdout.strip() == version:
            return candidate, looked
    return None, looked


def lambda_runtime_folder(target: Path) -> Path:
    """A folder of links to boto3 and its dependencies only, taken from this interpreter."""
    site = Path(boto3.__file__).resolve().parent.parent
    target.mkdir(parents=True, exist_ok=True)
    for name in LAMBDA_RUNTIME_PACKAGES:
        link = target / name
        if not link.exists():
            link.symlink_to(site / name)
    return target


@dataclass
class FakeAws:
    """Answers Lambda ``Invoke`` (async, 202), SNS ``Publish`` and Secrets Manager
    ``GetSecretValue`` (every secret holds ``secret_string``: the status key) on a local port."""

    url: str = ""
    secret_string: str = field(default_factory=lambda: StatusKeys.generate().to_text())
    invocations: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    """(function name, payload) in the order they arrived."""
    publications: list[dict[str, str]] = field(default_factory=list)


@contextmanager
def fake_aws() -> Iterator[FakeAws]:
    recorded = FakeAws()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if self.path.startswith("/2015-03-31/functions/"):
                name = urllib.parse.unquote(self.path.split("/")[3])
                recorded.invocations.append((name, json.loads(body)))
                self._answer(202, b"", "application/json")
                return
            if self.headers.get("X-Amz-Target") == "secretsmanager.GetSecretValue":
                secret_id = json.loads(body)["SecretId"]
                answer = {"ARN": secret_id, "Name": secret_id, "SecretString": recorded.secret_string}
                self._answer(200, json.dumps(answer).encode(), "application/x-amz-json-1.1")
                return
            form = {key: values[0] for key, values in urllib.parse.parse_qs(body.decode()).items()}
            if form.get("Action") == "Publish":
                recorded.publications.append(form)
                xml = (
                    "<PublishResponse><PublishResult><MessageId>m-1</MessageId></PublishResult>"
                    "<ResponseMetadata><RequestId>r-1</RequestId></ResponseMetadata></PublishResponse>"
                )
                self._answer(200, xml.encode(), "text/xml")
                return
            self._answer(400, b"not faked", "text/plain")

        def _answer(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            """Quiet: the test asserts on what was recorded."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    recorded.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield recorded
    finally:
        server.shutdown()
        server.server_close()


def invoke(
    handler: str,
    event: Mapping[str, Any],
    *,
    path: list[Path],
    environment: Mapping[str, str],
    function_name: str,
    request_id: str = "req-1",
    interpreter: str = sys.executable,
) -> dict[str, Any]:
    """Runs one handler in a clean ``interpreter``; returns ``{"result", "outside"}``."""
    allowed = [str(folder) for folder in path] + standard_library(interpreter)
    completed = subprocess.run(
        [
            interpreter,
            "-I",
            "-S",
            "-c",
            BOOTSTRAP,
            json.dumps([str(folder) for folder in path]),
            handler,
            request_id,
            function_name,
            json.dumps(allowed),
        ],
        input=json.dumps(event),
        env=dict(environment),
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if completed.returncode != 0:
        raise AssertionError(f"{function_name} ({handler}) failed:\n{completed.stderr}")
    return dict(json.loads(completed.stdout.strip().splitlines()[-1]))


def standard_library(interpreter: str) -> list[str]:
    """The folders ``interpreter``'s standard library (and its compiled modules) load from."""
    ran = subprocess.run(
        [
            interpreter,
            "-I",
            "-S",
            "-c",
            "import json, sys; print(json.dumps([sys.base_prefix, sys.base_exec_prefix]))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return [str(Path(prefix) / "lib") for prefix in json.loads(ran.stdout)]
