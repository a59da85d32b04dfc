"""Every change to the queue latch and the breakers goes through here: the API, the admin page,
the guard and management commands call these same functions."""

import logging
import time

import redis
from django.conf import settings
from django.db import DatabaseError, close_old_connections, transaction
from django.utils import timezone

from campaigns_project.errors import ApplicationError

from . import breakers
from .gate import mirror_set, mirror_sync
from .models import QueueEvent, QueueState
from .selectors import breaker_get, breakers_not_closed
from .signals import queue_paused, queue_resumed

logger = logging.getLogger(__name__)

SYSTEM = "system"
# How often the pause after a breaker trip is tried before its error goes up.
PAUSE_ATTEMPTS = 3


def _label(actor, actor_label: str) -> str:
    if actor_label:
        return actor_label[:150]
    return actor.get_username() if actor is not None else SYSTEM


def _latch_locked() -> QueueState:
    # Row lock on the latch: concurrent pauses (two breakers tripping at once) and resumes queue
    # up behind each other, so each one sees the state the previous one committed. Without it two
    # pauses could both see "active", both write their reason and both cascade.
    latch, _ = QueueState.objects.select_for_update().get_or_create(pk=1)
    return latch


def queue_pause(*, reason: str = "", service: str = "", actor=None, actor_label: str = "") -> QueueState:
    """Latch the queue paused and, in the same transaction, pause every running campaign and every
    pending or processing job (through the queue_paused receivers). `service` set: its breaker
    opened (cause kind breaker); otherwise an operator's pause with their `reason`. Idempotent: a
    second pause keeps the first cause and writes no second event, but still sweeps anything left
    running."""
    kind = QueueState.CauseKind.BREAKER if service else QueueState.CauseKind.MANUAL
    reason = (reason or "").strip()[:500] or ("" if service else "manual")
    label = _label(actor, actor_label)
    # Before the transaction, even before waiting for the lock: from now on no gate check lets a
    # new external call start. Pausing early is safe; only activating must wait for the commit.
    mirror_set(QueueState.State.PAUSED)
    with transaction.atomic():
        latch = _latch_locked()
        if latch.is_active:
            latch.state = QueueState.State.PAUSED
            latch.cause_kind, latch.cause_service, latch.reason = kind, service, reason
            latch.changed_by = actor
            latch.changed_by_label = label
            latch.changed_at = timezone.now()
            latch.save()
            QueueEvent.objects.create(
                kind=QueueEvent.Kind.QUEUE_PAUSED,
                service=service,
                reason=latch.cause_display,
                actor=actor,
                actor_label=label,
                details={"cause_kind": kind, "cause_service": service},
            )
        queue_paused.send(
            sender=QueueState,
            reason=latch.cause_display,
            kind=latch.cause_kind,
            service=latch.cause_service,
            actor=actor,
            actor_label=label,
        )
        transaction.on_commit(mirror_sync)
    return latch


def queue_resume(*, actor, actor_label: str = "") -> QueueState:
    """Set the queue active and wake what the queue paused, unless a breaker is not closed; then
    refuse (409) naming every one, and record the refusal."""
    label = _label(actor, actor_label)
    with transaction.atomic():
        latch = _latch_locked()
        # Read under the latch lock: a breaker opening now pauses after us, never in between.
        blocking = breakers_not_closed()
        if not blocking:
            was = latch.state
            latch.state = QueueState.State.ACTIVE
            latch.cause_kind, latch.cause_service, latch.reason = "", "", ""
            latch.changed_by = actor
            latch.changed_by_label = label
            latch.changed_at = timezone.now()
            latch.save()
            # Sent even when the latch was already active: campaigns paused for a job wait for
            # a queue resume too.
            queue_resumed.send(sender=QueueState, actor=actor, actor_label=label)
            QueueEvent.objects.create(
                kind=QueueEvent.Kind.QUEUE_RESUMED, actor=actor, actor_label=label, details={"was": was}
            )
            # Only after the commit: a gate that said "active" before it would let calls start
            # while campaigns and jobs are still paused, or for good if the transaction failed.
            transaction.on_commit(mirror_sync)
            return latch

    message = "; ".join(
        f"Cannot resume: circuit breaker {service} is open"
        if state == breakers.OPEN
        else f"Cannot resume: circuit breaker {service} is {state} (Redis cannot be read)"
        for service, state in blocking.items()
    )
    QueueEvent.objects.create(
        kind=QueueEvent.Kind.QUEUE_RESUME_REFUSED,
        reason=message[:500],
        actor=actor,
        actor_label=label,
        details={"open_breakers": list(blocking), "states": blocking},
    )
    raise ApplicationError(message, open_breakers=list(blocking))


def _known_service(service: str) -> None:
    if service not in settings.SERVICES:
        raise ApplicationError(f"Unknown service {service!r}.", services=list(settings.SERVICES))


def breaker_reset(*, service: str, actor, actor_label: str = "") -> dict:
    """Close the breaker and forget its failures. Nothing else changes: the queue, its campaigns
    and jobs stay paused until an operator resumes the queue."""
    _known_service(service)
    label = _label(actor, actor_label)
    before = breaker_get(service=service)
    try:
        with transaction.atomic():
            QueueEvent.objects.create(
                kind=QueueEvent.Kind.BREAKER_RESET,
                service=service,
                actor=actor,
                actor_label=label,
                details={k: before[k] for k in ("state", "failures", "last_error")},
            )
            breakers.breaker_close(service)  # last: if Redis refuses, the event rolls back
    except redis.RedisError:
        raise ApplicationError(f"Cannot reset circuit breaker {service}: Redis cannot be reached.") from None
    return breaker_get(service=service)


def breaker_opened_record(*, service: str, reason: str, details: dict) -> QueueEvent:
    """The history row of a breaker opening: a service's, or a mailbox's (`mailbox.<id>`)."""
    return QueueEvent.objects.create(
        kind=QueueEvent.Kind.BREAKER_OPENED, service=service, reason=reason[:500], actor_label=SYSTEM, details=details
    )


def breaker_failure_record(*, service: str, error: BaseException | str, trips_immediately: bool = False) -> bool:
    """Count a failure of the service. The one call that opens the breaker records it and pauses
    the queue (cause kind breaker, with the service); returns True for that call only."""
    _known_service(service)
    message = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    opened, failures = breakers.breaker_failure_count(service, message, trips_immediately=trips_immediately)
    if not opened:
        return False
    logger.warning("Circuit breaker %s opened after %s failure(s): %s", service, failures, message)
    details = {
        "failures": failures,
        "threshold": settings.BREAKERS[service]["threshold"],
        "trips_immediately": trips_immediately,
    }
    # The breaker is open in Redis from now on whatever happens here, so the pause must not be
    # lost to a passing database error (a deadlock victim, a dropped connection): try again a few
    # times; if the database stays away, queue_pause_for_open_breakers finishes it later.
    attempts = 1 if transaction.get_connection().in_atomic_block else PAUSE_ATTEMPTS
    for attempt in range(1, attempts + 1):
        try:
            with transaction.atomic():
                breaker_opened_record(service=service, reason=message, details=details)
                queue_pause(service=service, actor=None, actor_label=SYSTEM)
            break
        except DatabaseError:
            if attempt == attempts:
                raise
            logger.warning("Pause for breaker %s failed (attempt %s), trying again", service, attempt, exc_info=True)
            close_old_connections()
            time.sleep(0.1 * attempt)
    return True


def queue_pause_for_open_breakers() -> str:
    """An open service breaker always means a paused queue. If the pause that followed a trip was
    lost (the database failed under it), whoever next finds an open breaker beside an active latch
    finishes it: the sweeper on every tick, and a job the gate has just refused. Returns the
    service paused for, or "" when nothing needed doing. Never resumes anything."""
    if not QueueState.get().is_active:
        return ""
    tripped = [
        service
        for service, state in breakers_not_closed().items()
        if state == breakers.OPEN and service in settings.SERVICES
    ]
    if not tripped:
        return ""
    service = tripped[0]
    logger.warning("Breaker %s is open but the queue was active: pausing it now", service)
    breaker = breaker_get(service=service)
    with transaction.atomic():
        # The trip's own event rolled back with its pause: the history says it here instead.
        breaker_opened_record(
            service=service,
            reason=breaker["last_error"] or "",
            details={"failures": breaker["failures"], "recorded_after_a_lost_pause": True},
        )
        queue_pause(service=service, actor=None, actor_label=SYSTEM)
    return service
