"""The clock: the one place the runtime reads the time, and how it reads stored dates.
Standard library only."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

Source = Callable[[], datetime]


def _system_time() -> datetime:
    return datetime.now(UTC)


_source: Source = _system_time


def utcnow() -> datetime:
    return _source()


@contextmanager
def time_from(source: Source) -> Iterator[None]:
    """Read the time from ``source`` instead of the system clock while the block runs: what the
    test kit (``cdk_app.testkit``) skips time with. Process-wide, so for one test at a time."""
    global _source  # noqa: PLW0603 - the one switch of the one clock
    previous, _source = _source, source
    try:
        yield
    finally:
        _source = previous


def age(then: datetime, now: datetime) -> timedelta:
    """How long ago ``then`` was; a naive ``then`` (a client without tz_aware) is UTC."""
    return now - then.replace(tzinfo=then.tzinfo or UTC)


def iso(value: datetime | None) -> str | None:
    """A time as JSON carries it: ISO 8601 to the millisecond (what MongoDB keeps), with its offset."""
    return None if value is None else value.isoformat(timespec="milliseconds")


def from_iso(text: str | None) -> datetime | None:
    """``iso``'s text back as a time."""
    return None if text is None else datetime.fromisoformat(text)


def as_utc(value: datetime | None) -> datetime | None:
    """A stored date as an aware datetime: a client without ``tz_aware`` reads naive UTC."""
    return value if value is None or value.tzinfo is not None else value.replace(tzinfo=UTC)
