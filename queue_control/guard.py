"""Every external call goes through `guarded_call`: gate, breaker, call, classify, count."""

import logging
import smtplib
from collections.abc import Callable
from typing import TypeVar

from django.conf import settings

from .breakers import CLOSED, OPEN
from .errors import QueuePaused
from .gate import gate_open
from .selectors import breaker_state
from .services import breaker_failure_record, queue_pause

logger = logging.getLogger(__name__)
T = TypeVar("T")

# Errors with no provider flags that still say "the service is down": timeouts, refused or dropped
# connections (socket.timeout, ConnectionError, smtplib.SMTPServerDisconnected are all OSError).
_TRANSPORT_ERRORS = (OSError,)
# ...except an SMTP server refusing one recipient: that is about one input, like a 4xx.
_ONE_INPUT_ERRORS = (smtplib.SMTPRecipientsRefused,)


def classify(exc: BaseException) -> tuple[bool, bool]:
    """(counts_for_breaker, trips_immediately) for an error an external call raised.

    Provider errors (integrations.errors.ProviderError) carry both flags on their class; read
    with defaults, so this does not depend on that module's exact shape. Decided before the
    breaker sees anything: an error that does not count is not a success either.
    """
    counts = getattr(exc, "counts_for_breaker", None)
    if counts is None:
        counts = isinstance(exc, _TRANSPORT_ERRORS) and not isinstance(exc, _ONE_INPUT_ERRORS)
    trips = bool(counts) and bool(getattr(exc, "trips_immediately", False))
    return bool(counts), trips


def guarded_call(service: str, fn: Callable[..., T], *args, **kwargs) -> T:
    """Call fn(*args, **kwargs) for `service` only while the queue is active and the service's
    breaker is closed; otherwise raise QueuePaused without calling it."""
    if service not in settings.SERVICES:
        raise ValueError(f"No circuit breaker for {service!r}; known: {', '.join(settings.SERVICES)}")
    if not gate_open():
        raise QueuePaused("The queue is paused.", service=service)
    state = breaker_state(service)
    if state != CLOSED:
        if state == OPEN:
            # An open breaker always means a paused queue. If the pause after the trip failed
            # (database unreachable then), the next caller finishes it; queue_pause is idempotent.
            try:
                queue_pause(reason=f"breaker:{service}", actor=None)
            except Exception:
                logger.exception("Could not pause the queue for open breaker %s", service)
        raise QueuePaused(f"Circuit breaker {service} is {state}.", service=service)

    try:
        return fn(*args, **kwargs)
    except Exception as exc:
        counts, trips = classify(exc)
        if counts:
            try:
                breaker_failure_record(service=service, error=exc, trips_immediately=trips)
            except Exception:
                # Never hide the provider's error behind ours. If Redis is down the gate is
                # closed for everyone anyway; if the database was, the next call re-pauses.
                logger.exception("Could not record a %s failure", service)
        raise
