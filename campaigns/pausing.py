"""The campaign and job side of queue control.

queue_control does not import campaigns; it sends `queue_paused` / `queue_resumed` inside the
transaction that flips its latch, and the receivers here pause or wake campaigns and jobs in that
same transaction. Every receiver issues a fixed number of set-based statements, whatever the
number of campaigns and jobs (benchmarks/cascade.py measures it).
"""

from django.db import connection
from django.db.models import Count, Field, ForeignObjectRel, Q
from django.dispatch import receiver
from django.utils import timezone

from campaigns_project import live
from queue_control.signals import queue_paused, queue_resumed

from .dispatch import campaigns_kick
from .models import Campaign, CampaignEvent, Job
from .states import JOB_TRANSITIONS, NO_PAUSE, CampaignStatus, JobStatus, PauseCause, PauseKind
from .transitions import campaign_timestamps

# Paused for these causes, a campaign waits for the queue resume; `manual` and `deliverability`
# wait for an operator, a mailbox's breaker for that mailbox's resume.
QUEUE_RESUMABLE = Q(pause_kind__in=[PauseKind.JOB, PauseKind.QUEUE]) | Q(
    pause_kind=PauseKind.BREAKER, pause_mailbox__isnull=True
)
# Jobs the cascade may pause: those the job table allows to move to paused (pending, processing).
PAUSABLE_JOB_STATUSES = [status for status, targets in JOB_TRANSITIONS.items() if JobStatus.PAUSED in targets]


def campaign_pause_cause(*, kind: str, service: str) -> PauseCause:
    """A breaker's queue pause names the breaker's service; any other queue pause is `queue`."""
    if kind == PauseKind.BREAKER and service:
        return PauseCause(PauseKind.BREAKER, service=service)
    return PauseCause(PauseKind.QUEUE)


def _column(field: Field | ForeignObjectRel) -> str:
    """A concrete field's column (the stubs allow a field without one)."""
    if isinstance(field, ForeignObjectRel) or field.column is None:
        raise TypeError(f"{field!r} has no column")
    return field.column


def _events_insert(campaign_ids: list, *, from_status: str, to_status: str, reason: str, actor, label: str, now):
    """One INSERT … SELECT writes the history row of every campaign in `campaign_ids`."""
    ids_sql, ids_params = Campaign.objects.filter(pk__in=campaign_ids).values("pk").query.sql_with_params()
    qn = connection.ops.quote_name
    columns = ", ".join(
        qn(_column(CampaignEvent._meta.get_field(name)))
        for name in ("campaign", "actor", "actor_label", "action", "from_status", "to_status", "reason", "created_at")
    )
    sql = (
        f"INSERT INTO {qn(CampaignEvent._meta.db_table)} ({columns}) "  # noqa: S608 (names from _meta)
        f"SELECT {qn(_column(Campaign._meta.pk))}, %s, %s, %s, %s, %s, %s, %s "
        f"FROM {qn(Campaign._meta.db_table)} WHERE {qn(_column(Campaign._meta.pk))} IN ({ids_sql})"
    )
    params = [actor.pk if actor is not None else None, label, f"campaign.{to_status}", from_status, to_status]
    params += [reason[:500], now, *ids_params]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
    # No save(), so no post_save: say so to the live view and the outgoing webhooks.
    live.campaign_history_bulk(
        campaign_ids=campaign_ids,
        action=f"campaign.{to_status}",
        from_status=from_status,
        to_status=to_status,
        reason=reason,
    )


@receiver(queue_paused, dispatch_uid="campaigns.pausing.on_queue_paused")
def on_queue_paused(
    sender, *, reason: str, kind: str = "", service: str = "", actor=None, actor_label: str = "", **kwargs
) -> None:
    """Running campaigns → paused (cause breaker with its service, or queue); pending and
    processing jobs → paused. Four statements, none per row."""
    now = timezone.now()
    cause = campaign_pause_cause(kind=kind, service=service)
    # Lock the running campaigns so none completes or is cancelled between reading and pausing
    # (in pk order, so two lockers of the same rows cannot deadlock).
    ids = list(
        Campaign.objects.select_for_update()
        .filter(status=CampaignStatus.RUNNING)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    if ids:
        Campaign.objects.filter(pk__in=ids).update(
            status=CampaignStatus.PAUSED,
            **cause.fields(),
            updated_at=now,
            **campaign_timestamps(CampaignStatus.PAUSED, now),
        )
        _events_insert(
            ids,
            from_status=CampaignStatus.RUNNING,
            to_status=CampaignStatus.PAUSED,
            reason=f"queue paused: {reason}",
            actor=actor,
            label=actor_label,
            now=now,
        )
    # Every pending or processing job, whatever its campaign: no job starts while the queue is
    # paused. A processing job's in-flight call may finish; it then records its own outcome.
    Job.objects.active().filter(status__in=PAUSABLE_JOB_STATUSES).update(status=JobStatus.PAUSED, updated_at=now)


@receiver(queue_resumed, dispatch_uid="campaigns.pausing.on_queue_resumed")
def on_queue_resumed(sender, *, actor=None, actor_label: str = "", **kwargs) -> None:
    """Campaigns paused by the queue, a breaker or one of their jobs → running; their paused jobs
    → pending, re-enqueued after commit. Campaigns an operator paused stay paused, jobs too."""
    now = timezone.now()
    ids = list(
        Campaign.objects.select_for_update()
        .filter(QUEUE_RESUMABLE, status=CampaignStatus.PAUSED)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    if not ids:
        return
    Campaign.objects.filter(pk__in=ids).update(
        status=CampaignStatus.RUNNING,
        **NO_PAUSE,
        updated_at=now,
        **campaign_timestamps(CampaignStatus.RUNNING, now),
    )
    _events_insert(
        ids,
        from_status=CampaignStatus.PAUSED,
        to_status=CampaignStatus.RUNNING,
        reason="queue resumed",
        actor=actor,
        label=actor_label,
        now=now,
    )
    Job.objects.active().filter(campaign_id__in=ids, status=JobStatus.PAUSED).update(
        status=JobStatus.PENDING, updated_at=now
    )
    # One message per campaign, after commit; the workers enqueue the campaign's pending jobs.
    campaigns_kick(ids)


def queue_counts(*, organization_ids=None) -> dict[str, int]:
    """The status page's counts of campaigns and jobs (queue_control.counts, registered in
    CampaignsConfig.ready())."""
    campaigns, jobs = Campaign.objects.all(), Job.objects.active()
    if organization_ids is not None:  # a member reads only their own organizations' counts
        campaigns = campaigns.filter(organization_id__in=organization_ids)
        jobs = jobs.filter(campaign__organization_id__in=organization_ids)
    counts = campaigns.aggregate(
        running_campaigns=Count("pk", filter=Q(status=CampaignStatus.RUNNING)),
        paused_campaigns=Count("pk", filter=Q(status=CampaignStatus.PAUSED)),
    )
    counts |= jobs.aggregate(
        pending_jobs=Count("pk", filter=Q(status=JobStatus.PENDING)),
        processing_jobs=Count("pk", filter=Q(status=JobStatus.PROCESSING)),
        paused_jobs=Count("pk", filter=Q(status=JobStatus.PAUSED)),
    )
    return counts
