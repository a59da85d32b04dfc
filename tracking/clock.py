"""The time the sequence scheduler reads: due steps, sending windows, business days.

In production it is the real time. Tests set it (`clock_set`, `clock_advance`) so a two-week
sequence runs in seconds; `clock_reset` goes back to the real time. Process-wide on purpose: the
scheduler runs in the test's own process (the sweep, the settler and the send job are called
directly), so one setting reaches all of them."""

from datetime import datetime, timedelta

from django.utils import timezone

_frozen: datetime | None = None


def now() -> datetime:
    return _frozen if _frozen is not None else timezone.now()


def clock_set(at: datetime) -> None:
    global _frozen
    if timezone.is_naive(at):
        raise ValueError("The clock needs an aware datetime.")
    _frozen = at


def clock_advance(**delta: float) -> datetime:
    clock_set(now() + timedelta(**delta))
    return now()


def clock_reset() -> None:
    global _frozen
    _frozen = None
