"""A test helper: open a breaker at once, as a quota error would."""

from queue_control.services import breaker_failure_record


def breaker_trip(*, service: str, error: str = "tripped by hand") -> bool:
    return breaker_failure_record(service=service, error=error, trips_immediately=True)
