"""CloudWatch metrics as embedded metric format lines: a function prints one JSON line and
CloudWatch Logs turns it into a data point, with no call to CloudWatch on the way."""

from __future__ import annotations

import json
from datetime import datetime

from runtime import contracts
from runtime.clock import utcnow


def rejected_metric_line(workflow: str, now: datetime | None = None) -> str:
    """One ``RejectedStatuses`` data point for ``workflow``: a status the orchestrator did not
    apply because its writer could not be authenticated."""
    moment = now or utcnow()
    record = {
        "_aws": {
            "Timestamp": int(moment.timestamp() * 1000),
            "CloudWatchMetrics": [
                {
                    "Namespace": contracts.RECONCILER_METRICS_NAMESPACE,
                    "Dimensions": [["Workflow"]],
                    "Metrics": [{"Name": contracts.REJECTED_STATUSES_METRIC, "Unit": "Count"}],
                }
            ],
        },
        "Workflow": workflow,
        contracts.REJECTED_STATUSES_METRIC: 1,
    }
    return json.dumps(record)
