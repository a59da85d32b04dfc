"""Test helpers: open a breaker at once, as a quota error would; make the pause after it fail."""

from contextlib import contextmanager

from django.db import OperationalError

from queue_control.services import breaker_failure_record
from queue_control.signals import queue_paused


def breaker_trip(*, service: str, error: str = "tripped by hand") -> bool:
    return breaker_failure_record(service=service, error=error, trips_immediately=True)


@contextmanager
def cascade_fails(times: int):
    """The next `times` queue pauses fail on the database after pausing the campaigns, as a
    deadlock victim's or a dropped connection's would: their transaction rolls back whole."""
    left = [times]

    def fail(sender, **kwargs):
        if left[0]:
            left[0] -= 1
            raise OperationalError("deadlock detected (injected by the test)")

    queue_paused.connect(fail, weak=False, dispatch_uid="tests.cascade_fails")
    try:
        yield left
    finally:
        queue_paused.disconnect(dispatch_uid="tests.cascade_fails")
