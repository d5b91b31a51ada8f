"""Log lines that join up (docs/observability.md, "Logs"): in Lambda every line is one JSON
object with the workflow, run, job, attempt and trace id of the attempt it was logged in, the
user's own ``logging`` calls included."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from pathlib import Path

from runtime.aws.logs import JsonFormatter
from runtime.aws.telemetry import observed_call
from runtime.documents import traces
from runtime.documents.events import JobEvent

ROOT = Path(__file__).resolve().parents[1]


def test_a_line_logged_by_the_users_code_carries_its_attempt_and_trace() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    user_log = logging.getLogger("user.code")
    user_log.addHandler(handler)
    user_log.setLevel(logging.INFO)
    event = JobEvent(run_id="nightly-1", workflow="nightly", phase="load", job="copy", attempt=3, index=7)
    try:
        observed_call(event, lambda payload, context: user_log.info("copied %d rows", 12), {}, None)
        user_log.info("outside any attempt")
    finally:
        user_log.removeHandler(handler)
    inside, outside = (json.loads(line) for line in stream.getvalue().splitlines())
    assert inside["message"] == "copied 12 rows"
    assert {key: inside[key] for key in ("workflow", "run_id", "phase", "job", "attempt", "index")} == {
        "workflow": "nightly",
        "run_id": "nightly-1",
        "phase": "load",
        "job": "copy",
        "attempt": 3,
        "index": 7,
    }
    assert inside["trace_id"] == traces.trace_id("nightly-1")
    assert inside["level"] == "INFO"
    assert "run_id" not in outside


def test_in_lambda_the_functions_print_json_lines_and_emf() -> None:
    # A fresh interpreter with Lambda's variable: the job wrapper's set-up, then a line and a metric.
    code = (
        "import logging\n"
        "from runtime.aws import metrics\n"
        "from runtime.aws.telemetry import setup_function\n"
        "from runtime.aws.logs import log_context\n"
        "from datetime import datetime, UTC\n"
        "setup_function({'AWS_LAMBDA_FUNCTION_NAME': 'w-job-j'})\n"
        "with log_context(workflow='w', run_id='r-1', job='j', attempt=1):\n"
        "    logging.getLogger('runtime.x').warning('hello')\n"
        "metrics.emit(metrics.embedded_metrics('w', {'RunsStarted': 1}, datetime.now(UTC)))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    line = json.loads(done.stderr.strip())
    assert (line["message"], line["run_id"], line["trace_id"]) == ("hello", "r-1", traces.trace_id("r-1"))
    record = json.loads(done.stdout.strip())
    assert record["RunsStarted"] == 1
    assert record["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "MongoLambdaWorkflows"
