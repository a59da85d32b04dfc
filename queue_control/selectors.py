"""Read side of queue control: the latch, the breakers, the history, the counts."""

import logging

import redis
from django.db import transaction
from django.db.models import QuerySet

from . import breakers
from .breakers import CLOSED, OPEN, UNKNOWN, Breaker
from .counts import queue_counts_collect
from .gate import gate_open
from .models import QueueEvent, QueueState

logger = logging.getLogger(__name__)


def queue_is_active() -> bool:
    """The durable latch row, not the mirror: this is what services check before starting work."""
    return QueueState.get().is_active


def queue_is_active_held() -> bool:
    """queue_is_active, with the latch row held until the caller's transaction ends (FOR SHARE on
    PostgreSQL; SQLite has one writer at a time anyway). What the caller then starts commits
    either before a queue pause takes the row (which then sweeps it) or after it (and is refused
    here): a start can never slip past a pause and stay running under a paused queue. Shared, so
    concurrent starts do not wait for each other."""
    connection = transaction.get_connection()
    if connection.vendor != "postgresql" or not connection.in_atomic_block:
        return queue_is_active()
    table = connection.ops.quote_name(QueueState._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT state FROM {table} WHERE id = 1 FOR SHARE")  # noqa: S608 (name from _meta)
        row = cursor.fetchone()
    if row is None:
        return queue_is_active()  # a fresh database: the row is created active
    return row[0] == QueueState.State.ACTIVE


def _breaker_rebuild(service: str) -> None:
    """Redis lost this breaker (restart, flush): restore it from the last breaker event, so a
    breaker that was open does not come back closed by itself."""
    last = (
        QueueEvent.objects.filter(
            service=service, kind__in=[QueueEvent.Kind.BREAKER_OPENED, QueueEvent.Kind.BREAKER_RESET]
        )
        .order_by("-id")
        .first()
    )
    if last is not None and last.kind == QueueEvent.Kind.BREAKER_OPENED:
        breakers.breaker_restore(
            service,
            state=OPEN,
            opened_at=last.created_at,
            last_error=last.reason,
            failures=int(last.details.get("failures") or 0),
        )
    else:
        breakers.breaker_restore(service, state=CLOSED)


def breaker_state(service: str) -> str:
    """closed | open | unknown, in one HGET unless the breaker has to be rebuilt."""
    state = breakers.breaker_state_fast(service)
    if state is None:
        try:
            _breaker_rebuild(service)
        except redis.RedisError:
            return UNKNOWN
        state = breakers.breaker_state_fast(service)
    return state or UNKNOWN


def _breakers_read() -> dict[str, Breaker]:
    found = breakers.breakers_read()
    missing = [service for service, breaker in found.items() if breaker is None]
    if missing:
        try:
            for service in missing:
                _breaker_rebuild(service)
        except redis.RedisError:
            logger.warning("Could not rebuild breakers %s", missing, exc_info=True)
        found.update(breakers.breakers_read(missing))
    # Still missing after a rebuild means Redis dropped out in between: fail closed.
    return {service: breaker or breakers.breaker_unknown(service) for service, breaker in found.items()}


def breakers_status() -> list[dict]:
    """Every breaker: service, state, failures, threshold, window, opened_at, last_error."""
    return [breaker.as_dict() for breaker in _breakers_read().values()]


def breaker_get(*, service: str) -> dict:
    return next(b for b in breakers_status() if b["service"] == service)


def breakers_not_closed() -> dict[str, str]:
    """service -> state of every breaker that is not closed (open, or unknown because Redis
    cannot be read). Any of them blocks a queue resume."""
    return {s: b.state for s, b in _breakers_read().items() if b.state != CLOSED}


def open_breakers() -> list[str]:
    return list(breakers_not_closed())


def queue_counts(*, organization_ids: list | None = None) -> dict[str, int]:
    """Counts for the status page, from the apps above (queue_control does not know their models):
    of every organization (None, for the platform), or of these organizations only."""
    return queue_counts_collect(organization_ids=organization_ids)


def queue_history(*, limit: int = 50) -> QuerySet[QueueEvent]:
    return QueueEvent.objects.select_related("actor").order_by("-created_at", "-id")[:limit]


def queue_status(*, organization_ids: list | None = None) -> dict:
    """Everything an operator needs to decide: the latch, who set it and why, every breaker,
    whether resume is possible, and how much work is paused (everywhere, or in the organizations
    given: see permissions.organization_ids_visible_to)."""
    latch = QueueState.get()
    breaker_list = breakers_status()
    blocking = [b["service"] for b in breaker_list if b["state"] != CLOSED]
    return {
        "state": latch.state,
        "reason": latch.cause_display,
        "cause_kind": latch.cause_kind,
        "cause_service": latch.cause_service,
        "changed_by": latch.changed_by_label,
        "changed_at": latch.changed_at,
        "gate_open": gate_open(),
        "can_resume": not blocking,
        "open_breakers": blocking,
        "breakers": breaker_list,
        "counts": queue_counts(organization_ids=organization_ids),
        "counts_scope": "all" if organization_ids is None else "your organizations",
    }
