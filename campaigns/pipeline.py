"""The campaign pipeline: its phases, the jobs of each, and the move from one phase to the next.

lead_sourcing (one fetch_leads job) → verification (one verify_email job per ENGINE_BATCH_SIZE
leads) → enrichment (one enrich_lead job per batch of sendable leads) → outreach (the channel's
jobs) → done.

Each phase has a CampaignPhase row counting its jobs and items. The job outcome that finishes the
phase's last job (jobs.job_finish, which learns it from the counter row it increments) calls
pipeline_advance, which takes the campaign row lock once per phase and moves the campaign on: so
the end of a phase is seen exactly once, and no other outcome waits on the campaign's row. A
phase without work (no sendable leads) is passed straight through.
"""

import logging

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, Exists, F, OuterRef, Q
from django.utils import timezone

from campaigns_project.live import campaign_changed

from .dispatch import wake
from .models import Campaign, CampaignPhase, Job, Lead
from .registry import OUTREACH_LAUNCHERS, OUTREACH_SETTLERS, OutreachOutcome
from .states import PHASE_JOB_TYPES, PHASE_ORDER, CampaignStatus, JobStatus, JobType, Phase
from .transitions import campaign_event_record, campaign_transition

logger = logging.getLogger(__name__)

# Leads that may be mailed. A catch_all domain accepts every address, so the verifier cannot say
# more about it: such leads are enriched and sent like valid ones (the usual practice), while
# invalid and unknown ones are not.
SENDABLE_EMAIL_STATUSES = (Lead.EmailStatus.VALID, Lead.EmailStatus.CATCH_ALL)
NO_LEADS_MESSAGE = "The lead source returned no leads for this search."
ACTOR = "pipeline"


def pipeline_start(*, campaign: Campaign) -> Job:
    """Enter lead sourcing with one fetch_leads job. Called by campaign_start inside its
    transaction, so the job exists exactly when the campaign is running; the worker is woken
    after commit."""
    _save(campaign, phase=Phase.LEAD_SOURCING, status_message="", status_error="")
    _phase_open(campaign, Phase.LEAD_SOURCING)
    wanted = campaign.total_records if campaign.file_name else campaign.lead_count
    job = Job.objects.create(campaign=campaign, job_type=JobType.FETCH_LEADS, size=wanted or 0)
    phase_work_add(campaign_id=campaign.pk, phase=Phase.LEAD_SOURCING, jobs=1, items=wanted or 0)
    wake(campaign.pk, "pipeline")
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


# --- phase counters ----------------------------------------------------------------------------


def phase_work_add(*, campaign_id, phase: str, jobs: int = 0, items: int = 0) -> None:
    """Count jobs and items created for a phase, in the transaction that creates them."""
    CampaignPhase.objects.filter(campaign_id=campaign_id, phase=phase).update(
        jobs_total=F("jobs_total") + jobs, items_total=F("items_total") + items, updated_at=timezone.now()
    )
    campaign_changed(campaign_id)


def phase_items_add(*, campaign_id, phase: str, done: int = 0, failed: int = 0, passed: int = 0) -> None:
    """Count items a job finished (`done`, of which `passed` go on to the next phase) or gave up on
    (`failed`), in the transaction that stores their results."""
    if done or failed or passed:
        CampaignPhase.objects.filter(campaign_id=campaign_id, phase=phase).update(
            items_done=F("items_done") + done,
            items_failed=F("items_failed") + failed,
            items_passed=F("items_passed") + passed,
            updated_at=timezone.now(),
        )
        campaign_changed(campaign_id)  # coalesced: the live publisher sends at most one message a second


def phase_job_finished(*, campaign_id, phase: str) -> bool:
    """Count one job of the phase as final; True when every job of the phase now is. Called in
    the transaction that records the job's outcome: the counter row's lock orders concurrent
    outcomes, so of the last two to finish, exactly one sees the count reach the total."""
    table = connection.ops.quote_name(CampaignPhase._meta.db_table)
    campaign = CampaignPhase._meta.get_field("campaign").get_db_prep_value(campaign_id, connection)
    now = CampaignPhase._meta.get_field("updated_at").get_db_prep_value(timezone.now(), connection)
    sql = (
        f"UPDATE {table} SET jobs_finished = jobs_finished + 1, updated_at = %s "  # noqa: S608 (name from _meta)
        f"WHERE campaign_id = %s AND phase = %s RETURNING jobs_finished, jobs_total"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [now, campaign, phase])
        row = cursor.fetchone()
    return row is not None and row[0] >= row[1]


# --- moving on ---------------------------------------------------------------------------------


def pipeline_advance(*, campaign_id) -> None:
    """Re-check a campaign's phase and move it on if the phase is over. Safe to call any time,
    from anywhere (the last job's outcome, a resume, the sweeper): it changes nothing while work
    is left, and the campaign row lock makes two concurrent calls move the campaign once."""
    with transaction.atomic():
        campaign = Campaign.objects.select_for_update().filter(pk=campaign_id).first()
        if campaign is not None:
            _advance_locked(campaign)


def _advance_locked(campaign: Campaign) -> None:
    """Move the campaign through every phase that has no work left (the caller holds its row lock)."""
    outreach_message = ""
    while campaign.phase in PHASE_JOB_TYPES:
        phase = _phase_row(campaign)
        if phase.jobs_finished < phase.jobs_total:
            return
        if campaign.status != CampaignStatus.RUNNING:
            return  # a paused campaign moves on when it resumes (kick_campaign asks again)
        if campaign.phase == Phase.LEAD_SOURCING and not campaign.leads.exists():
            _fail(campaign, _no_leads_reason(campaign))
            return
        if campaign.phase == Phase.OUTREACH:
            outcome = _outreach_settle(campaign)
            if outcome.state == OutreachOutcome.MORE:
                return
            if outcome.state == OutreachOutcome.WAITING:
                if campaign.status_message != outcome.message[:500]:
                    _save(campaign, status_message=outcome.message[:500])
                return
            if outcome.state == OutreachOutcome.FAILED:
                _fail(campaign, outcome.message)
                return
            outreach_message = outcome.message
        now = timezone.now()
        CampaignPhase.objects.filter(pk=phase.pk).update(finished_at=now, updated_at=now)
        next_phase = PHASE_ORDER[PHASE_ORDER.index(Phase(campaign.phase)) + 1]
        campaign_event_record(
            campaign=campaign,
            action="campaign.phase_changed",
            from_status=campaign.status,
            to_status=campaign.status,
            actor_label=ACTOR,
            reason=f"{campaign.phase} → {next_phase}",
        )
        _save(campaign, phase=next_phase)
        if next_phase == Phase.DONE:
            _complete(campaign, outreach_message)
            return
        _phase_enter(campaign)
        # Loop: the check above now looks at the new phase, and passes through it if it got no jobs.


def pipeline_stalled_campaign_ids() -> list:
    """Running campaigns whose current phase has every job final: normally none, since the
    outcome of the last job moves the campaign on; a worker lost between the two, or an outreach
    waiting for an operator's decision, leaves one behind, and the sweeper asks again."""
    finished = CampaignPhase.objects.filter(
        campaign=OuterRef("pk"), phase=OuterRef("phase"), finished_at__isnull=True, jobs_finished__gte=F("jobs_total")
    )
    return list(
        Campaign.objects.filter(status=CampaignStatus.RUNNING, phase__in=list(PHASE_JOB_TYPES))
        .filter(Exists(finished))
        .values_list("pk", flat=True)
    )


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


def _phase_open(campaign: Campaign, phase: str) -> CampaignPhase:
    now = timezone.now()
    row, _ = CampaignPhase.objects.get_or_create(
        campaign=campaign, phase=phase, defaults={"started_at": now, "updated_at": now}
    )
    return row


def _phase_row(campaign: Campaign) -> CampaignPhase:
    row = CampaignPhase.objects.filter(campaign=campaign, phase=campaign.phase).first()
    if row is None:
        # A phase entered before its counters existed: count its jobs once, from the job table.
        jobs = Job.objects.filter(campaign=campaign, job_type__in=PHASE_JOB_TYPES[campaign.phase]).aggregate(
            total=Count("pk"), finished=Count("pk", filter=Q(finished_at__isnull=False))
        )
        row = _phase_open(campaign, campaign.phase)
        CampaignPhase.objects.filter(pk=row.pk).update(jobs_total=jobs["total"], jobs_finished=jobs["finished"])
        row.refresh_from_db()
    return row


def _phase_enter(campaign: Campaign) -> None:
    _phase_open(campaign, campaign.phase)
    if campaign.phase == Phase.VERIFICATION:
        fan_out(campaign, JobType.VERIFY_EMAIL, email_statuses=None)
    elif campaign.phase == Phase.ENRICHMENT:
        fan_out(campaign, JobType.ENRICH_LEAD, email_statuses=SENDABLE_EMAIL_STATUSES)
    elif campaign.phase == Phase.OUTREACH:
        _launch_outreach(campaign)


def fan_out(
    campaign: Campaign, job_type: str, email_statuses: tuple[str, ...] | None, *, batch_size: int | None = None
) -> int:
    """One job of `job_type` per `batch_size` (ENGINE_BATCH_SIZE) leads, a range of lead ids, in a single
    INSERT … SELECT: a CSV campaign may have millions of leads, which must not mean millions of
    objects in a worker. ON CONFLICT DO NOTHING (unique per campaign, type and range start) makes
    a repeat harmless. Wakes the campaign's workers after commit."""
    qn = connection.ops.quote_name
    job_table, lead_table = qn(Job._meta.db_table), qn(Lead._meta.db_table)
    empty_json = "'{}'::jsonb" if connection.vendor == "postgresql" else "'{}'"
    campaign_id = Lead._meta.get_field("campaign").get_db_prep_value(campaign.pk, connection)
    where, params = "campaign_id = %s", [campaign_id]
    if email_statuses is not None:
        where += f" AND email_status IN ({', '.join(['%s'] * len(email_statuses))})"
        params += list(email_statuses)
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    # Only names from _meta and placeholders are formatted in; every value is a parameter.
    sql = (
        f"INSERT INTO {job_table} (campaign_id, job_type, status, attempts, range_start, range_end, size, "  # noqa: S608
        f"last_error, result, celery_task_id, created_at, updated_at) "
        f"SELECT %s, %s, %s, 0, min(id), max(id), count(*), '', {empty_json}, '', %s, %s "
        f"FROM (SELECT id, (row_number() OVER (ORDER BY id) - 1) / %s AS batch "
        f"FROM {lead_table} WHERE {where}) numbered GROUP BY batch "
        f"ON CONFLICT DO NOTHING RETURNING size"
    )
    with connection.cursor() as cursor:
        cursor.execute(
            sql, [campaign_id, job_type, JobStatus.PENDING, now, now, batch_size or settings.ENGINE_BATCH_SIZE, *params]
        )
        sizes = [row[0] for row in cursor.fetchall()]
    if sizes:
        phase_work_add(campaign_id=campaign.pk, phase=campaign.phase, jobs=len(sizes), items=sum(sizes))
        wake(campaign.pk, "pipeline", count=len(sizes))
    return len(sizes)


def _launch_outreach(campaign: Campaign) -> None:
    """Hand the campaign to its channel's launcher, which creates the outreach jobs and counts
    them into the phase. No sendable lead means nothing to send: the phase ends at once."""
    launcher = OUTREACH_LAUNCHERS.get(campaign.channel)
    if launcher is None:
        # The system check (campaigns.checks) refuses to start without one; this is the last guard.
        _fail(campaign, f"No outreach launcher is registered for the {campaign.channel} channel.")
        return
    if not campaign.leads.filter(email_status__in=SENDABLE_EMAIL_STATUSES).exists():
        return
    try:
        with transaction.atomic():  # a savepoint: a failing launcher leaves none of its rows behind
            launcher(campaign=campaign)
    except Exception as exc:
        logger.exception("Outreach launcher %s failed for campaign %s", campaign.channel, campaign.pk)
        _fail(campaign, f"Outreach could not start ({campaign.channel}): {exc}")


def _outreach_settle(campaign: Campaign) -> OutreachOutcome:
    settler = OUTREACH_SETTLERS.get(campaign.channel)
    if settler is None:
        return OutreachOutcome(OutreachOutcome.FAILED, f"No outreach settler for the {campaign.channel} channel.")
    return settler(campaign=campaign)


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


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def pipeline_summary(*, campaign: Campaign) -> str:
    """What the pipeline did with the campaign's leads, from the phase counters (no COUNT)."""
    phases = {row.phase: row for row in CampaignPhase.objects.filter(campaign=campaign)}

    def figure(phase: str, name: str) -> int:
        row = phases.get(phase)
        return getattr(row, name) if row is not None else 0

    parts = [
        _plural(figure(Phase.LEAD_SOURCING, "items_done"), "lead"),
        f"{figure(Phase.VERIFICATION, 'items_passed')} verified",
        f"{figure(Phase.ENRICHMENT, 'items_passed')} enriched",
    ]
    gave_up = [
        f"{figure(phase, 'items_failed')} could not be {verb}"
        for phase, verb in ((Phase.VERIFICATION, "verified"), (Phase.ENRICHMENT, "enriched"))
        if figure(phase, "items_failed")
    ]
    return ", ".join(parts) + (f" ({'; '.join(gave_up)})" if gave_up else "")


def _complete(campaign: Campaign, outreach_message: str) -> None:
    message = f"Completed: {pipeline_summary(campaign=campaign)}"
    if outreach_message:
        message += f"; {outreach_message}"
    message += "."
    campaign_transition(
        campaign_id=campaign.pk,
        to_status=CampaignStatus.COMPLETED,
        actor_label=ACTOR,
        reason=message,
        status_message=message,
    )
    campaign.status = CampaignStatus.COMPLETED
