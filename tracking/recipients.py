"""Recipients' writes: adding, removing, releasing and resolving them, their status transitions
(through the state table), the send jobs that carry them, and the suppression list they are checked
against. Re-exported by tracking.services, the app's write API.
"""

import math
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import Case, Exists, OuterRef, Q, Value, When
from django.utils import timezone

from campaigns.dispatch import wake
from campaigns.models import Campaign, Job
from campaigns.pipeline import phase_items_add, phase_work_add, pipeline_advance
from campaigns.states import CAMPAIGN_FINAL_STATUSES, CampaignStatus, JobStatus, JobType, Phase
from campaigns.transitions import campaign_event_record
from campaigns_project.errors import ApplicationError

from .counters import COUNTED_STATUSES, counters_add
from .models import Recipient, Suppression
from .receivers import email_events_emit
from .sequences import sequence_resolved_sent, sequence_sent_record
from .states import (
    RECIPIENT_DELETABLE_STATUSES,
    RecipientStatus,
    recipient_sources_for,
)

MAX_RECIPIENTS_PER_REQUEST = 10_000


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
            now = timezone.now()
            fields = {"sent_at": now, "last_error": ""} if delivered else {}
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
                followups = sequence_resolved_sent(campaign_id=campaign.pk, ids=ids, resolved_at=now)
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
