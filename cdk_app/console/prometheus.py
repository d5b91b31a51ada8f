"""The workflows' metrics in Prometheus' text format, for the dev server's ``/metrics``: the same
records the Lambda functions print as embedded metric format lines (``runtime.aws.metrics``),
added up in this process. A count becomes a counter (``workflows_runs_failed_total``), a
duration a summary of seconds (``workflows_run_duration_seconds_count`` and ``_sum``); labels are
the record's dimensions (``workflow``, and ``job`` for per-job metrics)."""

from __future__ import annotations

import re
import threading
from collections import defaultdict
from typing import Any

from runtime.aws import metrics

PREFIX = "workflows_"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
TO_SECONDS = {"Seconds": 1.0, "Milliseconds": 0.001, "Microseconds": 0.000_001}
"""Durations are kept in seconds, Prometheus' base unit."""


def metric_name(metric: metrics.Metric) -> str:
    """``RunsFailed`` -> ``workflows_runs_failed_total``; ``RunDuration`` ->
    ``workflows_run_duration_seconds``."""
    snake = re.sub(r"(?<!^)(?=[A-Z])", "_", metric.name).lower()
    return f"{PREFIX}{snake}_seconds" if metric.unit in TO_SECONDS else f"{PREFIX}{snake}_total"


Labels = tuple[tuple[str, str], ...]


class Registry:
    """What the records seen so far add up to. ``record`` is a metrics sink
    (``runtime.aws.metrics.add_sink``); ``text`` the ``/metrics`` page."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, dict[Labels, float]] = defaultdict(lambda: defaultdict(float))
        self._sums: dict[str, dict[Labels, float]] = defaultdict(lambda: defaultdict(float))

    def record(self, record: dict[str, Any]) -> None:
        labels: Labels = tuple(
            (dimension.lower(), str(record[dimension]))
            for dimension in (metrics.WORKFLOW, metrics.JOB)
            if dimension in record
        )
        with self._lock:
            for directive in record["_aws"]["CloudWatchMetrics"]:
                for entry in directive["Metrics"]:
                    metric = metrics.CATALOG.get(entry["Name"])
                    value = record.get(entry["Name"])
                    if metric is None or not isinstance(value, int | float):
                        continue
                    name = metric_name(metric)
                    if metric.unit in TO_SECONDS:
                        self._counts[name][labels] += 1
                        self._sums[name][labels] += value * TO_SECONDS[metric.unit]
                    else:
                        self._counts[name][labels] += value

    def text(self) -> str:
        """Every metric of the catalog (with no sample until one is recorded), with its help."""
        lines: list[str] = []
        with self._lock:
            for metric in metrics.CATALOG.values():
                name = metric_name(metric)
                summary = metric.unit in TO_SECONDS
                lines.append(f"# HELP {name} {metric.help}")
                lines.append(f"# TYPE {name} {'summary' if summary else 'counter'}")
                for labels, count in sorted(self._counts.get(name, {}).items()):
                    if summary:
                        lines.append(f"{name}_count{_labels(labels)} {_number(count)}")
                        lines.append(f"{name}_sum{_labels(labels)} {_number(self._sums[name][labels])}")
                    else:
                        lines.append(f"{name}{_labels(labels)} {_number(count)}")
        return "\n".join(lines) + "\n"


def _labels(labels: Labels) -> str:
    if not labels:
        return ""
    escaped = (value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") for _, value in labels)
    return "{" + ",".join(f'{name}="{value}"' for (name, _), value in zip(labels, escaped, strict=True)) + "}"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))
