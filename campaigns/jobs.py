"""Running jobs: the claim, the handler call, the outcome, and the upkeep of the job table.

A Job row is the unit of work and a Celery message only a wake-up. Every step that changes a job
is a conditional UPDATE that names the statuses it may start from (JOB_TRANSITIONS), so a
duplicated or late message, a worker lost half-way, or a pause landing mid-call can neither run a
job twice nor overwrite what another actor decided.
"""

import logging
from datetime import timedelta

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import transaction
from django.db.models import Count, Exists, F, OuterRef
from django.utils import timezone

from integrations.errors import BadRequestError, ProviderError, RateLimitedError
from queue_control.errors import QueuePaused
from queue_control.models import QueueState

from .dispatch import jobs_enqueue
from .models import Campaign, Job
from .pipeline import pipeline_advance, pipeline_advance_locked, pipeline_stalled_campaign_ids
from .registry import JOB_HANDLERS, PermanentJobError, RetryableJobError
from .states import JOB_FINAL_STATUSES, JOB_TRANSITIONS, CampaignStatus, JobStatus

logger = logging.getLogger(__name__)

# Retries wait in the broker as countdown messages; the Redis transport redelivers any message
# not acked within its visibility timeout, so a retry never waits long.
RETRY_COUNTDOWN_MAX_SECONDS = 60
MAX_ERROR_CHARS = 2000


class JobIncomplete(Exception):
    """Raised by a handler that saved its progress (job_checkpoint) and used up its time budget:
    the job goes back to pending and runs again at once, without counting an attempt."""


def job_sources(target: str) -> tuple[str, ...]:
    """The statuses a job may move to `target` from, read from the state table."""
    return tuple(source for source, targets in JOB_TRANSITIONS.items() if target in targets)


for _source, _target in ((JobStatus.PENDING, JobStatus.PROCESSING), (JobStatus.PROCESSING, JobStatus.PENDING)):
    assert _target in JOB_TRANSITIONS[_source], f"the runner needs {_source} -> {_target}"


def job_time_budget() -> float:
    """Seconds a handler may work before checkpointing and yielding: well inside the soft limit."""
    return settings.CELERY_TASK_SOFT_TIME_LIMIT / 2


def job_claim(job_id: int, *, task_id: str = "") -> Job | None:
    """Take a pending job for this worker, or None when it is not to run now.

    One conditional UPDATE: pending → processing only while the job's campaign is running and the
    queue latch is active. Of two deliveries of the same message, one claims and the other gets
    None; a job of a paused or cancelled campaign, or any job while the queue is paused, is left
    alone. A pause that commits after the claim is caught by guarded_call before the next call.
    """
    now = timezone.now()
    campaign_running = Campaign.objects.filter(pk=OuterRef("campaign_id"), status=CampaignStatus.RUNNING)
    queue_active = QueueState.objects.filter(state=QueueState.State.ACTIVE)
    claimed = (
        Job.objects.filter(pk=job_id, status=JobStatus.PENDING)
        .filter(Exists(campaign_running), Exists(queue_active))
        .update(
            status=JobStatus.PROCESSING,
            attempts=F("attempts") + 1,
            started_at=now,
            updated_at=now,
            celery_task_id=task_id[:64],
        )
    )
    if not claimed:
        return None
    return Job.objects.select_related("campaign", "lead").get(pk=job_id)


def job_checkpoint(job: Job, **result) -> None:
    """Save a long handler's progress in job.result (what a rerun resumes from). Also a heartbeat:
    it moves updated_at, which the reaper reads. Saved on a job the cascade has just paused too:
    the work it records is done, and the run after the resume should not pay for it again."""
    job.result = {**job.result, **result}
    Job.objects.filter(pk=job.pk, status__in=(JobStatus.PROCESSING, JobStatus.PAUSED)).update(
        result=job.result, updated_at=timezone.now()
    )


def job_finish(*, job: Job, status: str, result: dict | None = None, error: str = "") -> bool:
    """Record a job's outcome (completed or failed) and do the pipeline's bookkeeping.

    Conditional: only from processing, or paused (the cascade paused it while its call was in
    flight, and the call's outcome is recorded rather than paid for twice). A cancelled job stays
    cancelled. Returns whether the outcome was recorded.
    """
    now = timezone.now()
    fields: dict = {"status": status, "finished_at": now, "updated_at": now}
    if result is not None:
        fields["result"] = result
    if error:
        fields["last_error"] = error[:MAX_ERROR_CHARS]
    with transaction.atomic():
        # The campaign row lock comes first. It serialises the outcomes of one campaign's jobs,
        # so the phase check after this update sees every other worker's committed outcome (see
        # pipeline_advance_locked), and it keeps the lock order of the pause cascade (campaigns,
        # then jobs), so the two cannot deadlock.
        campaign = Campaign.objects.select_for_update().filter(pk=job.campaign_id).first()
        if campaign is None:
            return False
        recorded = Job.objects.filter(pk=job.pk, status__in=job_sources(status)).update(**fields)
        if recorded:
            pipeline_advance_locked(campaign)
    return bool(recorded)


def job_run(job_id: int, *, task_id: str = "") -> str:
    """Claim the job, call its handler, record the outcome. Returns what happened, for logs."""
    job = job_claim(job_id, task_id=task_id)
    if job is None:
        return "not claimed"
    handler = JOB_HANDLERS.get(job.job_type)
    try:
        if handler is None:
            raise PermanentJobError(f"No handler is registered for {job.job_type} jobs.")
        result = handler(job=job)
    except Exception as exc:
        return _job_failed(job, exc)
    job_finish(job=job, status=JobStatus.COMPLETED, result=result or {})
    return "completed"


def _job_failed(job: Job, exc: Exception) -> str:
    now = timezone.now()
    error = _describe(exc)
    if isinstance(exc, QueuePaused):
        # The cascade has paused the job already; if our claim raced it, pause it now. It runs
        # again when the queue resumes.
        Job.objects.filter(pk=job.pk, status=JobStatus.PROCESSING).update(status=JobStatus.PAUSED, updated_at=now)
        return "paused"
    if isinstance(exc, ProviderError) and exc.trips_immediately:
        # Out of credit: guarded_call has opened the breaker, which paused the queue and this
        # job. Retrying cannot help; the job waits, paused, for an operator to resume the queue.
        Job.objects.filter(pk=job.pk, status__in=(JobStatus.PROCESSING, JobStatus.PAUSED)).update(
            status=JobStatus.PAUSED, last_error=error, updated_at=now
        )
        return "paused"
    if isinstance(exc, JobIncomplete):
        moved = Job.objects.filter(pk=job.pk, status=JobStatus.PROCESSING).update(
            status=JobStatus.PENDING, attempts=F("attempts") - 1, updated_at=now
        )
        if moved:
            jobs_enqueue([job.pk])
        return "continued"
    if isinstance(exc, PermanentJobError | BadRequestError):
        job_finish(job=job, status=JobStatus.FAILED, error=error)
        return "failed"
    if not isinstance(exc, RetryableJobError | ProviderError | SoftTimeLimitExceeded):
        logger.exception("Job %s (%s) raised an unexpected error", job.pk, job.job_type, exc_info=exc)
    if job.attempts >= settings.JOB_MAX_ATTEMPTS:
        job_finish(job=job, status=JobStatus.FAILED, error=f"{error} (gave up after {job.attempts} attempts)")
        return "failed"
    countdown = min(settings.JOB_RETRY_BACKOFF_SECONDS * 2**job.attempts, RETRY_COUNTDOWN_MAX_SECONDS)
    if isinstance(exc, RateLimitedError) and exc.retry_after:
        countdown = min(max(countdown, exc.retry_after), RETRY_COUNTDOWN_MAX_SECONDS)
    moved = Job.objects.filter(pk=job.pk, status=JobStatus.PROCESSING).update(
        status=JobStatus.PENDING, last_error=error[:MAX_ERROR_CHARS], updated_at=now
    )
    if moved:
        _enqueue_later(job.pk, countdown)
    return "retry"


def _describe(exc: Exception) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _enqueue_later(job_id: int, countdown: float) -> None:
    def send() -> None:
        from .tasks import run_job

        run_job.apply_async((job_id,), countdown=countdown)

    transaction.on_commit(send)


# --- upkeep ------------------------------------------------------------------------------------


def jobs_reap_stuck() -> dict[str, int]:
    """Jobs left in processing by a lost worker: back to pending and re-enqueued, or failed once
    they have used all their attempts. Set-based.

    "Stuck" is measured on updated_at, which the claim and every checkpoint move: a job is reaped
    after JOB_STUCK_AFTER_SECONDS without a sign of life, longer than the hard time limit
    (CELERY_TASK_TIME_LIMIT) allows any task to run, so a live job is never reaped.
    """
    now = timezone.now()
    stuck_for = settings.JOB_STUCK_AFTER_SECONDS
    stuck = Job.objects.active().filter(status=JobStatus.PROCESSING, updated_at__lt=now - timedelta(seconds=stuck_for))
    error = f"Stuck in processing for over {stuck_for}s: its worker was lost."
    with transaction.atomic():
        failed = stuck.filter(attempts__gte=settings.JOB_MAX_ATTEMPTS).update(
            status=JobStatus.FAILED,
            last_error=f"{error} Gave up after {settings.JOB_MAX_ATTEMPTS} attempts.",
            finished_at=now,
            updated_at=now,
        )
        retry_ids = list(stuck.values_list("pk", flat=True))
        requeued = Job.objects.filter(pk__in=retry_ids, status=JobStatus.PROCESSING).update(
            status=JobStatus.PENDING, last_error=error, updated_at=now
        )
        jobs_enqueue(retry_ids)
    # A failed job may have been the last of its phase, and a worker lost between recording an
    # outcome and moving its campaign on leaves the campaign waiting: move those on.
    stalled = pipeline_stalled_campaign_ids()
    for campaign_id in stalled:  # one locked transaction per campaign; normally there are none
        pipeline_advance(campaign_id=campaign_id)
    return {"requeued": requeued, "failed": failed, "campaigns_advanced": len(stalled)}


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
