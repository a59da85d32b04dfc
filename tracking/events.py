"""Recording a recipient's events (opens, clicks, bounces, complaints, unsubscribes, provider
webhooks) with what follows from them: first-seen timestamps, counters, status, suppression.
Re-exported by tracking.services, the app's write API.
"""

import random
from datetime import datetime
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from .counters import COUNTER_SHARDS, counters_add
from .models import EmailEvent, Recipient
from .receivers import email_events_emit
from .recipients import recipients_transition, suppression_add
from .sequences import sequence_on_click, sequence_on_event
from .sql import seen_statement
from .states import (
    EVENT_EFFECTS,
    EventType,
    RecipientStatus,
)

# The Recipient fields that say when an open or a click was first seen, of any kind and by a human.
FIRST_SEEN_FIELDS: dict[str, tuple[str, str]] = {
    EventType.OPEN: ("first_opened_at", "first_human_opened_at"),
    EventType.CLICK: ("first_clicked_at", "first_human_clicked_at"),
}
# Events a recipient can have only once from our own URLs: a second unsubscribe POST (a mail
# client retrying, a person clicking twice) records nothing. Keyed by recipient, so the unique
# (source, provider_event_id) constraint makes it hold under concurrent POSTs too.
ONCE_PER_RECIPIENT = {EventType.UNSUBSCRIBE}


def seen_metrics(*, type: str, events: int, human_events: int, first: int = 0, first_human: int = 0) -> dict[str, int]:
    """The counters a number of recorded events of one type add: all and human events, and the
    recipients whose first (human) event of that type they are. Shared by event_record and
    opens_drain, so a single event and a drained batch count the same way."""
    return {
        f"event.{type}": events,
        f"event.{type}.human": human_events,
        f"unique.{type}": first,
        f"unique.{type}.human": first_human,
    }


def event_record(
    *,
    type: str,
    token: str | None = None,
    recipient_id: int | None = None,
    occurred_at: datetime | None = None,
    is_machine: bool = False,
    link_id: int | None = None,
    user_agent: str = "",
    ip: str | None = None,
    source: str = "tracking",
    provider_event_id: str | None = None,
    payload: dict | None = None,
    with_effects: bool = True,
) -> EmailEvent | None:
    """Record one event of a recipient (found by token or id) in one transaction, with what follows
    from it: the first-seen timestamps, the counters and, for bounces, complaints and unsubscribes,
    the recipient's status and the organization's suppression list.

    Returns None, writing nothing, for an unknown recipient or a provider event already recorded.
    (The public pixel and click URLs use `event_record_seen`, the same facts in one statement.)"""
    occurred_at = occurred_at or timezone.now()
    lookup = {"token": token} if token is not None else {"pk": recipient_id}
    first_fields = FIRST_SEEN_FIELDS.get(type, ())
    with transaction.atomic():
        # Lock the recipient row: of two simultaneous first opens, only one may count as unique.
        row = Recipient.objects.select_for_update().filter(**lookup).values("id", "campaign_id", *first_fields).first()
        if row is None:
            return None
        if provider_event_id is None and type in ONCE_PER_RECIPIENT:
            provider_event_id = f"{type}:{row['id']}"
        event = EmailEvent(
            recipient_id=row["id"],
            campaign_id=row["campaign_id"],
            type=type,
            occurred_at=occurred_at,
            link_id=link_id,
            user_agent=user_agent[:512],
            ip=ip,
            is_machine=is_machine,
            source=source,
            provider_event_id=provider_event_id,
            payload=payload or {},
        )
        if provider_event_id is None:
            event.save()
        else:
            try:
                with transaction.atomic():  # a savepoint, so a replay leaves the outer transaction usable
                    event.save()
            except IntegrityError:
                return None  # this provider event was recorded before: a replay changes nothing

        first_seen = {}
        if first_fields:
            any_field, human_field = first_fields
            if row[any_field] is None:
                first_seen[any_field] = occurred_at
            if not is_machine and row[human_field] is None:
                first_seen[human_field] = occurred_at
        metrics = seen_metrics(
            type=type,
            events=1,
            human_events=0 if is_machine else 1,
            first=1 if first_fields and first_fields[0] in first_seen else 0,
            first_human=1 if first_fields and first_fields[1] in first_seen else 0,
        )
        if first_seen:
            Recipient.objects.filter(pk=row["id"]).update(**first_seen)
        counters_add(campaign_id=row["campaign_id"], metrics=metrics)

        if with_effects and type in EVENT_EFFECTS:
            to_status, reason = EVENT_EFFECTS[type]
            recipients_transition(campaign_id=row["campaign_id"], to_status=to_status, ids=[row["id"]])
            email, organization_id = Recipient.objects.filter(pk=row["id"]).values_list(
                "email", "campaign__organization_id"
            )[0]
            suppression_add(organization_id=organization_id, email=email, reason=reason)
        if with_effects or type not in EVENT_EFFECTS:  # a soft bounce (no effects) stops no sequence
            sequence_on_event(type=type, recipient_id=row["id"], campaign_id=row["campaign_id"])
        email_events_emit(
            type=type,
            campaign_id=row["campaign_id"],
            events=[
                {
                    "recipient_id": row["id"],
                    "occurred_at": occurred_at,
                    "is_machine": is_machine,
                    "link_id": link_id,
                    "source": source,
                }
            ],
        )
    return event


_SEEN_STATEMENTS = {kind: seen_statement(any_field=a, human_field=h) for kind, (a, h) in FIRST_SEEN_FIELDS.items()}


def event_record_seen(
    *,
    type: str,
    token: str,
    occurred_at: datetime | None = None,
    is_machine: bool = False,
    link_id: int | None = None,
    user_agent: str = "",
    ip: str | None = None,
) -> bool:
    """Record an open or a click from the public URLs; False for an unknown token."""
    if connection.vendor != "postgresql":  # the embedded SQLite run: the general path
        recorded = event_record(
            type=type,
            token=token,
            occurred_at=occurred_at,
            is_machine=is_machine,
            link_id=link_id,
            user_agent=user_agent,
            ip=ip,
        )
        return recorded is not None
    params: dict[str, Any] = {
        "token": token,
        "type": type,
        "at": occurred_at or timezone.now(),
        "machine": is_machine,
        "link": link_id,
        "ua": user_agent[:512],
        "ip": ip,
        "shard": random.randrange(COUNTER_SHARDS),
    }
    with connection.cursor() as cursor:
        cursor.execute(_SEEN_STATEMENTS[type], params)
        row = cursor.fetchone()
    if row is None:
        return False
    if type == EventType.CLICK:
        sequence_on_click(recipient_id=row[0], campaign_id=row[1])
    email_events_emit(
        type=type,
        campaign_id=row[1],
        events=[{"recipient_id": row[0], "occurred_at": params["at"], "is_machine": is_machine, "link_id": link_id}],
    )
    return True


def recipient_unsubscribe(*, token: str, user_agent: str = "", ip: str | None = None) -> bool:
    """The one-click unsubscribe (RFC 8058): status unsubscribed, event, suppression."""
    return event_record(type=EventType.UNSUBSCRIBE, token=token, user_agent=user_agent, ip=ip) is not None


def recipient_bounce_on_send(*, recipient: Recipient, error: str, suppress: bool) -> None:
    """A 5xx at send time. A hard bounce (the mailbox does not exist) is recorded like a bounce
    webhook and suppresses the address; any other permanent refusal only fails this recipient."""
    if suppress:
        with transaction.atomic():
            Recipient.objects.filter(pk=recipient.pk).update(last_error=error)
            event_record(type=EventType.BOUNCE, recipient_id=recipient.pk, source="smtp", payload={"error": error})
    else:
        recipients_transition(
            campaign_id=recipient.campaign_id, to_status=RecipientStatus.FAILED, ids=[recipient.pk], last_error=error
        )
