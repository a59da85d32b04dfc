"""Every write of the tracking app: recipients, their transitions, events, suppressions.

The API views, the public tracking URLs, the webhooks, the send handler and the admin all call
these functions; none of them changes a recipient's status or a counter on its own.
"""

import json
import logging
import math
import os
import random
import threading
import time
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import redis
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import Case, Exists, OuterRef, Q, Value, When
from django.utils import timezone

from campaigns.dispatch import wake
from campaigns.models import Campaign, Job
from campaigns.pipeline import phase_items_add, phase_work_add, pipeline_advance
from campaigns.states import CAMPAIGN_FINAL_STATUSES, CampaignStatus, JobStatus, JobType, Phase
from campaigns.transitions import campaign_event_record
from campaigns_project.errors import ApplicationError
from campaigns_project.redis import get_redis, rkey

from .counters import COUNTED_STATUSES, COUNTER_SHARDS, counters_add
from .models import EmailEvent, Recipient, Suppression
from .receivers import email_events_emit, email_events_wanted
from .sequences import sequence_on_click, sequence_on_event, sequence_resolved_sent, sequence_sent_record
from .states import (
    EVENT_EFFECTS,
    RECIPIENT_DELETABLE_STATUSES,
    EventType,
    RecipientStatus,
    recipient_sources_for,
)

# The Recipient fields that say when an open or a click was first seen, of any kind and by a human.
FIRST_SEEN_FIELDS = {
    EventType.OPEN: ("first_opened_at", "first_human_opened_at"),
    EventType.CLICK: ("first_clicked_at", "first_human_clicked_at"),
}
MAX_RECIPIENTS_PER_REQUEST = 10_000
# Events a recipient can have only once from our own URLs: a second unsubscribe POST (a mail
# client retrying, a person clicking twice) records nothing. Keyed by recipient, so the unique
# (source, provider_event_id) constraint makes it hold under concurrent POSTs too.
ONCE_PER_RECIPIENT = {EventType.UNSUBSCRIBE}

logger = logging.getLogger(__name__)


def normalize_email(email: str) -> str:
    """Addresses are compared without case: dedupe and suppression must not miss `Bob@x.com`."""
    return email.strip().lower()


def suppressed_emails(*, organization_id) -> Any:
    """A subquery of the organization's suppressed addresses, for Exists()/IN filters."""
    return Suppression.objects.filter(organization_id=organization_id)


# --- Recipient lifecycle -----------------------------------------------------------------------


def recipients_transition(
    *, campaign_id, to_status: str, ids: Iterable[int] | None = None, where: Q | None = None, **fields: Any
) -> int:
    """Move a campaign's recipients to `to_status` in one conditional UPDATE, only from the statuses
    the state table allows, and count the move in the same transaction. Returns how many moved."""
    queryset = Recipient.objects.filter(campaign_id=campaign_id, status__in=recipient_sources_for(to_status))
    if ids is not None:
        queryset = queryset.filter(pk__in=list(ids))
    if where is not None:
        queryset = queryset.filter(where)
    with transaction.atomic():
        moved = queryset.update(status=to_status, **fields)
        if moved and to_status in COUNTED_STATUSES:
            counters_add(campaign_id=campaign_id, metrics={f"recipients.{to_status}": moved})
    return moved


def suppression_add(*, organization_id, email: str, reason: str) -> bool:
    """Suppress an address for the whole organization; the first reason recorded stays."""
    created = Suppression.objects.bulk_create(
        [Suppression(organization_id=organization_id, email=normalize_email(email), reason=reason)],
        ignore_conflicts=True,
    )
    return bool(created)


def send_jobs_create(*, campaign_id, recipient_count: int, new_recipients: bool = True) -> int:
    """One send_email job per SEND_BATCH_SIZE recipients, counted into the outreach phase (with the
    recipients, when they are new to it), woken after commit. The jobs carry no recipient list:
    each claims whatever pending recipients of its campaign are left when it runs, so a job that
    finds none left simply completes."""
    count = math.ceil(recipient_count / settings.SEND_BATCH_SIZE)
    if not count:
        return 0
    Job.objects.bulk_create(
        [Job(campaign_id=campaign_id, job_type=JobType.SEND_EMAIL, size=settings.SEND_BATCH_SIZE) for _ in range(count)]
    )
    phase_work_add(
        campaign_id=campaign_id, phase=Phase.OUTREACH, jobs=count, items=recipient_count if new_recipients else 0
    )
    wake(campaign_id, "send", count=count)
    return count


def recipients_mark_sent(
    *, campaign_id, job_id: int, sent: dict[int, tuple[str, datetime]], variants: dict[int, str] | None = None
) -> int:
    """Recipients the mail server accepted (id → Message-ID and time) for send job `job_id`, in one
    UPDATE, counted into the stats and the outreach phase in the same transaction. Only from
    `sending` under that job: a recipient marked twice (a journal replayed after a flush) counts
    once. The sequence records each step sent (and its A/B `variants`) and schedules the next;
    a follow-up step is not counted again as a recipient sent."""
    if not sent:
        return 0
    with transaction.atomic():
        if connection.vendor == "postgresql":
            moved = _mark_sent_values(campaign_id, job_id, sent)
        else:  # the embedded SQLite run: one CASE per column
            moved = Recipient.objects.filter(
                campaign_id=campaign_id, pk__in=list(sent), send_job_id=job_id, status=RecipientStatus.SENDING
            ).update(
                status=RecipientStatus.SENT,
                message_id=Case(*(When(pk=pk, then=Value(mid)) for pk, (mid, _) in sent.items())),
                sent_at=Case(*(When(pk=pk, then=Value(at)) for pk, (_, at) in sent.items())),
                last_error="",
            )
        if moved:
            followups = sequence_sent_record(campaign_id=campaign_id, job_id=job_id, ids=list(sent), variants=variants)
            counters_add(campaign_id=campaign_id, metrics={"recipients.sent": moved - followups})
            phase_items_add(
                campaign_id=campaign_id, phase=Phase.OUTREACH, done=moved - followups, passed=moved - followups
            )
            email_events_emit(
                type="sent",
                campaign_id=campaign_id,
                events=[{"recipient_id": pk, "occurred_at": at, "message_id": mid} for pk, (mid, at) in sent.items()],
            )
    return moved


def _mark_sent_values(campaign_id, job_id: int, sent: dict[int, tuple[str, datetime]]) -> int:
    """recipients_mark_sent on PostgreSQL: one UPDATE … FROM (VALUES …), whatever the batch."""
    table = connection.ops.quote_name(Recipient._meta.db_table)
    rows = ", ".join(["(%s::bigint, %s, %s::timestamptz)"] * len(sent))
    params = [value for pk, (mid, at) in sent.items() for value in (pk, mid, at)]
    campaign = Recipient._meta.get_field("campaign").target_field.get_db_prep_value(campaign_id, connection)
    # Only the model's table name and placeholders are formatted in; every value is a parameter.
    sql = (
        f"UPDATE {table} r SET status = %s, message_id = v.message_id, sent_at = v.sent_at, last_error = '' "  # noqa: S608
        f"FROM (VALUES {rows}) AS v (id, message_id, sent_at) "
        f"WHERE r.id = v.id AND r.campaign_id = %s AND r.send_job_id = %s AND r.status = %s"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [RecipientStatus.SENT, *params, campaign, job_id, RecipientStatus.SENDING])
        return cursor.rowcount


def _outreach_is_running(campaign: Campaign) -> bool:
    return campaign.phase == Phase.OUTREACH and campaign.status in (CampaignStatus.RUNNING, CampaignStatus.PAUSED)


def recipients_add(
    *, campaign: Campaign, emails: Iterable[str] = (), lead_ids: Iterable[int] = (), actor=None
) -> dict[str, int]:
    """Add recipients by address or from the campaign's leads, skipping duplicates, suppressed
    addresses and leads whose address failed verification. Added during outreach, they get their
    own send jobs. Addresses are validated by the caller (the API serializer)."""
    if campaign.status in CAMPAIGN_FINAL_STATUSES:
        raise ApplicationError(
            f"Cannot add recipients to a {campaign.status} campaign.", current_status=campaign.status
        )
    lead_ids = list(dict.fromkeys(lead_ids))
    leads = list(campaign.leads.filter(pk__in=lead_ids).values_list("pk", "email", "email_status"))
    unknown = sorted(set(lead_ids) - {pk for pk, _, _ in leads})
    if unknown:
        raise ValidationError({"lead_ids": [f"Not leads of this campaign: {', '.join(map(str, unknown))}."]})

    counts = {"created": 0, "duplicates": 0, "suppressed": 0, "invalid": 0}
    candidates: dict[str, int | None] = {}
    for pk, email, email_status in leads:
        if email_status == "invalid":
            counts["invalid"] += 1
        elif normalize_email(email) in candidates:
            counts["duplicates"] += 1
        else:
            candidates[normalize_email(email)] = pk
    for email in map(normalize_email, emails):
        if email in candidates:
            counts["duplicates"] += 1
        else:
            candidates[email] = None

    with transaction.atomic():
        existing = set(campaign.recipients.filter(email__in=candidates).values_list("email", flat=True))
        suppressed = set(
            suppressed_emails(organization_id=campaign.organization_id)
            .filter(email__in=candidates)
            .values_list("email", flat=True)
        )
        new = [
            Recipient(campaign=campaign, email=email, lead_id=lead_id)
            for email, lead_id in candidates.items()
            if email not in existing and email not in suppressed
        ]
        # ignore_conflicts: a concurrent add of the same address is a duplicate, not an error.
        Recipient.objects.bulk_create(new, batch_size=1000, ignore_conflicts=True)
        counts["duplicates"] += len(existing)
        counts["suppressed"] += len(suppressed - existing)
        counts["created"] = len(new)
        if new and _outreach_is_running(campaign):
            send_jobs_create(campaign_id=campaign.pk, recipient_count=len(new))
        campaign_event_record(
            campaign=campaign,
            action="tracking.recipients.added",
            actor=actor,
            reason=", ".join(f"{key} {value}" for key, value in counts.items()),
        )
    return counts


def recipient_delete(*, campaign: Campaign, recipient_id: int, actor=None) -> None:
    """Remove a recipient nothing was sent to. Refused once a send job has claimed it."""
    with transaction.atomic():
        # A follow-up armed (pending on step 2 or later) was sent its earlier steps: not removable.
        removable = campaign.recipients.filter(
            pk=recipient_id, status__in=RECIPIENT_DELETABLE_STATUSES, sequence_step=1
        )
        deleted, _ = removable.delete()
        if not deleted:
            current = campaign.recipients.filter(pk=recipient_id).values_list("status", flat=True).first()
            if current is None:
                raise Recipient.DoesNotExist
            if current in RECIPIENT_DELETABLE_STATUSES:
                raise ApplicationError(
                    "Cannot remove a recipient its sequence has mailed already (it waits for a later step).",
                    current_status=current,
                )
            raise ApplicationError(
                f"Cannot remove a {current} recipient; only {', '.join(RECIPIENT_DELETABLE_STATUSES)} ones can be.",
                current_status=current,
            )
        campaign_event_record(
            campaign=campaign, action="tracking.recipient.removed", actor=actor, reason=f"recipient {recipient_id}"
        )


def recipients_release(*, recipient_ids: Iterable[int], actor=None) -> int:
    """An operator's decision that recipients stuck in `sending` were not delivered (after checking
    the mail server's logs): back to pending, with a send job if the campaign is still sending.
    Never done automatically, since a blind resend may mail someone twice."""
    released = 0
    ids = list(recipient_ids)
    campaigns = Campaign.objects.filter(recipients__pk__in=ids, recipients__status=RecipientStatus.SENDING).distinct()
    for campaign in campaigns:  # one UPDATE per campaign: the counters and jobs are per campaign
        with transaction.atomic():
            moved = recipients_transition(
                campaign_id=campaign.pk,
                to_status=RecipientStatus.PENDING,
                ids=ids,
                # Never one a running send job still holds: it may be handing it over right now.
                where=Q(status=RecipientStatus.SENDING)
                & ~Q(send_job_id__in=Job.objects.filter(status=JobStatus.PROCESSING).values("pk")),
                claimed_at=None,
                send_job_id=None,
            )
            released += moved
            if moved and _outreach_is_running(campaign):
                send_jobs_create(campaign_id=campaign.pk, recipient_count=moved, new_recipients=False)
            campaign_event_record(
                campaign=campaign,
                action="tracking.recipients.released",
                actor=actor,
                reason=f"{moved} recipients stuck in sending put back to pending by an operator",
            )
    return released


def recipients_resolve(*, recipient_ids: Iterable[int], delivered: bool, actor=None) -> int:
    """An operator's decision about recipients stuck in `sending` (after checking the mail
    server's log): delivered → sent, counted as sent; not delivered and not to be resent → failed.
    Never a recipient a running send job still holds. A campaign whose outreach waited for this
    moves on (pipeline_advance)."""
    ids = list(recipient_ids)
    resolved = 0
    campaigns = Campaign.objects.filter(recipients__pk__in=ids, recipients__status=RecipientStatus.SENDING).distinct()
    target = RecipientStatus.SENT if delivered else RecipientStatus.FAILED
    label = actor.get_username() if actor is not None else "system"
    for campaign in campaigns:  # one UPDATE per campaign: the counters are per campaign
        with transaction.atomic():
            fields = {"sent_at": timezone.now(), "last_error": ""} if delivered else {}
            moved = recipients_transition(
                campaign_id=campaign.pk,
                to_status=target,
                ids=ids,
                where=Q(status=RecipientStatus.SENDING)
                & ~Q(send_job_id__in=Job.objects.filter(status=JobStatus.PROCESSING).values("pk")),
                **(fields or {"last_error": f"Marked not delivered by {label} after being stuck in sending."}),
            )
            resolved += moved
            if delivered:
                # A follow-up step resolved delivered is recorded as its step, not as a new recipient sent.
                followups = sequence_resolved_sent(campaign_id=campaign.pk, ids=ids, resolved_at=fields["sent_at"])
                counters_add(campaign_id=campaign.pk, metrics={"recipients.sent": -followups})
                moved -= followups
                phase_items_add(campaign_id=campaign.pk, phase=Phase.OUTREACH, done=moved, passed=moved)
            else:
                phase_items_add(campaign_id=campaign.pk, phase=Phase.OUTREACH, failed=moved)
            campaign_event_record(
                campaign=campaign,
                action="tracking.recipients.resolved",
                actor=actor,
                reason=f"{moved} recipients stuck in sending marked {target} by an operator",
            )
        pipeline_advance(campaign_id=campaign.pk)
    return resolved


# --- Events ------------------------------------------------------------------------------------


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


# One statement for an open or a click from the public URLs, on PostgreSQL: the pixel's hot path.
# It does what event_record does for these types (lock the recipient, insert the event, set the
# first-seen timestamps, count), in one round trip and one autocommitted transaction instead of
# seven round trips, which is what decides the pixel's throughput (benchmarks/pixel.py).
# set_config(..., true) turns synchronous_commit off for this transaction only: a PostgreSQL crash
# may lose the last fraction of a second of opens and clicks, never corrupt anything.
_SEEN_SQL = """
WITH r AS (
    SELECT id, campaign_id,
        {any_field} IS NULL AS first_any,
        {human_field} IS NULL AND NOT %(machine)s AS first_human
    FROM tracking_recipient WHERE token = %(token)s
    FOR NO KEY UPDATE
), seen AS (
    UPDATE tracking_recipient t
    SET {any_field} = COALESCE(t.{any_field}, %(at)s),
        {human_field} = CASE WHEN r.first_human THEN %(at)s ELSE t.{human_field} END
    FROM r WHERE t.id = r.id AND (r.first_any OR r.first_human)
), event AS (
    INSERT INTO tracking_emailevent
        (recipient_id, campaign_id, type, occurred_at, link_id, user_agent, ip, is_machine, source, payload)
    SELECT id, campaign_id, %(type)s, %(at)s, %(link)s, %(ua)s, %(ip)s, %(machine)s, 'tracking', '{{}}' FROM r
    RETURNING id, recipient_id, campaign_id
), counted AS (
    INSERT INTO tracking_campaigncounter (campaign_id, metric, shard, value)
    SELECT r.campaign_id, m.metric, %(shard)s, 1
    FROM r CROSS JOIN LATERAL (VALUES
        ('event.' || %(type)s, true),
        ('event.' || %(type)s || '.human', NOT %(machine)s),
        ('unique.' || %(type)s, r.first_any),
        ('unique.' || %(type)s || '.human', r.first_human)
    ) AS m (metric, counts)
    WHERE m.counts
    ORDER BY m.metric
    ON CONFLICT (campaign_id, metric, shard) DO UPDATE SET value = tracking_campaigncounter.value + 1
)
SELECT recipient_id, campaign_id, set_config('synchronous_commit', 'off', true) FROM event
"""
_SEEN_STATEMENTS = {kind: _SEEN_SQL.format(any_field=a, human_field=h) for kind, (a, h) in FIRST_SEEN_FIELDS.items()}


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
    params = {
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


# --- Buffered opens ----------------------------------------------------------------------------
#
# The pixel does not write to the database: it appends one JSON entry per open to a Redis list (one
# RPUSH), and `opens_drain` (the beat task tracking.tasks.drain_opens, every 2 s) writes them in
# batches of one set-based statement. Each entry carries a unique id, stored as the event's
# provider_event_id under source "pixel": the unique (source, provider_event_id) constraint makes a
# batch drained twice (a crash between the commit and the LTRIM) record each open once.

OPENS_SOURCE = "pixel"
# Longer than any batch takes; a drainer that outlives it does not trim (see _TRIM_IF_LOCKED).
OPENS_DRAIN_LOCK_SECONDS = 60

# Trim the drained entries only while this drainer still holds the lock: if it expired and another
# drainer took over, that one may have read (and will trim) the same entries, and trimming them
# twice would drop entries nobody wrote.
_TRIM_IF_LOCKED = """
if redis.call('GET', KEYS[2]) == ARGV[1] then
    redis.call('LTRIM', KEYS[1], ARGV[2], -1)
    redis.call('DEL', KEYS[2])
    return 1
end
return 0
"""
_UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# One statement per batch: insert the events of known tokens (a replayed entry id inserts nothing),
# lock their recipients in id order, set the first-seen timestamps the inserted events bring, and
# return per campaign what the counters must add, from the rows actually inserted only. Committed
# synchronously (unlike the direct path): the entries leave Redis once the commit says they are safe.
_OPENS_DRAIN_SQL = """
WITH e AS (
    SELECT * FROM unnest(%(ids)s::text[], %(tokens)s::text[], %(ats)s::timestamptz[], %(machine)s::boolean[],
        %(uas)s::text[], %(ips)s::inet[]) WITH ORDINALITY AS e (id, token, at, machine, ua, ip, n)
), inserted AS (
    INSERT INTO tracking_emailevent
        (recipient_id, campaign_id, type, occurred_at, link_id, user_agent, ip, is_machine, source,
         provider_event_id, payload)
    SELECT r.id, r.campaign_id, 'open', e.at, NULL, e.ua, e.ip, e.machine, %(source)s, e.id, '{}'
    FROM e JOIN tracking_recipient r ON r.token = e.token
    ORDER BY e.n  -- event ids in the order the opens arrived
    ON CONFLICT (source, provider_event_id) WHERE provider_event_id IS NOT NULL DO NOTHING
    RETURNING recipient_id, occurred_at, is_machine
), per_recipient AS (
    SELECT recipient_id, count(*) AS events, count(*) FILTER (WHERE NOT is_machine) AS human_events,
        min(occurred_at) AS first_at, min(occurred_at) FILTER (WHERE NOT is_machine) AS first_human_at
    FROM inserted GROUP BY recipient_id
), r AS (
    SELECT t.id, t.campaign_id, p.events, p.human_events, p.first_at, p.first_human_at,
        t.first_opened_at IS NULL AS first_any,
        t.first_human_opened_at IS NULL AND p.first_human_at IS NOT NULL AS first_human
    FROM tracking_recipient t JOIN per_recipient p ON p.recipient_id = t.id
    ORDER BY t.id
    FOR NO KEY UPDATE OF t
), seen AS (
    -- LEAST ignores NULLs: an earlier open drained late still becomes the first one.
    UPDATE tracking_recipient t
    SET first_opened_at = LEAST(t.first_opened_at, r.first_at),
        first_human_opened_at = LEAST(t.first_human_opened_at, r.first_human_at)
    FROM r
    WHERE t.id = r.id AND (
        t.first_opened_at IS NULL OR r.first_at < t.first_opened_at
        OR (r.first_human_at IS NOT NULL
            AND (t.first_human_opened_at IS NULL OR r.first_human_at < t.first_human_opened_at)))
)
SELECT campaign_id, sum(events)::int, sum(human_events)::int, count(*) FILTER (WHERE first_any),
    count(*) FILTER (WHERE first_human)
FROM r GROUP BY campaign_id ORDER BY campaign_id
"""


def _opens_key() -> str:
    return rkey("tracking", "opens")


OPENS_CONNECTION_NAME = "pixel-opens"


class _OpensChannel:
    """A one-way Redis connection for the pixel's RPUSH: `CLIENT REPLY OFF`, so a request sends
    its open and goes on without waiting for an answer (docs/decisions.md, "The pixel does not wait
    for Redis's answer").

    Once the send returns, the open is in the kernel on its way to Redis and arrives even if this
    process dies next. A Redis that cannot be reached makes the send (or the reconnect) raise, and
    the pixel then writes the open to the database instead. One per thread: a connection is not
    thread-safe."""

    def __init__(self, client: redis.Redis):
        self.client = client
        self.connection = client.connection_pool.make_connection()
        self.connection.register_connect_callback(self._reply_off)  # on every (re)connect

    def _reply_off(self, connection) -> None:
        connection.send_command("CLIENT", "SETNAME", OPENS_CONNECTION_NAME, check_health=False)
        connection.read_response()  # named, so an operator can tell it in CLIENT LIST
        connection.send_command("CLIENT", "REPLY", "OFF", check_health=False)

    def rpush(self, key: str, value: str) -> None:
        try:
            # No health check: its PING would wait for a reply that never comes.
            self.connection.send_packed_command(self.connection.pack_command("RPUSH", key, value), check_health=False)
        except BaseException:
            self.connection.disconnect()  # the next call reconnects
            raise


_channels = threading.local()


def _opens_channel() -> _OpensChannel:
    client = get_redis()
    channel = getattr(_channels, "channel", None)
    if channel is None or channel.client is not client:  # first use, or a new client (settings changed)
        channel = _channels.channel = _OpensChannel(client)
    return channel


# A buffered open is one string: OPEN_ENTRY_TAG, then id, token, epoch seconds, machine (0/1), ip
# and user agent, separated by US (0x1f, a control character no HTTP header value may hold).
# Cheaper than JSON on both ends; JSON entries (before 2026-11-29) are still read.
OPEN_ENTRY_TAG, _US = "o1", "\x1f"


def open_buffer(*, token: str, is_machine: bool, user_agent: str = "", ip: str | None = None) -> None:
    """Queue an open from the pixel for opens_drain: one RPUSH, sent without waiting for the
    reply. Raises redis.RedisError when Redis cannot be reached."""
    fields = (os.urandom(16).hex(), token, f"{time.time():.6f}", "1" if is_machine else "0", ip or "")
    entry = _US.join((OPEN_ENTRY_TAG, *fields, user_agent[:512].replace(_US, "")))
    _opens_channel().rpush(_opens_key(), entry)


def opens_pending() -> int:
    """How many buffered opens wait for the drain."""
    return get_redis().llen(_opens_key())


def _open_entry(item: str) -> dict:
    if item.startswith(OPEN_ENTRY_TAG + _US):
        _, entry_id, token, at, machine, ip, user_agent = item.split(_US, 6)
        if not entry_id or not token or machine not in ("0", "1"):
            raise ValueError(item)
        return {
            "id": entry_id,
            "token": token,
            "at": datetime.fromtimestamp(float(at), UTC),
            "machine": machine == "1",
            "ua": user_agent,
            "ip": ip or None,
        }
    entry = json.loads(item)  # the JSON entries written before 2026-11-29
    entry["at"] = datetime.fromisoformat(entry["at"])
    entry["id"], entry["token"] = str(entry["id"]), str(entry["token"])
    return entry


def _opens_parse(raw: list[str]) -> list[dict]:
    entries, ids = [], set()
    for item in raw:
        try:
            entry = _open_entry(item)
        except (ValueError, TypeError, KeyError):
            logger.error("Dropping a malformed buffered open: %.200s", item)
            continue
        if entry["id"] not in ids:  # the same entry twice in one batch: one event
            ids.add(entry["id"])
            entries.append(entry)
    return entries


def _opens_write(entries: list[dict]) -> int:
    """Record buffered opens, each once whatever the replays; unknown tokens record nothing."""
    if connection.vendor != "postgresql":  # the embedded SQLite run: the general path, per event
        written = 0
        for entry in entries:
            event = event_record(
                type=EventType.OPEN,
                token=entry["token"],
                occurred_at=entry["at"],
                is_machine=bool(entry.get("machine")),
                user_agent=entry.get("ua") or "",
                ip=entry.get("ip"),
                source=OPENS_SOURCE,
                provider_event_id=entry["id"],
            )
            written += event is not None
        return written
    params = {
        "ids": [entry["id"] for entry in entries],
        "tokens": [entry["token"] for entry in entries],
        "ats": [entry["at"] for entry in entries],
        "machine": [bool(entry.get("machine")) for entry in entries],
        "uas": [(entry.get("ua") or "")[:512] for entry in entries],
        "ips": [entry.get("ip") or None for entry in entries],
        "source": OPENS_SOURCE,
    }
    written = 0
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(_OPENS_DRAIN_SQL, params)
            rows = cursor.fetchall()
        for campaign_id, events, human_events, first, first_human in rows:  # in campaign order: no deadlock
            written += events
            counters_add(
                campaign_id=campaign_id,
                metrics=seen_metrics(
                    type=EventType.OPEN, events=events, human_events=human_events, first=first, first_human=first_human
                ),
            )
            _opens_emit(campaign_id, params["ids"])
    return written


def _opens_emit(campaign_id, entry_ids: list[str]) -> None:
    """email.opened webhook events for the opens a drain batch wrote for one campaign: one query,
    and only when the campaign's organization subscribed (email_events_emit checks first)."""
    if not email_events_wanted(type=EventType.OPEN, campaign_id=campaign_id):
        return
    rows = EmailEvent.objects.filter(
        campaign_id=campaign_id, source=OPENS_SOURCE, provider_event_id__in=entry_ids
    ).values_list("recipient_id", "occurred_at", "is_machine")
    email_events_emit(
        type=EventType.OPEN,
        campaign_id=campaign_id,
        events=[
            {"recipient_id": rid, "occurred_at": at, "is_machine": machine, "source": OPENS_SOURCE}
            for rid, at, machine in rows
        ],
    )


def opens_drain(*, batch_size: int = 5000) -> int:
    """Write up to batch_size buffered opens to the database, then remove them from the buffer.
    Returns how many events were written (0 also when another drainer holds the lock).

    Under a Redis lock, so two drainers never trim each other's entries. The entries leave Redis
    only after the commit; a crash in between leaves them to the next drain, which records none of
    them twice."""
    r = get_redis()
    key, lock_key, lock = _opens_key(), rkey("tracking", "opens", "drain-lock"), uuid.uuid4().hex
    if not r.set(lock_key, lock, nx=True, ex=OPENS_DRAIN_LOCK_SECONDS):
        return 0
    try:
        raw = r.lrange(key, 0, batch_size - 1)
        written = _opens_write(_opens_parse(raw)) if raw else 0
        if written:
            r.incrby(rkey("metrics", "opens-drained"), written)  # read by /metrics
        if raw and not r.eval(_TRIM_IF_LOCKED, 2, key, lock_key, lock, len(raw)):
            logger.warning("The opens drain lock expired before the trim; the next drain will skip the replays.")
    finally:
        r.eval(_UNLOCK, 1, lock_key, lock)
    return written


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


def recipients_fail_suppressed(*, campaign: Campaign, ids: Iterable[int]) -> int:
    """Claimed recipients whose address was suppressed after they were added (an unsubscribe from
    another campaign, a manual entry) are failed before any hand-over, so they are never mailed."""
    return recipients_transition(
        campaign_id=campaign.pk,
        to_status=RecipientStatus.FAILED,
        ids=ids,
        where=Q(status=RecipientStatus.SENDING)
        & Q(Exists(suppressed_emails(organization_id=campaign.organization_id).filter(email=OuterRef("email")))),
        last_error="Not sent: the address is on the organization's suppression list.",
    )
