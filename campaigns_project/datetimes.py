"""Times a client sends, and times the database hands back, on the range both ends can hold.

PostgreSQL takes UTC offsets up to ±15:59 and Python datetimes only years 1 to 9999, so an input
such as `9999-12-31T23:59:59-14:00` (year 10000 in UTC) or `2020-01-01T00:00:00+18:00` is refused
where it is parsed (`storable_refusal`, used by the API's datetime field and the filters).

A value stored before these checks existed may still be out of Python's range;
`LenientTimestamptzLoader` reads it as the nearest representable instant instead of raising in
the middle of a list page (`install_lenient_loader`, on every new PostgreSQL connection).
"""

from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.utils import timezone

MAX_UTC_OFFSET = timedelta(hours=15, minutes=59)
EARLIEST = datetime.min.replace(tzinfo=UTC)
LATEST = datetime.max.replace(tzinfo=UTC)


def storable_refusal(value: datetime) -> str | None:
    """Why `value` cannot be stored, or None when it can."""
    offset = value.utcoffset()
    if offset is not None and abs(offset) > MAX_UTC_OFFSET:
        return "The UTC offset must be between -15:59 and +15:59."
    if timezone.is_aware(value):
        try:
            value.astimezone(UTC)
        except OverflowError:
            return "Out of range: the time must fall between the years 1 and 9999 in UTC."
    return None


def event_time_accept(value: datetime | None, *, now: datetime | None = None) -> tuple[datetime, str | None]:
    """The time to record for an event a provider reports, and a note when it was not `value`.

    Within [now - EVENT_TIME_MAX_AGE_DAYS, now + EVENT_TIME_MAX_AHEAD_SECONDS] the reported time is
    kept; outside it (a bad clock, a hostile payload) the event is recorded at the time received."""
    now = now or timezone.now()
    if value is None:
        return now, None
    refusal = storable_refusal(value)
    earliest = now - timedelta(days=settings.EVENT_TIME_MAX_AGE_DAYS)
    latest = now + timedelta(seconds=settings.EVENT_TIME_MAX_AHEAD_SECONDS)
    if refusal is None and earliest <= value <= latest:
        return value.astimezone(UTC), None
    return now, (
        f"occurred_at {value.isoformat()} is outside the accepted window "
        f"({earliest.isoformat()} to {latest.isoformat()}); recorded at the time received."
    )


def event_time_refusal(value: datetime, *, now: datetime | None = None) -> str | None:
    """For an integrator's API call, which can correct it: why `value` is refused, or None."""
    _, note = event_time_accept(value, now=now)
    if note is None:
        return None
    return (
        f"Must be within the last {settings.EVENT_TIME_MAX_AGE_DAYS} days and at most "
        f"{settings.EVENT_TIME_MAX_AHEAD_SECONDS} seconds ahead."
    )


def _lenient(loader_class, *, aware: bool):
    """A loader that reads through `loader_class` (by composition: psycopg's C loaders cannot be
    subclassed) and clamps what Python cannot represent."""
    from psycopg.adapt import Loader

    class LenientTimestampLoader(Loader):
        inner_class = loader_class
        # Django compares this with the connection's time zone and keeps a loader that matches.
        timezone = getattr(loader_class, "timezone", None)

        def __init__(self, oid, context=None):
            super().__init__(oid, context)
            self.inner = self.inner_class(oid, context)

        def load(self, data):
            from psycopg import DataError

            try:
                return self.inner.load(data)
            except DataError:
                text = bytes(data).decode("ascii", "replace")
                clamped = EARLIEST if text.startswith("-") or text.endswith("BC") else LATEST
                if not aware:
                    return clamped.replace(tzinfo=None)
                if not hasattr(self.inner_class, "timezone"):  # psycopg's own loader: aware, UTC
                    return clamped
                # Django's loader sets its connection's zone, or none at all (USE_TZ off).
                return clamped.replace(tzinfo=self.timezone)

    return LenientTimestampLoader


def install_lenient_loader(sender, connection, **kwargs) -> None:
    """connection_created receiver: wrap the connection's timestamptz loader (Django's, which
    carries the connection's time zone, so Django keeps it) and its timestamp loader (what
    date_trunc ... AT TIME ZONE returns, as in the analytics' buckets)."""
    if connection.vendor != "postgresql":
        return
    from psycopg.pq import Format

    adapters = connection.connection.adapters
    for type_name, aware in (("timestamptz", True), ("timestamp", False)):
        current = adapters.get_loader(adapters.types[type_name].oid, Format.TEXT)
        if current is not None and not current.__name__.startswith("Lenient"):
            adapters.register_loader(type_name, _lenient(current, aware=aware))
