"""The clock: the one place the runtime reads the time, and how it reads stored dates.
Standard library only."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


def utcnow() -> datetime:
    return datetime.now(UTC)


def age(then: datetime, now: datetime) -> timedelta:
    """How long ago ``then`` was; a naive ``then`` (a client without tz_aware) is UTC."""
    return now - then.replace(tzinfo=then.tzinfo or UTC)


def as_utc(value: datetime | None) -> datetime | None:
    """A stored date as an aware datetime: a client without ``tz_aware`` reads naive UTC."""
    return value if value is None or value.tzinfo is not None else value.replace(tzinfo=UTC)
