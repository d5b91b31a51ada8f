"""The IR of a job's limits across runs (the spec's job ``concurrency`` and ``rate_limit``), apart
from ``runtime.definition.model`` to keep that module small. Standard library only."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, kw_only=True)
class JobConcurrency:
    """At most ``limit`` attempts of the job in flight at once across every run of the workflow:
    per value of ``key`` (JMESPath over the attempt's event), or in all when there is none."""

    limit: int
    key: str | None = None

    def to_document(self) -> dict[str, Any]:
        return {"limit": self.limit, "key": self.key}

    def describe(self, job: str, key: str) -> str:
        """Why an attempt waits, as ``status`` says it."""
        return f"concurrency {self.limit} on {job}" + ("" if self.key is None else f" with key {key}")


@dataclass(frozen=True, kw_only=True)
class RateLimit:
    """At most ``limit`` attempts of the job start in each window of ``period`` seconds (windows
    counted from the Unix epoch) across every run: per value of ``key``, or in all."""

    limit: int
    period: float = 1.0
    key: str | None = None

    def to_document(self) -> dict[str, Any]:
        return {"limit": self.limit, "period": self.period, "key": self.key}

    def describe(self, job: str, key: str) -> str:
        """Why an attempt waits, as ``status`` says it: ``rate limit 20/s on charge_card``."""
        period = "s" if self.period == 1 else f"{self.period:g}s"
        return f"rate limit {self.limit}/{period} on {job}" + ("" if self.key is None else f" with key {key}")


def limits_from_document(job: Mapping[str, Any]) -> dict[str, Any]:
    """The ``Job`` fields of a stored definition's job."""
    fields: dict[str, Any] = {}
    if job.get("concurrency") is not None:
        fields["concurrency"] = JobConcurrency(**job["concurrency"])
    if job.get("rate_limit") is not None:
        fields["rate_limit"] = RateLimit(**job["rate_limit"])
    return fields


@dataclass(frozen=True, kw_only=True)
class AttemptLimits:
    """What the dispatch of one attempt of a limited job needs to know (carried on its event,
    never sent to the job): the job's limits, its run's priority, and the job's round (a
    fan-out's items start their attempts again in each round)."""

    concurrency: JobConcurrency | None = None
    rate_limit: RateLimit | None = None
    priority: int = 0
    round: int = 0

    @property
    def key(self) -> str | None:
        """The key expression both limits share (the build checks they do)."""
        if self.concurrency is not None:
            return self.concurrency.key
        return None if self.rate_limit is None else self.rate_limit.key
