"""The campaign pipeline: its phases, the jobs of each, and the move from one phase to the next.

lead_sourcing (one fetch_leads job) → verification (one verify_email job per lead) → enrichment
(one enrich_lead job per sendable lead) → outreach (the channel's jobs) → done.

A phase is over when none of its jobs is active any more. Whoever records a job's outcome then
moves the campaign on (`pipeline_advance_locked`), holding the campaign row lock, and creates the
next phase's jobs. A phase without work (no sendable leads, no outreach launcher) is passed
straight through.
"""

import logging
from datetime import timedelta

from django.db import connection, transaction
from django.db.models import Count, Exists, OuterRef, Q
from django.utils import timezone

from .dispatch import campaigns_kick, jobs_enqueue
from .models import Campaign, Job, Lead
from .registry import OUTREACH_LAUNCHERS
from .states import JOB_FINAL_STATUSES, PHASE_ORDER, CampaignStatus, JobStatus, JobType, Phase
from .transitions import campaign_transition

logger = logging.getLogger(__name__)

# The job types whose outcomes make up each phase (done has none).
PHASE_JOB_TYPES: dict[str, tuple[str, ...]] = {
    Phase.LEAD_SOURCING: (JobType.FETCH_LEADS,),
    Phase.VERIFICATION: (JobType.VERIFY_EMAIL,),
    Phase.ENRICHMENT: (JobType.ENRICH_LEAD,),
    Phase.OUTREACH: (JobType.SEND_EMAIL, JobType.PUSH_INSTANTLY),
}
# Leads that may be mailed. A catch_all domain accepts every address, so the verifier cannot say
# more about it: such leads are enriched and sent like valid ones (the usual practice), while
# invalid and unknown ones are not.
SENDABLE_EMAIL_STATUSES = (Lead.EmailStatus.VALID, Lead.EmailStatus.CATCH_ALL)
NO_LEADS_MESSAGE = "The lead source returned no leads for this search."
ACTOR = "pipeline"
# Progress is a count over every job of the phase; recomputing it on each of a million job
# outcomes would be quadratic, so it is refreshed at most this often (the phase-end check is a
# cheap EXISTS and runs every time).
PROGRESS_REFRESH = timedelta(seconds=1)


def pipeline_start(*, campaign: Campaign) -> Job:
    """Enter lead sourcing with one fetch_leads job. Called by campaign_start inside its
    transaction, so the job exists exactly when the campaign is running; the worker is woken
    after commit."""
    _save(campaign, phase=Phase.LEAD_SOURCING, progress=0, status_message="", status_error="")
    job = Job.objects.create(campaign=campaign, job_type=JobType.FETCH_LEADS)
    jobs_enqueue([job.pk])
    return job


def pipeline_cancel(*, campaign: Campaign) -> int:
    """Cancel every job that is not final, in one UPDATE. A handler still running finds its job
    cancelled when it records the outcome, and records nothing."""
    now = timezone.now()
    return (
        Job.objects.active()
        .filter(campaign_id=campaign.pk)
        .update(status=JobStatus.CANCELLED, finished_at=now, updated_at=now)
    )


def pipeline_advance(*, campaign_id) -> None:
    """Re-check a campaign's phase and move it on if the phase is over. Safe to call any time,
    from anywhere (dispatch on resume, the reaper): it changes nothing while work is left."""
    with transaction.atomic():
        campaign = Campaign.objects.select_for_update().get(pk=campaign_id)
        pipeline_advance_locked(campaign)


def pipeline_advance_locked(campaign: Campaign) -> None:
    """Refresh progress, and move the campaign through every phase that has no work left.

    The caller holds the campaign row lock (select_for_update) in the current transaction. That
    lock is what makes the phase change happen once: two workers finishing the last two jobs of a
    phase queue up on it, and the second one, once the first has committed, sees the new phase
    (and its jobs) instead of the old one, so it neither misses the end of the phase nor creates
    the next phase's jobs a second time.
    """
    while campaign.phase in PHASE_JOB_TYPES:
        phase_jobs = Job.objects.filter(campaign_id=campaign.pk, job_type__in=PHASE_JOB_TYPES[campaign.phase])
        if phase_jobs.active().exists():
            _refresh_progress(campaign, phase_jobs)
            return
        if campaign.status != CampaignStatus.RUNNING:
            return  # a paused campaign moves on when it resumes (dispatch_campaign asks again)
        if campaign.phase == Phase.LEAD_SOURCING and not campaign.leads.exists():
            _fail(campaign, _no_leads_reason(campaign))
            return
        next_phase = PHASE_ORDER[PHASE_ORDER.index(campaign.phase) + 1]
        _save(campaign, phase=next_phase, progress=0)
        if next_phase == Phase.DONE:
            _complete(campaign)
            return
        _create_phase_jobs(campaign)
        # Loop: the check above now looks at the new phase, and passes through it if it got no jobs.


def pipeline_stalled_campaign_ids() -> list:
    """Running campaigns whose current phase has no active job left: normally none, since the
    worker recording the last outcome moves the campaign on; a worker killed between the two
    leaves one behind, and the reaper hands it to pipeline_advance."""
    stalled = Q()
    for phase, job_types in PHASE_JOB_TYPES.items():
        active = Job.objects.active().filter(campaign_id=OuterRef("pk"), job_type__in=job_types)
        stalled |= Q(phase=phase) & ~Exists(active)
    return list(Campaign.objects.filter(status=CampaignStatus.RUNNING).filter(stalled).values_list("pk", flat=True))


def campaign_lead_stats(*, campaign_id) -> dict:
    """Lead figures of a campaign in one aggregate query."""
    statuses = Lead.EmailStatus.values
    figures = Lead.objects.filter(campaign_id=campaign_id).aggregate(
        total=Count("pk"),
        with_email=Count("pk", filter=~Q(email="")),
        enriched=Count("pk", filter=Q(enriched_at__isnull=False)),
        sendable=Count("pk", filter=Q(email_status__in=SENDABLE_EMAIL_STATUSES)),
        **{f"status_{status}": Count("pk", filter=Q(email_status=status)) for status in statuses},
    )
    return {
        "total": figures["total"],
        "with_email": figures["with_email"],
        "enriched": figures["enriched"],
        "sendable": figures["sendable"],
        "by_email_status": {status: figures[f"status_{status}"] for status in statuses},
    }


# --- internals ---------------------------------------------------------------------------------


def _save(campaign: Campaign, **fields) -> None:
    fields["updated_at"] = timezone.now()
    Campaign.objects.filter(pk=campaign.pk).update(**fields)
    for name, value in fields.items():
        setattr(campaign, name, value)


def _refresh_progress(campaign: Campaign, phase_jobs) -> None:
    if campaign.updated_at and timezone.now() - campaign.updated_at < PROGRESS_REFRESH:
        return
    counts = phase_jobs.aggregate(total=Count("pk"), final=Count("pk", filter=Q(status__in=JOB_FINAL_STATUSES)))
    progress = counts["final"] * 100 // counts["total"] if counts["total"] else 0
    _save(campaign, progress=progress)  # also when unchanged: updated_at is the refresh clock


def _create_phase_jobs(campaign: Campaign) -> None:
    if campaign.phase == Phase.VERIFICATION:
        _fan_out(campaign, JobType.VERIFY_EMAIL, email_statuses=None)
    elif campaign.phase == Phase.ENRICHMENT:
        _fan_out(campaign, JobType.ENRICH_LEAD, email_statuses=SENDABLE_EMAIL_STATUSES)
    elif campaign.phase == Phase.OUTREACH:
        _launch_outreach(campaign)


def _fan_out(campaign: Campaign, job_type: str, email_statuses: tuple[str, ...] | None) -> int:
    """One job of `job_type` per lead, in a single INSERT ... SELECT: a CSV campaign may have a
    million leads, which must not mean a million objects in a worker. ON CONFLICT DO NOTHING
    (the unique (lead, job_type) constraint) makes a repeat harmless. The jobs are woken by one
    dispatch_campaign message, which enqueues them in chunks."""
    job_table, lead_table = Job._meta.db_table, Lead._meta.db_table
    empty_json = "'{}'::jsonb" if connection.vendor == "postgresql" else "'{}'"
    campaign_id = Lead._meta.get_field("campaign").get_db_prep_value(campaign.pk, connection)
    where, params = "campaign_id = %s", [campaign_id]
    if email_statuses is not None:
        where += f" AND email_status IN ({', '.join(['%s'] * len(email_statuses))})"
        params += list(email_statuses)
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    sql = (
        f"INSERT INTO {job_table} (campaign_id, lead_id, job_type, status, attempts, last_error, result, "  # noqa: S608
        f"celery_task_id, created_at, updated_at) "
        f"SELECT campaign_id, id, %s, %s, 0, '', {empty_json}, '', %s, %s FROM {lead_table} WHERE {where} "
        f"ON CONFLICT DO NOTHING"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [job_type, JobStatus.PENDING, now, now, *params])
        created = cursor.rowcount
    if created:
        campaigns_kick([campaign.pk])
    return created


def _launch_outreach(campaign: Campaign) -> None:
    """Hand the campaign to its channel's launcher, which creates the outreach jobs. No sendable
    lead or no launcher for the channel means there is nothing to send: the phase ends at once."""
    launcher = OUTREACH_LAUNCHERS.get(campaign.channel)
    if launcher is None:
        logger.warning("No outreach launcher for channel %s; campaign %s skips outreach", campaign.channel, campaign.pk)
        return
    if not campaign.leads.filter(email_status__in=SENDABLE_EMAIL_STATUSES).exists():
        return
    try:
        with transaction.atomic():  # a savepoint: a failing launcher leaves none of its rows behind
            job_ids = launcher(campaign=campaign)
    except Exception as exc:
        logger.exception("Outreach launcher %s failed for campaign %s", campaign.channel, campaign.pk)
        _fail(campaign, f"Outreach could not start ({campaign.channel}): {exc}")
        return
    jobs_enqueue(job_ids)


def _no_leads_reason(campaign: Campaign) -> str:
    failed = (
        Job.objects.filter(campaign_id=campaign.pk, job_type=JobType.FETCH_LEADS, status=JobStatus.FAILED)
        .exclude(last_error="")
        .values_list("last_error", flat=True)
        .last()
    )
    return f"Lead sourcing failed: {failed}" if failed else NO_LEADS_MESSAGE


def _fail(campaign: Campaign, error: str) -> None:
    campaign_transition(
        campaign_id=campaign.pk,
        to_status=CampaignStatus.FAILED,
        actor_label=ACTOR,
        reason=error,
        status_message=f"Failed during {Phase(campaign.phase).label.lower()}.",
        status_error=error,
    )
    campaign.status = CampaignStatus.FAILED
    pipeline_cancel(campaign=campaign)


def _complete(campaign: Campaign) -> None:
    _save(campaign, progress=100)
    leads = campaign_lead_stats(campaign_id=campaign.pk)
    failed_jobs = Job.objects.filter(campaign_id=campaign.pk, status=JobStatus.FAILED).count()
    message = (
        f"Completed: {leads['total']} leads, {leads['sendable']} verified, {leads['enriched']} enriched"
        f"; {failed_jobs} job{'s' if failed_jobs != 1 else ''} failed."
    )
    campaign_transition(
        campaign_id=campaign.pk,
        to_status=CampaignStatus.COMPLETED,
        actor_label=ACTOR,
        reason=message,
        status_message=message,
    )
    campaign.status = CampaignStatus.COMPLETED
