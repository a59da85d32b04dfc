"""Jobs: the claim, the outcome, the hand-back, the heartbeat, and the upkeep of the job table.

A Job row is the unit of work and a Celery message only a wake-up. Every step that changes a job
is a conditional UPDATE that names the statuses it may start from (JOB_TRANSITIONS) and, once
claimed, the claim's attempt number: so a duplicated or late message, a worker lost half-way and
taken back by the sweeper, or a pause landing mid-call can neither run a job twice nor overwrite
what another actor decided.
"""

import logging
from datetime import timedelta
from time import monotonic

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, F
from django.utils import timezone

from queue_control.models import QueueState

from .dispatch import wake
from .models import Campaign, Job
from .pipeline import phase_job_finished, pipeline_advance
from .registry import JOB_RECOVERERS
from .states import (
    JOB_FINAL_STATUSES,
    JOB_PHASE,
    JOB_QUEUE,
    JOB_TRANSITIONS,
    CampaignStatus,
    JobStatus,
)

logger = logging.getLogger(__name__)

# Retries wait as short countdown messages (a long countdown would sit in the broker, which the
# Redis transport redelivers after its visibility timeout): the backoff is capped at this.
RETRY_COUNTDOWN_MAX_SECONDS = 60
MAX_ERROR_CHARS = 2000


class JobIncomplete(Exception):
    """The handler saved its progress and used up its time budget: the job goes back to pending
    and runs again at once, without counting an attempt."""


class JobStopped(Exception):
    """The handler stopped because its campaign is no longer running (paused by an operator,
    cancelled) or the job is no longer this run's: it goes back to pending without counting an
    attempt, and the claim waits for the campaign."""


class JobDeferred(Exception):
    """The handler cannot go on now for a reason that is not the job's fault (Redis unreachable,
    a rate limit far away): back to pending, to run again after `delay` seconds."""

    def __init__(self, message: str, *, delay: float) -> None:
        super().__init__(message)
        self.delay = delay


def job_sources(target: str) -> tuple[str, ...]:
    """The statuses a job may move to `target` from, read from the state table."""
    return tuple(source for source, targets in JOB_TRANSITIONS.items() if target in targets)


for _source, _target in ((JobStatus.PENDING, JobStatus.PROCESSING), (JobStatus.PROCESSING, JobStatus.PENDING)):
    assert _target in JOB_TRANSITIONS[_source], f"the runner needs {_source} -> {_target}"


def _mine(job: Job, *statuses: str):
    """The job's row, if it still is in one of `statuses` under this run's claim."""
    return Job.objects.filter(pk=job.pk, attempts=job.attempts, status__in=statuses)


# --- the claim ---------------------------------------------------------------------------------


def job_claim(*, campaign_id, job_types: tuple[str, ...], task_id: str = "") -> Job | None:
    """Take the campaign's next pending job of one of `job_types` for this worker, or None.

    One conditional UPDATE: pending → processing, only while the campaign is running and the
    queue latch is active, and only a job whose retry time has come. The claim's attempt number
    (attempts + 1) fences the run: every later write of this run names it. SKIP LOCKED lets
    concurrent claims of one campaign take different jobs instead of queueing on the same one.
    A pause that commits after the claim is caught by the gate before the next external call.
    """
    qn = connection.ops.quote_name
    job_table, campaign_table = qn(Job._meta.db_table), qn(Campaign._meta.db_table)
    latch_table = qn(QueueState._meta.db_table)
    now = Job._meta.get_field("updated_at").get_db_prep_value(timezone.now(), connection)
    campaign = Job._meta.get_field("campaign").get_db_prep_value(campaign_id, connection)
    skip_locked = " FOR UPDATE SKIP LOCKED" if connection.features.has_select_for_update_skip_locked else ""
    types = ", ".join(["%s"] * len(job_types))
    # Only names from _meta and placeholders are formatted in; every value is a parameter.
    sql = (
        f"UPDATE {job_table} SET status = %s, attempts = attempts + 1, started_at = %s, updated_at = %s, "  # noqa: S608
        f"celery_task_id = %s, run_after = NULL "
        f"WHERE id = (SELECT id FROM {job_table} WHERE campaign_id = %s AND finished_at IS NULL "
        f"AND status = %s AND job_type IN ({types}) AND (run_after IS NULL OR run_after <= %s) "
        f"ORDER BY id LIMIT 1{skip_locked}) "
        f"AND status = %s "
        f"AND EXISTS (SELECT 1 FROM {campaign_table} WHERE id = %s AND status = %s) "
        f"AND EXISTS (SELECT 1 FROM {latch_table} WHERE state = %s) "
        f"RETURNING id"
    )
    params = [JobStatus.PROCESSING, now, now, task_id[:64], campaign, JobStatus.PENDING, *job_types, now]
    params += [JobStatus.PENDING, campaign, CampaignStatus.RUNNING, QueueState.State.ACTIVE]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        return None
    return Job.objects.select_related("campaign").get(pk=row[0])


def jobs_claimable(*, campaign_id, job_types: tuple[str, ...]) -> int:
    """How many of the campaign's pending jobs of these types could be claimed now."""
    now = timezone.now()
    return (
        Job.objects.active()
        .filter(campaign_id=campaign_id, status=JobStatus.PENDING, job_type__in=job_types)
        .exclude(run_after__gt=now)
        .count()
    )


# --- while it runs -----------------------------------------------------------------------------


def job_checkpoint(job: Job, **result) -> bool:
    """Save a handler's progress in job.result (what a rerun resumes from); also a heartbeat.
    Saved on a job the cascade has just paused too: the work it records is done, and the run
    after the resume should not pay for it again. False when the job is no longer this run's."""
    job.result = {**job.result, **result}
    return bool(_mine(job, JobStatus.PROCESSING, JobStatus.PAUSED).update(result=job.result, updated_at=timezone.now()))


def job_heartbeat(job: Job) -> bool:
    """Show the sweeper the job's worker is alive; False when the job is no longer this run's."""
    return bool(_mine(job, JobStatus.PROCESSING, JobStatus.PAUSED).update(updated_at=timezone.now()))


class Heartbeat:
    """Beats at most every ENGINE_HEARTBEAT_SECONDS; loops call `beat()` as often as they like."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.last = monotonic()

    def beat(self) -> bool:
        if monotonic() - self.last < settings.ENGINE_HEARTBEAT_SECONDS:
            return True
        self.last = monotonic()
        return job_heartbeat(self.job)


def job_control(job: Job) -> str | None:
    """Why the job must stop now, or None: its campaign no longer running, the job paused by the
    cascade, or the job no longer this run's (cancelled, taken back). One indexed read."""
    row = Job.objects.filter(pk=job.pk).values_list("status", "attempts", "campaign__status").first()
    if row is None:
        return "deleted"
    status, attempts, campaign_status = row
    if attempts != job.attempts or status not in (JobStatus.PROCESSING, JobStatus.PAUSED):
        return f"job {status}"
    if status == JobStatus.PAUSED:
        return "paused"
    if campaign_status != CampaignStatus.RUNNING:
        return f"campaign {campaign_status}"
    return None


# --- outcomes ----------------------------------------------------------------------------------


def job_finish(*, job: Job, status: str, result: dict | None = None, error: str = "") -> bool:
    """Record a job's outcome (completed or failed), count it into its phase, and move the
    campaign on if it was the phase's last job.

    Conditional: only from processing, or paused (the cascade paused it while its call was in
    flight, and the outcome is recorded rather than paid for twice), and only under this run's
    claim. A cancelled job stays cancelled. Returns whether the outcome was recorded.

    The phase counter row, not the campaign row, is what concurrent outcomes queue on, for an
    instant. The phase change itself runs after the commit, in its own transaction under the
    campaign row lock, which keeps the lock order of the pause cascade (campaigns, then jobs); a
    worker lost in between leaves the phase finished and the sweeper moves the campaign on.
    """
    now = timezone.now()
    fields: dict = {"status": status, "finished_at": now, "updated_at": now, "run_after": None}
    if result is not None:
        fields["result"] = result
    if error:
        fields["last_error"] = error[:MAX_ERROR_CHARS]
    phase = JOB_PHASE.get(job.job_type)
    with transaction.atomic():
        recorded = bool(_mine(job, *job_sources(status)).update(**fields))
        last = recorded and phase is not None and phase_job_finished(campaign_id=job.campaign_id, phase=phase)
    if last:
        pipeline_advance(campaign_id=job.campaign_id)
    return recorded


def job_release(job: Job, *, delay: float = 0, error: str = "", count_attempt: bool = False) -> bool:
    """Processing → pending under this run's claim, claimable again after `delay` seconds (the
    caller sends the wake-up it needs). Without
    `count_attempt` the run gives its attempt back (a continuation or a stop is no failure). The
    attempt number still fences: the job is pending, so no earlier run can write to it, and the
    next claim makes it this run's number again only for the run that claims it."""
    now = timezone.now()
    fields: dict = {"status": JobStatus.PENDING, "updated_at": now, "run_after": now + timedelta(seconds=delay)}
    if not count_attempt:
        fields["attempts"] = F("attempts") - 1
    if error:
        fields["last_error"] = error[:MAX_ERROR_CHARS]
    return bool(_mine(job, JobStatus.PROCESSING).update(**fields))


def job_pause(job: Job, *, error: str = "") -> None:
    """The queue paused under a running job (the gate refused its next call). The cascade has
    paused it already; if the claim raced the cascade, pause it now. It gives its attempt back and
    runs again when an operator resumes the queue."""
    fields: dict = {"status": JobStatus.PAUSED, "attempts": F("attempts") - 1, "updated_at": timezone.now()}
    if error:
        fields["last_error"] = error[:MAX_ERROR_CHARS]
    _mine(job, JobStatus.PROCESSING, JobStatus.PAUSED).update(**fields)


def retry_delay(attempts: int, *, retry_after: float | None = None) -> float:
    delay = min(settings.JOB_RETRY_BACKOFF_SECONDS * 2**attempts, RETRY_COUNTDOWN_MAX_SECONDS)
    if retry_after:
        delay = min(max(delay, retry_after), RETRY_COUNTDOWN_MAX_SECONDS)
    return delay


# --- upkeep ------------------------------------------------------------------------------------


def jobs_reap_stuck() -> dict[str, int]:
    """Jobs left in processing by a lost worker (no heartbeat for JOB_STUCK_AFTER_SECONDS): what
    they had claimed is taken back first (JOB_RECOVERERS, e.g. a send job's recipients), then the
    job goes back to pending and is woken, or fails once it has used all its attempts.

    One transaction per job, because a recoverer works per job; normally there are none."""
    stuck_for = settings.JOB_STUCK_AFTER_SECONDS
    cutoff = timezone.now() - timedelta(seconds=stuck_for)
    stuck = list(Job.objects.active().filter(status=JobStatus.PROCESSING, updated_at__lt=cutoff))
    error = f"Stuck in processing for over {stuck_for}s: its worker was lost."
    requeued = failed = 0
    for job in stuck:
        recoverer = JOB_RECOVERERS.get(job.job_type)
        note = recoverer(job=job) if recoverer is not None else ""
        message = f"{error} {note}".strip()
        if job.attempts >= settings.JOB_MAX_ATTEMPTS:
            failed += job_finish(
                job=job,
                status=JobStatus.FAILED,
                error=f"{message} Gave up after {settings.JOB_MAX_ATTEMPTS} attempts.",
            )
        elif job_release(job, error=message, count_attempt=True):
            requeued += 1
            wake(job.campaign_id, JOB_QUEUE[job.job_type])
    return {"requeued": requeued, "failed": failed}


def jobs_cleanup(*, older_than_days: int, campaign_id=None, dry_run: bool = False) -> dict:
    """Delete final jobs (completed, failed, cancelled) last changed more than `older_than_days`
    days ago, of one campaign or all. Active jobs are never touched. Shared by the
    cleanup_jobs command, the API and the daily beat task."""
    if older_than_days < 0:
        raise ValueError("older_than_days must be 0 or more")
    cutoff = timezone.now() - timedelta(days=older_than_days)
    old = Job.objects.filter(status__in=JOB_FINAL_STATUSES, updated_at__lt=cutoff)
    if campaign_id is not None:
        old = old.filter(campaign_id=campaign_id)
    by_status = dict(old.order_by().values_list("status").annotate(count=Count("pk")))
    matched = sum(by_status.values())
    deleted = 0
    if matched and not dry_run:
        deleted, _ = old.delete()
    return {
        "older_than_days": older_than_days,
        "cutoff": cutoff.isoformat(),
        "campaign_id": str(campaign_id) if campaign_id is not None else None,
        "dry_run": dry_run,
        "matched": matched,
        "deleted": deleted,
        "by_status": by_status,
    }


def job_counts(*, campaign_id) -> dict[str, int]:
    """{status: count} of a campaign's jobs, every status present, in one query."""
    counts = dict.fromkeys(JobStatus.values, 0)
    counts.update(
        Job.objects.filter(campaign_id=campaign_id).order_by().values_list("status").annotate(count=Count("pk"))
    )
    return counts
