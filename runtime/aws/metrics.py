"""CloudWatch metrics as embedded metric format lines: a function prints one JSON line and
CloudWatch Logs turns it into a data point, with no call to CloudWatch on the way."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from runtime import contracts
from runtime.clock import utcnow


def embedded_metrics(workflow: str, values: dict[str, int], now: datetime, **fields: Any) -> dict[str, Any]:
    """An embedded-metric-format record: ``values`` (name -> count) for ``workflow``, in the
    workflows' namespace, with ``fields`` logged beside them."""
    return {
        "_aws": {
            "Timestamp": int(now.timestamp() * 1000),
            "CloudWatchMetrics": [
                {
                    "Namespace": contracts.RECONCILER_METRICS_NAMESPACE,
                    "Dimensions": [["Workflow"]],
                    "Metrics": [{"Name": name, "Unit": "Count"} for name in values],
                }
            ],
        },
        "Workflow": workflow,
        **values,
        **fields,
    }


def rejected_metric_line(workflow: str, now: datetime | None = None) -> str:
    """One ``RejectedStatuses`` data point for ``workflow``: a status the orchestrator did not
    apply because its writer could not be authenticated."""
    return json.dumps(embedded_metrics(workflow, {contracts.REJECTED_STATUSES_METRIC: 1}, now or utcnow()))
